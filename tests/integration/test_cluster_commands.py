"""
test_cluster_commands.py - commands from Kafka to devices on a cluster (docs/commands.md):
one real Kafka, three mosquittos with the plugin behind one HAProxy (roundrobin, TCP mode),
300 mqk-loadgen devices (MQTT v5, QoS 1, 1 msg/s each) through HAProxy, in each mode:

  broadcast  every broker reads the one command topic with a consumer group of its own,
             delivers what is for its own clients and skips the rest;
  targeted   mqk-router reads the controller's topic and the brokers' presence records,
             and produces each command to <prefix>.<broker>, the topic of the one broker
             that holds the device; a broker that no longer has it sends it back.

For each mode:
  a. mqk-controller sends 1,000 commands to random devices: 1,000 answered, 0 unanswered,
     0 duplicates, 0 misdelivered; the brokers' delivered counters add up to 1,000
     (broadcast: every broker consumed 1,000 and they skipped 2,000 together);
  b. a device that moves from broker A to broker B gets the commands produced after the
     move exactly once, through B (targeted: also those produced while it was between
     the two, which the router holds or A sends back);
  c. a device connected nowhere: broadcast, every broker skips its commands; targeted, the
     router holds them --hold seconds, then dead-letters them ("not connected"), and a
     device that connects within the hold gets its command;
  d. command latency (command -> device, and the round trip) idle and under ~10,000 msg/s
     of upstream load, printed as information (timings are bench/commands.py's business);
  e. the devices' side: mqk-loadgen's 300 devices received exactly the commands the
     controllers sent them.

bench/commands.py builds the same cluster with Cluster below.
"""

import collections
import os
import re
import time

import confluent_kafka as ck
import pytest

import harness
from harness import HDR, V5
from test_controller import CONTROLLER, LOADGEN

ROUTER = os.path.join(harness.BUILD_DIR, "tools", "mqk-router")
MODES = ("broadcast", "targeted")
DEVICES = 300
COMMANDS = 1000
HOLD = 3  # mqk-router --hold, seconds
# The plugin's command counters, under $SYS/broker/kafka/commands/.
COUNTERS = ("consumed", "delivered", "skipped", "returned", "dead_lettered", "invalid",
            "presence", "wakes", "lost")
# mosquitto.conf lines: set_tcp_nodelay (a command round trip is 40 ms without it); the
# harness's log_type all is two debug lines a message, 20,000 a second in part d: notices
# and above only (a log_type line after "all" starts again from none).
BROKER_EXTRA = ("set_tcp_nodelay true", "log_type none", "log_type error",
                "log_type warning", "log_type notice", "log_type information")


def percentiles(h):
    """'p50 X / p99 Y µs (n)' of a controller histogram ({count, p50, p99, ...})."""
    if not h:
        return "none"
    return f"p50 {h.get('p50')} / p99 {h.get('p99')} µs (n={h.get('count')})"


