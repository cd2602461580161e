"""
test_websockets.py - MQTT over WebSockets (browsers, MQTT.js, paho's "websockets"
transport) through HAProxy to two mosquittos with the plugin, and real Kafka. Seed 003 is
about delivering to WebSockets clients.

Where /usr/sbin/mosquitto can (built with libwebsockets: Debian 13's 2.0.21), each broker
has a `protocol websockets` listener next to its plain one (harness.Mosquitto(websockets=
True)) and HAProxy a second frontend that passes WebSockets connections through to them
(haproxy.ws_port; its health check is a WebSockets opening handshake). Every client below
connects to that frontend, path /mqtt:

  outbound   8 WebSockets clients (v3.1.1 and v5) publish 3,200 QoS 1 messages: every one
             in Kafka once, in order per client, with mqtt.client_id, mqtt.topic, mqtt.qos
             and the mqtt.broker of the broker HAProxy gave the client, v5 user properties
             as mqtt.user.* headers; both brokers used; HAProxy marked no server down;
             then harness.Load over WebSockets (4 clients, ~1,000 msg/s for 2 s): nothing
             lost, duplicated or out of order;
  broadcast  commands (commands_topic, every broker reads all) to 6 WebSockets devices on
             the two brokers: each device gets exactly its 40, in order, on
             devices/<id>/commands; the v5 devices answer on the response topic with the
             correlation data, and the answers reach Kafka with it; per broker, $SYS
             delivered = the commands of its devices, skipped = the others'; the wake
             connection found the plain listener, not the websockets one;
  targeted   the same devices with mqk-router: presence records name the broker each
             WebSockets device is on, each device gets exactly its commands, nothing is
             skipped, sent back or dead-lettered;
  redistribute  commands_mode redistribute: the two brokers share one group on the
             commands topic, a command read by the broker without its device goes to the
             other's back-channel; each WebSockets device gets exactly its commands, in
             order, and the shared topic is read once (consumed - forwarded = commands);
  inbound    an inbound route (Kafka topic -> fleet/{key}/p{partition}, QoS 1) to 4
             WebSockets subscribers spread over both brokers: each gets all 400 records
             once, in order per key, and none goes back to Kafka through a '#' route.

Where it cannot (Debian 12's 2.0.11 is built without libwebsockets), those tests are not
collected; instead test_refused asserts mosquitto's refusal as it is today ("Opening
websockets listen socket on port N." then "Error: Unable to start any listening sockets,
exiting."), so a mosquitto that gains WebSockets is noticed. On both, test_platform_table
checks that the README's Platforms table says what the probe found for this Debian release.

Kafka is the session's (conftest.py).
"""

import collections
import os
import re
import time

import confluent_kafka as ck

import harness
from harness import HDR, V311, V5

SUPPORTED, PROBE_LOG = harness.websockets_probe()
ROUTER = os.path.join(harness.BUILD_DIR, "tools", "mqk-router")
CONSUMING = r"mosquitto_kafka: commands: consuming \S+ partitions \[\d"
WAKE_LINE = r"mosquitto_kafka: commands: wake connection to \S+ port (\d+) as"
COMMAND_COUNTERS = ("consumed", "delivered", "skipped", "returned", "dead_lettered",
                    "invalid")
# The README's Platforms table: the columns, and the row this file keeps true.
README = os.path.join(harness.SOURCE_DIR, "README.md")
PLATFORM_COLUMNS = {"12": "Debian 12 bookworm", "13": "Debian 13 trixie"}
ROW = "| MQTT over WebSockets"


def debian_version():
    """VERSION_ID of /etc/os-release ("12", "13"), inside a root the root's."""
    with open("/etc/os-release") as f:
        m = re.search(r'^VERSION_ID="?(\d+)', f.read(), re.M)
    assert m, "no VERSION_ID in /etc/os-release"
    return m.group(1)


