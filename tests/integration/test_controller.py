"""
test_controller.py - the study's measurement loop, end to end: mqk-loadgen devices publish
through mosquitto with the plugin into Kafka, mqk-controller pulls from Kafka and counts.

  - 200 devices x 50 QoS1 messages: the controller reports 10,000 received, 0 lost,
    0 duplicates, and the plugin's per-broker audit (mqtt.seq) agrees;
  - two controllers of one consumer group, the second joining mid-run: each saves its
    report, `mqk-controller merge` adds them up, and the merged totals are still exact;
  - MQTT mode (the study's A1 controller, subscribed to the broker) counts the same run
    the same way at a low rate;
  - commands: a device answers a command over MQTT (v5 and v3.1.1), a scripted run pairs
    every answer with its command (--commands N ends it once all N are answered; a run ended
    by --duration waits for the answers still due); in Kafka mode a command is a record keyed
    by device;
  - commands exactly once through Kafka and the plugin (v5 and v3.1.1 devices): 1,000
    commands at 500/s, each answered once by its own device (answered 1,000, unanswered,
    duplicates, misdelivered, unmatched 0), as the broker's $SYS counters and the devices'
    own count agree; delivery (command -> device) under the round trip;
  - a device that answers twice, or answers for another device: duplicates or misdelivered
    counted, exit 2;
  - bad arguments: an Error line and exit 1, never a crash.
"""

import json
import os
import struct
import subprocess
import time

import pytest
import paho.mqtt.client as mqtt
from confluent_kafka import Consumer

import harness

LOADGEN = os.path.join(harness.BUILD_DIR, "tools", "mqk-loadgen")
CONTROLLER = os.path.join(harness.BUILD_DIR, "examples", "controller", "mqk-controller")


def loadgen(port, prefix, devices, count, rate, qos=1, protocol="311", extra=()):
    return [LOADGEN, "--host", f"127.0.0.1:{port}", "--devices", str(devices),
            "--id-pattern", prefix + "-%05d", "--count", str(count), "--rate", str(rate),
            "--qos", str(qos), "--protocol", protocol, *extra]


def controller(*args):
    return [CONTROLLER, "--quiet", *args]


def data_broker(start_broker, kafka, topic, **kw):
    """A mosquitto whose plugin routes devices/+/data, keyed by device, into topic."""
    kafka.create_topic(topic)  # 4 partitions
    return start_broker([
        ("bootstrap_servers", kafka.bootstrap),
        ("broker_id", "ctl-broker"),
        ("route_data", f"devices/+/data -> {topic} key=clientid"),
        ("stats_interval", "0"),
    ], **kw)


def summary(report):
    keys = ("received", "unique", "lost", "duplicates", "out_of_order", "devices", "foreign")
    return {k: report.get(k) for k in keys}


def test_200_devices_exact(kafka, start_broker, tools):
    topic = harness.unique("ctl")
    broker = data_broker(start_broker, kafka, topic)
    ctl = tools("controller", controller("-b", kafka.bootstrap, "-t", topic,
                                         "-g", harness.unique("g"), "--expect", "10000",
                                         "--duration", "150"))
    gen = tools("loadgen", loadgen(broker.port, harness.unique("ue"), 200, 50, 10))
    rc, sent = gen.wait(120)
    assert rc == 0, gen.log()
    assert sent["sent"]["total"] == 10000 and sent["acked"] == 10000, sent
    rc, r = ctl.wait(150)
    print("loadgen:", sent)
    print("controller:", summary(r), "latency", r["latency_us"], "audit", r["audit"]["records"],
          "records", r["audit"]["lost"], "lost")
    assert rc == 0, ctl.log()
    assert summary(r) == {"received": 10000, "unique": 10000, "lost": 0, "duplicates": 0,
                          "out_of_order": 0, "devices": 200, "foreign": 0}
    # The plugin's own numbering agrees: 10,000 records of one broker, no gap.
    assert r["audit"]["records"] == 10000 and r["audit"]["lost"] == 0
    assert r["audit"]["duplicates"] == 0
    (b,) = r["audit"]["brokers"]
    assert (b["broker"], b["route"], b["first_seq"], b["last_seq"]) == \
        ("ctl-broker", "data", 1, 10000)
    assert r["latency_us"]["count"] == 10000 and 0 < r["latency_us"]["p50"] <= \
        r["latency_us"]["p99"] <= r["latency_us"]["max"]


