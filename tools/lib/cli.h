/*
 * cli.h - the command line of the tools (tools/) and the sample controller, written once:
 * the error line, whole numbers, seconds, host:port, the monotonic clock. The -X librdkafka
 * properties are cli_kafka.h's (only the Kafka tools link librdkafka).
 *
 * One error style for every tool, kcat's: "Error: <cause>" on one line of stderr (an
 * option's cause starts with the option: "--hold: 'soon' is not a number of seconds
 * (0..86400)"),
 * exit status CLI_EXIT_USAGE for a bad argument. main() names the program first:
 * cli_init("mqk-router"). getopt's own messages are off (opterr = 0, and an optstring that
 * starts with ':'): cli_getopt_fail says the same in this style.
 */
#ifndef MQK_CLI_H
#define MQK_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The exit status of a bad argument: 1, as kcat's. (2 is taken: mqk-controller and
 * mqk-hybrid exit 2 when they saw loss.)
 */
#define CLI_EXIT_USAGE 1

/* Names the program, for its messages (a static string: it is not copied). */
void cli_init(const char *prog);

/* The name given to cli_init ("mqk" before it). */
const char *cli_prog(void);

/* Prints "Error: <message>" and a newline on stderr; returns CLI_EXIT_USAGE. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A bad argument where returning is awkward: cli_fail, then exit(CLI_EXIT_USAGE). */
void cli_usage_exit(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* A fatal error that is not the arguments' (out of memory, a file): cli_fail, exit(1). */
void cli_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * What getopt_long returned c for ('?' or ':', with opterr = 0 and a leading ':'), as one
 * error line: "unknown option '--x' (see --help)" or "option '-n' needs a value (see
 * --help)". Returns CLI_EXIT_USAGE.
 */
int cli_getopt_fail(int c, char **argv);

/*
 * Parses s as a whole decimal number in [min, max]: digits only (no sign, no space, no
 * 0x). True and *out, or false.
 */
bool cli_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/*
 * Parses s as a number of seconds in [min, max]: digits with at most one '.' (no sign,
 * exponent, inf or nan). True and *out, or false.
 */
bool cli_parse_seconds(const char *s, double min, double max, double *out);

/*
 * Parses len bytes at s as host:port, host or [ipv6]:port into host (NUL-terminated, at
 * most host_size - 1 bytes) and *port. A missing port is default_port, or an error when
 * default_port is 0. Returns NULL, or what is wrong (static text: "no port", "an empty
 * host", "not a port (1..65535)", "write IPv6 addresses as [addr]:port", "host too long").
 */
const char *cli_parse_hostport(const char *s, size_t len, int default_port, char *host,
			       size_t host_size, int *port);

/*
 * Calls handler on SIGINT and SIGTERM, without SA_RESTART: a blocking poll() returns at
 * once (EINTR), so the loop sees the flag the handler sets.
 */
void cli_on_stop(void (*handler)(int));

/* CLOCK_MONOTONIC in µs. */
uint64_t cli_mono_us(void);

#endif
