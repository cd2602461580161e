/*
 * alloc_fail.c - the allocators of the plugin's objects, wrapped (alloc_fail.h): each
 * counts the call when the calling thread armed, and returns NULL for the armed one.
 * __real_* are the libc functions the linker's --wrap leaves under that name.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "alloc_fail.h"

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__real_aligned_alloc(size_t alignment, size_t size);
void *__real_mosquitto_malloc(size_t size);

static atomic_long fail_at; /* 0: disarmed */
static atomic_long count;
static atomic_bool hit;
static atomic_bool paused;
static pthread_t armer;

void alloc_fail_arm(long n)
{
	armer = pthread_self();
	atomic_store(&count, 0);
	atomic_store(&hit, false);
	atomic_store(&fail_at, n);
}

void alloc_fail_pause(void)
{
	atomic_store(&paused, true);
}

void alloc_fail_resume(void)
{
	atomic_store(&paused, false);
}

void alloc_fail_stop(void)
{
	atomic_store(&fail_at, 0);
}

long alloc_fail_count(void)
{
	return atomic_load(&count);
}

bool alloc_fail_hit(void)
{
	return atomic_load(&hit);
}

/* Is this allocation the one to fail? */
static bool fails(void)
{
	long at = atomic_load(&fail_at);

	if (at == 0 || atomic_load(&paused) || !pthread_equal(pthread_self(), armer)) {
		return false;
	}
	if (atomic_fetch_add(&count, 1) + 1 != at) {
		return false;
	}
	atomic_store(&hit, true);
	return true;
}

void *__wrap_malloc(size_t size)
{
	return fails() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return fails() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
	return fails() ? NULL : __real_realloc(p, size);
}

char *__wrap_strdup(const char *s)
{
	return fails() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
	return fails() ? NULL : __real_strndup(s, n);
}

void *__wrap_aligned_alloc(size_t alignment, size_t size)
{
	return fails() ? NULL : __real_aligned_alloc(alignment, size);
}

void *__wrap_mosquitto_malloc(size_t size)
{
	return fails() ? NULL : __real_mosquitto_malloc(size);
}

void alloc_fail_hook_cjson(void)
{
	cJSON_Hooks hooks = {.malloc_fn = __wrap_malloc, .free_fn = free};

	cJSON_InitHooks(&hooks);
}

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
bool alloc_fail_leaked(void)
{
	return __lsan_do_recoverable_leak_check() != 0;
}
#else
bool alloc_fail_leaked(void)
{
	return false;
}
#endif
