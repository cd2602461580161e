/*
 * alloc_fail.h - allocation-failure injection for the unit tests, SQLite's way: the
 * test executable is linked with -Wl,--wrap=malloc,--wrap=calloc,... (tests/unit/
 * CMakeLists.txt, test_alloc_fail), so every allocation the plugin's objects make goes
 * through alloc_fail.c, which makes the Nth one (counted from alloc_fail_arm) return
 * NULL. Only the plugin's own calls are wrapped (and cJSON's, through cJSON_InitHooks):
 * librdkafka, libmosquitto and libc allocate as usual. Only allocations made by the
 * thread that armed count, so that a path with threads of its own fails in the same
 * place on every run.
 */
#ifndef ALLOC_FAIL_H
#define ALLOC_FAIL_H

#include <stdbool.h>
#include <stddef.h>

/* The nth allocation from now (1: the next) fails, once; 0 disarms. Counts from zero. */
void alloc_fail_arm(long n);
/* Between pause and resume, allocations are neither counted nor failed (a path's set-up). */
void alloc_fail_pause(void);
void alloc_fail_resume(void);
/* Stops counting and failing; what happened stays for alloc_fail_count/_hit. */
void alloc_fail_stop(void);
/* Allocations counted since alloc_fail_arm (the failed one included). */
long alloc_fail_count(void);
/* Did the armed failure happen? */
bool alloc_fail_hit(void);
/* Makes cJSON allocate through the wrapper too (cJSON_InitHooks). */
void alloc_fail_hook_cjson(void);
/*
 * In the ASan build: did anything leak (LeakSanitizer's check, which prints what)? false
 * in other builds.
 */
bool alloc_fail_leaked(void);

#endif
