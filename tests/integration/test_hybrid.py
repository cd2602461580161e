"""
test_hybrid.py - mqk-hybrid (tools/hybrid), the study's A3 HybridClient, end to end:
mqk-loadgen devices publish to a plain mosquitto (no plugin), mqk-hybrid subscribes to it
and produces into Kafka (mqk-devkafka, one mock broker), mqk-controller pulls from Kafka
and counts.

  1. 50 devices x 40 QoS 1 messages, --poll-sleep-ms 0: the controller gets 2,000, 0 lost,
     0 duplicates; the hybrid's summary says 2,000 received and delivered, 0 failed,
     0 dropped, exit 0; every record's key is its MQTT topic; latency p50 under 90 ms
  2. the same with --poll-sleep-ms 200 (the study's sleep-polling): the same counts, and
     the latency p50 is 90 ms or more (a message waits half the sleep on average)
  3. --key none: records without a key
  4. bad arguments: "Error: ..." on stderr and exit 1, never a signal
  5. the broker stopped under the hybrid and started again on the same port: the hybrid
     reconnects (connects 2) and a message published after the restart reaches Kafka
  6. no broker at all: it keeps retrying, says so on stderr, and -d still ends the run

Every process is started here on 127.0.0.1 free ports and stopped by its pid.
"""

import os
import signal
import subprocess
import time

import pytest

import harness

HYBRID = os.path.join(harness.BUILD_DIR, "tools", "mqk-hybrid")
LOADGEN = os.path.join(harness.BUILD_DIR, "tools", "mqk-loadgen")
CONTROLLER = os.path.join(harness.BUILD_DIR, "examples", "controller", "mqk-controller")
DATA_FILTER = "devices/+/data"
# Without it mosquitto holds small writes for the previous packet's delayed ACK (~40 ms),
# which would be measured as the hybrid's latency.
NODELAY = ["set_tcp_nodelay true"]


@pytest.fixture(scope="module")
def kafka1():
    """One mock Kafka broker (mqk-devkafka) for the whole file; each test has its topic."""
    dk = harness.DevKafka(brokers=1)
    yield dk
    dk.cleanup()


def start_hybrid(tools, port, bootstrap, topic, *extra, subscriptions=1):
    """mqk-hybrid subscribed to the broker on port (it logs each SUBACK)."""
    h = tools("mqk-hybrid", [HYBRID, "-p", port, "-b", bootstrap, "-T", topic, *extra])
    harness.wait_for(lambda: h.log().count(f"subscribed to {DATA_FILTER}") >= subscriptions
                     or not h.alive(), 20, what="mqk-hybrid subscribed")
    assert h.alive(), f"mqk-hybrid exited ({h.proc.returncode}):\n{h.log()}"
    return h


def stop_hybrid(h):
    """SIGTERM; returns (exit status, summary)."""
    h.signal(signal.SIGTERM)
    return h.wait(30)


def loadgen(port, prefix, devices, count, rate):
    return [LOADGEN, "--host", f"127.0.0.1:{port}", "--devices", devices, "--id-pattern",
            prefix + "-%05d", "--count", count, "--rate", rate, "--qos", "1", "-q"]


def device_of(payload):
    """The device id of an mqk-loadgen payload (include/mqk_payload.h), or None."""
    if len(payload) < 20 or payload[:2] != b"MQ" or payload[2] != 1:
        return None
    return payload[20:20 + payload[3]].decode("utf-8")


def summary(report):
    keys = ("received", "unique", "lost", "duplicates", "out_of_order", "devices", "foreign")
    return {k: report.get(k) for k in keys}


