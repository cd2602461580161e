#!/usr/bin/env bash
# demo.sh - mosquitto-kafka in one command: two mosquitto brokers behind HAProxy, each
# forwarding what its own routes say into a throw-away Kafka cluster, all on 127.0.0.1.
#
#   ./scripts/demo.sh            # as root on Debian 12 or 13 (or with sudo on the PATH)
#
# 1. Installs the packages (scripts/install-deps.sh) and builds into build/.
# 2. Starts, on free ports of 127.0.0.1: build/tools/mqk-devkafka (3 mock Kafka brokers,
#    the demo's topics pre-created with 6 partitions); mosquitto "broker-a" and
#    "broker-b", each loading build/plugin/mosquitto_kafka.so with the routes of
#    mosquitto.conf.d/demo-broker-a.conf / demo-broker-b.conf; HAProxy balancing MQTT
#    connections over both (TCP, roundrobin, health checks).
# 3. Publishes 3,300 QoS 1 messages from 11 clients through HAProxy. Each client's
#    connection lands on one broker, and only that broker's routes decide whether its
#    messages reach Kafka.
# 4. Reads Kafka back with kcat and shows where each client landed and what reached
#    Kafka (topic, partition), the records per broker and route with their mqtt.seq
#    ranges, a few records with their headers, and both brokers' $SYS/broker/kafka
#    counters.
# 5. Checks that every client got exactly the records its broker's routes call for, each
#    client's records of a topic are in one partition, mqtt.seq has no gap or duplicate,
#    and $SYS agrees with Kafka. Exits 1 when anything is off (and shows the logs).
# 6. Commands, the other way: two phones connect through HAProxy (one lands on each
#    broker), kcat produces one command record per phone to mqtt-commands, and each phone
#    gets exactly its own command from the broker it is connected to (broadcast mode:
#    both brokers read every command; the other one skips it, as its $SYS counters show).
#
# MQTT over WebSockets: where /usr/sbin/mosquitto is built with libwebsockets (Debian 13;
# a probe at start tells), each broker also has a `protocol websockets` listener and
# HAProxy a second frontend for them (TCP passthrough, WebSockets handshake as health
# check); the summary prints the ws:// URL for a browser or MQTT.js, and a third phone,
# "phone-ws" (python3-paho-mqtt, transport websockets), gets its command over it. Debian
# 12's mosquitto 2.0.11 is built without libwebsockets: the summary says so in one line.
#
# Everything it starts is stopped by pid when it exits, and its temporary directory is
# removed. Environment:
#   MQK_DEMO_BUILD_DIR=dir   build directory (default: build, in the source tree)
#   MQK_DEMO_SKIP_BUILD=1    use the build directory as it is (no install-deps, no cmake)
#   MQK_DEMO_KEEP=1          keep the temporary directory (configs, logs, records)
#   MQK_DEMO_TIMEOUT=secs    bound on the run after the build (default 180)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/proc.sh
. "$ROOT/scripts/lib/proc.sh"