class Cluster:
    """
    Kafka topics, brokers, (HAProxy), (mqk-router) and a fleet of mqk-loadgen devices for
    one mode. Topics and names carry a tag unique to this cluster:

      <tag>.data      devices/+/data    (route data, key=clientid)
      <tag>.answers   devices/+/answers (route answers): the devices' answers
      <tag>.load      load/+/data       (route load): the upstream load of part d
      <tag>.commands  the controller's commands (targeted: the router's input, and where
                      brokers send back commands of devices that left)
      <tag>.commands.<broker id>, <tag>.presence, <tag>.dead: targeted mode's

    close() stops everything it started, and raises if a broker did not exit with 0.
    """

    def __init__(self, kafka, mode, n_brokers=3, haproxy=True, devices=DEVICES, data_rate=1.0,
                 hold=HOLD):
        if mode not in MODES:
            raise ValueError(mode)
        self.kafka = kafka
        self.mode = mode
        self.hold = hold
        self.tag = t = harness.unique("cc")
        self.data, self.answers, self.load = f"{t}.data", f"{t}.answers", f"{t}.load"
        self.commands = f"{t}.commands"
        self.broker_topic = f"{t}.commands.{{broker}}"
        self.presence, self.dead = f"{t}.presence", f"{t}.dead"
        self.broker_ids = [f"{t}-{chr(ord('a') + i)}" for i in range(n_brokers)]
        self.devices = devices
        self.device_prefix = f"{t}-ue"
        self.brokers, self.sys, self.tools = [], [], []
        self.haproxy = self.router = self.fleet = None
        self.commands_to_fleet = 0  # sent by controllers, answered or not
        self._producer = None
        try:
            self._start(haproxy, data_rate)
        except BaseException:
            self.close(check=False)
            raise

    # ---- start ----

    def _start(self, haproxy, data_rate):
        k = self.kafka
        started = time.monotonic()
        k.create_topics([self.data, self.answers, self.load, self.commands], 4)
        if self.mode == "targeted":
            k.create_topics([self.broker_topic.replace("{broker}", b) for b in self.broker_ids],
                            4)
            k.create_topics([self.presence], 4, config={"cleanup.policy": "compact"})
            k.create_topics([self.dead], 1)
        for bid in self.broker_ids:
            self.brokers.append(harness.Mosquitto(self.broker_options(bid), extra=BROKER_EXTRA,
                                                  name=f"mosquitto-{bid[-1]}"))
        # A new commands group starts at the end of the topic: wait for the assignment
        # (and the probes below, for the first fetch).
        for b in self.brokers:
            b.wait_log(r"commands: consuming \S+ partitions \[[0-9,]+\]", 60)
        self.sys = [harness.SysCounters(b.port) for b in self.brokers]
        harness.wait_for(lambda: all(f"commands/{c}" in s.values for s in self.sys
                                     for c in COUNTERS), 15,
                         what="every broker's $SYS command counters")
        if self.mode == "targeted":
            self.router = self.tool("router", [
                ROUTER, "-b", k.bootstrap, "--presence", self.presence,
                "--commands", self.commands, "--group", harness.unique("router"),
                "--broker-topic", self.broker_topic, "--hold", str(self.hold),
                "--dead-letter", self.dead, "-q"])
        if haproxy:
            self.haproxy = harness.HAProxy([b.port for b in self.brokers])
            # Every server must pass its health check before devices connect, or
            # roundrobin sends them all to those that are up.
            harness.wait_for(lambda: all(" as hc " in b.log() for b in self.brokers), 15,
                             what="HAProxy's health checks on every broker")
        self.fleet = self.tool("fleet", [
            LOADGEN, "--host", self.hosts(), "-n", str(self.devices), "--id-pattern",
            self.device_prefix + "-%05d", "-P", "5", "-Q", "1", "-r", str(data_rate),
            "-d", "3600", "--ramp-up", "2", "-q"])
        counts = harness.wait_for(self._fleet_connected, 60, interval=0.5,
                                  what=f"{self.devices} devices connected")
        # Every broker (its consumer, and in targeted mode the router's way to it) works.
        for b in self.brokers:
            self.probe(b)
        self.setup_seconds = time.monotonic() - started
        print(f"[{self.mode}] {len(self.brokers)} brokers {self.broker_ids}, devices per "
              f"broker {counts}, ready in {self.setup_seconds:.1f} s")

    def hosts(self):
        """Where devices connect: HAProxy, or (without it) every broker, round-robin."""
        if self.haproxy is not None:
            return f"127.0.0.1:{self.haproxy.port}"
        return ",".join(f"127.0.0.1:{b.port}" for b in self.brokers)

    def upload(self, rate, seconds, devices=100, qos=0):
        """mqk-loadgen: devices more, publishing load/<id>/data at rate msg/s in total
        (forwarded by route load), taking no commands; stop it with stop_json."""
        return self.tool("load", [
            LOADGEN, "--host", self.hosts(), "-n", str(devices), "--id-pattern",
            f"{self.tag}-load-%04d", "-t", "load/{id}/data", "-Q", str(qos), "-R", str(rate),
            "-d", str(seconds), "--commands", "", "-P", "5", "--ramp-up", "1", "-q"])

    def broker_options(self, bid):
        opts = [
            ("bootstrap_servers", self.kafka.bootstrap),
            ("broker_id", bid),
            ("route_data", f"devices/+/data -> {self.data} key=clientid"),
            ("route_answers", f"devices/+/answers -> {self.answers} key=clientid"),
            ("route_load", f"load/+/data -> {self.load} key=clientid"),
            ("stats_interval", "1"),
        ]
        if self.mode == "broadcast":
            opts += [("commands_topic", self.commands)]  # group: one per broker_id
        else:
            opts += [("commands_mode", "targeted"),
                     ("commands_topic", self.broker_topic),
                     ("presence_topic", self.presence),
                     ("commands_return_topic", self.commands),
                     ("commands_dead_letter_topic", self.dead)]
        return opts

    def tool(self, name, argv):
        t = harness.Tool(name, argv)
        self.tools.append(t)
        return t

    def _fleet_connected(self):
        """Devices connected per broker (from the brokers' logs), when all are; else None."""
        if not self.fleet.alive():
            raise harness.HarnessError(f"mqk-loadgen exited: {self.fleet.log()}")
        rx = re.compile(r"New client connected from \S+ as (" + re.escape(self.device_prefix)
                        + r"-\d+) ")
        per = [set(rx.findall(b.log())) for b in self.brokers]
        ids = set().union(*per)
        return [len(p) for p in per] if len(ids) >= self.devices else None

    def probe(self, broker, timeout=30.0):
        """A client connected to broker directly gets a command produced to the
        controller's topic (again every second until one arrives)."""
        cid = harness.unique(f"{self.tag}-probe")
        got = []
        c = harness.Client(broker.port, cid, V5, on_message=lambda *a: got.append(a[2]))
        try:
            deadline = time.monotonic() + timeout
            sent = 0
            while not got:
                if time.monotonic() > deadline:
                    raise harness.HarnessError(f"no probe command reached {cid} on "
                                               f"{broker.name} in {timeout} s")
                self.produce(cid, b"probe")
                sent += 1
                end = time.monotonic() + 1.0
                while not got and time.monotonic() < end:
                    time.sleep(0.05)
            # A reader that starts at the earliest offset (mqk-router) brings the earlier
            # probes too: let them arrive rather than go back and forth after the close.
            end = time.monotonic() + (2.0 if sent > 1 else 0)
            while len(got) < sent and time.monotonic() < end:
                time.sleep(0.05)
        finally:
            c.close()

    # ---- commands ----

    def produce(self, device, payload, headers=None):
        """A command record for device on the controller's topic, acknowledged by Kafka;
        returns the time it was handed to the producer (time.time())."""
        if self._producer is None:
            self._producer = ck.Producer({"bootstrap.servers": self.kafka.bootstrap,
                                          "enable.idempotence": True, "linger.ms": 0,
                                          "log_level": 3})
        at = time.time()
        self._producer.produce(self.commands, key=device.encode(), value=payload,
                               headers=headers or [])
        if self._producer.flush(30) != 0:
            raise harness.HarnessError(f"a command for {device} not acknowledged in 30 s")
        return at

    def controller(self, n, every, limit=120):
        """mqk-controller --commands n: n commands to random devices seen; its report."""
        ctl = self.tool("controller", [
            CONTROLLER, "--quiet", "-b", self.kafka.bootstrap, "-t", self.data,
            "-t", self.answers, "-g", harness.unique("ctl"), "--command-topic", self.commands,
            "--commands", str(n), "--command-every", str(every), "--duration", str(limit)])
        rc, rep = ctl.wait(limit + 30)
        assert rep is not None and "commands" in rep, (rc, rep, ctl.log())
        assert rc in (0, 2), f"mqk-controller failed ({rc}): {ctl.log()}"  # 2: data gaps
        self.commands_to_fleet += rep["commands"]["sent"]
        return rep["commands"]

    def dead_letters(self, device, expect, timeout):
        """[(arrival time.time(), harness.Record)] of the dead letters keyed device, read
        from the start of the dead-letter topic until expect came, or timeout seconds."""
        c = ck.Consumer({"bootstrap.servers": self.kafka.bootstrap,
                         "group.id": harness.unique("dead"), "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50,
                         "log_level": 3})
        out = []
        try:
            c.assign([ck.TopicPartition(self.dead, 0, ck.OFFSET_BEGINNING)])  # 1 partition
            deadline = time.monotonic() + timeout
            while len(out) < expect and time.monotonic() < deadline:
                for m in c.consume(100, 0.1):
                    if m.error() is None and m.key() == device.encode():
                        out.append((time.time(), harness.Record(m)))
        finally:
            c.close()
        return out

    # ---- the brokers' counters ----

    def counters(self):
        """[{counter: value}] per broker, as last published ($SYS, every second)."""
        return [{c: int(s.values.get(f"commands/{c}", "0")) for c in COUNTERS}
                for s in self.sys]

    def settled(self, since=None, done=None, timeout=30.0):
        """
        Counters once done(deltas) holds (when given) and they stopped moving (the same in
        two publications); deltas from `since` when given, else the values.
        """
        def deltas():
            now = self.counters()
            if since is None:
                return now
            return [{c: n[c] - s[c] for c in COUNTERS} for n, s in zip(now, since)]
        if done is not None:
            try:
                harness.wait_for(lambda: done(deltas()), timeout, interval=0.2,
                                 what="the brokers' command counters")
            except harness.HarnessError:
                pass  # the caller asserts on what they are
        def moving(rows):
            # presence and wakes move by themselves: HAProxy's health checks connect
            # every 500 ms (presence records), and so do wake-ups.
            return [{c: r[c] for c in COUNTERS if c not in ("presence", "wakes")}
                    for r in rows]
        last = deltas()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            time.sleep(1.3)
            now = deltas()
            if moving(now) == moving(last):
                return now
            last = now
        return last

    def table(self, rows):
        keys = [c for c in COUNTERS if c not in ("wakes",)]
        lines = ["  broker " + " ".join(f"{k:>13}" for k in keys)]
        for bid, r in zip(self.broker_ids, rows):
            lines.append(f"  {bid[-1]:>6} " + " ".join(f"{r[k]:>13}" for k in keys))
        return "\n".join(lines)

    # ---- stop ----

    def close(self, check=True):
        problems = []
        for t in reversed(self.tools):
            t.stop()
        for s in self.sys:
            try:
                s.close()
            except Exception:
                pass
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None  # destroyed now, not after Kafka is gone
        if self.haproxy is not None:
            self.haproxy.cleanup()
        for b in self.brokers:
            rc = b.stop()
            if rc != 0:
                problems.append(f"{b.name} exited with {rc}")
        for b in self.brokers:
            b.cleanup()
        if check:
            assert not problems, "\n".join(problems)

    def stop_json(self, tool, timeout=30):
        """SIGTERM, then the JSON summary the tool prints at exit."""
        tool.stop()
        return tool.wait(timeout)[1]