def test_second_controller_joins_mid_run(kafka, start_broker, tools):
    topic = harness.unique("ctl")
    group = harness.unique("g")
    broker = data_broker(start_broker, kafka, topic)
    saves = [os.path.join(harness.make_tempdir("mqk-reports-"), f"r{i}.json") for i in (1, 2)]
    common = ("-b", kafka.bootstrap, "-t", topic, "-g", group, "--idle", "6",
              "--duration", "120")
    first = tools("controller-1", controller(*common, "--save", saves[0]))
    harness.wait_for(lambda: "assigned" in first.log(), 60, what="controller 1 in the group")
    # 200 devices x 50 messages at 5/s per device: 10 s of traffic.
    gen = tools("loadgen", loadgen(broker.port, harness.unique("ue"), 200, 50, 5))
    time.sleep(3)
    second = tools("controller-2", controller(*common, "--save", saves[1]))
    rc, sent = gen.wait(120)
    assert rc == 0 and sent["acked"] == 10000, (sent, gen.log())
    rc1, r1 = first.wait(120)
    rc2, r2 = second.wait(120)
    print("controller 1:", summary(r1), "\ncontroller 2:", summary(r2))
    print("controller 1 log:", first.log(), "controller 2 log:", second.log(), sep="\n")
    assert rc1 in (0, 2) and rc2 in (0, 2), "each alone may see gaps (2); not an error (1)"
    # Both took part: the second got partitions and records, the first lost some.
    assert "revoked" in first.log()
    assert r1["received"] > 0 and r2["received"] > 0
    assert r1["received"] + r2["received"] == 10000

    merge = subprocess.run([CONTROLLER, "merge", "--expect", "10000", *saves],
                           capture_output=True, text=True, timeout=60)
    assert merge.returncode == 0, merge.stderr
    m = json.loads(merge.stdout)
    print("merged:", summary(m))
    assert m["instances"] == 2
    assert summary(m) == {"received": 10000, "unique": 10000, "lost": 0, "duplicates": 0,
                          "out_of_order": 0, "devices": 200, "foreign": 0}
    assert m["missing"] == 0 and m["audit"]["records"] == 10000 and m["audit"]["lost"] == 0


def test_mqtt_mode_counts_the_same(kafka, start_broker, tools):
    """One run, two controllers: one subscribed to the broker (A1), one reading Kafka."""
    topic = harness.unique("ctl")
    broker = data_broker(start_broker, kafka, topic)
    direct = tools("controller-mqtt", controller("--mqtt", f"127.0.0.1:{broker.port}",
                                                 "-f", "devices/+/data", "--expect", "2000",
                                                 "--duration", "120"))
    # Subscribed, not only connected: data published before would count as lost.
    broker.wait_log(r"^\d+: mqk-controller\S* \d devices/\+/data$", 10)
    via_kafka = tools("controller-kafka", controller("-b", kafka.bootstrap, "-t", topic,
                                                     "-g", harness.unique("g"),
                                                     "--expect", "2000", "--duration", "120"))
    gen = tools("loadgen", loadgen(broker.port, harness.unique("ue"), 100, 20, 2))
    rc, sent = gen.wait(120)
    assert rc == 0 and sent["acked"] == 2000, sent
    rc_m, m = direct.wait(120)
    rc_k, k = via_kafka.wait(120)
    print("MQTT mode:", summary(m), m["latency_us"])
    print("Kafka mode:", summary(k), k["latency_us"])
    assert rc_m == 0 and rc_k == 0
    expected = {"received": 2000, "unique": 2000, "lost": 0, "duplicates": 0,
                "out_of_order": 0, "devices": 100, "foreign": 0}
    assert summary(m) == expected and summary(k) == expected
    assert m["mode"] == "mqtt" and k["mode"] == "kafka"
    assert m["audit"]["records"] == 0  # no plugin headers over MQTT


def test_mqtt_mode_every_broker(start_broker, tools):
    """The study's A2 controller: one connection to each of 3 plain brokers (open-source
    mosquittos share no subscriptions); devices spread over them, every message counted
    once. (A grown connection array once left libmosquitto a stale pointer: a crash.)"""
    brokers = [start_broker([], plugin=None) for _ in range(3)]
    hosts = ",".join(f"127.0.0.1:{b.port}" for b in brokers)
    direct = tools("controller-mqtt", controller("--mqtt", hosts, "-f", "devices/+/data",
                                                 "--expect", "1500", "--duration", "120"))
    harness.wait_for(lambda: all("mqk-controller" in b.log() for b in brokers), 10,
                     what="the controller connected to every broker")
    prefix = harness.unique("ue")
    gen = tools("loadgen", loadgen(brokers[0].port, prefix, 30, 50, 20,
                                   extra=["--host", hosts]))  # the last --host counts
    rc, sent = gen.wait(120)
    assert rc == 0 and sent["acked"] == 1500, sent
    rc_m, m = direct.wait(120)
    print("MQTT mode, 3 brokers:", summary(m))
    assert rc_m == 0
    assert summary(m) == {"received": 1500, "unique": 1500, "lost": 0, "duplicates": 0,
                          "out_of_order": 0, "devices": 30, "foreign": 0}
    assert all(f" as {prefix}-" in b.log() for b in brokers)  # devices on every broker


