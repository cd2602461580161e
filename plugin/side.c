/*
 * side.c - the plugin's side: one thread with a descriptor table of its own, on which
 * everything the plugin's threads use is opened and closed.
 *
 * Why. Once a process has a second thread its descriptor table is shared, and Linux
 * then takes and drops a reference on the file at every read() and write() on a
 * descriptor (fdget_pos/fput). mosquitto 2.0 makes several system calls per PUBLISH on
 * its client sockets, so one idle thread beside it costs plain mosquitto 7-8 % of its
 * ingest; the same idle thread after unshare(CLONE_FILES) costs 1.5 % (docs/study.md).
 * The plugin needs threads (the Kafka thread, librdkafka's, commands, inbound, metrics),
 * so it gives them a table of their own and leaves mosquitto's thread alone in its.
 *
 * How. side__start, on mosquitto's thread in init, starts the side thread. Its first act
 * is unshare(CLONE_FILES): from then on it has a copy of mosquitto's table. It closes its
 * copies of what mosquitto had open (its log file...; mosquitto opens its listeners
 * after plugin init) except 0, 1, 2 and the shared descriptors below. (The wake
 * connection, wake.c, finds mosquitto's listeners by inode in /proc, without their
 * descriptors.) Then it serves jobs:
 * mosquitto's thread posts a function (side__run) and waits for its result. Init runs
 * the setup that opens descriptors or starts threads as a job (producer and
 * rd_kafka_new, commands, inbound, metrics), cleanup runs the whole teardown
 * (rd_kafka_destroy included) as a job: every thread the plugin starts is started by
 * the side thread, inherits its table, and every descriptor they make or close is in
 * it. Jobs run at init and cleanup only, never on the message path, so mosquitto's
 * thread may wait for them. When the side thread and all the threads it started have
 * ended, the kernel drops its table and closes whatever is still in it.
 *
 * The rule that follows: mosquitto's thread never uses a descriptor made on the side (a
 * number there may be one of mosquitto's client sockets), and no thread of the side uses
 * one made by mosquitto's thread after the split. Descriptors both sides use are made
 * on mosquitto's thread before the side starts, so that they are in both tables under
 * the same number (shared, on purpose):
 *   - the buffer's eventfd (buffer.c): mosquitto's thread writes it after a commit, the
 *     Kafka thread sleeps on it, librdkafka's queue writes it;
 *   - the hand-off queues' eventfds (handoff.c, commands and inbound): mosquitto's thread
 *     writes them on the TICK, their threads sleep on them. They are made here ahead
 *     (side__start's eventfds) and taken by handoff__init on the side (side__eventfd);
 *   - the journal's directory (journal.c): both threads make segment files in it
 *     (openat), each closing its own descriptor of a segment as soon as it is mapped
 *     (the mapped pages are shared memory, not descriptors). journal.state's descriptor,
 *     which holds the journal's flock, stays mosquitto's alone: the side closes its copy
 *     at once, so the lock goes when journal__close closes mosquitto's.
 * mosquitto's thread closes its copies of these itself, after the side has ended
 * (side__stop); the side's copies go with its table.
 *
 * When not. If other threads already run in mosquitto when the plugin starts (another
 * plugin's), unsharing would not give mosquitto's thread a table of its own, and if
 * unshare fails there is none to have: the plugin logs why and runs its jobs on
 * mosquitto's thread as before the split (correct, without the gain).
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mqk.h"

#define MAX_SHARED 16

/* The side, one per process (mosquitto loads a plugin once). Fields under lock. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool split;   /* the side thread runs on a table of its own: jobs go there */
	bool started; /* the side thread was started (and is to be joined) */
	int ready;    /* 0: starting; 1: split; -1: unshare failed (errno in err) */
	int err;
	/* The job being served: fn != NULL until the side thread has run it. */
	int (*fn)(void *);
	void *arg;
	int rc;
	bool quit;
	/* Kept on the side: the shared descriptors. */
	int shared[MAX_SHARED];
	int shared_count;
	/* Eventfds made ahead for handoff__init on the side; taken from the front. */
	int eventfds[MAX_SHARED];
	int eventfd_count;
	int eventfd_taken;
} side = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static bool is_kept(int fd, const int *keep, int count)
{
	for (int i = 0; i < count; i++) {
		if (keep[i] == fd) {
			return true;
		}
	}
	return false;
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/*
 * (side) Closes this thread's copies of mosquitto's descriptors but 0-2 and the shared
 * ones: what lies between two kept ones with close_range, or, where the kernel has none,
 * one by one as /proc/thread-self/fd lists them (this thread's table; /proc/self is
 * mosquitto's thread's).
 */
static void close_inherited(void)
{
	int keep[2 * MAX_SHARED + 4];
	int open_fds[1024];
	int nkeep = 0, nopen = 0;
	DIR *dir = opendir("/proc/thread-self/fd");
	struct dirent *de;

	keep[nkeep++] = 0;
	keep[nkeep++] = 1;
	keep[nkeep++] = 2;
	for (int i = 0; i < side.shared_count; i++) {
		keep[nkeep++] = side.shared[i];
	}
	for (int i = 0; i < side.eventfd_count; i++) {
		keep[nkeep++] = side.eventfds[i];
	}
	while (dir != NULL && (de = readdir(dir)) != NULL) {
		char *end;
		long n = strtol(de->d_name, &end, 10);
		if (*end != '\0' || de->d_name[0] == '\0' || n == dirfd(dir) || n <= 2) {
			continue;
		}
		if (nopen < (int)(sizeof(open_fds) / sizeof(open_fds[0]))) {
			open_fds[nopen++] = (int)n;
		}
	}
	if (dir != NULL) {
		keep[nkeep++] = dirfd(dir); /* closed by closedir below */
	}
	qsort(keep, (size_t)nkeep, sizeof(int), cmp_int);
	int rc = 0;
	for (int i = 0; i < nkeep && rc == 0; i++) {
		unsigned first = (unsigned)keep[i] + 1;
		unsigned last = i + 1 < nkeep ? (unsigned)keep[i + 1] - 1 : ~0u;
		if (first <= last) {
			rc = (int)syscall(SYS_close_range, first, last, 0);
		}
	}
	if (rc != 0) {
		/* No close_range (Linux < 5.9): the listed ones, one by one (without /proc,
		   none: the copies stay open, harmless but for their references). */
		for (int i = 0; i < nopen; i++) {
			if (!is_kept(open_fds[i], keep, nkeep)) {
				close(open_fds[i]);
			}
		}
	}
	if (dir != NULL) {
		closedir(dir);
	}
}

/* The side thread: splits, then serves jobs until side__stop. */
static void *side_main(void *arg)
{
	(void)arg;
	log__defer_this_thread(); /* no mosquitto_* call here: its log lines wait for the TICK */
	int rc = unshare(CLONE_FILES);
	int err = errno;
	if (rc == 0) {
		close_inherited();
	}
	pthread_mutex_lock(&side.lock);
	side.ready = rc == 0 ? 1 : -1;
	side.err = err;
	pthread_cond_broadcast(&side.cond);
	while (rc == 0 && !side.quit) {
		if (side.fn != NULL) {
			int (*fn)(void *) = side.fn;
			void *job = side.arg;
			pthread_mutex_unlock(&side.lock);
			int result = fn(job);
			pthread_mutex_lock(&side.lock);
			side.rc = result;
			side.fn = NULL;
			pthread_cond_broadcast(&side.cond);
		} else {
			pthread_cond_wait(&side.cond, &side.lock);
		}
	}
	pthread_mutex_unlock(&side.lock);
	return NULL;
}

/* How many threads the process runs now (/proc/self/task), or -1. */
static int thread_count(void)
{
	DIR *dir = opendir("/proc/self/task");
	struct dirent *de;
	int n = 0;

	if (dir == NULL) {
		return -1;
	}
	while ((de = readdir(dir)) != NULL) {
		n += de->d_name[0] != '.';
	}
	closedir(dir);
	return n;
}

static void close_eventfds(void)
{
	for (int i = 0; i < side.eventfd_count; i++) {
		close(side.eventfds[i]);
	}
	side.eventfd_count = side.eventfd_taken = 0;
}

int side__start(const int *shared, int shared_count, int eventfds, char *why, size_t why_size)
{
	sigset_t all, old;
	int threads = thread_count();

	why[0] = '\0';
	if (side.started || shared_count > MAX_SHARED || eventfds > MAX_SHARED) {
		snprintf(why, why_size, "the side is in use");
		return -1;
	}
	if (threads != 1) {
		snprintf(why, why_size,
			 threads < 0 ? "/proc/self/task cannot be read"
				     : "%d threads already run in mosquitto, another plugin's perhaps",
			 threads);
		return -1;
	}
	side.shared_count = 0;
	for (int i = 0; i < shared_count; i++) {
		if (shared[i] >= 0) {
			side.shared[side.shared_count++] = shared[i];
		}
	}
	for (int i = 0; i < eventfds; i++) {
		int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (fd < 0) {
			snprintf(why, why_size, "eventfd: %s", strerror(errno));
			close_eventfds();
			return -1;
		}
		side.eventfds[side.eventfd_count++] = fd;
	}
	side.ready = 0;
	side.quit = false;
	/* Signals go to mosquitto's thread: the side and every thread it starts block them. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&side.thread, NULL, side_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		snprintf(why, why_size, "pthread_create: %s", strerror(rc));
		close_eventfds();
		return -1;
	}
	side.started = true;
	pthread_mutex_lock(&side.lock);
	while (side.ready == 0) {
		pthread_cond_wait(&side.cond, &side.lock);
	}
	side.split = side.ready == 1;
	pthread_mutex_unlock(&side.lock);
	if (!side.split) {
		snprintf(why, why_size, "unshare(CLONE_FILES): %s", strerror(side.err));
		pthread_join(side.thread, NULL);
		side.started = false;
		close_eventfds();
		return -1;
	}
	(void)pthread_setname_np(side.thread, "mqk-side");
	return 0;
}

int side__run(int (*fn)(void *), void *arg)
{
	int rc;

	if (!side.split) {
		return fn(arg); /* no split: on mosquitto's thread, as before */
	}
	pthread_mutex_lock(&side.lock);
	side.fn = fn;
	side.arg = arg;
	pthread_cond_broadcast(&side.cond);
	while (side.fn != NULL) {
		pthread_cond_wait(&side.cond, &side.lock);
	}
	rc = side.rc;
	pthread_mutex_unlock(&side.lock);
	log__drain(); /* what the job logged, in order, before mosquitto's thread goes on */
	return rc;
}

int side__eventfd(void)
{
	int fd = -1;

	pthread_mutex_lock(&side.lock);
	if (side.split && side.eventfd_taken < side.eventfd_count) {
		fd = side.eventfds[side.eventfd_taken++];
	}
	pthread_mutex_unlock(&side.lock);
	return fd >= 0 ? fd : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

void side__stop(void)
{
	if (!side.started) {
		return;
	}
	pthread_mutex_lock(&side.lock);
	side.quit = true;
	pthread_cond_broadcast(&side.cond);
	pthread_mutex_unlock(&side.lock);
	pthread_join(side.thread, NULL);
	/* The side's copies went with its table; these are mosquitto's thread's. */
	close_eventfds();
	side.split = side.started = false;
	side.shared_count = 0;
}

bool side__split(void)
{
	return side.split;
}
