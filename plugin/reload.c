/*
 * reload.c - routes changed without a restart: plugin_opt_routes_file.
 *
 * The file holds route_<name> and exclude lines (the plugin_opt_ syntax without the
 * prefix), read line by line by options.c's parser (options__read_routes_file). It is
 * read at start-up with mosquitto.conf's options, and again when
 * mosquitto reloads (MOSQ_EVT_RELOAD, where mosquitto raises it on SIGHUP) or the file
 * changes (its inode, size or modification time, looked at from the TICK at most once
 * a second: one stat() a second on mosquitto's thread).
 *
 * Ownership. The Kafka thread builds each record from the route definition its entry
 * names by index (entry->live_route into cfg->routes): topic and key templates, format,
 * name, counters. A definition therefore never changes and is never freed while the
 * plugin runs: a reload appends a new definition for each route it adds or changes, in
 * the room routes__start made (MQK_MAX_ROUTES, so the array never moves), and swaps
 * only cfg->active, the list of indexes route__match walks, which only mosquitto's
 * thread reads. Records of a removed or changed route, in the buffer or the journal,
 * still find their definition and go where the route said when the message came in.
 * Definitions are kept until shutdown rather than reference-counted: they are small
 * (a few hundred bytes), a reload adds only those it changes, and a count of entries
 * per definition would be one more write per message on both threads. A reload that
 * would pass MQK_MAX_ROUTES definitions is refused: restart mosquitto to apply it.
 *
 * Publication. A new definition is written before the first entry naming it is
 * committed; buffer__commit's release (and the Kafka thread's acquire of the head)
 * makes it visible to the Kafka thread with the entry.
 *
 * Continuity. A changed route (same name) continues its name's mqtt.seq (the new
 * definition starts at the old one's seq) and counters (stats.c adds the counters along
 * the `prev` chain). The journal names routes by name in each segment's header: after a
 * reload the next entry starts a new segment whose header names every definition, so
 * that a restart maps its entries to routes by name (journal__routes_changed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mqk.h"

int routes__start(struct mqk_config *cfg)
{
	struct mqk_route *routes = calloc(MQK_MAX_ROUTES, sizeof(*routes));
	int *active = calloc(MQK_MAX_ROUTES, sizeof(*active));

	if (routes == NULL || active == NULL || cfg->route_count > MQK_MAX_ROUTES) {
		free(routes);
		free(active);
		return -1;
	}
	if (cfg->route_count > 0) {
		memcpy(routes, cfg->routes, sizeof(*routes) * (size_t)cfg->route_count);
	}
	free(cfg->routes);
	cfg->routes = routes;
	for (int i = 0; i < cfg->route_count; i++) {
		active[i] = i;
	}
	cfg->active = active;
	cfg->active_count = cfg->route_count;
	return 0;
}

static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/* Does b say what a says (filter, topic, key, format, selectors)? */
static bool same_route(const struct mqk_route *a, const struct mqk_route *b)
{
	return !strcmp(a->filter, b->filter) && !strcmp(a->topic.source, b->topic.source) &&
	       a->key.part_count == b->key.part_count &&
	       (a->key.part_count == 0 || !strcmp(a->key.source, b->key.source)) &&
	       a->format == b->format && same_str(a->sel_clientid, b->sel_clientid) &&
	       same_str(a->sel_username, b->sel_username) && a->sel_qos == b->sel_qos &&
	       a->sel_retain == b->sel_retain;
}

/* The newest definition named name in cfg->routes, or -1. */
static int newest(const struct mqk_config *cfg, const char *name)
{
	for (int i = cfg->route_count - 1; i >= 0; i--) {
		if (!strcmp(cfg->routes[i].name, name)) {
			return i;
		}
	}
	return -1;
}

/* The active index of the route named name, or -1. */
static int active_named(const struct mqk_config *cfg, const char *name)
{
	for (int i = 0; i < cfg->active_count; i++) {
		if (!strcmp(cfg->routes[cfg->active[i]].name, name)) {
			return cfg->active[i];
		}
	}
	return -1;
}