BUILD=${MQK_DEMO_BUILD_DIR:-$ROOT/build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
RUN_TIMEOUT=${MQK_DEMO_TIMEOUT:-180}
BROKERS=(broker-a broker-b)
KAFKA_TOPICS=(spectrum device-status battery)
PARTITIONS=6
COMMANDS_TOPIC=mqtt-commands
PHONES=(phone-1 phone-2)
# The phone that connects over WebSockets, where mosquitto can (see ws_probe).
WS_PHONE=phone-ws
# The opening handshake of MQTT over WebSockets (RFC 6455, subprotocol "mqtt"): HAProxy's
# health check of the brokers' websockets listeners expects "101 Switching Protocols".
WS_HANDSHAKE=$'GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n'
WS_HANDSHAKE+=$'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
WS_HANDSHAKE+=$'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n'

# The clients: id, MQTT topic, messages, payload. Started in this order, 0.2 s apart,
# so HAProxy's roundrobin sends consecutive clients to alternate brokers: each pair
# below is split over broker-a and broker-b.
CLIENTS=(
    "spec-1 sensors/spec-1/spectrum 500 {\"bins\":[3,9,27,81,27,9,3]}"
    "spec-2 sensors/spec-2/spectrum 500 {\"bins\":[1,4,16,64,16,4,1]}"
    "spec-3 sensors/spec-3/spectrum 500 {\"bins\":[2,8,32,80,32,8,2]}"
    "spec-4 sensors/spec-4/spectrum 500 {\"bins\":[5,10,20,40,20,10,5]}"
    "batt-1 sensors/batt-1/battery 250 {\"mV\":3712}"
    "batt-2 sensors/batt-2/battery 250 {\"mV\":3650}"
    "dev-1 devices/dev-1/status 250 online"
    "dev-2 devices/dev-2/status 250 online"
    "dbg-1 devices/dbg-1/debug/trace 100 trace:tick"
    "dbg-2 devices/dbg-2/debug/trace 100 trace:tick"
    "wx-1 weather/wx-1/temperature 100 21.5"
)

work=""
status=1
watchdog=""

heading() {
    printf '\n== %s\n' "$*"
}

# The logs of everything the demo started, for a failure.
show_logs() {
    local f
    [ -n "$work" ] || return 0
    for f in "$work"/kafka.log "$work"/broker-?.stdout "$work"/broker-?.log "$work"/haproxy.log \
        "$work"/pub-*.log; do
        [ -s "$f" ] || continue
        echo "---- last 25 lines of $f ----" >&2
        tail -n 25 "$f" >&2
    done
}

fail() {
    echo "demo: error: $*" >&2
    exit 1
}

cleanup() {
    local rc=$?
    set +e # clean up everything, whatever fails
    trap - EXIT INT TERM
    if [ -n "$watchdog" ]; then
        kill "$watchdog" 2>/dev/null
        wait "$watchdog" 2>/dev/null
    fi
    if [ "$rc" -ne 0 ] || [ "$status" -ne 0 ]; then
        show_logs
    fi
    proc_stop_all 10
    if [ -n "$work" ]; then
        if [ "${MQK_DEMO_KEEP:-0}" = 1 ]; then
            echo "demo: kept $work" >&2
        else
            rm -rf "$work"
        fi
    fi
    if [ "$rc" -eq 0 ] && [ "$status" -ne 0 ]; then
        rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "demo: interrupted" >&2; exit 130' INT
trap 'echo "demo: timed out or terminated" >&2; exit 124' TERM

cd "$ROOT"

# ---- 1. packages and build -----------------------------------------------------------
if [ "${MQK_DEMO_SKIP_BUILD:-0}" != 1 ]; then
    heading "Installing packages and building"
    timeout 900 "$ROOT/scripts/install-deps.sh" || fail "scripts/install-deps.sh failed"
    timeout 120 cmake -S "$ROOT" -B "$BUILD" >/dev/null || fail "cmake configure failed"
    timeout 900 cmake --build "$BUILD" -j2 >/dev/null || {
        timeout 600 cmake --build "$BUILD" -j1 2>&1 | tail -30 >&2
        fail "the build failed"
    }
    echo "built $BUILD/plugin/mosquitto_kafka.so and $BUILD/tools/mqk-devkafka"
fi
PLUGIN=$BUILD/plugin/mosquitto_kafka.so
DEVKAFKA=$BUILD/tools/mqk-devkafka
[ -f "$PLUGIN" ] || fail "$PLUGIN not found (build first, or set MQK_DEMO_BUILD_DIR)"
[ -x "$DEVKAFKA" ] || fail "$DEVKAFKA not found (build first, or set MQK_DEMO_BUILD_DIR)"
for tool in mosquitto_pub mosquitto_sub kcat haproxy python3; do
    command -v "$tool" >/dev/null || fail "$tool not found: run scripts/install-deps.sh"
done
[ -x /usr/sbin/mosquitto ] || fail "/usr/sbin/mosquitto not found: run scripts/install-deps.sh"

# From here on the run is bounded: the watchdog sends us SIGTERM, the EXIT trap cleans up.
# (Killed in cleanup: it then kills its sleep, so nothing is left behind.)
(
    sleep "$RUN_TIMEOUT" &
    trap 'kill $! 2>/dev/null; exit 0' TERM
    wait $!
    echo "demo: still running after ${RUN_TIMEOUT}s: giving up" >&2
    kill -TERM $$
) &
watchdog=$!

work=$(mktemp -d /tmp/mqk-demo.XXXXXX)
chmod 755 "$work"

# ---- 2. Kafka, two brokers, HAProxy ----------------------------------------------------
heading "Starting Kafka, two mosquitto brokers and HAProxy on 127.0.0.1"

topic_args=()
for t in "${KAFKA_TOPICS[@]}"; do
    topic_args+=(--topic "$t:$PARTITIONS")
done
topic_args+=(--topic "$COMMANDS_TOPIC:$PARTITIONS")
proc_start kafka "$work/kafka.log" "$DEVKAFKA" --brokers 3 "${topic_args[@]}" \
    --bootstrap-file "$work/kafka.bootstrap"
PROC_WATCH_PID=$PROC_LAST_PID proc_wait_until 10 "mqk-devkafka's bootstrap file" \
    test -s "$work/kafka.bootstrap"
BOOTSTRAP=$(cat "$work/kafka.bootstrap")
timeout 10 kcat -b "$BOOTSTRAP" -L -m 5 >/dev/null || fail "kcat cannot reach $BOOTSTRAP"
printf '%-9s %s\n%-9s %s\n' kafka "$BOOTSTRAP" "" \
    "mqk-devkafka: 3 brokers; topics ${KAFKA_TOPICS[*]} $COMMANDS_TOPIC, $PARTITIONS partitions each"

# port_open PORT: does something accept on 127.0.0.1:PORT?
port_open() {
    timeout 1 bash -c ": </dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# ws_probe: can this /usr/sbin/mosquitto take MQTT over WebSockets? Starts it alone with a
# `protocol websockets` listener: built with libwebsockets it accepts there (then it is
# stopped); without (Debian 12's 2.0.11), it logs "Error: Unable to start any listening
# sockets, exiting." and exits. Sets WS (1 or 0) and WS_WHY (one line, when 0).
ws_probe() {
    local port pid deadline=$((SECONDS + 10))
    port=$(proc_free_port)
    printf 'listener %s 127.0.0.1\nprotocol websockets\nlog_dest stderr\n' "$port" \
        >"$work/ws-probe.conf"
    proc_start ws-probe "$work/ws-probe.log" /usr/sbin/mosquitto -c "$work/ws-probe.conf"
    pid=$PROC_LAST_PID
    WS=0
    WS_WHY=""
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! proc_alive "$pid"; then
            wait "$pid" 2>/dev/null || true
            # (mosquitto -h exits 3, grep 1 when it finds nothing.)
            WS_WHY="$({ /usr/sbin/mosquitto -h 2>/dev/null || true; } |
                sed -n 's/^mosquitto version /mosquitto /p' | head -1) is built without"
            WS_WHY+=" libwebsockets: a 'protocol websockets' listener stops it"
            WS_WHY+=" ($({ grep -o 'Error: .*' "$work/ws-probe.log" || true; } | head -1))"
            return 0
        fi
        if port_open "$port"; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            WS=1
            return 0
        fi
        sleep 0.1
    done
    fail "mosquitto neither accepted on a websockets listener nor exited within 10 s"
}
ws_probe

declare -A PORT WSPORT
for b in "${BROKERS[@]}"; do
    PORT[$b]=$(proc_free_port)
    conf=$work/$b.conf
    {
        echo "# Generated by scripts/demo.sh for $b."
        echo "listener ${PORT[$b]} 127.0.0.1"
        if [ "$WS" = 1 ]; then
            WSPORT[$b]=$(proc_free_port)
            echo "# MQTT over WebSockets (browsers, MQTT.js), any path; HAProxy's ws frontend."
            echo "listener ${WSPORT[$b]} 127.0.0.1"
            echo "protocol websockets"
        fi
        echo "allow_anonymous true"
        echo "user root"
        echo "persistence false"
        echo "sys_interval 1"
        echo "# Small writes to clients go out at once (README: latency over MQTT)."
        echo "set_tcp_nodelay true"
        echo "log_dest file $work/$b.log"
        echo "log_type error"
        echo "log_type warning"
        echo "log_type notice"
        echo "log_type information"
        echo "plugin $PLUGIN"
        echo "plugin_opt_bootstrap_servers $BOOTSTRAP"
        echo "plugin_opt_broker_id $b"
        echo "plugin_opt_stats_interval 1"
        echo "# The journal (durability journal, the default) of this demo's own."
        echo "plugin_opt_journal_dir $work/journal-$b"
        echo "# Commands from Kafka to the device they name (docs/commands.md)."
        echo "plugin_opt_commands_topic $COMMANDS_TOPIC"
        echo
        echo "# ---- mosquitto.conf.d/demo-$b.conf ----"
        cat "$ROOT/mosquitto.conf.d/demo-$b.conf"
    } >"$conf"
    proc_start "$b" "$work/$b.stdout" /usr/sbin/mosquitto -c "$conf"
    PROC_WATCH_PID=$PROC_LAST_PID proc_wait_until 10 "$b on port ${PORT[$b]}" \
        timeout 2 mosquitto_sub -h 127.0.0.1 -p "${PORT[$b]}" -i "ready-$b" \
        -t '$SYS/broker/version' -C 1 -W 1
    printf '%-9s %-16s %s\n' "$b" "127.0.0.1:${PORT[$b]}" "mosquitto -c $conf"
    if [ "$WS" = 1 ]; then
        PROC_WATCH_PID=$PROC_LAST_PID proc_wait_until 10 "$b's websockets listener" \
            port_open "${WSPORT[$b]}"
        printf '%-9s %-16s %s\n' "" "127.0.0.1:${WSPORT[$b]}" "MQTT over WebSockets"
    fi
done

HAPORT=$(proc_free_port)
cat >"$work/haproxy.cfg" <<EOF
# Generated by scripts/demo.sh: MQTT (TCP) load balancing over the two brokers.
global
    maxconn 256
    log stderr format raw local0 info

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 2s
    timeout client 60s
    timeout server 60s

frontend mqtt
    bind 127.0.0.1:$HAPORT
    default_backend brokers

backend brokers
    balance roundrobin
    server broker-a 127.0.0.1:${PORT[broker-a]} check inter 500ms rise 1 fall 2
    server broker-b 127.0.0.1:${PORT[broker-b]} check inter 500ms rise 1 fall 2
EOF
if [ "$WS" = 1 ]; then
    HAWSPORT=$(proc_free_port)
    cat >>"$work/haproxy.cfg" <<EOF

# MQTT over WebSockets: TCP passthrough (mosquitto speaks WebSockets itself), each server
# checked with a WebSockets opening handshake.
frontend mqtt_ws
    bind 127.0.0.1:$HAWSPORT
    default_backend brokers_ws

backend brokers_ws
    balance roundrobin
    option tcp-check
    tcp-check connect
    tcp-check send-binary $(printf '%s' "$WS_HANDSHAKE" | od -An -v -tx1 | tr -d ' \n')
    tcp-check expect string "HTTP/1.1 101"
    server broker-a 127.0.0.1:${WSPORT[broker-a]} check inter 500ms rise 1 fall 2
    server broker-b 127.0.0.1:${WSPORT[broker-b]} check inter 500ms rise 1 fall 2
EOF
fi
timeout 10 haproxy -c -q -f "$work/haproxy.cfg" || fail "haproxy refused $work/haproxy.cfg"
proc_start haproxy "$work/haproxy.log" haproxy -db -f "$work/haproxy.cfg"
PROC_WATCH_PID=$PROC_LAST_PID proc_wait_until 10 "HAProxy on port $HAPORT" \
    timeout 2 mosquitto_sub -h 127.0.0.1 -p "$HAPORT" -i ready-haproxy \
    -t '$SYS/broker/version' -C 1 -W 1
printf '%-9s %-16s %s\n' haproxy "127.0.0.1:$HAPORT" "roundrobin over broker-a and broker-b"
if [ "$WS" = 1 ]; then
    PROC_WATCH_PID=$PROC_LAST_PID proc_wait_until 10 "HAProxy's websockets frontend" \
        port_open "$HAWSPORT"
    printf '%-9s %-16s %s\n' "" "127.0.0.1:$HAWSPORT" \
        "MQTT over WebSockets, roundrobin over the brokers' websockets listeners"
    echo "websockets: a browser or MQTT.js client connects to ws://127.0.0.1:$HAWSPORT/mqtt" \
        "(mqtt.connect('ws://127.0.0.1:$HAWSPORT/mqtt'))"
else
    echo "websockets: none: $WS_WHY; Debian 13's mosquitto has it (README: Platforms)"
fi

heading "Routes (mosquitto.conf.d/demo-broker-a.conf, demo-broker-b.conf)"
for b in "${BROKERS[@]}"; do
    grep -E '^plugin_opt_(route_|exclude)' "$ROOT/mosquitto.conf.d/demo-$b.conf" |
        sed -e "s/^plugin_opt_route_\([^ ]*\) */route \1: /" \
            -e 's/^plugin_opt_exclude */exclude: /' \
            -e "s/^/  $b  /"
done
echo "  Both forward spectra; only broker-a forwards device status, only broker-b battery."

# ---- 3. publish --------------------------------------------------------------------------
total=0
for c in "${CLIENTS[@]}"; do
    read -r _ _ n _ <<<"$c"
    total=$((total + n))
done
heading "Publishing $total messages (QoS 1) from ${#CLIENTS[@]} clients through HAProxy"
echo "Each client holds one connection, which HAProxy gives to broker-a or broker-b."
: >"$work/clients.tsv"
pub_pids=()
started=$(date +%s.%N)
for c in "${CLIENTS[@]}"; do
    read -r id topic n payload <<<"$c"
    printf '%s\t%s\t%s\n' "$id" "$topic" "$n" >>"$work/clients.tsv"
    timeout 60 mosquitto_pub -h 127.0.0.1 -p "$HAPORT" -i "$id" -q 1 -t "$topic" \
        --repeat "$n" -m "$payload" >"$work/pub-$id.log" 2>&1 &
    pub_pids+=($!)
    sleep 0.2
done
for i in "${!pub_pids[@]}"; do
    if ! wait "${pub_pids[$i]}"; then
        read -r id _ <<<"${CLIENTS[$i]}"
        cat "$work/pub-$id.log" >&2
        fail "mosquitto_pub -i $id failed"
    fi
done
printf 'all %d acknowledged (PUBACK) within %.1f s of the first connection\n' "$total" \
    "$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')"

# ---- 4. read Kafka back -------------------------------------------------------------------
report() {
    python3 - "$@" <<'PY'
"""The demo's report: reads the files in the work directory, prints tables, checks."""
import collections
import os
import re
import sys

mode, work, root = sys.argv[1], sys.argv[2], sys.argv[3]
brokers = sys.argv[4:]


def parse_routes(path):
    routes, excludes = [], []
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, val = line.partition(" ")
        val = val.strip()
        if key.startswith("plugin_opt_route_"):
            flt, _, rest = val.partition(" -> ")
            routes.append((key[len("plugin_opt_route_"):], flt.strip(), rest.split()[0]))
        elif key == "plugin_opt_exclude":
            excludes.append(val)
    return routes, excludes


def matches(flt, topic):
    """MQTT topic filter matching: '+' one level, '#' the rest (and the parent)."""
    f, t = flt.split("/"), topic.split("/")
    if topic.startswith("$") and f[0] in ("+", "#"):
        return False
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


conf = {b: parse_routes(os.path.join(root, "mosquitto.conf.d", "demo-%s.conf" % b))
        for b in brokers}
clients = [line.rstrip("\n").split("\t") for line in open(os.path.join(work, "clients.tsv"))]

# Where each client landed: mosquitto logs "New client connected from ... as <id> (...".
landed = {}
for b in brokers:
    for line in open(os.path.join(work, b + ".log"), errors="replace"):
        m = re.search(r"New client connected from \S+ as (\S+) ", line)
        if m:
            landed.setdefault(m.group(1), set()).add(b)


def expectation(cid, topic, sent):
    """(routes that should take this client's messages, why, records expected)."""
    where = landed.get(cid, set())
    if len(where) != 1:
        return [], "landed on %s?" % (",".join(sorted(where)) or "no broker"), None
    b = next(iter(where))
    routes, excludes = conf[b]
    for e in excludes:
        if matches(e, topic):
            return [], "excluded on %s (%s)" % (b, e), 0
    taken = [r for r in routes if matches(r[1], topic)]
    if not taken:
        return [], "no route on %s" % b, 0
    return taken, "route " + ", ".join(r[0] for r in taken), sent * len(taken)


if mode == "expected":
    print(sum(expectation(c, t, int(n))[2] or 0 for c, t, n in clients))
    sys.exit(0)

# Records: kcat -f '%t\t%p\t%o\t%k\t%h\n', headers as name=value,name=value.
records = []
for name in sorted(os.listdir(work)):
    if not (name.startswith("kafka-") and name.endswith(".tsv")):
        continue
    for line in open(os.path.join(work, name), errors="replace"):
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 5:
            continue
        hdrs = dict(h.split("=", 1) for h in parts[4].split(",") if "=" in h)
        records.append({"topic": parts[0], "partition": int(parts[1]),
                        "offset": int(parts[2]), "key": parts[3], "h": hdrs})

# $SYS counters: mosquitto_sub -v lines "$SYS/broker/kafka/<name> <value>".
sysc = {}
for b in brokers:
    sysc[b] = {}
    path = os.path.join(work, "sys-%s.txt" % b)
    if os.path.exists(path):
        for line in open(path):
            name, _, value = line.strip().partition(" ")
            if name.startswith("$SYS/broker/kafka/"):
                sysc[b][name[len("$SYS/broker/kafka/"):]] = value
            elif name == "$SYS/broker/publish/messages/received":
                sysc[b]["(mosquitto) publish/messages/received"] = value

problems = []

# -- per client ------------------------------------------------------------------------
by_client = collections.defaultdict(list)
for r in records:
    by_client[r["h"].get("mqtt.client_id", "?")].append(r)

print("\n== Where each client landed and what reached Kafka")
fmt = "%-7s %-27s %-9s %5s %8s  %-30s %s"
print(fmt % ("client", "MQTT topic", "broker", "sent", "in Kafka", "Kafka topic [partition]",
             "why"))
for cid, topic, sent in clients:
    sent = int(sent)
    taken, why, expected = expectation(cid, topic, sent)
    got = by_client.get(cid, [])
    parts = collections.defaultdict(set)
    for r in got:
        parts[r["topic"]].add(r["partition"])
    where = ",".join(sorted(landed.get(cid, []))) or "?"
    dest = " ".join("%s [%s]" % (t, ",".join(map(str, sorted(p))))
                    for t, p in sorted(parts.items())) or "-"
    print(fmt % (cid, topic, where, sent, len(got), dest, why))
    if expected is None:
        problems.append("%s: could not tell which broker it connected to" % cid)
    elif len(got) != expected:
        problems.append("%s: %d records in Kafka, expected %d (%s)"
                        % (cid, len(got), expected, why))
    for t, p in parts.items():
        if len(p) != 1:
            problems.append("%s: records of Kafka topic %s in %d partitions" % (cid, t, len(p)))
    for r in got:
        if r["h"].get("mqtt.topic") != topic:
            problems.append("%s: record with mqtt.topic %r" % (cid, r["h"].get("mqtt.topic")))
            break

print("\nSpectra reach Kafka from either broker; battery levels only from a client that")
print("landed on broker-b, device status only from one on broker-a; debug traces and")
print("weather never. Every record of one client is in one partition (key=client id, or")
print("its one MQTT topic for device-status).")

# -- per broker and route -----------------------------------------------------------------
print("\n== Records in Kafka per broker and route (mqtt.broker, mqtt.route headers)")
fmt = "%-9s %-9s %-14s %8s %13s %8s  %s"
print(fmt % ("broker", "route", "Kafka topic", "records", "mqtt.seq", "$SYS", "seq check"))
groups = collections.defaultdict(list)
for r in records:
    h = r["h"]
    groups[(h.get("mqtt.broker", "?"), h.get("mqtt.route", "?"))].append(r)
for b in brokers:
    for name, flt, ktopic in conf[b][0]:
        g = groups.pop((b, name), [])
        seqs = sorted(int(r["h"].get("mqtt.seq", "0")) for r in g)
        boots = {r["h"].get("mqtt.boot") for r in g}
        dups = len(seqs) - len(set(seqs))
        if not seqs:
            check, span = "-", "-"
        else:
            span = "%d..%d" % (seqs[0], seqs[-1])
            gaps = seqs[-1] - seqs[0] + 1 - len(set(seqs))
            check = "ok" if (seqs[0] == 1 and gaps == 0 and dups == 0 and len(boots) == 1) \
                else "gaps %d, duplicates %d, boots %d" % (gaps, dups, len(boots))
            if check != "ok":
                problems.append("%s/%s: mqtt.seq %s: %s" % (b, name, span, check))
        delivered = sysc[b].get("routes/%s/delivered" % name, "?")
        if delivered != str(len(g)):
            problems.append("%s/%s: %d records in Kafka, $SYS says %s delivered"
                            % (b, name, len(g), delivered))
        print(fmt % (b, name, ktopic, len(g), span, delivered, check))
for (b, name), g in sorted(groups.items()):
    problems.append("%d records from unexpected broker/route %s/%s" % (len(g), b, name))
print("($SYS: the route's $SYS/broker/kafka/routes/<route>/delivered on that broker.)")

# -- $SYS -----------------------------------------------------------------------------------
print("\n== $SYS/broker/kafka/# on each broker (retained; mosquitto_sub -v -W 2)")
totals = sorted(n for n in {n for b in brokers for n in sysc[b]} if "/" not in n)
if not totals:
    problems.append("no $SYS/broker/kafka counters from any broker")
fmt = "%-38s" + " %9s" * len(brokers)
print(fmt % (("totals",) + tuple(brokers)))
for n in totals:
    print(fmt % ((n,) + tuple(sysc[b].get(n, "-") for b in brokers)))
main = ["matched", "produced", "delivered", "failed", "in_flight"]
fmt = "%-38s" + " %9s" * len(main)
print()
print(fmt % (("per route (routes/<route>/...)",) + tuple(main)))
others = []
for b in brokers:
    for name, _, _ in conf[b][0]:
        pre = "routes/%s/" % name
        print(fmt % (("  %s on %s" % (name, b),) + tuple(sysc[b].get(pre + k, "-") for k in main)))
        others += ["%s %s/%s=%s" % (b, name, k[len(pre):], v) for k, v in sysc[b].items()
                   if k.startswith(pre) and k[len(pre):] not in main and v != "0"]
print("  other route counters: " + (", ".join(others) or "all 0"))
received = 0
for b in brokers:
    s = sysc[b]
    received += int(s.get("received", "0"))
    for k in ("failed", "buffer_full", "bad_topic", "too_large", "refused", "in_flight"):
        if s.get(k, "0") != "0":
            problems.append("%s: $SYS/broker/kafka/%s is %s" % (b, k, s[k]))
if received != sum(int(n) for _, _, n in clients):
    problems.append("the brokers' received counters add up to %d, not the %d published"
                    % (received, sum(int(n) for _, _, n in clients)))

total_sent = sum(int(n) for _, _, n in clients)
total_expected = sum(expectation(c, t, int(n))[2] or 0 for c, t, n in clients)
print("\n== Summary")
print("%d published, %d expected in Kafka by the routes of the broker each client landed on,"
      % (total_sent, total_expected))
print("%d records in Kafka." % len(records))
if problems:
    print("\nPROBLEMS:")
    for p in problems:
        print("  - " + p)
    sys.exit(1)
print("Every check passed: counts per client, one partition per client, mqtt.seq without")
print("gaps or duplicates, $SYS delivered = records in Kafka, no failures.")
PY
}

read_kafka() {
    local t
    for t in "${KAFKA_TOPICS[@]}"; do
        timeout 20 kcat -b "$BOOTSTRAP" -C -t "$t" -o beginning -e -q \
            -f '%t\t%p\t%o\t%k\t%h\n' >"$work/kafka-$t.tsv" || return 1
    done
}

kafka_count() {
    cat "$work"/kafka-*.tsv | wc -l
}

expected=$(report expected "$work" "$ROOT" "${BROKERS[@]}")
heading "Reading Kafka back with kcat (expecting $expected records)"
deadline=$((SECONDS + 20))
while :; do
    read_kafka || fail "kcat could not read Kafka"
    got=$(kafka_count)
    [ "$got" -ge "$expected" ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "only $got of $expected records after 20s" >&2
        break
    fi
    sleep 1
done
sleep 1.5 # let the brokers publish their counters once more (stats_interval 1)
read_kafka || fail "kcat could not read Kafka"
echo "$(kafka_count) records in ${KAFKA_TOPICS[*]}"

for b in "${BROKERS[@]}"; do
    timeout 10 mosquitto_sub -h 127.0.0.1 -p "${PORT[$b]}" -i "sys-$b" -v -W 2 \
        -t '$SYS/broker/kafka/#' -t '$SYS/broker/publish/messages/received' \
        >"$work/sys-$b.txt" 2>/dev/null || true # -W ends it with a non-zero status
done

report_status=0
report report "$work" "$ROOT" "${BROKERS[@]}" || report_status=1

heading "The first record of each topic (kcat -C -c 1; headers as name=value,...)"
for t in "${KAFKA_TOPICS[@]}"; do
    timeout 10 kcat -b "$BOOTSTRAP" -C -t "$t" -o beginning -c 1 -q -e -f \
        'topic %t [%p] @%o  key %k\n  headers %h\n  value   %s\n' || true
done


# ---- 6. commands: from Kafka to the one phone that must get them ---------------------------------
heading "Commands: from Kafka to the one phone that must get them (broadcast mode)"
echo "Both brokers read every record of $COMMANDS_TOPIC (each with its own consumer group); the"
echo "broker a phone is connected to publishes the command to it, the other skips it."
for b in "${BROKERS[@]}"; do
    # A new consumer group starts at the end of the topic: wait until it has its partitions.
    proc_wait_until 30 "$b's commands consumer" \
        grep -q 'mosquitto_kafka: commands: consuming' "$work/$b.log"
done
sub_pids=()
for phone in "${PHONES[@]}"; do
    # -C 1: exit after one message; the plugin publishes to the client id, on
    # devices/<id>/commands (plugin_opt_commands_mqtt_topic's default).
    timeout 30 mosquitto_sub -h 127.0.0.1 -p "$HAPORT" -i "$phone" -V mqttv5 -q 1 \
        -t "devices/$phone/commands" -C 1 -W 25 -F '%t %p' >"$work/cmd-$phone.txt" \
        2>"$work/cmd-$phone.err" &
    sub_pids+=($!)
    sleep 0.3 # alternate brokers (roundrobin), and be connected before the command
done
ALL_PHONES=("${PHONES[@]}")
if [ "$WS" = 1 ]; then
    # The same, over WebSockets through HAProxy's ws frontend, as a browser would:
    # python3-paho-mqtt with transport "websockets" (mosquitto_sub has no WebSockets).
    cat >"$work/ws-phone.py" <<'PY'
"""A phone over WebSockets: prints the first message it gets as "topic payload"."""
import sys
import threading

import paho.mqtt.client as mqtt

port, cid = int(sys.argv[1]), sys.argv[2]
kw = {}
if hasattr(mqtt, "CallbackAPIVersion"):  # paho 2.x (Debian 13); 1.6 on Debian 12
    kw["callback_api_version"] = mqtt.CallbackAPIVersion.VERSION2
c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5, transport="websockets", **kw)
c.ws_set_options(path="/mqtt")
got = threading.Event()


def on_message(client, userdata, msg):
    print(msg.topic, msg.payload.decode("utf-8", "replace"), flush=True)
    got.set()


c.on_message = on_message
c.on_connect = lambda client, userdata, *a: client.subscribe("devices/%s/commands" % cid, 1)
c.connect("127.0.0.1", port, keepalive=60)
c.loop_start()
ok = got.wait(25)
c.disconnect()
c.loop_stop()
sys.exit(0 if ok else 1)
PY
    timeout 30 python3 "$work/ws-phone.py" "$HAWSPORT" "$WS_PHONE" >"$work/cmd-$WS_PHONE.txt" \
        2>"$work/cmd-$WS_PHONE.err" &
    sub_pids+=($!)
    proc_wait_until 10 "$WS_PHONE connected over WebSockets" \
        grep -q " as $WS_PHONE " "$work"/broker-?.log
    sleep 0.3 # the plugin sees a client from the TICK after its CONNECT
    ALL_PHONES+=("$WS_PHONE")
fi
for phone in "${ALL_PHONES[@]}"; do
    printf '{"action":"set-rate","hz":10,"for":"%s"}' "$phone" |
        timeout 10 kcat -P -b "$BOOTSTRAP" -t "$COMMANDS_TOPIC" -k "$phone" ||
        fail "kcat could not produce the command for $phone"
    echo "kcat -P -t $COMMANDS_TOPIC -k $phone   <- {\"action\":\"set-rate\",...}"
done
for i in "${!sub_pids[@]}"; do
    wait "${sub_pids[$i]}" || true
done
sleep 1.5 # the brokers' $SYS counters (stats_interval 1)
commands_ok=1
for phone in "${ALL_PHONES[@]}"; do
    got=$(cat "$work/cmd-$phone.txt")
    expect="devices/$phone/commands {\"action\":\"set-rate\",\"hz\":10,\"for\":\"$phone\"}"
    if [ "$got" = "$expect" ]; then
        via=""
        if [ "$phone" = "$WS_PHONE" ]; then
            via="   (over WebSockets, on $(grep -l " as $WS_PHONE " "$work"/broker-?.log |
                sed 's#.*/\(broker-.\)\.log#\1#'))"
        fi
        echo "$phone got: $got$via"
    else
        echo "PROBLEM: $phone got '$got', expected '$expect'" >&2
        commands_ok=0
    fi
