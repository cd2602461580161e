/*
 * idle_thread.c - a library that, preloaded into a process, starts one thread that does
 * nothing, ever.
 *
 *   LD_PRELOAD=build/bench/mqk-bench-idle-thread.so mosquitto -c ...
 *
 * bench/overhead.py runs plain mosquitto with it as a control: what does mosquitto lose
 * merely by no longer being single-threaded, before the plugin does any work? (Linux
 * takes a reference on the file at every system call on a descriptor once its table is
 * shared by a second thread; mosquitto makes several read() calls per PUBLISH.)
 *
 * Built with IDLE_UNSHARE (mqk-bench-idle-thread-unshared.so) the thread first takes a
 * descriptor table of its own, as the plugin's side thread does (plugin/side.c): the
 * cost of a thread in mosquitto once its table is mosquitto's alone again.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

static void *idle(void *arg)
{
	(void)arg;
#ifdef IDLE_UNSHARE
	(void)unshare(CLONE_FILES); /* failing, it is the shared-table control again */
#endif
	for (;;) {
		pause();
	}
	return NULL;
}

__attribute__((constructor)) static void start_idle_thread(void)
{
	pthread_t t;

	if (pthread_create(&t, NULL, idle, NULL) == 0) {
		pthread_detach(t);
	}
}