def test_platform_table():
    """README's Platforms table says whether this Debian release's mosquitto takes
    WebSockets clients ("yes" or "**no**" first in its cell): it must match the probe."""
    with open(README) as f:
        text = f.read()
    head = re.search(r"^## Platforms\n\n(\|.*\|)\n\|[-|]+\|\n((?:\|.*\|\n)+)", text, re.M)
    assert head, "README has no Platforms table"
    columns = [c.strip() for c in head.group(1).strip("|").split("|")]
    row = [line for line in head.group(2).splitlines() if line.startswith(ROW)]
    assert len(row) == 1, f"README's Platforms table needs one row {ROW!r}"
    cells = [c.strip() for c in row[0].strip("|").split("|")]
    version = debian_version()
    assert version in PLATFORM_COLUMNS, f"Debian {version}: not a platform of this project"
    cell = cells[columns.index(PLATFORM_COLUMNS[version])]
    says = True if cell.startswith("yes") else False if cell.startswith("**no**") else None
    assert says is not None, f"the cell should start with 'yes' or '**no**': {cell!r}"
    print(f"Debian {version}, mosquitto {'.'.join(map(str, harness.MOSQUITTO_VERSION))}: "
          f"the probe says websockets {'work' if SUPPORTED else 'do not'}, the README "
          f"{'yes' if says else 'no'}")
    assert says == SUPPORTED, (f"README says WebSockets {'work' if says else 'do not work'} "
                               f"on Debian {version}, mosquitto says otherwise:\n{PROBE_LOG}")


if not SUPPORTED:
    def test_refused():
        """Debian 12's mosquitto 2.0.11 is built without libwebsockets: a `protocol
        websockets` listener stops it, with these two lines and exit code 1. A mosquitto
        that logs anything else (gained WebSockets, or fails differently) fails this."""
        b = harness.Mosquitto([], plugin=None, listen=False, websockets=True, wait=False,
                              name="mosquitto-ws-refused")
        try:
            rc = b.process.wait_exit(10 * harness.SLOW)
            log = b.log()
        finally:
            b.cleanup()
        print(f"mosquitto {'.'.join(map(str, harness.MOSQUITTO_VERSION))} exited {rc}:\n{log}")
        assert rc == 1, f"exit code {rc}, expected 1"
        assert re.search(rf"Opening websockets listen socket on port {b.ws_port}\.$", log,
                         re.M), log
        assert re.search(r"Error: Unable to start any listening sockets, exiting\.$", log,
                         re.M), log
        assert re.search(r"mosquitto version \S+ running", log) is None, log


# ---- Debian 13: WebSockets clients ------------------------------------------------------------

def ws_cluster(start_broker, start_haproxy, options, n=2, extra=()):
    """n brokers (options(i) each) with plain and websockets listeners behind one HAProxy;
    waits until HAProxy's MQTT health check reached every broker."""
    brokers = [start_broker(options(i), extra=["set_tcp_nodelay true", *extra],
                            websockets=True, name=f"mosquitto-{chr(ord('a') + i)}")
               for i in range(n)]
    h = start_haproxy([b.port for b in brokers], ws_ports=[b.ws_port for b in brokers])
    harness.wait_for(lambda: all(" as hc " in b.log() for b in brokers), 15,
                     what="HAProxy's health checks on every broker")
    return brokers, h


def landed(broker, ids):
    """Which of the client ids connected to broker (its log's "New client connected")."""
    return set(re.findall(r"New client connected from \S+ as (\S+)", broker.log())) & set(ids)


def where(brokers, ids):
    """{client id: index of the one broker it is on}; every id on exactly one."""
    at = {}
    for i, b in enumerate(brokers):
        for cid in landed(b, ids):
            assert cid not in at, f"{cid} connected to two brokers"
            at[cid] = i
    assert set(at) == set(ids), f"not seen on any broker: {set(ids) - set(at)}"
    return at


def no_server_down(h):
    assert " is DOWN" not in h.log(), f"HAProxy marked a server down:\n{h.log()}"


