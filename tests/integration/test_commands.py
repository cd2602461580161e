"""
test_commands.py - the command path on one broker (docs/commands.md): Kafka command records
consumed by the plugin and published to the one MQTT client each targets.

  delivery      a v5 and a v3.1.1 device each get exactly their commands (key = client id)
                on the expanded topic at commands_qos; the v5 one with the properties the
                headers ask for and commands_expiry's Message Expiry Interval; a null value
                is an empty payload; commands_target header:<name>; a '#' subscriber sees
                none of them;
  broadcast     a command for a device not here (never connected, or an offline persistent
                session) is skipped and counted, and delivered to nobody;
  loops         with a `#` route, commands delivered to a device never reach Kafka again,
                only what the device publishes does;
  targeted      presence records (up, connected, tombstone, down; none for a refused CONNECT,
                no spurious tombstone on a takeover or a persistent session's return),
                returns with mqk.hops + 1, dead letters with mqk.reason;
  auth          allow_anonymous false + password_file: the wake connection still connects;
                the documented caveat (usernames refused with neither password_file nor
                auth plugin, commands on) and its control (commands off);
  offsets       what was delivered before a clean stop is not delivered again, what was
                produced while the broker was down is;
  per_listener  per_listener_settings true: the "has not run the plugin's tick" error;
  wake          commands_wake off still delivers (slower); auto logs its connection; the
                command -> device latency of both is printed (information, not asserted).

Kafka is the session's (conftest.py): one for this file.
"""

import json
import random
import re
import threading
import time

import confluent_kafka as ck
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import harness
from harness import HDR, V311, V5

PRESENCE = {k[len("MQK_PRESENCE_"):]: v for k, v in harness.read_header_macros().items()
            if k.startswith("MQK_PRESENCE_")}
CONSUMING = r"mosquitto_kafka: commands: consuming \S+ partitions \[\d"
WAKE_LINE = r"mosquitto_kafka: commands: wake connection to \S+ port (\d+) as (mqk-wake-\w+)"
NO_TICK = r"mosquitto_kafka: commands: mosquitto has not run the plugin's tick"
# v5 CONNACK "Not authorized" and v3.1.1 "not authorised".
REFUSED = {V5: 135, V311: 5}


# ---- helpers ------------------------------------------------------------------------------

class Received:
    __slots__ = ("at", "topic", "payload", "qos", "props")

    def __init__(self, msg):
        self.at = time.monotonic()
        self.topic = msg.topic
        self.payload = msg.payload
        self.qos = msg.qos
        self.props = getattr(msg, "properties", None)


class Device:
    """
    A paho MQTT client that keeps every PUBLISH it receives. clean=False makes a persistent
    session (v3.1.1 clean_session false, v5 clean_start false + session expiry 3600 s).
    expect_rc is the CONNACK code wanted (0; REFUSED[protocol] for a refused CONNECT). A
    device whose connection is taken over must not come back by itself during the test:
    paho's reconnect waits 30 s.
    """

    def __init__(self, port, client_id=None, protocol=V5, username=None, password=None,
                 clean=True, subscribe=None, expect_rc=0, timeout=10.0):
        self.client_id = client_id or harness.unique("dev")
        self.protocol = protocol
        self.got = []
        kwargs = {"client_id": self.client_id, "protocol": protocol}
        if protocol != V5:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(**kwargs)
        self.c.reconnect_delay_set(30, 30)
        if username is not None:
            self.c.username_pw_set(username, password)
        self.c.on_message = lambda client, userdata, msg: self.got.append(Received(msg))
        self._connack = threading.Event()
        self.rc = None
        self.c.on_connect = self._on_connect
        self.dropped = threading.Event()  # the broker closed the connection
        self.c.on_disconnect = lambda *a, **k: self.dropped.set()
        connect_kw = {}
        if protocol == V5:
            connect_kw["clean_start"] = clean
            if not clean:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = 3600
                connect_kw["properties"] = props
        self.c.connect("127.0.0.1", port, keepalive=60, **connect_kw)
        self.c.loop_start()
        if not self._connack.wait(timeout * harness.SLOW):
            self.c.loop_stop()
            raise harness.HarnessError(f"{self.client_id}: no CONNACK within {timeout} s")
        if self.rc != 0:
            self.c.loop_stop()
        if self.rc != expect_rc:
            raise AssertionError(f"{self.client_id}: CONNACK {self.rc}, expected {expect_rc}")
        if subscribe is not None and self.rc == 0:
            done = threading.Event()
            self.c.on_subscribe = lambda *a, **k: done.set()
            self.c.subscribe(subscribe, 2)
            if not done.wait(timeout * harness.SLOW):
                raise harness.HarnessError(f"{self.client_id}: no SUBACK for {subscribe!r}")

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        self.rc = rc if isinstance(rc, int) else rc.value
        self._connack.set()

    def payloads(self):
        return [r.payload for r in self.got]

    def wait(self, n, timeout=10.0):
        harness.wait_for(lambda: len(self.got) >= n, timeout * harness.SLOW,
                         what=f"{n} commands at {self.client_id} (has {self.payloads()})")

    def publish(self, topic, payload, properties=None):
        info = self.c.publish(topic, payload, qos=1, properties=properties)
        harness.wait_published([info], 10)

    def close(self):
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()