@pytest.mark.parametrize("protocol", ["5", "311"])
def test_command_round_trip_mqtt(start_broker, tools, protocol):
    # set_tcp_nodelay: without it mosquitto holds small writes for the delayed ACK (~40 ms)
    broker = start_broker([], plugin=None, extra=["set_tcp_nodelay true"])
    prefix = harness.unique("cmd")
    gen = tools("loadgen", loadgen(broker.port, prefix, 5, 1000, 1, protocol=protocol,
                                   extra=("--duration", "60")))
    harness.wait_for(lambda: broker.log().count("New client connected") >= 5, 20,
                     what="5 devices connected")
    device = f"{prefix}-00003"
    out = subprocess.run([CONTROLLER, "command", "--mqtt", f"127.0.0.1:{broker.port}",
                          "--protocol", protocol, "--device", device, "--wait", "10",
                          '{"action":"scan"}'], capture_output=True, text=True, timeout=60)
    print(out.stdout, out.stderr)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["device"] == device and r["sent"] and r["answered"]
    assert r["response_topic"] == f"devices/{device}/answers"
    assert json.loads(r["payload"]) == {"action": "scan", "cid": r["id"]}
    assert 0 < r["rtt_us"] < 10_000_000

    # Scripted: 200 commands at 100/s to random devices; the run ends once all are answered.
    started = time.monotonic()
    ctl = tools("controller", controller("--mqtt", f"127.0.0.1:{broker.port}",
                                         "--protocol", protocol, "--command-every", "0.01",
                                         "--commands", "200", "--duration", "60"))
    rc, rep = ctl.wait(90)
    took = time.monotonic() - started
    c = rep["commands"]
    print(f"scripted, {took:.1f} s:", c, "data lost:", rep["lost"])
    # The devices published before this controller subscribed (clean session): their first
    # numbers count as lost data (exit 2). The commands alone do not make it 2.
    assert rc == (2 if rep["lost"] else 0), ctl.log()
    assert took < 30, "--commands 200 did not end the run"
    exact = {"sent": 200, "failed": 0, "answered": 200, "unanswered": 0, "duplicates": 0,
             "misdelivered": 0, "unmatched": 0}
    assert {k: c[k] for k in exact} == exact
    assert c["rtt_us"]["count"] == c["delivery_us"]["count"] == 200
    # Each command's delivery (to the device) is part of its round trip (back here).
    for p in ("p50", "p99", "max"):
        assert 0 < c["delivery_us"][p] <= c["rtt_us"][p], (p, c)

    # Ended by --duration: the commands still on their way are waited for (--wait).
    ctl = tools("controller-duration", controller("--mqtt", f"127.0.0.1:{broker.port}",
                                                  "--protocol", protocol,
                                                  "--command-every", "0.05", "--duration", "1.5"))
    rc, rep = ctl.wait(60)
    c = rep["commands"]
    print("until --duration:", c)
    assert rc == (2 if rep["lost"] else 0), ctl.log()
    assert c["sent"] >= 10 and c["answered"] == c["sent"] and c["unanswered"] == 0
    gen.stop()