if SUPPORTED:
    def test_outbound(kafka, start_broker, start_haproxy):
        topic, load_topic = harness.unique("ws"), harness.unique("wsload")
        kafka.create_topics([topic, load_topic])
        tag = harness.unique("wsb")
        brokers, h = ws_cluster(start_broker, start_haproxy, lambda i: [
            ("bootstrap_servers", kafka.bootstrap), ("broker_id", f"{tag}-{i}"),
            ("route_ws", f"ws/# -> {topic} key=clientid"),
            ("route_load", f"wsload/# -> {load_topic} key=clientid"), ("stats_interval", "0")])
        n_clients, per_client = 8, 400
        clients = [harness.Client(h.ws_port, harness.unique(f"ws{i}"), V5 if i % 2 else V311,
                                  websockets=True) for i in range(n_clients)]
        started = time.monotonic()
        infos = []
        for n in range(per_client):
            for c in clients:
                props = (harness.v5_properties(user=[("via", "websockets")])
                         if c.protocol == V5 else None)
                infos.append(c.publish(f"ws/{c.client_id}/data", f"{c.client_id}:{n}".encode(),
                                       qos=1, properties=props))
        harness.wait_published(infos, 60)
        took = time.monotonic() - started
        for c in clients:
            c.close()
        ids = [c.client_id for c in clients]
        at = where(brokers, ids)
        per_broker = collections.Counter(at.values())
        print(f"{n_clients} WebSockets clients through HAProxy: {dict(per_broker)} per broker; "
              f"{len(infos)} QoS 1 PUBACKed in {took:.1f} s")
        assert len(per_broker) == 2, f"roundrobin should use both brokers: {at}"

        published = {cid: per_client for cid in ids}
        recs = harness.read_topic(kafka.bootstrap, topic, len(infos), timeout=60, grace=1)
        rep = harness.sequence_report(recs, published)
        print(harness.format_report(rep))
        assert (rep["lost"], rep["duplicates"], rep["out_of_order"], rep["unexpected"]) == \
            (0, 0, 0, 0), rep
        assert rep["in_kafka"] == n_clients * per_client
        protocol = {c.client_id: c.protocol for c in clients}
        wrong = []
        for r in recs:
            cid = r.value.decode().rsplit(":", 1)[0]
            want = {HDR.CLIENT_ID: cid, HDR.TOPIC: f"ws/{cid}/data", HDR.QOS: "1",
                    HDR.BROKER: f"{tag}-{at[cid]}", HDR.ROUTE: "ws",
                    HDR.USER_PREFIX + "via": "websockets" if protocol[cid] == V5 else None}
            got = {k: r.header_str(k) for k in want}
            if got != want or r.key != cid.encode():
                wrong.append((r.key, got, want))
        print(f"{len(recs) - len(wrong)} of {len(recs)} records with the expected key and "
              f"headers")
        assert not wrong, f"{len(wrong)} records with other headers, e.g. {wrong[:2]}"

        # A steady load over WebSockets (harness.Load, as the benchmarks use it).
        load = harness.Load(h.ws_port, 4, 1000, "wsload", prefix="wsload",
                            websockets=True).start()
        time.sleep(2)
        published = load.stop(timeout=30)
        assert not load.errors and not load.disconnected, (load.errors, load.disconnected)
        recs = harness.read_topic(kafka.bootstrap, load_topic, sum(published.values()),
                                  timeout=60, grace=1)
        rep = harness.sequence_report(recs, published)
        print(f"harness.Load over WebSockets: {harness.format_report(rep)}")
        assert rep["published"] > 1000, rep
        assert (rep["lost"], rep["duplicates"], rep["out_of_order"], rep["unexpected"]) == \
            (0, 0, 0, 0), rep
        no_server_down(h)

    def produce_commands(kafka, topic, devices, per_device, partition_of=None):
        """per_device command records for each device (key = its client id, value
        "<id>:<n>"; v5 devices' with a response topic and correlation data "<n>"),
        interleaved, acknowledged by Kafka. partition_of(device) names the partition of a
        device's commands; without it, the producer's partitioner picks one by key."""
        p = ck.Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True,
                         "linger.ms": 5, "log_level": 3})
        errors = []
        for n in range(per_device):
            for d in devices:
                headers = []
                if d.protocol == V5:
                    headers = [(HDR.RESPONSE_TOPIC, f"devices/{d.client_id}/answers"),
                               (HDR.CORRELATION_DATA, str(n).encode())]
                where = {} if partition_of is None else {"partition": partition_of(d)}
                p.produce(topic, key=d.client_id.encode(), value=f"{d.client_id}:{n}".encode(),
                          headers=headers, on_delivery=lambda e, m: e and errors.append(e),
                          **where)
        assert p.flush(30) == 0 and not errors, f"commands not acknowledged: {errors}"

    class WsDevice:
        """A WebSockets device (harness.Client) that keeps the commands it receives and,
        when a command carries a response topic (v5), answers it with the same correlation
        data and the payload "ack:<command payload>"."""

        def __init__(self, port, client_id, protocol):
            self.got = []
            self.client = harness.Client(port, client_id, protocol, websockets=True,
                                         on_message=self._on_message)
            self.client_id, self.protocol = client_id, protocol

        def _on_message(self, client, userdata, msg):
            self.got.append(msg)
            props = getattr(msg, "properties", None)
            rt = getattr(props, "ResponseTopic", None)
            if rt:
                answer = harness.v5_properties(correlation_data=props.CorrelationData)
                client.publish(rt, b"ack:" + msg.payload, qos=1, properties=answer)

        def close(self):
            self.client.close()

    def run_commands(kafka, brokers, devices, commands_topic, answers, per_device,
                     partition_of=None):
        """Produces the commands (produce_commands), then checks every device got exactly
        its own, in order, at QoS 1 on devices/<id>/commands, and that the v5 devices'
        answers reached Kafka with their correlation data."""
        produce_commands(kafka, commands_topic, devices, per_device, partition_of)
        total = per_device * len(devices)
        harness.wait_for(lambda: sum(len(d.got) for d in devices) >= total, 60,
                         what=f"{total} commands at the WebSockets devices")
        time.sleep(0.5)  # a duplicate would come now
        bad = []
        for d in devices:
            want = [f"{d.client_id}:{n}".encode() for n in range(per_device)]
            if [m.payload for m in d.got] != want:
                bad.append((d.client_id, [m.payload for m in d.got][:5]))
            if {(m.topic, m.qos) for m in d.got} != {(f"devices/{d.client_id}/commands", 1)}:
                bad.append((d.client_id, {(m.topic, m.qos) for m in d.got}))
        got = sum(len(d.got) for d in devices)
        print(f"{total} commands produced, {got} received by {len(devices)} WebSockets "
              f"devices, {len(bad)} devices with wrong ones")
        assert not bad and got == total, bad[:3]

        v5 = [d for d in devices if d.protocol == V5]
        recs = harness.read_topic(kafka.bootstrap, answers, per_device * len(v5), timeout=30)
        seen = collections.Counter((r.header_str(HDR.CLIENT_ID), r.header(HDR.CORRELATION_DATA),
                                    r.value) for r in recs)
        want = collections.Counter((d.client_id, str(n).encode(),
                                    f"ack:{d.client_id}:{n}".encode())
                                   for d in v5 for n in range(per_device))
        print(f"{sum(want.values())} answers expected in Kafka, {len(recs)} there, "
              f"{sum((seen - want).values())} unexpected, {sum((want - seen).values())} missing")
        assert seen == want

    def command_counters(brokers, expect, timeout=15.0):
        """Every broker's $SYS command counters, once they equal expect (a list of dicts)
        or after timeout: the caller asserts."""
        subs = [harness.SysCounters(b.port) for b in brokers]
        try:
            harness.wait_for(lambda: [{c: int(s.values.get(f"commands/{c}", -1))
                                       for c in COMMAND_COUNTERS} for s in subs] == expect,
                             timeout, interval=0.2, what="the command counters") \
                if expect else None
        except harness.HarnessError:
            pass
        return [{c: int(s.values.get(f"commands/{c}", -1)) for c in COMMAND_COUNTERS}
                for s in subs]

    def connect_devices(h, brokers, tag, n=6):
        devices = [WsDevice(h.ws_port, f"{tag}-dev{i}", V5 if i % 2 else V311)
                   for i in range(n)]
        at = where(brokers, [d.client_id for d in devices])
        per_broker = collections.Counter(at.values())
        print(f"{n} WebSockets devices through HAProxy: {dict(per_broker)} per broker")
        assert len(per_broker) == len(brokers), f"roundrobin should use every broker: {at}"
        return devices, at

    def test_commands_broadcast(kafka, start_broker, start_haproxy):
        tag = harness.unique("wsc")
        commands, answers = f"{tag}.commands", f"{tag}.answers"
        kafka.create_topics([commands, answers], 4)
        brokers, h = ws_cluster(start_broker, start_haproxy, lambda i: [
            ("bootstrap_servers", kafka.bootstrap), ("broker_id", f"{tag}-{i}"),
            ("route_answers", f"devices/+/answers -> {answers} key=clientid"),
            ("commands_topic", commands),
            ("commands_kafka.auto.offset.reset", "earliest"),
            ("stats_interval", "1")])
        for b in brokers:
            b.wait_log(CONSUMING, 30)
        devices, at = connect_devices(h, brokers, tag)
        # A device counts as connected from the TICK after its CONNECT (<= 0.1 s idle).
        time.sleep(0.5)
        per_device = 40
        try:
            run_commands(kafka, brokers, devices, commands, answers, per_device)
            mine = [per_device * sum(1 for i in at.values() if i == bi)
                    for bi in range(len(brokers))]
            total = per_device * len(devices)
            expect = [{"consumed": total, "delivered": m, "skipped": total - m, "returned": 0,
                       "dead_lettered": 0, "invalid": 0} for m in mine]
            got = command_counters(brokers, expect)
            print(f"$SYS commands per broker: {got}")
            assert got == expect
        finally:
            for d in devices:
                d.close()
        # The wake connection (commands_wake auto) passed the websockets listener over.
        for b in brokers:
            port = int(b.wait_log(WAKE_LINE, 10).group(1))
            assert port == b.port, f"{b.name}: wake connection to {port}, plain is {b.port}"
        no_server_down(h)

    def test_commands_targeted(kafka, start_broker, start_haproxy, tools):
        tag = harness.unique("wst")
        commands, answers = f"{tag}.commands", f"{tag}.answers"
        presence, dead = f"{tag}.presence", f"{tag}.dead"
        broker_topic = f"{tag}.commands.{{broker}}"
        ids = [f"{tag}-{i}" for i in range(2)]
        kafka.create_topics([commands, answers] + [f"{tag}.commands.{b}" for b in ids], 4)
        kafka.create_topics([presence], 4, config={"cleanup.policy": "compact"})
        kafka.create_topics([dead], 1)
        brokers, h = ws_cluster(start_broker, start_haproxy, lambda i: [
            ("bootstrap_servers", kafka.bootstrap), ("broker_id", ids[i]),
            ("route_answers", f"devices/+/answers -> {answers} key=clientid"),
            ("commands_mode", "targeted"), ("commands_topic", broker_topic),
            ("presence_topic", presence), ("commands_return_topic", commands),
            ("commands_dead_letter_topic", dead),
            ("commands_kafka.auto.offset.reset", "earliest"),
            ("stats_interval", "1")])
        for b in brokers:
            b.wait_log(CONSUMING, 30)
        router = tools("mqk-router", [
            ROUTER, "-b", kafka.bootstrap, "--presence", presence, "--commands", commands,
            "--group", harness.unique("router"), "--broker-topic", broker_topic,
            "--hold", "20", "--dead-letter", dead, "-q"])
        devices, at = connect_devices(h, brokers, tag)
        per_device = 40
        try:
            # Presence: each WebSockets device "connected" at the broker HAProxy gave it.
            # (HAProxy's health checks, client id "hc", come and go there too.)
            want = {f"{ids[i]}/{cid}" for cid, i in at.items()}

            def connected():
                recs = harness.read_topic(kafka.bootstrap, presence, 10 ** 6, timeout=1,
                                          grace=0)
                return {r.key.decode() for r in recs if r.value is not None and
                        r.key.decode().split("/", 1)[-1].startswith(f"{tag}-dev") and
                        harness.decode_json(r.value).get("state") == "connected"}
            harness.wait_for(lambda: want <= connected(), 30, interval=0.2,
                             what="presence records of the WebSockets devices")
            seen = connected()
            print(f"presence: {len(seen & want)} of {len(want)} WebSockets devices "
                  f"connected where HAProxy sent them, {len(seen - want)} elsewhere")
            assert seen == want, (seen, want)
            run_commands(kafka, brokers, devices, commands, answers, per_device)
            mine = [per_device * sum(1 for i in at.values() if i == bi)
                    for bi in range(len(brokers))]
            expect = [{"consumed": m, "delivered": m, "skipped": 0, "returned": 0,
                       "dead_lettered": 0, "invalid": 0} for m in mine]
            got = command_counters(brokers, expect)
            print(f"$SYS commands per broker: {got}")
            assert got == expect
            assert router.alive(), router.log()
        finally:
            for d in devices:
                d.close()
        dead_letters = harness.read_topic(kafka.bootstrap, dead, 1, timeout=1, grace=0)
        assert dead_letters == [], f"dead letters: {dead_letters}"
        no_server_down(h)

    def test_commands_redistribute(kafka, start_broker, start_haproxy):
        """commands_mode redistribute (docs/commands.md): the brokers share one group on the
        commands topic; a command read by the broker that does not hold its WebSockets
        device goes to the other's back-channel. Each device gets exactly its commands, in
        order; the shared topic is read once (consumed - forwarded = the commands)."""
        tag = harness.unique("wsr")
        commands, answers = f"{tag}.commands", f"{tag}.answers"
        presence, dead = f"{tag}.presence", f"{tag}.dead"
        ids = [f"{tag}-{i}" for i in range(2)]
        kafka.create_topics([commands, answers] + [f"{tag}.commands.{b}" for b in ids], 4)
        kafka.create_topics([presence], 4, config={"cleanup.policy": "compact"})
        kafka.create_topics([dead], 1)
        group = f"{tag}-group"  # one group: the brokers share the topic's partitions
        brokers, h = ws_cluster(start_broker, start_haproxy, lambda i: [
            ("bootstrap_servers", kafka.bootstrap), ("broker_id", ids[i]),
            ("route_answers", f"devices/+/answers -> {answers} key=clientid"),
            ("commands_mode", "redistribute"), ("commands_topic", commands),
            ("commands_group", group),
            ("commands_topic_broker", f"{tag}.commands.{{broker}}"),
            ("presence_topic", presence), ("commands_dead_letter_topic", dead),
            ("commands_kafka.auto.offset.reset", "earliest"),
            ("stats_interval", "1")])
        shared = re.compile(rf"commands: consuming {re.escape(commands)} partitions \[([0-9,]*)\]")

        def spread():
            last = [shared.findall(b.log()) for b in brokers]
            if not all(last):
                return None
            sets = [{int(p) for p in found[-1].split(",") if p} for found in last]
            union = set().union(*sets)
            return sets if union == set(range(4)) and sum(map(len, sets)) == 4 else None
        sets = harness.wait_for(spread, 60, interval=0.2,
                                what="the commands topic's partitions shared by the brokers")
        devices, at = connect_devices(h, brokers, tag)
        time.sleep(1.0)  # the devices' presence records, read by both brokers
        per_device = 40
        counters = COMMAND_COUNTERS + ("forwarded",)
        # By key alone, all six devices' partitions may belong to their own brokers (1 in
        # 64: nothing forwarded, the case untested). So the even devices' commands go to a
        # partition the other broker reads, the odd devices' to one their own broker reads.
        parts = [sorted(s) for s in sets]

        def partition_of(d):
            i, mine = devices.index(d), at[d.client_id]
            return parts[1 - mine if i % 2 == 0 else mine][(i // 2) % 2]
        elsewhere = per_device * sum(1 for i in range(len(devices)) if i % 2 == 0)
        try:
            run_commands(kafka, brokers, devices, commands, answers, per_device, partition_of)
            subs = [harness.SysCounters(b.port) for b in brokers]
            total = per_device * len(devices)

            def settled():
                got = [{c: int(s.values.get(f"commands/{c}", -1)) for c in counters}
                       for s in subs]
                return got if sum(g["delivered"] for g in got) == total else None
            got = harness.wait_for(settled, 15, interval=0.2, what="the command counters")
            for sub in subs:
                sub.close()
        finally:
            for d in devices:
                d.close()
        mine = [per_device * sum(1 for i in at.values() if i == bi) for bi in range(2)]
        read_once = sum(g["consumed"] - g["forwarded"] for g in got)
        print(f"partitions of the shared topic per broker: {sets}; $SYS commands per broker: "
              f"{got}; consumed - forwarded = {read_once} for {total} commands; "
              f"{elsewhere} produced to a partition of the other broker")
        assert [g["delivered"] for g in got] == mine, (got, mine)
        assert read_once == total, got
        # At least the commands read by the other broker; a command read before its
        # device's presence record is retried through the back-channel too.
        assert sum(g["forwarded"] for g in got) >= elsewhere > 0, (got, elsewhere)
        assert all(g["dead_lettered"] == 0 and g["invalid"] == 0 for g in got), got
        assert harness.read_topic(kafka.bootstrap, dead, 1, timeout=1, grace=0) == []
        no_server_down(h)

    def test_inbound(kafka, start_broker, start_haproxy):
        """An inbound route (docs/inbound.md) to WebSockets subscribers on both brokers:
        each of 4 gets every one of 400 records (4 partitions, 8 keys), on
        fleet/<key>/p<partition>, at QoS 1, in order per key; none goes back to Kafka
        through the outbound '#' route."""
        tag = harness.unique("wsi")
        topic, outbound = f"{tag}.notices", f"{tag}.out"
        kafka.create_topics([topic, outbound], 4)
        brokers, h = ws_cluster(start_broker, start_haproxy, lambda i: [
            ("bootstrap_servers", kafka.bootstrap), ("broker_id", f"{tag}-{i}"),
            ("inbound_fleet", f"{topic} -> fleet/{{key}}/p{{partition}} qos=1"),
            ("inbound_kafka.auto.offset.reset", "earliest"),
            ("route_all", f"# -> {outbound}"), ("stats_interval", "1")])
        for b in brokers:
            b.wait_log(r"mosquitto_kafka: inbound: consuming [1-9]\d* partition", 30)
        got = collections.defaultdict(list)

        def keep(client, userdata, msg):
            got[client._client_id.decode()].append((msg.topic, msg.payload, msg.qos))
        subs = [harness.Client(h.ws_port, f"{tag}-sub{i}", V5 if i % 2 else V311,
                               websockets=True, on_message=keep) for i in range(4)]
        for s in subs:
            s.subscribe("fleet/#", qos=1)
        at = where(brokers, [s.client_id for s in subs])
        assert len(set(at.values())) == 2, f"roundrobin should use both brokers: {at}"
        keys, per_key = [f"k{i}" for i in range(8)], 50
        p = ck.Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True,
                         "linger.ms": 5, "log_level": 3})
        partition_of = {}

        def delivered(err, msg):
            assert err is None, err
            partition_of[msg.key().decode()] = msg.partition()
        for n in range(per_key):
            for k in keys:
                p.produce(topic, key=k.encode(), value=f"{k}:{n}".encode(), on_delivery=delivered)
                p.poll(0)
        assert p.flush(30) == 0
        total = per_key * len(keys)
        try:
            harness.wait_for(lambda: all(len(got[s.client_id]) >= total for s in subs), 60,
                             what=f"{total} records at each WebSockets subscriber")
            time.sleep(0.5)  # a duplicate would come now
        finally:
            for s in subs:
                s.close()
        for s in subs:
            mine = got[s.client_id]
            assert len(mine) == total, f"{s.client_id}: {len(mine)} of {total}"
            for k in keys:
                want = [(f"fleet/{k}/p{partition_of[k]}", f"{k}:{n}".encode(), 1)
                        for n in range(per_key)]
                assert [m for m in mine if m[1].startswith(f"{k}:".encode())] == want, \
                    f"{s.client_id}: key {k} not every record once in order"
        want = {"inbound/consumed": total, "inbound/published": total, "inbound/skipped": 0}
        sys_subs = [harness.SysCounters(b.port) for b in brokers]
        counters = [c.wait_for(want, 15) for c in sys_subs]
        for c in sys_subs:
            c.close()
        print(f"4 WebSockets subscribers ({dict(collections.Counter(at.values()))} per broker): "
              f"{total} records each, in order per key; $SYS per broker {counters}")
        assert counters == [want, want], counters
        recs = harness.read_topic(kafka.bootstrap, outbound, 0, timeout=3, grace=2)
        looped = [r for r in recs if r.value.startswith(b"k")]
        assert not looped, f"{len(looped)} inbound records went back to Kafka"
        no_server_down(h)