class Device:
    """A paho MQTT v5 client standing for one device, connected straight to one broker
    (or HAProxy), collecting the commands it receives."""

    def __init__(self, port, client_id):
        self.client_id = client_id
        self.got = []
        self.c = harness.Client(port, client_id, V5, on_message=self._on_message)
        self.c.subscribe(f"devices/{client_id}/commands", qos=1)

    def _on_message(self, client, userdata, msg):
        self.got.append((time.time(), msg.topic, bytes(msg.payload)))

    def payloads(self):
        return [p for _, _, p in self.got]

    def wait(self, expected, timeout=20.0, grace=1.5):
        """Waits until every payload of expected arrived, then grace seconds for extras;
        returns Counter(payload) of all received."""
        try:
            harness.wait_for(lambda: set(expected) <= set(self.payloads()), timeout,
                             what=f"{len(expected)} commands at {self.client_id}")
        except harness.HarnessError:
            pass  # the caller asserts on what arrived
        time.sleep(grace)
        return collections.Counter(self.payloads())

    def close(self):
        self.c.close()


@pytest.fixture(scope="module", params=MODES)
def cluster(request, kafka):
    cl = Cluster(kafka, request.param)
    yield cl
    cl.close()


def test_a_thousand_commands(cluster):
    """Each command reaches its device exactly once and no other; the brokers agree."""
    before = cluster.settled()
    c = cluster.controller(COMMANDS, 0.01)
    n = len(cluster.brokers)

    def done(d):
        delivered = sum(x["delivered"] for x in d)
        if cluster.mode == "broadcast":
            return delivered >= COMMANDS and all(x["consumed"] >= COMMANDS for x in d)
        return delivered >= COMMANDS
    d = cluster.settled(before, done)
    print(f"[{cluster.mode}] controller: sent {c['sent']}, answered {c['answered']}, "
          f"unanswered {c.get('unanswered')}, duplicates {c.get('duplicates')}, "
          f"misdelivered {c.get('misdelivered')}, unmatched {c.get('unmatched')}; "
          f"command -> device {percentiles(c.get('delivery_us'))}, "
          f"round trip {percentiles(c.get('rtt_us'))}")
    print(f"[{cluster.mode}] the brokers' command counters for it:\n{cluster.table(d)}")
    assert (c["sent"], c["answered"], c["unanswered"], c["duplicates"], c["misdelivered"],
            c["unmatched"]) == (COMMANDS, COMMANDS, 0, 0, 0, 0), c
    assert c["delivery_us"]["count"] == COMMANDS and c["rtt_us"]["count"] == COMMANDS
    total = {k: sum(x[k] for x in d) for k in COUNTERS}
    assert total["delivered"] == COMMANDS, total
    assert total["invalid"] == 0 and total["lost"] == 0 and total["dead_lettered"] == 0, total
    if cluster.mode == "broadcast":
        # Everybody reads everything: each broker consumed all, and skipped what was not its.
        assert [x["consumed"] for x in d] == [COMMANDS] * n, d
        assert total["skipped"] == (n - 1) * COMMANDS, total
    else:
        # The router sends each command to one broker (devices do not move here).
        assert total["consumed"] == COMMANDS and total["returned"] == 0, total
        assert total["skipped"] == 0, total


