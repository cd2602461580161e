/*
 * wake.c - the loopback MQTT connection that wakes mosquitto's main loop.
 *
 * Commands thread. Mosquitto 2.0 waits up to 100 ms in epoll_wait between TICKs when
 * idle, and offers no way to wake it. A byte arriving on one of its sockets does: the
 * commands thread keeps one MQTT connection to its own broker and sends a PINGREQ
 * (C0 00) when it has queued commands, so the TICK that delivers them runs at once
 * (measured: thread -> TICK 0.15 ms p50 / 0.3 ms p99, against 51 / 100 ms without;
 * docs/commands-facts.md).
 *
 * The connection is MQTT v5, clean start, keepalive 0, with a client id and a username
 * "mqk-wake-<random>" and a random password: the plugin's own BASIC_AUTH accepts
 * exactly these (wake__is_own), so it works with allow_anonymous false, and nobody can
 * guess the id to take it over. It only ever sends PINGREQs; the PINGRESPs are read and
 * dropped (wake__drain). v5 because of max_keepalive: mosquitto 2.0.12 and later refuse
 * a keepalive of 0 (or one above max_keepalive) from a v3.1.1 client, but give a v5
 * client the limit as Server Keep Alive in the CONNACK; the plugin then connects again
 * with a keepalive just under it (wake_connect says why) and sends a PINGREQ when the
 * connection has been quiet for half of that (wake__keepalive), or mosquitto would close
 * it (docs/mosquitto-2.0.21.md).
 *
 * Which listener: "auto" looks at the process's own listening TCP sockets (mosquitto
 * opens them after plugin init, so this happens on the first wake; they are found by
 * inode in /proc, since mosquitto's descriptors are not in this thread's table, side.c)
 * and uses the first
 * that answers CONNACK: a TLS or websockets listener does not, and is passed over. A
 * wildcard address is dialled on loopback. "host:port" names one; "off" never wakes.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "mqk.h"

#define HANDSHAKE_MS 1000
#define RETRY_MS 2000
#define QUIET_MS 5000
/* Whose connection, in log lines and option names: "commands" or "inbound". */
#define WHO(w) ((w)->who ? (w)->who : "commands")

static void random_hex(char *out, size_t bytes)
{
	unsigned char r[32];
	size_t got = 0;

	while (got < bytes) {
		ssize_t n = getrandom(r + got, bytes - got, 0);
		if (n <= 0) {
			/* Not expected on Linux >= 3.17; still unpredictable enough for an id. */
			for (; got < bytes; got++) {
				r[got] = (unsigned char)(rand() ^ (int)mqk_monotonic_ms());
			}
			break;
		}
		got += (size_t)n;
	}
	for (size_t i = 0; i < bytes; i++) {
		sprintf(out + 2 * i, "%02x", r[i]);
	}
}

int wake__init(struct mqk_wake *w, const char *spec, char *errstr, size_t errstr_size)
{
	memset(w, 0, sizeof(*w));
	w->fd = -1;
	/* Listeners open after plugin init: no warning before they had time to. */
	w->quiet_until_ms = mqk_monotonic_ms() + QUIET_MS;
	strcpy(w->client_id, "mqk-wake-");
	random_hex(w->client_id + strlen(w->client_id), 8);
	random_hex(w->password, 16);
	if (!strcmp(spec, "off")) {
		w->off = true;
		return 0;
	}
	if (!strcmp(spec, "auto")) {
		w->automatic = true;
		return 0;
	}
	const char *colon = strrchr(spec, ':');
	char *end;
	long port = colon ? strtol(colon + 1, &end, 10) : 0;
	if (colon == NULL || colon == spec || (size_t)(colon - spec) >= sizeof(w->host) ||
	    colon[1] == '\0' || *end != '\0' || port < 1 || port > 65535) {
		snprintf(errstr, errstr_size,
			 "plugin_opt_commands_wake: '%s' is not auto, off or host:port", spec);
		return -1;
	}
	/* [::1]:1883 */
	if (spec[0] == '[' && colon[-1] == ']') {
		memcpy(w->host, spec + 1, (size_t)(colon - spec - 2));
	} else {
		memcpy(w->host, spec, (size_t)(colon - spec));
	}
	snprintf(w->port, sizeof(w->port), "%ld", port);
	return 0;
}