int routes__reload(struct mqk_config *cfg, struct mqk_reload_result *res, char *errstr,
		   size_t errstr_size)
{
	struct mqk_config file = {0};
	int *active = NULL;
	char **excludes = NULL;
	int fresh = 0, n = 0;

	memset(res, 0, sizeof(*res));
	if (options__read_routes_file(cfg->routes_file, cfg, &file, errstr, errstr_size)) {
		goto error;
	}
	for (int i = 0; i < file.route_count; i++) {
		int old = active_named(cfg, file.routes[i].name);
		if (old < 0 || !same_route(&cfg->routes[old], &file.routes[i])) {
			fresh++;
		}
	}
	if (cfg->route_count + fresh > MQK_MAX_ROUTES) {
		snprintf(errstr, errstr_size,
			 "routes_file %s: this run has defined %d routes, a reload adds %d: at "
			 "most %d per run (restart mosquitto to apply it)",
			 cfg->routes_file, cfg->route_count, fresh, MQK_MAX_ROUTES);
		goto error;
	}
	active = calloc(MQK_MAX_ROUTES, sizeof(*active));
	excludes = calloc((size_t)(cfg->conf_exclude_count + file.exclude_count + 1),
			  sizeof(*excludes));
	if (active == NULL || excludes == NULL) {
		snprintf(errstr, errstr_size, "routes_file %s: out of memory", cfg->routes_file);
		goto error;
	}
	/* Nothing fails from here on. mosquitto.conf's routes first, as at start-up. */
	for (int i = 0; i < cfg->conf_route_count; i++) {
		active[n++] = i;
	}
	for (int i = 0; i < file.route_count; i++) {
		struct mqk_route *r = &file.routes[i];
		int old = active_named(cfg, r->name);
		if (old >= 0 && same_route(&cfg->routes[old], r)) {
			active[n++] = old;
			res->unchanged++;
			continue;
		}
		int prev = newest(cfg, r->name);
		struct mqk_route *def = &cfg->routes[cfg->route_count];
		*def = *r; /* moved: its strings are cfg's now */
		memset(r, 0, sizeof(*r));
		def->prev = prev + 1;
		def->seq = prev >= 0 ? cfg->routes[prev].seq : 0;
		active[n++] = cfg->route_count++;
		if (old >= 0) {
			res->changed++;
		} else {
			res->added++;
		}
	}
	for (int i = cfg->conf_route_count; i < cfg->active_count; i++) {
		const struct mqk_route *r = &cfg->routes[cfg->active[i]];
		bool kept = false;
		for (int j = cfg->conf_route_count; j < n && !kept; j++) {
			kept = !strcmp(cfg->routes[active[j]].name, r->name);
		}
		res->removed += !kept;
	}
	free(cfg->active);
	cfg->active = active;
	cfg->active_count = n;

	if (cfg->conf_exclude_count > 0) {
		memcpy(excludes, cfg->excludes,
		       sizeof(*excludes) * (size_t)cfg->conf_exclude_count);
	}
	for (int i = cfg->conf_exclude_count; i < cfg->exclude_count; i++) {
		free(cfg->excludes[i]);
	}
	if (file.exclude_count > 0) {
		memcpy(excludes + cfg->conf_exclude_count, file.excludes,
		       sizeof(*excludes) * (size_t)file.exclude_count);
	}
	free(cfg->excludes);
	cfg->excludes = excludes;
	cfg->exclude_count = cfg->conf_exclude_count + file.exclude_count;
	res->excludes = file.exclude_count;
	file.exclude_count = 0;
	options__free(&file); /* the routes not moved (unchanged ones) */
	return 0;

error:
	free(active);
	free(excludes);
	options__free(&file);
	return -1;
}

bool routes__file_changed(const char *path, struct mqk_file_id *id)
{
	struct stat st;
	struct mqk_file_id now = {0};

	if (stat(path, &st) == 0) {
		now.exists = true;
		now.dev = (uint64_t)st.st_dev;
		now.ino = (uint64_t)st.st_ino;
		now.size = (uint64_t)st.st_size;
		now.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	}
	if (now.exists == id->exists && now.dev == id->dev && now.ino == id->ino &&
	    now.size == id->size && now.mtime_ns == id->mtime_ns) {
		return false;
	}
	*id = now;
	return true;
}

int routes__in_force_count(const struct mqk_config *cfg)
{
	return cfg->active ? cfg->active_count : cfg->route_count;
}

int routes__in_force(const struct mqk_config *cfg, int i)
{
	return cfg->active ? cfg->active[i] : i;
}

void routes__counters(const struct mqk_config *cfg, int r, struct mqk_counters *out)
{
	memset(out, 0, sizeof(*out));
	for (int d = r + 1; d > 0; d = cfg->routes[d - 1].prev) {
		const struct mqk_counters *c = &cfg->routes[d - 1].counters;
#define ADD(field, help)                                                                           \
	atomic_store_explicit(&out->field, counter__get(&out->field) + counter__get(&c->field),    \
			      memory_order_relaxed);
		MQK_ROUTE_COUNTERS(ADD)
#undef ADD
	}
}
