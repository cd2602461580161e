/*
 * dump_counters.c - prints the plugin's counters, one a line, from the lists in mqk.h
 * (stats__each_counter): "<$SYS topic> <metric> <total|route> <HELP text>". For
 * tests/check_readme_counters.py, which compares them with README's Counters table.
 */
#include <stdbool.h>
#include <stdio.h>

#include "mqk.h"

static void print(void *arg, const char *sys_topic, const char *metric, const char *help,
		  bool per_route)
{
	(void)arg;
	printf("%s %s %s %s\n", sys_topic, metric, per_route ? "route" : "total", help);
}

int main(void)
{
	stats__each_counter(print, NULL);
	return 0;
}
