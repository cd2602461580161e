/*
 * print_options.c - prints options.c's table of plugin_opt_ options as JSON, for
 * check_options.py (ctest options_doc), which compares it with README's option tables.
 * Not installed.
 *
 *   build/tests/docs/print_options    # [{"name": "bootstrap_servers", "table": ...}, ...]
 */
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "mqk.h"

int main(void)
{
	cJSON *list = cJSON_CreateArray();
	struct mqk_option_doc doc;
	char *text;

	if (list == NULL) {
		fprintf(stderr, "Error: out of memory\n");
		return 1;
	}
	for (size_t i = 0; options__doc(i, &doc); i++) {
		cJSON *o = cJSON_CreateObject();
		if (o == NULL || !cJSON_AddItemToArray(list, o) ||
		    !cJSON_AddStringToObject(o, "name", doc.name) ||
		    !cJSON_AddStringToObject(o, "table", doc.table) ||
		    !cJSON_AddStringToObject(o, "value", doc.value) ||
		    !cJSON_AddStringToObject(o, "default", doc.dflt) ||
		    !cJSON_AddStringToObject(o, "doc", doc.doc) ||
		    !cJSON_AddBoolToObject(o, "repeat", doc.repeat) ||
		    (doc.number && (!cJSON_AddNumberToObject(o, "min", doc.min) ||
				    !cJSON_AddNumberToObject(o, "max", doc.max)))) {
			fprintf(stderr, "Error: out of memory\n");
			cJSON_Delete(list);
			return 1;
		}
	}
	text = cJSON_Print(list);
	cJSON_Delete(list);
	if (text == NULL) {
		fprintf(stderr, "Error: out of memory\n");
		return 1;
	}
	puts(text);
	cJSON_free(text);
	return 0;
}
