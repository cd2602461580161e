/*
 * fuzz_common.h - what the libFuzzer harnesses of tests/fuzz share: a check that
 * aborts (libFuzzer reports it as a crash, with the input), and the text form of a
 * list of plugin options.
 *
 * Options are lines "key value" (the first space ends the key), as after the
 * "plugin_opt_" of a mosquitto.conf line; that prefix may be written too. Mosquitto
 * strips only CR/LF from a line and never gives an option without a value, so a line
 * without a space has the value "".
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define FUZZ_MAX_OPTS 256

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* The options of one input. Owns text, which the keys and values point into. */
struct fuzz_opts {
	char *text;
	struct mosquitto_opt opts[FUZZ_MAX_OPTS];
	int count;
	char *rest; /* after a line "--" (see fuzz_opts_split), or NULL */
};

/*
 * Splits data into options. With stop_at_dashes, a line "--" ends them and rest is
 * what follows it. Returns 0, or -1 when out of memory.
 */
static inline int fuzz_opts_split(struct fuzz_opts *o, const uint8_t *data, size_t size,
				  int stop_at_dashes)
{
	char *line;

	memset(o, 0, sizeof(*o));
	o->text = malloc(size + 1);
	if (o->text == NULL) {
		return -1;
	}
	memcpy(o->text, data, size);
	o->text[size] = '\0';
	line = o->text;
	while (line && o->count < FUZZ_MAX_OPTS) {
		char *next = strchr(line, '\n');
		if (next) {
			*next++ = '\0';
		}
		size_t len = strlen(line);
		if (len && line[len - 1] == '\r') {
			line[--len] = '\0';
		}
		if (stop_at_dashes && !strcmp(line, "--")) {
			o->rest = next;
			break;
		}
		if (len == 0) {
			line = next;
			continue;
		}
		if (!strncmp(line, "plugin_opt_", 11)) {
			line += 11;
		}
		char *space = strchr(line, ' ');
		o->opts[o->count].key = line;
		o->opts[o->count].value = space ? space + 1 : line + strlen(line);
		if (space) {
			*space = '\0';
		}
		o->count++;
		line = next;
	}
	return 0;
}

static inline void fuzz_opts_free(struct fuzz_opts *o)
{
	free(o->text);
	memset(o, 0, sizeof(*o));
}

#endif
