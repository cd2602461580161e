/*
 * loop.c - what a device asks of the worker whose event loop it belongs to (worker.c):
 * its socket watched by the worker's epoll, its place in the publishing rotation, a log
 * line, the clocks. Apart from worker.c so that device.c and worker.c do not call each
 * other: worker.c drives the devices (device.c), and both use these.
 *
 * Everything here runs on the device's worker thread (loop__log locks stderr).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "loadgen.h"

double loop__now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t loop__realtime_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void loop__log(struct worker *w, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&w->run->stderr_lock);
	if (w->opt->progress) {
		fputs("\r\033[K", stderr); /* over the progress line */
	}
	fprintf(stderr, "%s: ", LOADGEN_NAME);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	pthread_mutex_unlock(&w->run->stderr_lock);
}

void loop__watch(struct worker *w, struct device *d, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = d};
	int op;

	if (d->fd < 0) {
		return;
	}
	if (events == 0) {
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, d->fd, NULL);
		d->fd = -1;
		d->events = 0;
		return;
	}
	op = d->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
	if (epoll_ctl(w->epfd, op, d->fd, &ev) != 0) {
		/* The descriptor is libmosquitto's and open: this does not happen. */
		loop__log(w, "%s: epoll_ctl: %s", d->id, strerror(errno));
		return;
	}
	d->events = events;
}

void loop__activate(struct worker *w, struct device *d)
{
	w->active[w->active_count++] = d;
	d->active = true;
}