class Commands:
    """A controller's producer of command records."""

    def __init__(self, bootstrap):
        self.p = ck.Producer({"bootstrap.servers": bootstrap, "linger.ms": 0,
                              "enable.idempotence": True, "log_level": 3})

    def send(self, topic, key, value, headers=()):
        """Produces one record and waits for Kafka's acknowledgement; returns the time
        (monotonic) of the acknowledgement."""
        done = []
        self.p.produce(topic, key=key, value=value, headers=list(headers),
                       on_delivery=lambda err, msg: done.append((err, time.monotonic())))
        left = self.p.flush(30)
        assert left == 0 and done and done[0][0] is None, f"producing to {topic}: {done}"
        return done[0][1]


def command_broker(start_broker, kafka, topic, options=(), extra=(), broker_id=None,
                   name="mosquitto", wait_consuming=True, **kw):
    """A mosquitto whose plugin consumes command topic (stats every second). Waits until its
    consumer has its partitions. Its new group starts at the beginning of the topic (each
    test's topic is its own): at the default end ("latest") the consumer logs its
    partitions before librdkafka has looked the end up, and a command produced in between
    would be passed over (seen under load)."""
    broker_id = broker_id or harness.unique("cb")
    if not any(k == "commands_kafka.auto.offset.reset" for k, _ in options):
        options = [*options, ("commands_kafka.auto.offset.reset", "earliest")]
    b = start_broker([("bootstrap_servers", kafka.bootstrap), ("broker_id", broker_id),
                      ("commands_topic", topic), ("stats_interval", "1"), *options],
                     extra=["set_tcp_nodelay true", *extra], name=name, **kw)
    b.broker_id = broker_id
    if wait_consuming:
        b.wait_log(CONSUMING, 30)
    return b


