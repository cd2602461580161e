/*
 * mqk-loadgen - thousands of simulated devices (phones, sensors) publishing over MQTT,
 * to load mosquitto-kafka the way the field does and to count what arrives.
 *
 *   mqk-loadgen --host 127.0.0.1:1883 -n 2000 --ramp-up 5 -r 1 -d 60 > run.json
 *   mqk-loadgen --host haproxy:1883 -n 10000 -T 2 --first 10000 -Q 2 -P 5 -d 300
 *   mqk-loadgen -n 200 -c 50 --drain 10 | jq .acked
 *
 * What. Each device is its own MQTT connection (client id from --id-pattern, "ue-%05d"
 * by default, numbered from --first so that several loadgens can run side by side) and
 * publishes to its --topic at --rate messages per second. Every payload is an
 * include/mqk_payload.h payload: the client id, a per-device sequence number from 0
 * without gaps, the send time (CLOCK_REALTIME, µs) and padding to --size; so any
 * consumer (mqk-controller, a Kafka job, a test) counts loss, duplicates, reordering
 * and latency on its own. Each device also subscribes to its --commands topic and
 * answers every command (mqk_payload_encode_answer(): the trailer is the command's id).
 * At the end a JSON summary goes to stdout; the exit status says whether everything
 * went through.
 *
 * How. A few threads (--threads, default 2), each with its own epoll loop over the
 * sockets of the devices it owns (worker.c): not a thread per device, and not
 * mosquitto_loop_start(), which would be one. libmosquitto is driven from outside with
 * mosquitto_socket(), mosquitto_loop_read/_write/_misc() and mosquitto_want_write();
 * a device's libmosquitto calls are made only on its own thread. A periodic timerfd
 * paces the publishing (a budget spent round-robin, one turn per device) and the
 * ramp-up, and visits each device every ~100 ms for its timers. Connections are opened
 * asynchronously (mosquitto_connect_async(); see device__connect() for MQTT v5), lost
 * ones are reopened with a jittered exponential backoff (0.1 s doubling to 5 s), and a
 * device that stays unconnected for --connect-timeout gives up: everything is bounded.
 *
 * Sessions. By default sessions are persistent (3.1.1: clean session 0; v5: clean start
 * 0 and a session expiry interval, "never" by default) so that a broker that restarts
 * with its persistence, or another broker behind HAProxy that shares nothing, shows
 * what a reconnecting fleet does. libmosquitto keeps each unacknowledged QoS 1/2 message
 * and sends it again after the reconnect; device.c explains what is counted and why an
 * offline device does not publish.
 *
 * Numbers. redis-benchmark's manners: a progress line on stderr once a second when it
 * is a terminal, one summary at the end (summary.c), non-zero exit when anything failed:
 * a device never connected, a publish call failed, a QoS>0 message (data or answer) is
 * still unacknowledged after --drain seconds, or the broker refused one.
 *
 * Limits. Every device holds one descriptor, its connection (not the socket pair
 * libmosquitto 2.0.11 would open for every client: see device.c). The soft
 * RLIMIT_NOFILE is raised to the hard one at start (and the hard one, when allowed, to
 * what the run needs); a run that does not fit is refused before it starts.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>

#include "cli.h"
#include "loadgen.h"

/* Descriptors per device (its socket), per thread (epoll, timerfd), and spare. */
#define FDS_PER_DEVICE 1
#define FDS_PER_THREAD 2
#define FDS_SPARE 32

/* Raises RLIMIT_NOFILE to what the run needs, or says why it cannot. */
static int raise_nofile(const struct options *opt)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)opt->devices * FDS_PER_DEVICE +
		      (rlim_t)opt->threads * FDS_PER_THREAD + FDS_SPARE;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		cli_fail("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
		return -1;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
			cli_fail("setrlimit(RLIMIT_NOFILE, %llu): %s",
				 (unsigned long long)rl.rlim_max, strerror(errno));
			return -1;
		}
	}
	if (rl.rlim_cur >= need) {
		return 0;
	}
	/* Privileged (CAP_SYS_RESOURCE): the hard limit may go up too. */
	rl.rlim_cur = rl.rlim_max = need;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0) {
		return 0;
	}
	getrlimit(RLIMIT_NOFILE, &rl);
	cli_fail("--devices %lld needs %llu file descriptors, the limit is %llu: raise the hard "
		 "limit (ulimit -Hn, LimitNOFILE=) or run fewer devices per process",
		 opt->devices, (unsigned long long)need, (unsigned long long)rl.rlim_max);
	return -1;
}