done
delivered=0
skipped=0
for b in "${BROKERS[@]}"; do
    # Retained, and published again every second: the last value counts.
    sys=$(timeout 10 mosquitto_sub -h 127.0.0.1 -p "${PORT[$b]}" -i "cmdsys-$b" -v -W 2 \
        -t '$SYS/broker/kafka/commands/#' 2>/dev/null || true)
    d=$(awk '$1 == "$SYS/broker/kafka/commands/delivered" { v = $2 } END { print v }' <<<"$sys")
    k=$(awk '$1 == "$SYS/broker/kafka/commands/skipped" { v = $2 } END { print v }' <<<"$sys")
    w=$(awk '$1 == "$SYS/broker/kafka/commands/wakes" { v = $2 } END { print v }' <<<"$sys")
    printf '  %-9s $SYS/broker/kafka/commands: delivered %s, skipped %s, wakes %s\n' "$b" \
        "${d:--}" "${k:--}" "${w:--}"
    delivered=$((delivered + ${d:-0}))
    skipped=$((skipped + ${k:-0}))
done
if [ "$delivered" -ne "${#ALL_PHONES[@]}" ] || [ "$skipped" -ne "${#ALL_PHONES[@]}" ]; then
    echo "PROBLEM: the brokers delivered $delivered and skipped $skipped commands, expected" \
        "${#ALL_PHONES[@]} each" >&2
    commands_ok=0
