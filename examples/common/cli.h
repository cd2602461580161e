/*
 * cli.h - what the example tools share: the error line, numbers of seconds on the command
 * line, the monotonic clock.
 */
#ifndef MQK_CLI_H
#define MQK_CLI_H

#include <stdbool.h>
#include <stdint.h>

/* Prints "Error: <message>" and a newline on stderr; returns 1, the bad-argument exit status. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses s as a number of seconds, fractions allowed, in [min, max]: true, or false. */
bool cli_parse_seconds(const char *s, double min, double max, double *out);

/* CLOCK_MONOTONIC in µs. */
uint64_t cli_mono_us(void);

#endif