bool wake__is_own(const struct mqk_wake *w, const char *username, const char *password)
{
	unsigned char diff = 0;
	size_t len = strlen(w->password);

	if (username == NULL || password == NULL || strcmp(username, w->client_id) ||
	    strlen(password) != len) {
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		diff |= (unsigned char)(password[i] ^ w->password[i]);
	}
	return diff == 0;
}

static void put_string(unsigned char **p, const char *s)
{
	size_t len = strlen(s);
	*(*p)++ = (unsigned char)(len >> 8);
	*(*p)++ = (unsigned char)len;
	memcpy(*p, s, len);
	*p += len;
}

/* Reads exactly len bytes within HANDSHAKE_MS each. 0, or -1. */
static int read_exactly(int fd, unsigned char *buf, size_t len)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	size_t got = 0;

	while (got < len) {
		if (poll(&pfd, 1, HANDSHAKE_MS) != 1) {
			return -1;
		}
		ssize_t n = recv(fd, buf + got, len - got, 0);
		if (n <= 0) {
			return -1;
		}
		got += (size_t)n;
	}
	return 0;
}

/* An MQTT variable byte integer at *p (at most 4 bytes before end); -1 if malformed. */
static long varint(const unsigned char **p, const unsigned char *end)
{
	long value = 0;

	for (int shift = 0; shift < 28 && *p < end; shift += 7) {
		unsigned char b = *(*p)++;
		value |= (long)(b & 0x7F) << shift;
		if (!(b & 0x80)) {
			return value;
		}
	}
	return -1;
}

/*
 * A v5 CONNACK's body (after the fixed header): accepted? *keepalive is its Server Keep
 * Alive, 0 when there is none. Other properties are stepped over by their types.
 */
static bool connack_accepts(const unsigned char *p, const unsigned char *end, int *keepalive)
{
	long props;

	*keepalive = 0;
	if (end - p < 3 || p[1] != 0) {
		return false; /* too short, or a reason code other than Success */
	}
	p += 2;
	props = varint(&p, end);
	if (props < 0 || props > end - p) {
		return false;
	}
	end = p + props;
	while (p < end) {
		unsigned char id = *p++;
		size_t skip;
		switch (id) {
		case 0x13: /* Server Keep Alive */
			if (end - p < 2) {
				return false;
			}
			*keepalive = p[0] << 8 | p[1];
			skip = 2;
			break;
		case 0x21:
		case 0x22: /* Receive Maximum, Topic Alias Maximum */
			skip = 2;
			break;
		case 0x24:
		case 0x25:
		case 0x28:
		case 0x29:
		case 0x2A: /* one-byte flags */
			skip = 1;
			break;
		case 0x11:
		case 0x27: /* Session Expiry Interval, Maximum Packet Size */
			skip = 4;
			break;
		case 0x12:
		case 0x15:
		case 0x16:
		case 0x1A:
		case 0x1C:
		case 0x1F: /* strings */
			skip = end - p < 2 ? SIZE_MAX : 2 + (size_t)(p[0] << 8 | p[1]);
			break;
		case 0x26: /* User Property: two strings */
			if (end - p < 2 || end - p < 4 + (p[0] << 8 | p[1])) {
				return false;
			}
			skip = 2 + (size_t)(p[0] << 8 | p[1]);
			skip += 2 + (size_t)(p[skip] << 8 | p[skip + 1]);
			break;
		default:
			return false;
		}
		if (skip > (size_t)(end - p)) {
			return false;
		}
		p += skip;
	}
	return true;
}