def mqk_payload(device, seq, trailer):
    """An mqk-loadgen payload (include/mqk_payload.h): magic, version, id length, seq, send
    time in µs, the device id, then the trailer (an answer's: the command's id)."""
    dev = device.encode()
    return struct.pack(">2sBBQQ", b"MQ", 1, len(dev), seq, time.time_ns() // 1000) + dev + trailer


class FaultyDevice:
    """A v5 MQTT device that publishes data (so that the controller picks it) and answers each
    command wrongly: fault "duplicate" answers twice, "misdelivered" answers once in another
    device's name, then in its own."""

    def __init__(self, port, device, fault):
        self.device, self.fault, self.seq, self.answers = device, fault, 0, 0
        self.client = mqtt.Client(client_id=device, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_command
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"devices/{device}/commands", qos=1)
        self.client.loop_start()

    def publish_data(self):
        self.client.publish(f"devices/{self.device}/data",
                            mqk_payload(self.device, self.seq, b""), qos=1)
        self.seq += 1

    def _on_command(self, client, userdata, msg):
        cid = msg.properties.CorrelationData
        topic = msg.properties.ResponseTopic
        names = [self.device, self.device] if self.fault == "duplicate" else \
            [self.device + "-other", self.device]
        for name in names:
            client.publish(topic, mqk_payload(name, self.answers, cid), qos=1)
            self.answers += 1

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


@pytest.mark.parametrize("fault", ["duplicate", "misdelivered"])
def test_command_faults_counted(start_broker, tools, fault):
    broker = start_broker([], plugin=None, extra=["set_tcp_nodelay true"])
    ctl = tools("controller", controller("--mqtt", f"127.0.0.1:{broker.port}",
                                         "--command-every", "0.05", "--commands", "5",
                                         "--duration", "30", "--wait", "1"))
    # Subscribed, not only connected: data published before would count as lost.
    broker.wait_log(r"^\d+: mqk-controller\S* \d devices/\+/answers$", 10)
    dev = FaultyDevice(broker.port, harness.unique("faulty"), fault)
    try:
        # Data until the controller has sent its 5 commands and ended.
        harness.wait_for(lambda: dev.publish_data() or not ctl.alive(), 30, interval=0.05,
                         what="the controller to end")
        rc, rep = ctl.wait(30)
    finally:
        dev.close()
    c = rep["commands"]
    print(fault, c)
    assert rc == 2, "an inexact delivery is loss"
    assert c["sent"] == 5 and c["answered"] == 5 and c["unanswered"] == 0
    assert rep["lost"] == 0 and c["unmatched"] == 0
    if fault == "duplicate":
        # The run ends on the 5th answer; its second copy may come after.
        assert 4 <= c["duplicates"] <= 5 and c["misdelivered"] == 0
    else:
        # The wrong device answers first: all 5 counted before the run ends.
        assert c["misdelivered"] == 5 and c["duplicates"] == 0


@pytest.mark.parametrize("protocol", ["5", "311"])
def test_commands_exactly_once_through_kafka(kafka, start_broker, tools, protocol):
    """Commands from Kafka through the plugin (broadcast mode, one broker) to 20 devices,
    their answers back through a route: each of 1,000 commands, sent at 500/s, answered
    once by its own device. v5 devices answer with the correlation data, v3.1.1 ones echo
    the payload (paired by payload)."""
    data, answers, commands = (harness.unique(p) for p in ("ctl", "answers", "commands"))
    # The run ends mid-stream (on --commands): with the data in one partition what was read
    # is a prefix of every sequence, so no gap shows and the exit status is the commands'.
    # (mqk-devkafka makes 4 partitions whatever is asked: a gap at the cut is possible.)
    one = kafka.kind != "mock"
    if one:
        kafka.create_topics([data], partitions=1)
    kafka.create_topics([answers, commands] + ([] if one else [data]))
    broker = start_broker([
        ("bootstrap_servers", kafka.bootstrap),
        ("broker_id", harness.unique("cb")),
        ("route_data", f"devices/+/data -> {data} key=clientid"),
        ("route_answers", f"devices/+/answers -> {answers} key=clientid"),
        ("commands_topic", commands),
        ("stats_interval", "1"),
    ], extra=["set_tcp_nodelay true"])
    # A new consumer group starts at the end of the topic: wait until it has its partitions.
    broker.wait_log(r"mosquitto_kafka: commands: consuming \S+ partitions \[\d", 30)
    stats = harness.SysCounters(broker.port)
    prefix = harness.unique("ue")
    gen = tools("loadgen", loadgen(broker.port, prefix, 20, 100000, 2, protocol=protocol,
                                   extra=("--duration", "120")))
    started = time.monotonic()
    ctl = tools("controller", controller("-b", kafka.bootstrap, "-t", data, "-t", answers,
                                         "-g", harness.unique("g"), "--command-topic", commands,
                                         "--command-every", "0.002", "--commands", "1000",
                                         "--duration", "90"))
    rc, rep = ctl.wait(120)
    took = time.monotonic() - started
    seen = stats.wait_for({"commands/consumed": 1000, "commands/delivered": 1000,
                           "commands/skipped": 0, "commands/invalid": 0})
    stats.close()
    gen.stop()
    _, devices = gen.wait(30)
    c = rep["commands"]
    print(f"{took:.1f} s, controller:", c)
    print("data:", summary(rep), "audit:", rep["audit"])
    print("broker:", seen)
    print("devices:", {k: devices.get(k) for k in ("commands_received", "answers_sent",
                                                   "answers_acked")})
    data_loss = rep["lost"] > 0 or rep["audit"]["lost"] > 0
    assert not (one and data_loss), rep
    assert rc == (2 if data_loss else 0), (rep, ctl.log())
    assert took < 60, "--commands 1000 did not end the run"
    exact = {"sent": 1000, "failed": 0, "answered": 1000, "unanswered": 0, "duplicates": 0,
             "misdelivered": 0, "unmatched": 0}
    assert {k: c[k] for k in exact} == exact
    # Nobody else got one: the broker delivered 1,000, the devices received 1,000.
    assert seen == {"commands/consumed": 1000, "commands/delivered": 1000,
                    "commands/skipped": 0, "commands/invalid": 0}
    assert devices["commands_received"] == 1000 and devices["answers_sent"] == 1000
    assert c["rtt_us"]["count"] == c["delivery_us"]["count"] == 1000
    for p in ("p50", "p90", "p99", "p99_9", "max"):
        assert 0 < c["delivery_us"][p] <= c["rtt_us"][p], (p, c)
    assert rep["devices"] == 20


def test_command_to_kafka(kafka):
    topic = harness.unique("commands")
    kafka.create_topic(topic)
    out = subprocess.run([CONTROLLER, "command", "-b", kafka.bootstrap, "--command-topic", topic,
                          "--device", "ue-00042", '{"action":"scan"}'],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    sent = json.loads(out.stdout)
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": harness.unique("g"),
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    try:
        m = harness.wait_for(lambda: (lambda msg: msg if msg and not msg.error() else None)(
            c.poll(0.5)), 30, what="the command record")
    finally:
        c.close()
    headers = dict(m.headers())
    print(m.key(), m.value(), headers)
    assert m.key() == b"ue-00042"
    assert json.loads(m.value()) == {"action": "scan", "cid": sent["id"]}
    assert headers["mqtt.correlation_data"] == sent["id"].encode()
    assert headers["mqtt.response_topic"] == b"devices/ue-00042/answers"


@pytest.mark.parametrize("args,message", [
    ([], "--bootstrap (Kafka mode) or --mqtt (MQTT mode) is required"),
    (["-b", "x:1", "--mqtt", "y:1"], "choose Kafka mode or MQTT mode"),
    (["-b", "127.0.0.1:1"], "-t: no topic to consume"),
    (["-b", "x:1", "-t", "t", "--expect", "0"], "--expect: '0'"),
    (["-b", "x:1", "-t", "t", "--idle", "soon"], "--idle: 'soon'"),
    (["-b", "x:1", "-t", "t", "--commands", "5"], "--commands: needs --command-every"),
    (["-b", "x:1", "-t", "t", "--command-every", "1", "--commands", "0"], "--commands: '0'"),
    (["-b", "x:1", "-t", "t", "--command-every", "0"], "--command-every: '0'"),
    (["-b", "x:1", "-t", "t", "--wait", "-1"], "--wait: '-1'"),
    (["-b", "x:1", "-t", "t", "-X", "nonsense.property=1"], "No such configuration property"),
    (["-b", "x:1", "-t", "t", "-X", "novalue"], "-X: 'novalue' is not name=value"),
    (["--mqtt", "127.0.0.1", "-f", "a/#"], "is not host:port"),
    (["--mqtt", "127.0.0.1:1", "-f", "a/#/b"], "not a valid MQTT topic filter"),
    (["--mqtt", "127.0.0.1:1", "--qos", "3"], "--qos: '3' is not 0, 1 or 2"),
    (["--mqtt", "127.0.0.1:1", "--answers", "x/y"], "has no {id}"),
    (["command", "-b", "x:1", "--device", "a/b", "p"], "is not a client id"),
    (["command", "-b", "x:1", "p"], "--device is required"),
    (["command", "-b", "x:1", "--device", "d"], "give exactly one PAYLOAD"),
    (["merge"], "no report file given"),
    (["merge", "/nonexistent.json"], "No such file"),
])
def test_bad_arguments(args, message):
    out = subprocess.run([CONTROLLER, *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1, (args, out.returncode, out.stderr)
    assert out.stderr.startswith("Error: ") and message in out.stderr, out.stderr
