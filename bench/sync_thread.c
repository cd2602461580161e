/*
 * sync_thread.c - a library that, preloaded into a process, starts one thread that writes
 * to a file at a steady rate and makes it durable every second: the journal's disk work
 * (plugin/journal.c, journal_fsync 1000) without the rest of the plugin.
 *
 *   MQK_SYNC_DIR=/tmp/x MQK_SYNC_MODE=msync MQK_SYNC_MBPS=64 \
 *   LD_PRELOAD=build/bench/mqk-bench-sync-thread.so mosquitto -c ...
 *
 * MQK_SYNC_MODE msync: the bytes go through a MAP_SHARED mapping of the file and msync
 * (MS_SYNC) writes them, as the journal does: writing a page back write-protects it in
 * every page table that maps it, and the TLB flush that needs interrupts every core that
 * runs one of the process's threads, mosquitto's too. write: the same bytes with pwrite
 * and fdatasync, no mapping, so no flush. bench/overhead.py runs plain mosquitto with each
 * as controls: what the journal's syncing costs mosquitto's thread, and through which.
 *
 * The file (64 MiB, written round and round) is MQK_SYNC_DIR/sync-thread.<pid>; the thread
 * takes a descriptor table of its own first, as the plugin's threads do (plugin/side.c).
 * Missing or bad settings: the thread does nothing (the control is then plain mosquitto
 * with an idle thread, and the bench sees no file).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define FILE_SIZE (64u << 20)
#define TICK_NS 10000000L /* a write every 10 ms */
#define TICKS_PER_SYNC 100 /* durable every 1000 ms */

static void *writer(void *arg)
{
	(void)arg;
	const char *dir = getenv("MQK_SYNC_DIR");
	const char *mode = getenv("MQK_SYNC_MODE");
	const char *mbps = getenv("MQK_SYNC_MBPS");
	bool use_map = mode != NULL && strcmp(mode, "msync") == 0;
	size_t chunk = mbps ? (size_t)(atof(mbps) * (1 << 20)) / (1000000000L / TICK_NS) : 0;
	char path[4096];
	char *map = NULL, *buf = NULL;
	size_t off = 0;
	struct timespec next;
	int fd;

	(void)unshare(CLONE_FILES);
	if (dir == NULL || mode == NULL || chunk == 0 || chunk > FILE_SIZE ||
	    (!use_map && strcmp(mode, "write") != 0)) {
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/sync-thread.%d", dir, (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		return NULL;
	}
	if (posix_fallocate(fd, 0, FILE_SIZE) != 0) {
		goto cleanup;
	}
	if (use_map) {
		map = mmap(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED) {
			goto cleanup;
		}
	} else if ((buf = malloc(chunk)) == NULL) {
		goto cleanup;
	}
	clock_gettime(CLOCK_MONOTONIC, &next);
	for (unsigned long tick = 1;; tick++) {
		size_t n = chunk < FILE_SIZE - off ? chunk : FILE_SIZE - off;
		if (use_map) {
			memset(map + off, (int)(tick & 0xff), n);
		} else {
			memset(buf, (int)(tick & 0xff), n);
			(void)!pwrite(fd, buf, n, (off_t)off);
		}
		off = (off + n) % FILE_SIZE;
		if (tick % TICKS_PER_SYNC == 0) {
			if (use_map) {
				(void)msync(map, FILE_SIZE, MS_SYNC);
			} else {
				(void)fdatasync(fd);
			}
		}
		next.tv_nsec += TICK_NS;
		if (next.tv_nsec >= 1000000000L) {
			next.tv_sec++;
			next.tv_nsec -= 1000000000L;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
	}
cleanup: /* only a failed start comes here: the loop above never ends */
	close(fd);
	return NULL;
}

__attribute__((constructor)) static void start_sync_thread(void)
{
	pthread_t t;

	if (pthread_create(&t, NULL, writer, NULL) == 0) {
		pthread_detach(t);
	}
}
