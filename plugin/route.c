/*
 * route.c - does a PUBLISH go to Kafka, and by which routes.
 *
 * Order of the checks, for each message:
 *   1. $SYS/... and $CONTROL/... are never forwarded (mosquitto 2.0.11 does not even
 *      raise MESSAGE for them; this keeps it so if that changes);
 *   2. a topic matching any exclude filter goes nowhere;
 *   3. every route in force whose filter matches takes it (one record per route), if
 *      its selectors (clientid=, username=, qos=, retain=) take it too.
 * Filter syntax and matching are mosquitto's own (mosquitto_sub_topic_check,
 * mosquitto_topic_matches_sub), so the plugin and the broker agree on what a filter
 * means, '$'-topic rules included.
 */
#include <string.h>

#include <mosquitto.h>

#include "mqk.h"

/* Is the first level of topic exactly `level`? */
static bool first_level_is(const char *topic, const char *level)
{
	size_t len = strlen(level);
	return !strncmp(topic, level, len) && (topic[len] == '/' || topic[len] == '\0');
}

bool route__is_reserved(const char *topic)
{
	return topic[0] == '$' &&
	       (first_level_is(topic, "$SYS") || first_level_is(topic, "$CONTROL"));
}

bool route__filter_is_valid(const char *filter)
{
	return filter[0] != '\0' &&
	       mosquitto_validate_utf8(filter, (int)strlen(filter)) == MOSQ_ERR_SUCCESS &&
	       mosquitto_sub_topic_check(filter) == MOSQ_ERR_SUCCESS && !route__is_reserved(filter);
}

static bool matches(const char *filter, const char *topic)
{
	bool result = false;
	return mosquitto_topic_matches_sub(filter, topic, &result) == MOSQ_ERR_SUCCESS && result;
}

void route__classify(struct mqk_route *route)
{
	const char *f = route->filter;
	size_t len = strlen(f);
	size_t wild = strcspn(f, "+#");

	route->prefix_len = len;
	if (wild == len) {
		route->shape = MQK_FILTER_LITERAL;
	} else if (len == 1 && f[0] == '#') {
		route->shape = MQK_FILTER_ALL;
	} else if (wild == len - 1 && f[wild] == '#' && len >= 2 && f[len - 2] == '/') {
		route->shape = MQK_FILTER_PREFIX; /* a valid filter has '#' last only */
		route->prefix_len = len - 2;
	} else {
		route->shape = MQK_FILTER_GENERAL;
	}
}

/* The same answers as mosquitto_topic_matches_sub for a topic a client could publish. */
static bool route_matches(const struct mqk_route *route, const char *topic)
{
	switch (route->shape) {
	case MQK_FILTER_LITERAL:
		return !strcmp(route->filter, topic);
	case MQK_FILTER_ALL:
		return topic[0] != '$';
	case MQK_FILTER_PREFIX:
		/* "a/#" is "a" and everything under it; "+/#"-like shapes are not here. */
		return !strncmp(route->filter, topic, route->prefix_len) &&
		       (topic[route->prefix_len] == '/' || topic[route->prefix_len] == '\0');
	case MQK_FILTER_GENERAL:
		break;
	}
	return matches(route->filter, topic);
}

/*
 * '*' and '?' only (no brackets, no escapes: fnmatch(3) would give '[' and '\\' a
 * meaning a client id may not mean). Iterative, with backtracking to the last '*' only:
 * O(len(pattern) * len(text)) at worst, one pass for the usual "prefix-*".
 */
bool route__glob(const char *pattern, const char *text)
{
	const char *star = NULL, *resume = NULL;

	while (*text) {
		if (*pattern == '*') {
			star = pattern++;
			resume = text;
		} else if (*pattern == '?' || *pattern == *text) {
			pattern++;
			text++;
		} else if (star) {
			pattern = star + 1;
			text = ++resume;
		} else {
			return false;
		}
	}
	while (*pattern == '*') {
		pattern++;
	}
	return *pattern == '\0';
}

bool route__selects(const struct mqk_route *route, const struct mqk_message *msg)
{
	if (route->sel_qos && msg->qos + 1 != route->sel_qos) {
		return false;
	}
	if (route->sel_retain && (route->sel_retain == 2) != msg->retain) {
		return false;
	}
	if (route->sel_clientid &&
	    !route__glob(route->sel_clientid, msg->client_id ? msg->client_id : "")) {
		return false;
	}
	if (route->sel_username) {
		if (msg->username == NULL) {
			return route->sel_username[0] == '\0';
		}
		return route->sel_username[0] != '\0' &&
		       route__glob(route->sel_username, msg->username);
	}
	return true;
}

enum mqk_verdict route__match(const struct mqk_config *cfg, const struct mqk_message *msg,
			      int *matched, int max, int *count)
{
	const char *topic = msg->topic;
	int n = cfg->active ? cfg->active_count : cfg->route_count;

	*count = 0;
	if (route__is_reserved(topic)) {
		return MQK_RESERVED;
	}
	for (int i = 0; i < cfg->exclude_count; i++) {
		if (matches(cfg->excludes[i], topic)) {
			return MQK_EXCLUDED;
		}
	}
	for (int i = 0; i < n && *count < max; i++) {
		int r = cfg->active ? cfg->active[i] : i;
		const struct mqk_route *route = &cfg->routes[r];
		if (route_matches(route, topic) &&
		    (!route->has_selectors || route__selects(route, msg))) {
			matched[(*count)++] = r;
		}
	}
	return *count > 0 ? MQK_FORWARD : MQK_NO_ROUTE;
}