def test_b_device_moves(cluster):
    """A device that reconnects to another broker gets the later commands there, once."""
    a, b = cluster.brokers[0], cluster.brokers[1]
    cid = harness.unique(f"{cluster.tag}-mover")
    dev = Device(a.port, cid)
    try:
        first = [f"{cid}:A:{i}".encode() for i in range(5)]
        if cluster.mode == "broadcast":
            time.sleep(0.5)  # counted connected from the TICK after its CONNECT
        # (targeted: the router holds them until A's presence record shows the device)
        for p in first:
            cluster.produce(cid, p)
        got = dev.wait(first)
        assert got == collections.Counter(first), f"at broker A: {got}"
        before = cluster.settled()
        dev.close()
        a.wait_log(rf"Client {re.escape(cid)} disconnected", 10)
        gap = []
        if cluster.mode == "targeted":
            # Produced while it is connected nowhere: the router routes them to A (it has
            # not read A's tombstone yet: A sends them back) or holds them, then B.
            gap = [f"{cid}:gap:{i}".encode() for i in range(5)]
            for p in gap:
                cluster.produce(cid, p)
        dev = Device(b.port, cid)
        if cluster.mode == "broadcast":
            time.sleep(0.5)
        later = [f"{cid}:B:{i}".encode() for i in range(5)]
        for p in later:
            cluster.produce(cid, p)
        got = dev.wait(gap + later)
        d = cluster.settled(before, lambda d: d[1]["delivered"] >= len(gap + later))
        print(f"[{cluster.mode}] moved A -> B: received at B {sum(got.values())} "
              f"({len(gap)} produced between, {len(later)} after); counters since the move:"
              f"\n{cluster.table(d)}")
        assert got == collections.Counter(gap + later), \
            f"expected each of {len(gap + later)} once at B, got {got}"
        assert d[1]["delivered"] == len(gap + later) and d[0]["delivered"] == 0, d
        assert sum(x["dead_lettered"] + x["invalid"] + x["lost"] for x in d) == 0, d
        if cluster.mode == "broadcast":
            assert [x["consumed"] for x in d] == [len(later)] * len(d), d
    finally:
        dev.close()


