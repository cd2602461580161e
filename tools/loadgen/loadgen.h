/*
 * loadgen.h - mqk-loadgen's private header: its data and the functions one file offers
 * another. Read main.c first for the design; the files follow a device's life:
 *
 *   main.c      the run: options, file descriptors, threads, signals, progress, exit
 *   options.c   the command line -> struct options (numbers, hosts, id pattern)
 *   worker.c    one thread: its event loop (epoll, timerfd), ramp-up, pacing, drain
 *   device.c    one simulated device: its MQTT session, publishes, commands, answers
 *   summary.c   counters added up: the progress line, the JSON summary, the verdict
 *
 * Every function of worker.c and device.c runs on the worker thread that owns the
 * device or worker it is given; main.c and summary.c read the workers' counters,
 * which are atomics with one writer each.
 */
#ifndef LOADGEN_H
#define LOADGEN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mosquitto.h>

#include "expand_id.h"

#define LOADGEN_NAME "mqk-loadgen"

/* ---- options ---------------------------------------------------------------- */

struct host {
	char *name; /* without brackets for IPv6 */
	int port;
};

/* A client id pattern with one integer conversion: prefix, number, suffix. */
struct id_pattern {
	char *source;
	char *prefix; /* "%%" already turned into "%" */
	char *suffix;
	bool zero_pad; /* flag 0 */
	bool left;     /* flag - */
	int width;
	char conv; /* d, i, u, x or X */
};

struct options {
	struct host *hosts;
	int host_count;
	long long devices;
	long long first;
	struct id_pattern ids;
	int threads;
	int protocol; /* MQTT_PROTOCOL_V311 or MQTT_PROTOCOL_V5 */
	int qos;
	double rate;          /* messages per second per device, 0: none */
	double duration;      /* seconds after the ramp-up, 0: no limit (--count ends the run) */
	long long count;      /* messages per device, 0: no limit */
	size_t size;          /* payload bytes asked for (the codec may need more) */
	double ramp_up;       /* seconds over which the devices start */
	const char *topic;    /* templates with {id} */
	const char *commands; /* NULL: no commands */
	const char *answers;  /* NULL: only answers with a response topic */
	const char *username;
	const char *password;
	int keepalive;
	bool clean;
	uint32_t session_expiry; /* MQTT v5 without --clean */
	int max_inflight;
	int max_queued;
	double drain;
	double connect_timeout;
	int verbosity; /* 0: -q, 1: default, 2+: -v */
	bool progress; /* stderr is a terminal and not -q */
};

/*
 * Parses the command line into opt. A bad argument prints "mqk-loadgen: ..." and exits 1 (cli.h);
 * -h and -V print to stdout and exit 0. Strings in opt point into argv or are owned by
 * opt until options__free().
 */
void options__parse(struct options *opt, int argc, char **argv);
void options__free(struct options *opt);

/*
 * Writes the client id of device number `number` (first + index) into buf. Returns its
 * length, or -1 when it does not fit in size.
 */
int options__format_id(const struct id_pattern *p, long long number, char *buf, size_t size);

/* The payload size a device with an id of id_len bytes publishes. */
size_t options__payload_size(const struct options *opt, size_t id_len);

/* ---- counters ----------------------------------------------------------------- */

/*
 * A worker's counters. The worker thread is the only writer (relaxed atomic adds);
 * the main thread reads them for the progress line and the summary.
 */
struct counters {
	atomic_uint_least64_t sent;            /* data messages handed to libmosquitto */
	atomic_uint_least64_t acked;           /* QoS>0 data: PUBACK / PUBCOMP, success */
	atomic_uint_least64_t rejected;        /* QoS>0 data: MQTT v5 reason code >= 0x80 */
	atomic_uint_least64_t failed;          /* publish calls that returned errors */
	atomic_uint_least64_t skipped_offline; /* turns of a device that was not connected */
	atomic_uint_least64_t skipped_backlog; /* turns of a device with --max-queued unacked */
	atomic_uint_least64_t connect_errors;  /* failed connection attempts */
	atomic_uint_least64_t reconnects;      /* successful connections after the first */
	atomic_uint_least64_t disconnects;     /* connections lost unexpectedly */
	atomic_uint_least64_t resent;          /* unacked messages a reconnect sends again */
	atomic_uint_least64_t gave_up;         /* devices that stopped trying to connect */
	atomic_uint_least64_t subscribe_failed;
	atomic_uint_least64_t commands_received;
	atomic_uint_least64_t answers_sent;
	atomic_uint_least64_t answers_acked;
	atomic_uint_least64_t answers_rejected; /* MQTT v5 reason code >= 0x80 */
	atomic_uint_least64_t answers_failed;
	atomic_int connected;      /* devices connected now */
	atomic_int ever_connected; /* devices that connected at least once */
};

