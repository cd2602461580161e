/*
 * worker.c - one thread's event loop. A worker owns a share of the devices (device i
 * belongs to worker i mod threads) and is the only thread that calls libmosquitto for
 * them. It waits in epoll_wait() on their sockets and on a periodic timerfd (1 to
 * 10 ms); socket events go to libmosquitto's loop_read/loop_write, and each timer tick:
 *
 *   - starts the devices whose ramp-up time has come (device i at t0 + ramp * i / N);
 *   - pays the publishing budget: rate * active devices * elapsed time, as turns taken
 *     round-robin over the devices that have connected once, so that each gets the
 *     per-device rate without the tick scanning every device (one turn, one device);
 *     an offline device's turn is skipped and counted, never made up later;
 *   - sweeps a slice of the devices, so that each is visited every ~100 ms: keepalive
 *     (mosquitto_loop_misc), retry and give-up timers;
 *   - moves the phases on: RUN until the duration is over, every device has sent
 *     --count, or SIGINT/SIGTERM; then DRAIN until every QoS>0 message is acknowledged
 *     or --drain passes; then CLOSING (DISCONNECTs, at most 2 s); then DONE.
 *
 * Publishing lag is bounded: the budget never holds more than one second of turns, so
 * a stalled thread does not burst afterwards; the summary's rate shows what was sent.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "mqk_payload.h"
#include "cli.h"
#include "loadgen.h"

#define MAX_EVENTS 512
#define TICK_MIN 0.001
#define TICK_MAX 0.010
#define SWEEP_PERIOD 0.1 /* each device is swept this often */
#define MAX_TURNS_PER_TICK 20000
#define CLOSE_WAIT 2.0

static double start_time(const struct worker *w, const struct device *d)
{
	return w->run->t0 + w->opt->ramp_up * (double)d->index / (double)w->opt->devices;
}

/* Spends the budget: one turn for one device, round-robin over the active ones. */
static void pace(struct worker *w, double now, double dt)
{
	double rate = w->opt->rate * (double)w->active_count;
	size_t turns;

	if (w->opt->rate <= 0 || w->active_count == 0) {
		w->budget = 0;
		return;
	}
	w->budget += rate * dt;
	if (w->budget > rate + 1.0) {
		w->budget = rate + 1.0;
	}
	turns = (size_t)w->budget;
	if (turns > MAX_TURNS_PER_TICK) {
		turns = MAX_TURNS_PER_TICK;
	}
	w->budget -= (double)turns;
	while (turns > 0 && w->active_count > 0) {
		struct device *d;

		if (w->rr >= w->active_count) {
			w->rr = 0;
		}
		d = w->active[w->rr];
		if (!d->done) {
			device__turn(d, now);
			turns--;
		}
		if (d->done) {
			w->active[w->rr] = w->active[--w->active_count];
			d->active = false;
		} else {
			w->rr++;
		}
	}
}

static void sweep(struct worker *w, double now, double dt)
{
	size_t visits;

	w->sweep_budget += (double)w->device_count * dt / SWEEP_PERIOD;
	visits = (size_t)w->sweep_budget;
	if (visits > w->device_count) {
		visits = w->device_count;
		w->sweep_budget = 0;
	} else {
		w->sweep_budget -= (double)visits;
	}
	while (visits-- > 0) {
		struct device *d = &w->devices[w->sweep_pos];
		w->sweep_pos = (w->sweep_pos + 1) % w->device_count;
		if (d->state != DEV_IDLE && d->state != DEV_CLOSED) {
			device__sweep(d, now);
		}
	}
}

static void end_publishing(struct worker *w, double now)
{
	w->phase = PHASE_DRAIN;
	w->ended_at = now;
	w->drain_until = now + w->opt->drain;
	atomic_store(&w->connected_at_end,
		     atomic_load_explicit(&w->c.connected, memory_order_relaxed));
}

static void begin_close(struct worker *w, double now)
{
	for (size_t i = 0; i < w->device_count; i++) {
		device__close(&w->devices[i]);
	}
	w->phase = PHASE_CLOSING;
	w->close_until = now + CLOSE_WAIT;
}

static bool all_closed(const struct worker *w)
{
	for (size_t i = 0; i < w->device_count; i++) {
		if (w->devices[i].state != DEV_CLOSED) {
			return false;
		}
	}
	return true;
}

static void tick(struct worker *w, double now)
{
	int stop = atomic_load(&w->run->stop);
	double dt = now - w->last_tick;

	if (dt < 0) {
		dt = 0;
	}
	w->last_tick = now;
	if (w->phase == PHASE_RUN) {
		if (stop >= 1 || now >= w->publish_end ||
		    (w->opt->count > 0 && w->done_count == w->device_count)) {
			end_publishing(w, now);
		}
	}
	if (w->phase == PHASE_RUN) {
		while (w->next_start < w->device_count &&
		       start_time(w, &w->devices[w->next_start]) <= now) {
			device__connect(&w->devices[w->next_start++], now);
		}
		pace(w, now, dt);
	}
	sweep(w, now, dt);
	if (w->phase == PHASE_DRAIN &&
	    (w->unacked_live == 0 || now >= w->drain_until || stop >= 2)) {
		begin_close(w, now);
	}
	if (w->phase == PHASE_CLOSING && (all_closed(w) || now >= w->close_until)) {
		w->phase = PHASE_DONE;
	}
}