def test_c_device_nowhere(cluster):
    """Commands for a device connected nowhere: skipped everywhere, or held and
    dead-lettered; a device that connects within the hold gets its command."""
    ghost = harness.unique(f"{cluster.tag}-ghost")
    payloads = [f"{ghost}:{i}".encode() for i in range(3)]
    before = cluster.settled()
    produced = [cluster.produce(ghost, p) for p in payloads]
    if cluster.mode == "broadcast":
        n = len(payloads)
        d = cluster.settled(before, lambda d: all(x["skipped"] >= n for x in d))
        print(f"[broadcast] {n} commands for a device connected nowhere:\n{cluster.table(d)}")
        assert [(x["consumed"], x["skipped"], x["delivered"]) for x in d] == \
            [(n, n, 0)] * len(d), d
        return

    arrivals = cluster.dead_letters(ghost, len(payloads), timeout=cluster.hold + 20)
    mine = [r for _, r in arrivals]
    for at, r in arrivals:
        print(f"[targeted] dead letter {r.value!r}: {HDR.REASON}={r.header_str(HDR.REASON)!r}"
              f" {HDR.BY}={r.header_str(HDR.BY)!r}, {at - produced[0]:.1f} s after it was "
              f"produced (--hold {cluster.hold})")
    assert sorted(r.value for r in mine) == sorted(payloads), mine
    assert all(r.header_str(HDR.REASON) == "not connected" for r in mine), mine
    assert all(r.header_str(HDR.BY) for r in mine), mine
    # Held, not dropped at once.
    assert all(at >= produced[0] + cluster.hold - 0.5 for at, _ in arrivals), \
        [at - produced[0] for at, _ in arrivals]
    d = cluster.settled(before)
    assert sum(x["consumed"] for x in d) == 0, f"no broker should have seen them: {d}"

    # Connected within the hold: it gets it, once, and nothing is dead-lettered.
    late = harness.unique(f"{cluster.tag}-late")
    before = cluster.settled()
    cluster.produce(late, b"late-1")
    time.sleep(cluster.hold / 3.0)
    dev = Device(cluster.haproxy.port, late)
    try:
        got = dev.wait([b"late-1"], timeout=cluster.hold + 10)
    finally:
        dev.close()
    dead = cluster.dead_letters(late, 1, timeout=cluster.hold + 2)
    d = cluster.settled(before, lambda d: sum(x["delivered"] for x in d) >= 1)
    print(f"[targeted] connected {cluster.hold / 3.0:.1f} s after its command: got {got}; "
          f"counters:\n{cluster.table(d)}")
    assert got == collections.Counter([b"late-1"]), got
    assert not dead, f"dead-lettered though delivered: {dead}"
    assert sum(x["delivered"] for x in d) == 1, d