static inline void counter__add(atomic_uint_least64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline uint64_t counter__get(const atomic_uint_least64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* ---- devices ------------------------------------------------------------------- */

enum device_state {
	DEV_IDLE,       /* not started yet (ramp-up) */
	DEV_CONNECTING, /* socket open, CONNECT sent or about to be, no CONNACK yet */
	DEV_CONNECTED,  /* CONNACK "accepted" */
	DEV_BACKOFF,    /* waiting until retry_at to try again */
	DEV_CLOSING,    /* DISCONNECT sent at the end of the run */
	DEV_CLOSED,     /* done with the network */
};

struct worker;

struct device {
	struct worker *w;
	struct mosquitto *mosq;
	const struct host *host;
	long long index; /* 0 .. devices-1 */
	char *id;
	size_t id_len;
	char *topic;
	char *commands; /* NULL: no commands */
	char *answers;  /* NULL: none */
	enum device_state state;
	int fd;          /* the socket registered with the worker's epoll, or -1 */
	uint32_t events; /* what it is registered for */
	bool attempted;  /* the first connect was made (later ones reconnect) */
	bool ever_connected;
	bool active; /* takes publishing turns */
	bool done;   /* sent --count messages, or gave up */
	bool gave_up;
	int backoff_step;
	double attempt_at;     /* monotonic seconds: start of the current attempt */
	double retry_at;       /* DEV_BACKOFF: when to try again */
	double offline_since;  /* trying to (re)connect since, 0 when connected */
	uint64_t seq;          /* next data sequence number */
	uint64_t answers_seq;  /* next answer sequence number */
	uint64_t unacked;      /* QoS>0 data handed over, not yet acknowledged */
	uint16_t *answer_mids; /* QoS 1 answers not yet acknowledged */
	uint32_t answer_count;
	uint32_t answer_cap;
	char last_error[160];
};

/*
 * Creates the device's libmosquitto client (options, callbacks). Call while
 * RLIMIT_NOFILE is 0 and no other thread opens descriptors (worker.c), so that the
 * client has no socket pair (see device.c). Returns 0, or -1 with a message in errstr.
 */
int device__init(struct device *d, struct worker *w, long long index, char *errstr,
		 size_t errstr_size);
/* Destroys the client and frees the device's strings. */
void device__cleanup(struct device *d);
/* First connect, or reconnect after a backoff. */
void device__connect(struct device *d, double now);
/* The socket is readable / writable / failed: lets libmosquitto work. */
void device__on_events(struct device *d, uint32_t events);
/* One publishing turn: publishes the next data message, or counts why not. */
void device__turn(struct device *d, double now);
/* Every ~100 ms: keepalive, retry and give-up timers. */
void device__sweep(struct device *d, double now);
/* End of the run: DISCONNECT when connected, else close. */
void device__close(struct device *d);
/* QoS>0 messages (data and answers) still waiting for their acknowledgement. */
uint64_t device__unacked(const struct device *d);

/* ---- workers ---------------------------------------------------------------------- */

enum worker_phase {
	PHASE_RUN,     /* connecting and publishing */
	PHASE_DRAIN,   /* publishing over: waiting for acknowledgements */
	PHASE_CLOSING, /* DISCONNECTs sent, waiting for them to go out */
	PHASE_DONE,
};

/* What the workers share with main.c. */
struct run {
	struct options opt;
	int worker_count;
	struct worker *workers;
	double t0;               /* monotonic seconds: the run starts (set by main) */
	atomic_int stop;         /* 1: stop publishing (signal); 2: also stop draining */
	atomic_int finished;     /* workers done */
	atomic_int setup_failed; /* a worker could not set up */
	pthread_barrier_t ready; /* workers set up; main sets t0 between the two waits */
	pthread_mutex_t create_lock;
	pthread_mutex_t stderr_lock;
};

struct worker {
	struct run *run;
	const struct options *opt;
	int id;
	pthread_t thread;
	struct device *devices;
	size_t device_count;
	struct device **active; /* devices taking publishing turns */
	size_t active_count;
	size_t rr;         /* next turn: active[rr] */
	size_t next_start; /* ramp-up: devices[next_start] starts next */
	size_t sweep_pos;
	double sweep_budget; /* devices owed a sweep visit */
	size_t done_count;
	int epfd;
	int tfd;
	double tick;   /* seconds */
	double budget; /* publishing turns owed */
	double last_tick;
	enum worker_phase phase;
	double publish_end; /* when publishing stops (ramp-up + duration), or +inf */
	double drain_until;
	double close_until;
	uint64_t unacked_live; /* QoS>0 unacknowledged, of devices that did not give up */
	unsigned char *buf;    /* payload buffer */
	size_t buf_size;
	unsigned rand_state;
	struct counters c;
	/* Set when publishing ends (read by main after the join, or atomically). */
	atomic_int connected_at_end;
	double ended_at; /* monotonic seconds */
	/* Set at the end, before the devices are destroyed. */
	uint64_t in_flight_at_exit;
	uint64_t answers_in_flight_at_exit;
	long long never_connected;
	char first_error[200];
};

/* The worker thread's body: set up, run, drain, close, destroy. arg is the worker. */
void *worker__main(void *arg);

/* ---- loop.c: what a device asks of its worker ---------------------------------------- */

/* Adds d to the publishing rotation (it just connected for the first time). */
void loop__activate(struct worker *w, struct device *d);
/* (Re)registers d's socket with epoll for events; events 0 removes it. */
void loop__watch(struct worker *w, struct device *d, uint32_t events);
/* Diagnostics on stderr, one line, prefixed with the program name. */
void loop__log(struct worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Monotonic clock in seconds, and the Unix time in microseconds. */
double loop__now(void);
uint64_t loop__realtime_us(void);

/* ---- summary -------------------------------------------------------------------------- */

/* Redraws the progress line on stderr (once a second, a terminal only). */
void summary__progress(struct run *run, double now);
/*
 * Prints the JSON summary on stdout and the reasons for failure on stderr. Returns the
 * exit status: 0 when every device connected at least once, no publish failed and no
 * QoS>0 message is left unacknowledged; else 1.
 */
int summary__print(struct run *run, bool interrupted);

#endif
