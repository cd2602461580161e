/*
 * alloc_real.h - forced (-include) into test_alloc_fail's copy of fake_broker.c: the
 * fake broker's own records (log lines, publishes) are the test's, not the plugin's, so
 * they allocate with the real functions and never fail. mosquitto_malloc, which the
 * plugin calls, is still wrapped (alloc_fail.c).
 */
#define malloc __real_malloc
#define calloc __real_calloc
#define realloc __real_realloc
#define strdup __real_strdup
#define strndup __real_strndup