/*
 * Connects to addr, sends CONNECT with keepalive (seconds), waits for a CONNACK that
 * accepts. The fd, or -1; *server_keepalive: the Server Keep Alive mosquitto asked for,
 * in seconds (0: none).
 */
static int handshake(const struct mqk_wake *w, const struct sockaddr *addr, socklen_t addrlen,
		     int keepalive, int *server_keepalive)
{
	unsigned char packet[160], *p = packet + 2;
	unsigned char head[5], body[512];
	const unsigned char *q;
	struct pollfd pfd;
	int one = 1;
	int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	long body_len;
	size_t have = 2;

	if (fd < 0) {
		return -1;
	}
	pfd.fd = fd;
	if (connect(fd, addr, addrlen) != 0) {
		int err = 0;
		socklen_t len = sizeof(err);
		pfd.events = POLLOUT;
		if (errno != EINPROGRESS || poll(&pfd, 1, HANDSHAKE_MS) != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
			goto error;
		}
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* CONNECT: "MQTT" level 5, flags username+password+clean start, keepalive, no
	   properties. */
	static const unsigned char header[] = {0, 4, 'M', 'Q', 'T', 'T', 5, 0xC2, 0, 0, 0};
	memcpy(p, header, sizeof(header));
	p[8] = (unsigned char)(keepalive >> 8); /* big-endian */
	p[9] = (unsigned char)keepalive;
	p += sizeof(header);
	put_string(&p, w->client_id);
	put_string(&p, w->client_id);
	put_string(&p, w->password);
	packet[0] = 0x10;
	packet[1] = (unsigned char)(p - packet - 2); /* < 128: one length byte */
	if (send(fd, packet, (size_t)(p - packet), MSG_NOSIGNAL) != p - packet) {
		goto error;
	}
	/* CONNACK: 0x20, its length (a variable byte integer), flags, reason, properties. */
	if (read_exactly(fd, head, 2) || head[0] != 0x20) {
		goto error;
	}
	while ((head[have - 1] & 0x80) && have < sizeof(head)) {
		if (read_exactly(fd, head + have, 1)) {
			goto error;
		}
		have++;
	}
	q = head + 1;
	body_len = varint(&q, head + have);
	if (body_len < 0 || (size_t)body_len > sizeof(body) ||
	    read_exactly(fd, body, (size_t)body_len) ||
	    !connack_accepts(body, body + body_len, server_keepalive)) {
		goto error;
	}
	return fd;
error:
	close(fd);
	return -1;
}

/*
 * The wake connection to addr: keepalive 0 first; when mosquitto answers with a Server
 * Keep Alive K (its max_keepalive), again with K - 1, pinged at half of that
 * (wake__keepalive). Not K itself: mosquitto 2.0.21 keeps clients in a ring of
 * 1.5 x max_keepalive + 1 one-second slots, and one whose keepalive is max_keepalive lands,
 * when a packet of it is read in the first loop iteration of a second, in the slot being
 * expired: it was disconnected for a timeout at random, pings or not (measured in
 * docs/mosquitto-2.0.21.md). Sets w->keepalive_s. The fd, or -1.
 */
static int wake_connect(struct mqk_wake *w, const struct sockaddr *addr, socklen_t addrlen)
{
	int server_keepalive;
	int fd = handshake(w, addr, addrlen, 0, &server_keepalive);

	w->keepalive_s = 0;
	w->max_keepalive_s = server_keepalive;
	if (fd >= 0 && server_keepalive > 1) {
		close(fd);
		fd = handshake(w, addr, addrlen, server_keepalive - 1, &server_keepalive);
		w->keepalive_s = w->max_keepalive_s - 1;
	} else if (fd >= 0) {
		w->keepalive_s = server_keepalive; /* 1, or 0: none */
	}
	return fd;
}

/* A listener's address with a wildcard turned into loopback. */
static void loopback_if_wildcard(struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		if (in->sin_addr.s_addr == htonl(INADDR_ANY)) {
			in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		}
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr)) {
			in6->sin6_addr = in6addr_loopback;
		}
	}
}