fi
if [ "$commands_ok" -eq 1 ]; then
    echo "Each phone got exactly its own command, from the broker it is connected to."
else
    report_status=1
fi

# ---- 5. stop, and show the plugin's shutdown summary ----------------------------------------
if [ "$report_status" -ne 0 ]; then
    heading "Demo FAILED: see PROBLEMS above and the logs below"
    exit 1
fi
heading "Stopping everything (SIGTERM by pid); the plugin's summary in each broker's log"
proc_stop_all 15
shutdown_ok=1
for b in "${BROKERS[@]}"; do
    grep -E 'mosquitto_kafka: (shutdown|totals)' "$work/$b.log" | sed -e 's/^[0-9]*: //' \
        -e "s/^/  $b  /" || true
    # The plugin logs "shutdown: N records not delivered to Kafka" as mosquitto stops.
    if grep -qE 'mosquitto_kafka: shutdown: [1-9][0-9]* records? not delivered' "$work/$b.log" ||
        ! grep -q 'mosquitto_kafka: shutdown' "$work/$b.log"; then
        shutdown_ok=0
    fi
done
if [ "$shutdown_ok" -ne 1 ]; then
    heading "Demo FAILED: a broker did not report delivering everything at shutdown"
    exit 1 # the EXIT trap shows the logs
fi
status=0
heading "Demo passed"
