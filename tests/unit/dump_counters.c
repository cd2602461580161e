/*
 * dump_counters.c - prints the plugin's counters, one a line, from the lists in mqk.h
 * (stats__each_counter): "<$SYS topic> <metric> <total|route> <HELP text>". For
 * tests/check_readme_counters.py, which compares them with README's Counters table.
 */
#include <stdbool.h>
#include <stdio.h>

#include "mqk.h"

static void print(void *arg, const struct mqk_counter_info *c)
{
	(void)arg;
	printf("%s %s %s %s\n", c->sys_topic, c->metric,
	       c->family == MQK_COUNTERS_ROUTE ? "route" : "total", c->help);
}

int main(void)
{
	stats__each_counter(print, NULL);
	return 0;
}