#define MAX_LISTENING 64

/* A listening TCP socket of the network namespace: its inode and address. */
struct listening {
	unsigned long inode;
	struct sockaddr_storage ss;
};

/*
 * The listening TCP sockets in /proc/self/net/tcp and tcp6 (state 0A) into l: how many.
 * The kernel prints an address as the 32-bit words of its bytes in network order, each
 * with %08X; the port in host order.
 */
static int read_listening(struct listening *l, int max)
{
	static const char *const files[] = {"/proc/self/net/tcp", "/proc/self/net/tcp6"};
	int n = 0;

	for (int f = 0; f < 2; f++) {
		FILE *in = fopen(files[f], "re");
		char line[512];
		if (in == NULL) {
			continue;
		}
		while (n < max && fgets(line, sizeof(line), in) != NULL) {
			char addr[33];
			unsigned port, state;
			unsigned long inode;
			if (sscanf(line, " %*[0-9]: %32[0-9A-Fa-f]:%x %*s %x %*s %*s %*s %*u %*u %lu",
				   addr, &port, &state, &inode) != 4 ||
			    state != 0x0A || inode == 0) {
				continue;
			}
			memset(&l[n], 0, sizeof(l[n]));
			l[n].inode = inode;
			if (f == 0 && strlen(addr) == 8) {
				struct sockaddr_in *sin = (struct sockaddr_in *)&l[n].ss;
				sin->sin_family = AF_INET;
				sin->sin_port = htons((uint16_t)port);
				sin->sin_addr.s_addr = (uint32_t)strtoul(addr, NULL, 16);
			} else if (f == 1 && strlen(addr) == 32) {
				struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&l[n].ss;
				sin6->sin6_family = AF_INET6;
				sin6->sin6_port = htons((uint16_t)port);
				for (int i = 0; i < 4; i++) {
					char word[9];
					memcpy(word, addr + 8 * i, 8);
					word[8] = '\0';
					uint32_t w32 = (uint32_t)strtoul(word, NULL, 16);
					memcpy(&sin6->sin6_addr.s6_addr[4 * i], &w32, 4);
				}
			} else {
				continue;
			}
			loopback_if_wildcard(&l[n].ss);
			n++;
		}
		fclose(in);
	}
	return n;
}

static void remember(struct mqk_wake *w, const struct sockaddr_storage *ss)
{
	const void *addr = ss->ss_family == AF_INET
				   ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
				   : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
	unsigned port =
		ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
					       : ((const struct sockaddr_in6 *)ss)->sin6_port);

	inet_ntop(ss->ss_family, addr, w->host, sizeof(w->host));
	snprintf(w->port, sizeof(w->port), "%u", port);
}

/*
 * auto: the first of mosquitto's listeners that answers. They are found by inode: the
 * sockets in /proc/self/fd (the table of mosquitto's thread, the process's first: this
 * thread's own may be another, side.c) that /proc/self/net lists as listening. Their
 * descriptors are mosquitto's and are not touched.
 */
static int connect_auto(struct mqk_wake *w)
{
	struct listening l[MAX_LISTENING];
	int count = read_listening(l, MAX_LISTENING);
	DIR *dir = count > 0 ? opendir("/proc/self/fd") : NULL;
	struct dirent *de;
	int fd = -1;

	if (dir == NULL) {
		return -1;
	}
	while (fd < 0 && (de = readdir(dir)) != NULL) {
		char link[64];
		unsigned long inode;
		ssize_t len = readlinkat(dirfd(dir), de->d_name, link, sizeof(link) - 1);
		if (len <= 0) {
			continue;
		}
		link[len] = '\0';
		if (sscanf(link, "socket:[%lu]", &inode) != 1) {
			continue;
		}
		for (int i = 0; i < count && fd < 0; i++) {
			if (l[i].inode == inode) {
				socklen_t sl = l[i].ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
									 : sizeof(struct sockaddr_in6);
				fd = wake_connect(w, (struct sockaddr *)&l[i].ss, sl);
				if (fd >= 0) {
					remember(w, &l[i].ss);
				}
			}
		}
	}
	closedir(dir);
	return fd;
}