static void free_run(struct run *run)
{
	free(run->workers);
	pthread_barrier_destroy(&run->ready);
	pthread_mutex_destroy(&run->create_lock);
	pthread_mutex_destroy(&run->stderr_lock);
	options__free(&run->opt);
}

int main(int argc, char **argv)
{
	static struct run run;
	struct options *opt = &run.opt;
	sigset_t sigs;
	double next_progress;
	bool interrupted = false;
	int started = 0, rc;

	cli_init(LOADGEN_NAME);
	options__parse(opt, argc, argv);
	if (raise_nofile(opt) != 0) {
		options__free(opt);
		return 1;
	}
	mosquitto_lib_init();

	run.worker_count = opt->threads;
	run.workers = calloc((size_t)run.worker_count, sizeof(*run.workers));
	if (run.workers == NULL) {
		cli_fail("out of memory");
		return 1;
	}
	pthread_barrier_init(&run.ready, NULL, (unsigned)run.worker_count + 1);
	pthread_mutex_init(&run.create_lock, NULL);
	pthread_mutex_init(&run.stderr_lock, NULL);
	for (int i = 0; i < run.worker_count; i++) {
		struct worker *w = &run.workers[i];
		w->run = &run;
		w->opt = opt;
		w->id = i;
		w->epfd = w->tfd = -1;
		w->device_count =
			(size_t)((opt->devices - i + run.worker_count - 1) / run.worker_count);
	}

	/*
	 * Only this thread takes SIGINT/SIGTERM (sigtimedwait below); the workers inherit the
	 * blocked mask. A reader of stdout that goes away must not kill us mid-run.
	 */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	for (int i = 0; i < run.worker_count; i++) {
		rc = pthread_create(&run.workers[i].thread, NULL, worker__main, &run.workers[i]);
		if (rc != 0) {
			cli_fail("cannot start thread %d: %s", i, strerror(rc));
			exit(1); /* the started ones wait at the barrier: nothing to save */
		}
		started++;
	}
	pthread_barrier_wait(&run.ready);
	run.t0 = loop__now();
	pthread_barrier_wait(&run.ready);
	if (atomic_load(&run.setup_failed)) {
		for (int i = 0; i < started; i++) {
			pthread_join(run.workers[i].thread, NULL);
		}
		free_run(&run);
		mosquitto_lib_cleanup();
		return 1;
	}
	if (opt->verbosity > 0) {
		fprintf(stderr,
			"%s: %lld devices on %d threads, %s, QoS %d, %g msg/s each, %s sessions\n",
			LOADGEN_NAME, opt->devices, run.worker_count,
			opt->protocol == MQTT_PROTOCOL_V5 ? "MQTT 5" : "MQTT 3.1.1", opt->qos,
			opt->rate, opt->clean ? "clean" : "persistent");
	}

	next_progress = run.t0 + 1.0;
	while (atomic_load(&run.finished) < run.worker_count) {
		struct timespec timeout = {0, 200 * 1000 * 1000};
		int sig = sigtimedwait(&sigs, NULL, &timeout);
		double now = loop__now();

		if (sig == SIGINT || sig == SIGTERM) {
			int stop = atomic_fetch_add(&run.stop, 1) + 1;
			interrupted = true;
			pthread_mutex_lock(&run.stderr_lock);
			fprintf(stderr, "%s%s: %s: %s\n", opt->progress ? "\r\033[K" : "",
				LOADGEN_NAME, strsignal(sig),
				stop == 1 ? "stopping: draining acknowledgements (again: no drain)"
					  : "not draining");
			pthread_mutex_unlock(&run.stderr_lock);
		}
		if (opt->progress && now >= next_progress) {
			summary__progress(&run, now);
			next_progress += 1.0;
			if (next_progress < now) {
				next_progress = now + 1.0;
			}
		}
	}
	for (int i = 0; i < run.worker_count; i++) {
		pthread_join(run.workers[i].thread, NULL);
	}
	if (opt->progress) {
		summary__progress(&run, loop__now());
		fputc('\n', stderr);
	}
	rc = summary__print(&run, interrupted);
	free_run(&run);
	mosquitto_lib_cleanup();
	return rc;
}
