/*
 * cli.h - what the example tools' command lines share: the error line and numbers of
 * seconds.
 */
#ifndef MQK_CLI_H
#define MQK_CLI_H

#include <stdbool.h>

/* Prints "Error: <message>" and a newline on stderr; returns 1, the bad-argument exit status. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses s as a number of seconds, fractions allowed, in [min, max]: true, or false. */
bool cli_parse_seconds(const char *s, double min, double max, double *out);

#endif