def through_hybrid(kafka1, start_broker, tools, sleep_ms, devices=50, count=40, rate=10,
                   key="topic"):
    """devices x count QoS 1 messages through mosquitto, mqk-hybrid and Kafka, counted by
    mqk-controller. Returns (topic, controller report, hybrid summary); asserts the exit
    statuses."""
    n = devices * count
    topic = harness.unique("hyb")
    kafka1.create_topic(topic)
    broker = start_broker([], plugin=None, extra=NODELAY)
    hybrid = start_hybrid(tools, broker.port, kafka1.bootstrap, topic,
                          "--poll-sleep-ms", sleep_ms, "--key", key)
    # fetch.wait.max.ms: the mock broker holds a fetch that finds nothing for that long
    # even when records come meanwhile; at librdkafka's 500 ms the controller measured a
    # p50 of 256 ms with --poll-sleep-ms 0, its own wait, not the hybrid's.
    ctl = tools("mqk-controller", [CONTROLLER, "-q", "-b", kafka1.bootstrap, "-t", topic,
                                   "-g", harness.unique("g"), "-e", n, "-d", "120",
                                   "-X", "fetch.wait.max.ms=10"])
    # Assigned before the first message: a group join takes seconds, which would be
    # measured as latency.
    harness.wait_for(lambda: "assigned" in ctl.log() or not ctl.alive(), 30,
                     what="mqk-controller assigned its partitions")
    gen = tools("mqk-loadgen", loadgen(broker.port, harness.unique("ue"), devices, count,
                                       rate))
    rc, sent = gen.wait(120)
    assert rc == 0 and sent["acked"] == n, (sent, gen.log())
    rc_c, report = ctl.wait(150)
    rc_h, hs = stop_hybrid(hybrid)
    print(f"--poll-sleep-ms {sleep_ms}: controller", summary(report), "latency_us",
          report["latency_us"])
    print("hybrid:", hs)
    assert rc_c == 0, ctl.log()
    assert rc_h == 0, hybrid.log()
    return topic, report, hs


def exact(n, devices):
    return {"received": n, "unique": n, "lost": 0, "duplicates": 0, "out_of_order": 0,
            "devices": devices, "foreign": 0}


def hybrid_exact(n, connects=1):
    return {"received": n, "produced": n, "delivered": n, "failed": 0, "dropped": 0,
            "connects": connects, "disconnects": connects}


def test_1_exact_and_keyed_by_topic(kafka1, start_broker, tools):
    topic, report, hs = through_hybrid(kafka1, start_broker, tools, 0)
    assert summary(report) == exact(2000, 50)
    assert hs == hybrid_exact(2000)
    # The Kafka key is the MQTT topic, and a device's records share one partition.
    records = harness.read_topic(kafka1.bootstrap, topic, 2000)
    assert len(records) == 2000
    partitions = {}
    for r in records:
        device = device_of(r.value)
        assert device is not None, r
        assert r.key == f"devices/{device}/data".encode(), r
        partitions.setdefault(device, set()).add(r.partition)
    assert len(partitions) == 50 and all(len(p) == 1 for p in partitions.values())
    # Produced at once: nothing near the 100 ms the sleep-polling of test 2 adds.
    assert report["latency_us"]["p50"] < 90000, report["latency_us"]


def test_2_poll_sleep_adds_latency(kafka1, start_broker, tools):
    _, report, hs = through_hybrid(kafka1, start_broker, tools, 200)
    assert summary(report) == exact(2000, 50)
    assert hs == hybrid_exact(2000)
    # A message waits for the next round, half of 200 ms on average, up to all of it.
    lat = report["latency_us"]
    assert lat["p50"] >= 90000, lat
    assert lat["p99"] >= 180000, lat


def test_3_key_none(kafka1, start_broker, tools):
    topic, report, hs = through_hybrid(kafka1, start_broker, tools, 0, devices=5, count=20,
                                       key="none")
    assert summary(report) == exact(100, 5)
    assert hs == hybrid_exact(100)
    records = harness.read_topic(kafka1.bootstrap, topic, 100)
    assert len(records) == 100
    assert all(r.key is None for r in records), [r for r in records if r.key is not None][:3]


