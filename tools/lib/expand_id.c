/*
 * expand_id.c - see expand_id.h. Shared by mqk-loadgen and mqk-controller, which must
 * agree on what a template like devices/{id}/commands names.
 */
#include <stdlib.h>
#include <string.h>

#include "expand_id.h"

char *expand_id(const char *tpl, const char *id)
{
	size_t idlen = strlen(id), len = 0;
	const char *p;
	char *out, *o;

	for (p = tpl; *p; p++) {
		if (strncmp(p, "{id}", 4) == 0) {
			len += idlen;
			p += 3;
		} else {
			len++;
		}
	}
	out = malloc(len + 1);
	if (out == NULL) {
		return NULL;
	}
	for (p = tpl, o = out; *p; p++) {
		if (strncmp(p, "{id}", 4) == 0) {
			memcpy(o, id, idlen);
			o += idlen;
			p += 3;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return out;
}