static int setup(struct worker *w, char *errstr, size_t errstr_size)
{
	const struct options *opt = w->opt;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->tfd};
	struct rlimit saved, none = {0, 0};
	int rc = 0;

	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (w->epfd < 0 || w->tfd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->tfd, &ev) != 0) {
		snprintf(errstr, errstr_size, "epoll/timerfd: %s", strerror(errno));
		return -1;
	}
	w->buf_size = options__payload_size(opt, MQK_PAYLOAD_MAX_DEVICE);
	w->buf = malloc(w->buf_size);
	w->devices = calloc(w->device_count, sizeof(*w->devices));
	w->active = calloc(w->device_count, sizeof(*w->active));
	if (w->buf == NULL || w->devices == NULL || w->active == NULL) {
		snprintf(errstr, errstr_size, "out of memory for %zu devices", w->device_count);
		return -1;
	}
	/* No descriptor can be opened now: mosquitto_new() makes no socket pair (device.c). */
	if (getrlimit(RLIMIT_NOFILE, &saved) != 0) {
		snprintf(errstr, errstr_size, "getrlimit: %s", strerror(errno));
		return -1;
	}
	none.rlim_max = saved.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &none) != 0) {
		snprintf(errstr, errstr_size, "setrlimit: %s", strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < w->device_count && rc == 0; i++) {
		long long index = w->id + (long long)i * w->run->worker_count;
		rc = device__init(&w->devices[i], w, index, errstr, errstr_size);
	}
	if (setrlimit(RLIMIT_NOFILE, &saved) != 0) {
		snprintf(errstr, errstr_size, "setrlimit: %s", strerror(errno));
		return -1;
	}
	return rc;
}

/* The tick: as often as the publishing rate needs, between TICK_MIN and TICK_MAX. */
static int start_timer(struct worker *w)
{
	double rate = w->opt->rate * (double)w->device_count;
	struct itimerspec its;

	w->tick = rate > 0 ? 1.0 / rate : TICK_MAX;
	w->tick = w->tick < TICK_MIN ? TICK_MIN : w->tick > TICK_MAX ? TICK_MAX : w->tick;
	its.it_interval.tv_sec = 0;
	its.it_interval.tv_nsec = (long)(w->tick * 1e9);
	its.it_value = its.it_interval;
	return timerfd_settime(w->tfd, 0, &its, NULL);
}

static void finish(struct worker *w)
{
	for (size_t i = 0; w->devices != NULL && i < w->device_count; i++) {
		struct device *d = &w->devices[i];
		w->in_flight_at_exit += d->unacked;
		w->answers_in_flight_at_exit += d->answer_count;
		if (!d->ever_connected) {
			w->never_connected++;
		}
		device__cleanup(d);
	}
	if (w->phase != PHASE_DONE && w->ended_at == 0) {
		w->ended_at = loop__now();
	}
	free(w->devices);
	free(w->active);
	free(w->buf);
	w->devices = NULL;
	w->active = NULL;
	w->buf = NULL;
	if (w->tfd >= 0) {
		close(w->tfd);
	}
	if (w->epfd >= 0) {
		close(w->epfd);
	}
	w->tfd = w->epfd = -1;
}

void *worker__main(void *arg)
{
	struct worker *w = arg;
	struct run *run = w->run;
	struct epoll_event evs[MAX_EVENTS];
	char errstr[256] = "";
	int rc;

	/*
	 * One worker at a time sets up, while no other thread opens descriptors: setup()
	 * makes the libmosquitto clients with RLIMIT_NOFILE at 0 (see device.c).
	 */
	pthread_mutex_lock(&run->create_lock);
	rc = setup(w, errstr, sizeof(errstr));
	pthread_mutex_unlock(&run->create_lock);
	if (rc != 0) {
		cli_fail("%s", errstr);
		atomic_store(&run->setup_failed, 1);
	}
	pthread_barrier_wait(&run->ready); /* everyone is set up */
	pthread_barrier_wait(&run->ready); /* main has set t0 */
	if (atomic_load(&run->setup_failed) || start_timer(w) != 0) {
		finish(w);
		atomic_fetch_add(&run->finished, 1);
		return NULL;
	}
	w->rand_state = 2166136261u ^ (unsigned)w->id;
	w->last_tick = run->t0;
	w->publish_end =
		w->opt->duration > 0 ? run->t0 + w->opt->ramp_up + w->opt->duration : INFINITY;
	w->phase = PHASE_RUN;

	while (w->phase != PHASE_DONE) {
		bool ticked = false;
		int n = epoll_wait(w->epfd, evs, MAX_EVENTS, 100);

		if (n < 0 && errno != EINTR) {
			loop__log(w, "epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == &w->tfd) {
				uint64_t expirations;
				if (read(w->tfd, &expirations, sizeof(expirations)) < 0) {
					/* EAGAIN: nothing to read, tick anyway */
				}
				ticked = true;
			} else {
				device__on_events(evs[i].data.ptr, evs[i].events);
			}
		}
		if (ticked || n == 0) {
			tick(w, loop__now());
		}
	}
	if (w->ended_at == 0) {
		end_publishing(w, loop__now());
	}
	finish(w);
	atomic_fetch_add(&run->finished, 1);
	return NULL;
}