def shutdown_counters(broker):
    """The counters of the plugin's shutdown line "commands: consumed N, delivered N, ..."."""
    m = re.search(r"mosquitto_kafka: commands: (consumed \d+.*)$", broker.log(), re.M)
    assert m, f"no commands shutdown line in the log of {broker.name}:\n{broker.log()[-3000:]}"
    return {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", m.group(1))}


def stop_clean(broker):
    rc = broker.stop()
    assert rc == 0, f"{broker.name} exited {rc} after SIGTERM"
    return shutdown_counters(broker)


def settle(seconds=0.5):
    """A client counts as connected from the TICK after its CONNECT (at most 100 ms when
    idle); commands produced before that are "not here"."""
    time.sleep(seconds * harness.SLOW)


def props_of(r):
    p = r.props
    return {name: getattr(p, name) for name in
            ("ResponseTopic", "CorrelationData", "ContentType", "PayloadFormatIndicator",
             "UserProperty", "MessageExpiryInterval") if p is not None and hasattr(p, name)}


# ---- 1. delivery ------------------------------------------------------------------------

def test_delivery_v5_and_v311(kafka, start_broker):
    topic = harness.unique("cmds")
    kafka.create_topic(topic)
    b = command_broker(start_broker, kafka, topic,
                       [("commands_qos", "2"), ("commands_expiry", "300")])
    stats = harness.SysCounters(b.port)
    d5 = Device(b.port, harness.unique("v5dev"), V5)
    d3 = Device(b.port, harness.unique("v3dev"), V311)
    # A subscriber of everything, and one subscribed to the very command topics.
    spy = Device(b.port, harness.unique("spy"), V311, subscribe="#")
    spy2 = Device(b.port, harness.unique("spy"), V5, subscribe="devices/+/commands")
    settle()
    cmds = Commands(kafka.bootstrap)
    answers = f"devices/{d5.client_id}/answers"
    cmds.send(topic, d5.client_id, b"set-rate 10", [
        (HDR.RESPONSE_TOPIC, answers),
        (HDR.CORRELATION_DATA, b"\x00\x01corr\xff"),
        (HDR.CONTENT_TYPE, "text/plain"),
        (HDR.PAYLOAD_FORMAT, "1"),
        (HDR.USER_PREFIX + "unit", "hz"),
        (HDR.USER_PREFIX + "origin", "test"),
        ("x-not-for-the-device", "ignored"),
    ])
    cmds.send(topic, d5.client_id, None)  # a null value: an empty payload
    cmds.send(topic, d5.client_id, b"\x00\xffbinary", [(HDR.PAYLOAD_FORMAT, "0")])
    cmds.send(topic, d3.client_id, b"v3-one", [(HDR.RESPONSE_TOPIC, "x/y"),
                                               (HDR.USER_PREFIX + "k", "v")])
    cmds.send(topic, d3.client_id, b"v3-two")
    d5.wait(3)
    d3.wait(2)
    expect = {"commands/consumed": 5, "commands/delivered": 5, "commands/skipped": 0,
              "commands/invalid": 0}
    seen = stats.wait_for(expect)
    time.sleep(0.5)  # anything extra would arrive now
    print(f"v5 device got {d5.payloads()}, v3.1.1 device got {d3.payloads()}, "
          f"spies {len(spy.got)} + {len(spy2.got)}; $SYS {seen}")
    assert seen == expect
    assert d5.payloads() == [b"set-rate 10", b"", b"\x00\xffbinary"]
    assert d3.payloads() == [b"v3-one", b"v3-two"]
    for dev in (d5, d3):
        assert {r.topic for r in dev.got} == {f"devices/{dev.client_id}/commands"}
        assert [r.qos for r in dev.got] == [2] * len(dev.got), "QoS is commands_qos"
    p0, p1, p2 = (props_of(r) for r in d5.got)
    print(f"v5 properties: {p0}")
    expiry = p0.pop("MessageExpiryInterval", None)
    assert expiry is not None and 290 <= expiry <= 300, f"MessageExpiryInterval {expiry}"
    assert p0 == {"ResponseTopic": answers, "CorrelationData": b"\x00\x01corr\xff",
                  "ContentType": "text/plain", "PayloadFormatIndicator": 1,
                  "UserProperty": [("unit", "hz"), ("origin", "test")]}
    assert set(p1) == {"MessageExpiryInterval"}, p1
    assert p2.get("PayloadFormatIndicator") == 0 and "ResponseTopic" not in p2, p2
    # A v3.1.1 device has no properties to get.
    assert all(not props_of(r) for r in d3.got)
    assert spy.got == [] and spy2.got == [], \
        f"other subscribers saw commands: {[(r.topic, r.payload) for r in spy.got + spy2.got]}"
    for c in (stats.client, d5, d3, spy, spy2):
        c.close()
    counters = stop_clean(b)
    print(f"shutdown: {counters}")
    assert (counters["consumed"], counters["delivered"], counters["skipped"]) == (5, 5, 0)


def test_target_header_and_topic_template(kafka, start_broker):
    """commands_target header:<name>: the key means nothing; commands_mqtt_topic with
    {broker} and {clientid}. A record without the header has no target (broadcast: counted
    invalid and logged, not dead-lettered)."""
    topic = harness.unique("cmds")
    kafka.create_topic(topic)
    b = command_broker(start_broker, kafka, topic,
                       [("commands_target", "header:device"),
                        ("commands_mqtt_topic", "cmd/{broker}/{clientid}/in")])
    dev = Device(b.port, harness.unique("hdev"), V5)
    decoy = Device(b.port, harness.unique("decoy"), V311)  # its id is the key
    settle()
    cmds = Commands(kafka.bootstrap)
    cmds.send(topic, decoy.client_id, b"for-dev", [("device", dev.client_id)])
    cmds.send(topic, dev.client_id, b"no-header")
    dev.wait(1)
    b.wait_log(r"commands: a command for '' cannot be delivered: no target", 10)
    time.sleep(0.5)
    print(f"device got {[(r.topic, r.payload) for r in dev.got]}, decoy {decoy.payloads()}")
    assert [(r.topic, r.payload) for r in dev.got] == \
        [(f"cmd/{b.broker_id}/{dev.client_id}/in", b"for-dev")]
    assert decoy.got == []
    dev.close()
    decoy.close()
    counters = stop_clean(b)
    print(f"shutdown: {counters}")
    assert (counters["consumed"], counters["delivered"], counters["invalid"]) == (2, 1, 1)


# ---- 2. broadcast: the device is not here ----------------------------------------------------

def test_broadcast_device_not_here(kafka, start_broker):
    topic = harness.unique("cmds")
    kafka.create_topic(topic)
    b = command_broker(start_broker, kafka, topic)
    stats = harness.SysCounters(b.port)
    spy = Device(b.port, harness.unique("spy"), V311, subscribe="#")
    present = Device(b.port, harness.unique("here"), V5)
    # An offline persistent session: mosquitto would queue QoS 1 commands for it (and
    # deliver them at its return while another broker delivered them too).
    offline_id = harness.unique("offline")
    Device(b.port, offline_id, V311, clean=False).close()
    absent_id = harness.unique("absent")
    settle()
    cmds = Commands(kafka.bootstrap)
    for i in range(4):
        cmds.send(topic, absent_id, b"absent-%d" % i)
    for i in range(3):
        cmds.send(topic, offline_id, b"offline-%d" % i)
    cmds.send(topic, present.client_id, b"here")
    present.wait(1)
    seen = stats.wait_for({"commands/consumed": 8, "commands/skipped": 7,
                           "commands/delivered": 1})
    print(f"$SYS after 4 commands for a device never here, 3 for an offline session, 1 for "
          f"a connected device: {seen}")
    assert seen == {"commands/consumed": 8, "commands/skipped": 7, "commands/delivered": 1}
    # Both come (back) now: nothing was kept for them.
    back = Device(b.port, offline_id, V311, clean=False)
    late = Device(b.port, absent_id, V5)
    time.sleep(1.0)
    print(f"the offline session back: {back.payloads()}, the absent device: {late.payloads()},"
          f" '#' subscriber: {len(spy.got)}")
    assert back.got == [] and late.got == [] and spy.got == []
    assert present.payloads() == [b"here"]
    for c in (stats.client, spy, present, back, late):
        c.close()
    counters = stop_clean(b)
    print(f"shutdown: {counters}")
    assert (counters["consumed"], counters["delivered"], counters["skipped"]) == (8, 1, 7)


# ---- 3. loops ---------------------------------------------------------------------------------

def test_commands_not_forwarded_by_hash_route(kafka, start_broker):
    """With `# -> fwd` every PUBLISH of a client reaches Kafka; the commands the plugin
    publishes (mosquitto_broker_publish) must not: mosquitto 2.0.11 raises no MESSAGE for
    them. A mosquitto that did would fail here (a command loop through Kafka)."""
    topic = harness.unique("cmds")
    fwd = harness.unique("fwd")
    kafka.create_topics([topic, fwd])
    b = command_broker(start_broker, kafka, topic, [("route_all", f"# -> {fwd}")])
    stats = harness.SysCounters(b.port)
    # One device subscribed to its command topic, one not: commands reach both.
    dev = Device(b.port, harness.unique("loopdev"), V5)
    sub_id = harness.unique("loopsub")
    dev_sub = Device(b.port, sub_id, V5, subscribe=f"devices/{sub_id}/commands")
    settle()
    cmds = Commands(kafka.bootstrap)
    n = 5
    for d in (dev, dev_sub):
        for i in range(n):
            cmds.send(topic, d.client_id, b"cmd-%d" % i,
                      [(HDR.RESPONSE_TOPIC, f"devices/{d.client_id}/answers"),
                       (HDR.CORRELATION_DATA, b"corr-%d" % i)])
    for d in (dev, dev_sub):
        d.wait(n)
        # The device answers each command, as a real one would.
        for r in d.got:
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = r.props.CorrelationData
            d.publish(r.props.ResponseTopic, b"ok:" + r.payload, props)
    seen = stats.wait_for({"commands/delivered": 2 * n, "received": 2 * n,
                           "routes/all/matched": 2 * n})
    recs = harness.read_topic(kafka.bootstrap, fwd, 2 * n, timeout=30, grace=2)
    topics = sorted({r.header_str(HDR.TOPIC) for r in recs})
    print(f"{2 * n} commands delivered, {2 * n} answers published; $SYS {seen}; {len(recs)} "
          f"records in the '#' route's topic, MQTT topics {topics}")
    assert seen == {"commands/delivered": 2 * n, "received": 2 * n,
                    "routes/all/matched": 2 * n}
    assert topics == sorted(f"devices/{d.client_id}/answers" for d in (dev, dev_sub)), \
        "a command the plugin published reached Kafka through the '#' route"
    assert len(recs) == 2 * n
    assert sorted(r.header(HDR.CORRELATION_DATA) for r in recs) == \
        sorted(b"corr-%d" % i for i in range(n) for _ in (dev, dev_sub))
    for c in (stats.client, dev, dev_sub):
        c.close()
    stop_clean(b)


# ---- 4. targeted mode ---------------------------------------------------------------------------

def presence_by_key(records):
    """{key: [value (dict) or None for a tombstone, in offset order]}."""
    out = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out.setdefault(r.key.decode(), []).append(
            None if r.value is None else json.loads(r.value))
    return out


def test_targeted_presence_returns_and_dead_letters(kafka, start_broker):
    uid = harness.unique("tg")
    bid = harness.unique("tb")
    cmd_topic, presence = f"{uid}.{bid}", f"{uid}-presence"
    ret, dead = f"{uid}-return", f"{uid}-dead"
    kafka.create_topics([cmd_topic, ret, dead])
    kafka.create_topics([presence], config={"cleanup.policy": "compact"})
    pw = harness.passwd_file({"alice": "secret"})
    started_ms = time.time() * 1000
    b = command_broker(start_broker, kafka, f"{uid}.{{broker}}", [
        ("commands_mode", "targeted"), ("presence_topic", presence),
        ("commands_return_topic", ret), ("commands_dead_letter_topic", dead),
        ("commands_max_hops", "3")], extra=[f"password_file {pw}"], broker_id=bid)
    assert re.search(r"commands: targeted mode, from Kafka topic " + re.escape(cmd_topic),
                     b.log()), "the expanded command topic is not in the start-up line"

    # The broker's "up".
    recs = harness.read_topic(kafka.bootstrap, presence, 1, timeout=20, grace=0.2)
    by_key = presence_by_key(recs)
    assert list(by_key) == [bid], by_key
    up = by_key[bid][0]
    print(f"up record: {up}")
    assert set(up) == {"broker", "state", "boot", "timestamp"}
    assert (up["broker"], up["state"]) == (bid, PRESENCE["UP"])
    now_ms = time.time() * 1000
    assert started_ms - 10000 <= up["boot"] / 1000 <= up["timestamp"] <= now_ms + 1000, up

    # Clients: a takeover, a persistent session that leaves and returns, a refused CONNECT,
    # an authenticated one, one whose id makes a bad MQTT topic.
    a_id, p_id, r_id, g_id = (harness.unique(p) for p in ("take", "pers", "refused", "auth"))
    bad_id = harness.unique("bad+id")
    a1 = Device(b.port, a_id, V5)
    settle(0.3)
    a2 = Device(b.port, a_id, V5)  # takes the connection over
    assert a1.dropped.wait(10), "the second connection did not take the first one over"
    Device(b.port, p_id, V311, clean=False).close()
    settle(0.3)
    p2 = Device(b.port, p_id, V311, clean=False)
    Device(b.port, r_id, V311, username="alice", password="wrong", expect_rc=REFUSED[V311])
    g = Device(b.port, g_id, V5, username="alice", password="secret")
    bad = Device(b.port, bad_id, V311)
    # up + a + p, tombstone, p + g + bad = 7
    recs = harness.read_topic(kafka.bootstrap, presence, 7, timeout=20, grace=1.5)
    by_key = presence_by_key(recs)
    states = {k: [v and v["state"] for v in vs] for k, vs in by_key.items()}
    print(f"presence with the clients connected: {states}")
    conn = PRESENCE["CONNECTED"]
    assert states == {bid: [PRESENCE["UP"]], f"{bid}/{a_id}": [conn],
                      f"{bid}/{p_id}": [conn, None, conn], f"{bid}/{g_id}": [conn],
                      f"{bid}/{bad_id}": [conn]}, \
        "a takeover or a returning session must not look like a departure; a refused " \
        "CONNECT is no arrival"
    for key, values in by_key.items():
        for v in values:
            if v is not None and key != bid:
                assert set(v) == {"broker", "client_id", "state", "boot", "timestamp"}
                assert (v["broker"], v["client_id"], v["boot"]) == \
                    (bid, key.split("/", 1)[1], up["boot"]), v

    # Commands.
    cmds = Commands(kafka.bootstrap)
    ghost = harness.unique("ghost")
    cmds.send(cmd_topic, a_id, b"hello-a", [(HDR.USER_PREFIX + "n", "1")])
    cmds.send(cmd_topic, ghost, b"for-ghost", [(HDR.CORRELATION_DATA, b"g1"),
                                               ("x-trace", b"t1")])
    cmds.send(cmd_topic, ghost, b"hops-2", [(HDR.HOPS, "2")])
    cmds.send(cmd_topic, ghost, b"hops-3", [(HDR.HOPS, "3"), ("x-trace", b"t3")])
    cmds.send(cmd_topic, None, b"no-key", [("x-trace", b"t4")])
    cmds.send(cmd_topic, bad_id, b"bad-topic")
    cmds.send(cmd_topic, a_id, b"bad-format", [(HDR.PAYLOAD_FORMAT, "7")])
    a2.wait(1)
    returned = harness.read_topic(kafka.bootstrap, ret, 2, timeout=20, grace=0.5)
    deads = harness.read_topic(kafka.bootstrap, dead, 4, timeout=20, grace=1.0)
    print("returned: " + "; ".join(f"{r.key} {r.value} {r.headers}" for r in returned))
    print("dead letters: " + "; ".join(f"{r.key} {r.value} {r.headers}" for r in deads))
    assert a2.payloads() == [b"hello-a"] and a1.got == [] and bad.got == []
    returned = sorted(returned, key=lambda r: r.value)
    assert [(r.key, r.value) for r in returned] == \
        [(ghost.encode(), b"for-ghost"), (ghost.encode(), b"hops-2")]
    assert returned[0].headers == [(HDR.CORRELATION_DATA, b"g1"), ("x-trace", b"t1"),
                                   (HDR.HOPS, b"1"), (HDR.BY, bid.encode())], \
        "a return keeps the key, value and headers, and adds mqk.hops and mqk.broker"
    assert (returned[1].header(HDR.HOPS), returned[1].header(HDR.BY)) == (b"3", bid.encode())
    why = {r.value: (r.key, r.header_str(HDR.REASON), r.header_str(HDR.BY)) for r in deads}
    assert why == {b"hops-3": (ghost.encode(), "too many hops", bid),
                   b"no-key": (None, "no target", bid),
                   b"bad-topic": (bad_id.encode(), "bad topic", bid),
                   b"bad-format": (a_id.encode(), "bad property", bid)}, why
    assert [r for r in deads if r.value == b"hops-3"][0].header("x-trace") == b"t3"
    assert [r for r in deads if r.value == b"no-key"][0].header("x-trace") == b"t4"

    # A clean disconnect: a tombstone. A clean stop: "down", and no tombstones for the
    # clients still connected (mosquitto raises no DISCONNECT at shutdown).
    g.close()
    recs = harness.read_topic(kafka.bootstrap, presence, 8, timeout=20, grace=0.5)
    assert [v and v["state"] for v in presence_by_key(recs)[f"{bid}/{g_id}"]] == [conn, None], \
        "a clean disconnect must leave a tombstone"
    a1.c.loop_stop()  # taken over: not connected
    counters = stop_clean(b)  # a2, p2 and bad still connected
    recs = harness.read_topic(kafka.bootstrap, presence, 9, timeout=20, grace=0.5)
    by_key = presence_by_key(recs)
    print(f"shutdown: {counters}; the broker's presence: {by_key[bid]}")
    down = by_key[bid][-1]
    assert (down["state"], down["boot"]) == (PRESENCE["DOWN"], up["boot"]), down
    assert [v and v["state"] for v in by_key[f"{bid}/{a_id}"]] == [conn]
    assert [v and v["state"] for v in by_key[f"{bid}/{p_id}"]] == [conn, None, conn]
    for c in (a2, p2, bad):
        c.c.loop_stop()
    assert {k: counters[k] for k in ("consumed", "delivered", "skipped", "returned",
                                     "dead_lettered", "invalid", "presence", "lost")} == \
        {"consumed": 7, "delivered": 1, "skipped": 0, "returned": 2, "dead_lettered": 4,
         "invalid": 4, "presence": 9, "lost": 0}, counters


# ---- 5. authentication ------------------------------------------------------------------------

def test_auth_password_file_and_wake(kafka, start_broker):
    """allow_anonymous false + password_file: the plugin's wake connection is accepted (it
    answers BASIC_AUTH for itself), a device with valid credentials gets its commands, one
    without or with a wrong password is refused."""
    topic = harness.unique("cmds")
    kafka.create_topic(topic)
    pw = harness.passwd_file({"alice": "secret", "bob": "builder"})
    b = command_broker(start_broker, kafka, topic,
                       extra=["allow_anonymous false", f"password_file {pw}"])
    m = b.wait_log(WAKE_LINE, 15)
    assert int(m.group(1)) == b.port, m.group(0)
    dev = Device(b.port, harness.unique("authdev"), V5, username="alice", password="secret")
    Device(b.port, harness.unique("anon"), V5, expect_rc=REFUSED[V5])
    Device(b.port, harness.unique("wrongpw"), V311, username="bob", password="x",
           expect_rc=REFUSED[V311])
    settle()
    Commands(kafka.bootstrap).send(topic, dev.client_id, b"authed")
    dev.wait(1)
    print(f"{m.group(0)}; the authenticated device got {dev.payloads()}")
    assert dev.payloads() == [b"authed"]
    assert re.search(r"New client connected from 127\.0\.0\.1:\d+ as " + m.group(2), b.log())
    dev.close()
    counters = stop_clean(b)
    assert (counters["delivered"], counters["wakes"] >= 1) == (1, True), counters


def test_auth_caveat_usernames_without_password_file(kafka, start_broker):
    """docs/commands.md, the authentication caveat: commands on (the plugin registers
    BASIC_AUTH and defers), allow_anonymous true, neither password_file nor auth plugin:
    mosquitto 2.0.11 refuses clients that give a username. Commands off: accepted."""
    topic = harness.unique("cmds")
    kafka.create_topic(topic)
    on = command_broker(start_broker, kafka, topic, name="mosquitto-commands-on")
    assert re.search(r"mosquitto_kafka: commands: the plugin sees CONNECTs through "
                     r"BASIC_AUTH .* refuses clients that give a username", on.log())
    Device(on.port, harness.unique("u3"), V311, username="alice", password="pw",
           expect_rc=REFUSED[V311])
    Device(on.port, harness.unique("u5"), V5, username="alice", expect_rc=REFUSED[V5])
    anon = Device(on.port, harness.unique("anon"), V311)
    off = start_broker([("bootstrap_servers", kafka.bootstrap),
                        ("broker_id", harness.unique("nocmd")),
                        ("route_x", f"x/# -> {topic}")], name="mosquitto-commands-off")
    u3 = Device(off.port, harness.unique("u3"), V311, username="alice", password="pw")
    u5 = Device(off.port, harness.unique("u5"), V5, username="alice")
    print("commands on: usernamed v3.1.1/v5 clients refused (5/135), anonymous accepted; "
          "commands off: usernamed clients accepted")
    for c in (anon, u3, u5):
        c.close()
    stop_clean(on)
    assert off.stop() == 0


# ---- 6. offsets ---------------------------------------------------------------------------------

def test_offsets_committed_at_clean_stop(kafka, start_broker):
    topic = harness.unique("cmds")
    kafka.create_topic(topic)
    bid = harness.unique("ob")
    b1 = command_broker(start_broker, kafka, topic, broker_id=bid, name="mosquitto-1")
    dev_id = harness.unique("odev")
    dev = Device(b1.port, dev_id, V5)
    settle()
    cmds = Commands(kafka.bootstrap)
    for i in range(3):
        cmds.send(topic, dev_id, b"old-%d" % i)
    dev.wait(3)
    dev.close()
    first = stop_clean(b1)
    for i in range(3):
        cmds.send(topic, dev_id, b"new-%d" % i)
    # Same broker_id, so the same group. The device must be connected before the
    # consumer's first fetch returns, or the 3 are "not here": that fetch waits up to
    # 2 s for 1 MB that never comes (the device connects within milliseconds of the
    # listener opening).
    b2 = command_broker(start_broker, kafka, topic, broker_id=bid, name="mosquitto-2",
                        wait_consuming=False,
                        options=[("commands_kafka.fetch.min.bytes", "1000000"),
                                 ("commands_kafka.fetch.wait.max.ms", "2000")])
    dev = Device(b2.port, dev_id, V5)
    dev.wait(3, timeout=20)
    time.sleep(1.0)
    dev.close()
    second = stop_clean(b2)
    print(f"first run: {first}; while down: 3 produced; second run got {dev.payloads()}, "
          f"{second}")
    assert first["consumed"] == 3 and first["delivered"] == 3
    assert dev.payloads() == [b"new-0", b"new-1", b"new-2"]
    assert (second["consumed"], second["delivered"]) == (3, 3)


# ---- 7. per_listener_settings true --------------------------------------------------------------

def test_per_listener_settings(kafka, start_broker):
    """per_listener_settings true. mosquitto before 2.0.15 (Debian 12's 2.0.11) never
    raises TICK in that mode: commands are not delivered, and the plugin logs an error
    once a queued command saw no TICK for 5 s (docs/commands.md), within ~10 s of the
    command reaching the plugin. From 2.0.15 (Debian 13's 2.0.21) the TICK runs: the
    command is delivered, and there is no such line (docs/mosquitto-2.0.21.md)."""
    topic = harness.unique("cmds")
    kafka.create_topic(topic)
    port = harness.free_port()
    # per_listener_settings must come before the listener; the plugin line (last) then
    # belongs to that listener. Without a TICK the "consuming" line cannot be waited for:
    # the consumer reads from the beginning instead, so the command is read whenever the
    # group is ready.
    b = command_broker(start_broker, kafka, topic, listen=False, wait=False,
                       wait_consuming=False,
                       options=[("commands_kafka.auto.offset.reset", "earliest")],
                       extra=["per_listener_settings true", f"listener {port} 127.0.0.1",
                              "allow_anonymous true"])
    b.port, b.listen = port, True  # its plain listener is the one of the extra lines
    b.wait_ready(10)
    dev = Device(port, harness.unique("pldev"), V5)
    settle()
    Commands(kafka.bootstrap).send(topic, dev.client_id, b"pl-0")
    produced = time.monotonic()
    if harness.MOSQUITTO_VERSION >= (2, 0, 15):
        dev.wait(1, 30)
        dev.close()
        counters = stop_clean(b)
        print(f"mosquitto {harness.MOSQUITTO_VERSION}, per_listener_settings true: the command "
              f"delivered {time.monotonic() - produced:.2f} s after Kafka took it; {counters}")
        assert dev.payloads() == [b"pl-0"]
        assert counters["delivered"] == 1, counters
        assert not re.search(NO_TICK, b.log()), b.log()[-2000:]
        return
    try:
        found = b.wait_log(NO_TICK, 12)
    except harness.HarnessError:
        found = None
    waited = time.monotonic() - produced
    dev.close()
    assert dev.got == [], "a command was delivered without a TICK?"
    counters = stop_clean(b)
    at_stop = re.search(NO_TICK + r".*$", b.log(), re.M)
    print(f"per_listener_settings true: line while running: "
          f"{found.group(0) if found else None} (waited {waited:.1f} s); "
          f"in the log after the stop: {at_stop.group(0) if at_stop else None}; {counters}")
    assert counters["consumed"] == 1 and counters["delivered"] == 0, counters
    # The commands thread's lines wait in a mailbox that mosquitto's thread empties; with no
    # TICK in this mode, the plugin gets there through BASIC_AUTH (it reconnects its wake
    # connection to raise one), so the error is in the log while mosquitto runs.
    assert found, (f"no '{NO_TICK}' line within {waited:.1f} s of a queued command under "
                   f"per_listener_settings true; after the stop the log "
                   f"{'has it' if at_stop else 'still lacks it'}")


# ---- 8. wake ----------------------------------------------------------------------------------

def test_wake_with_max_keepalive(kafka, start_broker):
    """max_keepalive 10: mosquitto 2.0.12 and later refuse a v3.1.1 CONNECT with keepalive 0
    then, and give a v5 client the limit as its Server Keep Alive. The wake connection is
    v5, connects again with a keepalive of 9 (mosquitto 2.0.21 drops clients whose
    keepalive is max_keepalive at random) and pings at half of it when idle: after 17 s
    (more than the 15 s after which mosquitto drops a silent client) it is the same
    connection, and commands are still delivered at once."""
    topic = harness.unique("cmds")
    kafka.create_topic(topic)
    b = command_broker(start_broker, kafka, topic, extra=["max_keepalive 10"],
                       name="mosquitto-keepalive")
    first = b.wait_log(WAKE_LINE + r".*$", 15)
    time.sleep(17 * harness.SLOW)
    dev = Device(b.port, harness.unique("kadev"), V5)
    settle()
    lat = latencies(Commands(kafka.bootstrap), topic, dev, 10)
    dev.close()
    lines = re.findall(WAKE_LINE, b.log())
    timeouts = re.findall(r"Client mqk-wake-\w+ has exceeded timeout", b.log())
    counters = stop_clean(b)
    print(f"mosquitto {harness.MOSQUITTO_VERSION}, max_keepalive 10: {first.group(0)}; after "
          f"17 s {len(lines)} wake connection(s), {len(timeouts)} keepalive timeouts; "
          f"10 commands: p50 {lat[5]:.2f} ms, max {lat[-1]:.2f} ms; {counters}")
    # Both Debian builds answer with Server Keep Alive 10 (Debian patched 2.0.11).
    assert "(keepalive 9 s: mosquitto's max_keepalive is 10)" in first.group(0), first.group(0)
    wake_log = "\n".join(line for line in b.log().splitlines()
                          if "mqk-wake-" in line or "wake connection" in line)
    assert len(lines) == 1 and not timeouts, (
        f"{len(lines)} wake connections, {len(timeouts)} timeouts; the wake client's lines:\n"
        f"{wake_log[-6000:]}")
    assert counters["delivered"] == 10 and counters["wakes"] >= 10, counters


def test_heap_figure_after_commands(kafka, start_broker):
    """mosquitto_broker_publish_copy allocates its copy with calloc and the broker frees it
    with its counting free: $SYS/broker/heap/current sank by every command's payload (on
    2.0.11 below zero, where it wraps around). The plugin copies with mosquitto_malloc."""
    topic = harness.unique("cmds")
    kafka.create_topic(topic)
    b = command_broker(start_broker, kafka, topic, extra=["sys_interval 1"],
                       name="mosquitto-heap")
    dev = Device(b.port, harness.unique("hdev"), V5)
    settle()
    before = harness.heap_current(b.port)
    n = 2000
    p = ck.Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 5, "log_level": 3})
    for i in range(n):
        p.produce(topic, key=dev.client_id.encode(), value=b"%04d" % i + b"x" * 96)
        p.poll(0)
    assert p.flush(30) == 0
    dev.wait(n, 60)
    after = harness.heap_current(b.port)
    dev.close()
    stop_clean(b)
    print(f"{n} commands of 100 bytes delivered; $SYS/broker/heap/current {before} -> {after} "
          f"bytes ({after - before:+d})")
    assert len(dev.got) == n
    assert 0 < after < 1 << 40, f"heap/current {after}: the heap figure wrapped around"
    assert abs(after - before) < n * 100 // 2, (
        f"heap/current moved {after - before:+d} bytes over {n} commands of 100 bytes")

