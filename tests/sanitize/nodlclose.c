/*
 * nodlclose.so - preloaded into mosquitto with MQK_ASAN=1 (tests/integration/harness.py),
 * just before the ASan runtime: dlclose() does nothing.
 *
 * mosquitto 2.0.11 dlcloses its plugins before it exits, and LeakSanitizer looks for leaks
 * only after that, at exit. Unloaded, the plugin and the libraries it brought in
 * (librdkafka, libsasl2, ...) have no names left for a report's stack frames ("<unknown
 * module>"), and what they keep in their globals for the life of the process turns into
 * "leaks" (libsasl2's plugin tables from librdkafka's one sasl_client_init(), which is
 * never undone). Kept loaded, those stay reachable, and a real leak is reported with the
 * plugin's function names and lines. Nothing else changes: mosquitto still calls the
 * plugin's cleanup before dlclose.
 *
 * It comes before libasan in LD_PRELOAD because libasan defines (intercepts) dlclose too,
 * and the first definition wins. It defines nothing else, so ASan loses only its own
 * bookkeeping in dlclose (ASAN_OPTIONS=verify_asan_link_order=0 lets it start second).
 * Built without the sanitizers (cmake/sanitize.cmake): it must not need libasan.
 */
__attribute__((visibility("default"))) int dlclose(void *handle);

int dlclose(void *handle)
{
	(void)handle;
	return 0;
}