@pytest.mark.parametrize("args, message", [
    (["-T", "t"], "-b"),
    (["-b", "127.0.0.1:1"], "-T"),
    (["-b", "127.0.0.1:1", "-T", "t", "-q", "3"], "-q"),
    (["-b", "127.0.0.1:1", "-T", "t", "--poll-sleep-ms", "-1"], "--poll-sleep-ms"),
    (["-b", "127.0.0.1:1", "-T", "t", "--poll-sleep-ms", "10001"], "--poll-sleep-ms"),
    (["-b", "127.0.0.1:1", "-T", "t", "--key", "foo"], "--key"),
    (["-b", "127.0.0.1:1", "-T", "t", "--no-such-option"], "--no-such-option"),
    (["-b", "127.0.0.1:1", "-T", "t", "-X", "bad.property=1"], "bad.property"),
    (["-b", "127.0.0.1:1", "-T", "t", "-X", "noequals"], "-X"),
    (["-b", "127.0.0.1:1", "-T", "t", "-X", "acks=1"], "acks"),
    (["-b", "127.0.0.1:1", "-T", "t", "-p", "0"], "-p"),
    (["-b", "127.0.0.1:1", "-T", "t", "-t", "a/#/b"], "-t"),
    (["-b", "127.0.0.1:1", "-T", "bad topic"], "-T"),
    (["-b", "127.0.0.1:1", "-T", "t", "-d", "0"], "-d"),
    (["-b", "127.0.0.1:1", "-T", "t", "--poll-sleep-ms"], "--poll-sleep-ms"),
    (["-b", "127.0.0.1:1", "-T", "t", "extra"], "extra"),
])
def test_4_bad_arguments(args, message):
    harness.require_file(HYBRID, "mqk-hybrid", executable=True)
    out = subprocess.run([HYBRID, *args], capture_output=True, text=True, timeout=20)
    assert out.returncode == 1, (out.returncode, out.stderr)
    assert out.stderr.startswith("Error: ") and message in out.stderr, out.stderr
    assert out.stdout == ""


def test_4_help_and_version():
    out = subprocess.run([HYBRID, "--help"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0 and "--poll-sleep-ms" in out.stdout and out.stderr == ""
    out = subprocess.run([HYBRID, "--version"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0 and "librdkafka" in out.stdout


def test_5_broker_restart(kafka1, start_broker, tools):
    topic = harness.unique("hyb")
    kafka1.create_topic(topic)
    first = start_broker([], plugin=None, extra=NODELAY)
    port = first.port
    hybrid = start_hybrid(tools, port, kafka1.bootstrap, topic)
    c = harness.Client(port)
    c.publish_wait("devices/before/data", b"before", qos=1)
    c.close()
    # In Kafka before the broker goes: what the hybrid had not read yet would be lost.
    assert len(harness.read_topic(kafka1.bootstrap, topic, 1, timeout=20, grace=0)) == 1
    assert first.stop() == 0
    harness.wait_for(lambda: "lost 127.0.0.1" in hybrid.log(), 20, what="the hybrid saw the loss")
    # Down for a while: at least one attempt is refused.
    harness.wait_for(lambda: "cannot connect" in hybrid.log(), 20,
                     what="a refused reconnection attempt")
    # Again on the same port.
    second = start_broker([], plugin=None, listen=False, wait=False,
                          extra=[f"listener {port} 127.0.0.1", "allow_anonymous true"] + NODELAY)
    second.port, second.listen = port, True  # its listener is the one of the extra lines
    second.wait_ready(10)
    harness.wait_for(lambda: hybrid.log().count(f"subscribed to {DATA_FILTER}") >= 2, 30,
                     what="the hybrid subscribed again")
    c = harness.Client(port)
    c.publish_wait("devices/after/data", b"after", qos=1)
    c.close()
    records = harness.read_topic(kafka1.bootstrap, topic, 2, timeout=30)
    rc, hs = stop_hybrid(hybrid)
    print("hybrid:", hs, "\n", hybrid.log())
    assert sorted((r.key, r.value) for r in records) == [
        (b"devices/after/data", b"after"), (b"devices/before/data", b"before")]
    assert rc == 0
    assert hs == hybrid_exact(2, connects=2)


def test_6_no_broker_duration_ends(kafka1, tools):
    topic = harness.unique("hyb")
    port = harness.free_port()  # nothing listens there
    started = time.monotonic()
    h = tools("mqk-hybrid", [HYBRID, "-p", port, "-b", kafka1.bootstrap, "-T", topic,
                             "-d", "3"])
    rc, hs = h.wait(20)
    took = time.monotonic() - started
    print("hybrid:", hs, f"after {took:.1f} s\n", h.log())
    assert rc == 0
    assert hs == hybrid_exact(0, connects=0)
    assert h.log().count("cannot connect to 127.0.0.1") >= 2
    assert 2.5 <= took < 15