def latencies(cmds, topic, dev, n):
    """n commands one at a time to an idle broker, at random intervals: Kafka's
    acknowledgement -> the device's on_message, in ms, sorted."""
    out = []
    for i in range(n):
        have = len(dev.got)
        acked = cmds.send(topic, dev.client_id, b"lat-%d" % i)
        dev.wait(have + 1)
        out.append((dev.got[-1].at - acked) * 1000)
        time.sleep(random.uniform(0.02, 0.08))
    return sorted(out)


def test_wake_off_and_auto(kafka, start_broker):
    topic_off, topic_auto = harness.unique("cmds"), harness.unique("cmds")
    kafka.create_topics([topic_off, topic_auto])
    n = 50
    off = command_broker(start_broker, kafka, topic_off, [("commands_wake", "off")],
                         name="mosquitto-wake-off")
    auto = command_broker(start_broker, kafka, topic_auto, name="mosquitto-wake-auto")
    m = auto.wait_log(WAKE_LINE, 15)
    assert int(m.group(1)) == auto.port
    cmds = Commands(kafka.bootstrap)
    results = {}
    for name, b, topic in (("off", off, topic_off), ("auto", auto, topic_auto)):
        dev = Device(b.port, harness.unique("wdev"), V5)
        settle()
        lat = latencies(cmds, topic, dev, n)
        results[name] = lat
        assert dev.payloads() == [b"lat-%d" % i for i in range(n)]
        dev.close()
    for name, lat in results.items():
        print(f"commands_wake {name}: Kafka ack -> device over {n} idle commands: "
              f"p50 {lat[n // 2]:.2f} ms, p99 {lat[int(n * 0.99)]:.2f} ms, "
              f"max {lat[-1]:.2f} ms")
    assert not re.search(WAKE_LINE, off.log()), "commands_wake off made a wake connection"
    c_off, c_auto = stop_clean(off), stop_clean(auto)
    print(f"shutdown: off {c_off}; auto {c_auto}")
    assert (c_off["delivered"], c_off["wakes"]) == (n, 0)
    assert c_auto["delivered"] == n and c_auto["wakes"] >= n, c_auto