static int connect_named(struct mqk_wake *w)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
	int fd = -1;

	if (getaddrinfo(w->host, w->port, &hints, &res) != 0) {
		return -1;
	}
	for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
		fd = wake_connect(w, ai->ai_addr, ai->ai_addrlen);
	}
	freeaddrinfo(res);
	return fd;
}

static void try_connect(struct mqk_wake *w)
{
	int64_t now = mqk_monotonic_ms();

	if (now < w->next_try_ms) {
		return;
	}
	w->fd = w->automatic && w->host[0] == '\0' ? connect_auto(w) : connect_named(w);
	if (w->fd < 0) {
		w->next_try_ms = now + RETRY_MS;
		if (!w->warned && now >= w->quiet_until_ms) {
			w->warned = true;
			log__deferred(MOSQ_LOG_WARNING,
				      "%s: no wake connection to %s (%s_wake%s): records wait for "
				      "mosquitto's next tick, up to 100 ms; set "
				      "plugin_opt_%s_wake host:port of a plain MQTT listener",
				      WHO(w),
				      w->automatic && w->host[0] == '\0' ? "any listener" : w->host,
				      WHO(w), w->automatic ? " auto" : "", WHO(w));
		}
		return;
	}
	w->last_send_ms = now;
	if (w->keepalive_s > 0) {
		log__deferred(MOSQ_LOG_NOTICE,
			      "%s: wake connection to %s port %s as %s (keepalive %d s: "
			      "mosquitto's max_keepalive is %d)",
			      WHO(w), w->host, w->port, w->client_id, w->keepalive_s,
			      w->max_keepalive_s);
	} else {
		log__deferred(MOSQ_LOG_NOTICE, "%s: wake connection to %s port %s as %s", WHO(w),
			      w->host, w->port, w->client_id);
	}
	w->warned = false;
}

/* Sends a PINGREQ; true if it went. Commands thread. */
static bool send_pingreq(struct mqk_wake *w)
{
	static const unsigned char pingreq[2] = {0xC0, 0x00};

	if (send(w->fd, pingreq, sizeof(pingreq), MSG_NOSIGNAL | MSG_DONTWAIT) ==
	    (ssize_t)sizeof(pingreq)) {
		w->last_send_ms = mqk_monotonic_ms();
		return true;
	}
	if (errno != EAGAIN && errno != EWOULDBLOCK) {
		wake__close(w); /* mosquitto closed it: the next wake reconnects */
	}
	return false;
}

void wake__keepalive(struct mqk_wake *w)
{
	if (w->fd >= 0 && w->keepalive_s > 0 &&
	    mqk_monotonic_ms() - w->last_send_ms >= (int64_t)w->keepalive_s * 500) {
		send_pingreq(w);
	}
}

void wake__ping(struct mqk_wake *w, struct mqk_cmd_counters *ctr)
{
	if (w->off) {
		return;
	}
	if (w->fd < 0) {
		try_connect(w);
		if (w->fd < 0) {
			return;
		}
	}
	if (send_pingreq(w)) {
		counter__inc(&ctr->wakes);
	}
}

void wake__drain(struct mqk_wake *w)
{
	unsigned char buf[256];

	while (w->fd >= 0) {
		ssize_t n = recv(w->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0) {
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
			return;
		}
		wake__close(w);
	}
}

void wake__close(struct mqk_wake *w)
{
	if (w->fd >= 0) {
		/* Mosquitto closes it when it stops: no warning unless it stays away. */
		w->quiet_until_ms = mqk_monotonic_ms() + QUIET_MS;
		close(w->fd);
		w->fd = -1;
	}
}