def test_d_latency(cluster):
    """Command latency idle and under ~10,000 msg/s upstream: printed, not asserted."""
    n, every = 300, 0.02
    idle = cluster.controller(n, every)
    # 100 more devices publishing QoS 0 at 10,000 msg/s in total on load/<id>/data, which
    # the plugin forwards to <tag>.load; they take no commands.
    load = cluster.upload(10000, 60)
    sys_before = [int(s.values.get("received", "0")) for s in cluster.sys]
    time.sleep(3)
    loaded = cluster.controller(n, every)
    received = sum(int(s.values.get("received", "0")) for s in cluster.sys) - sum(sys_before)
    rep = cluster.stop_json(load)
    rate = rep["sent"]["total"] / rep["duration_s"] if rep and rep.get("duration_s") else 0
    print(f"[{cluster.mode}] command latency, {n} commands every {every} s:")
    for name, c in (("idle", idle), (f"under load ({rate:,.0f} msg/s sent)", loaded)):
        print(f"  {name:32} command -> device {percentiles(c.get('delivery_us'))}; "
              f"round trip {percentiles(c.get('rtt_us'))}; {c['answered']}/{c['sent']} answered")
    print(f"  the brokers received {received:,} messages during the loaded run")
    for c in (idle, loaded):
        assert (c["sent"], c["answered"], c["duplicates"], c["misdelivered"]) == (n, n, 0, 0), c
    assert rep is not None and rep["sent"]["total"] > 0, rep


def test_e_the_devices_side(cluster):
    """mqk-loadgen's devices received exactly the commands the controllers sent."""
    rep = cluster.stop_json(cluster.fleet)
    summary = {k: rep.get(k) for k in ("connected", "ever_connected", "commands_received",
                                       "answers_sent", "answers_acked", "resent")}
    print(f"[{cluster.mode}] the fleet: {summary}; the controllers sent "
          f"{cluster.commands_to_fleet} commands to it")
    if cluster.router is not None:
        print(f"[{cluster.mode}] mqk-router: {cluster.stop_json(cluster.router)}")
    assert rep["ever_connected"] == DEVICES
    assert rep["commands_received"] == cluster.commands_to_fleet, summary
    assert rep["answers_acked"] == cluster.commands_to_fleet, summary
