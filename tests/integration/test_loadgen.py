"""
test_loadgen.py - mqk-loadgen (tools/loadgen) against plain mosquittos (no plugin, no
Kafka): what it publishes is decoded by a paho subscriber with the layout of
include/mqk_payload.h, and its JSON summary and exit status are checked against that.

  1. 200 devices x 50 QoS 1 messages, MQTT 3.1.1: every sequence 0..49, once each
  2. MQTT 5 with QoS 2, and QoS 0
  3. persistent sessions: the broker is stopped, killed (-9) and started again under
     the load; what libmosquitto had not got acknowledged is sent again and arrives
  4. commands: answers on the v5 response topic (correlation data) and on the v3.1.1
     answer topic, with the command's id as the payload's trailer
  5. bad arguments: "Error: ..." and exit status 1, never a signal
  6. 2,000 devices on 2 threads at 1 msg/s for 5 s

Every process is started here on 127.0.0.1 free ports and stopped by its pid.
"""

import json
import os
import signal
import subprocess
import threading
import time
from collections import defaultdict

import paho.mqtt.client as mqtt

import harness
from harness import V311, V5

LOADGEN = os.path.join(harness.BUILD_DIR, "tools", "mqk-loadgen")
DATA_FILTER = "devices/+/data"


# ---- the payload codec of include/mqk_payload.h ----------------------------------------

def decode(payload):
    """(device, seq, sent_us, trailer) of an mqk-loadgen payload, or None."""
    if len(payload) < 20 or payload[:2] != b"MQ" or payload[2] != 1 or payload[3] == 0:
        return None
    n = payload[3]
    if len(payload) < 20 + n:
        return None
    return (payload[20:20 + n].decode("utf-8"), int.from_bytes(payload[4:12], "big"),
            int.from_bytes(payload[12:20], "big"), bytes(payload[20 + n:]))


# ---- mqk-loadgen as a process ------------------------------------------------------------

class Loadgen:
    """mqk-loadgen with its stdout (the JSON summary) and stderr in files of their own.
    Listed in harness.ALL, so a failed test shows its stderr."""

    def __init__(self, args, name="mqk-loadgen"):
        harness.require_file(LOADGEN, "mqk-loadgen", executable=True)
        self.name = name
        self.argv = [LOADGEN] + [str(a) for a in args]
        self.dir = harness.make_tempdir("mqk-loadgen-")
        self.out_path = os.path.join(self.dir, "summary.json")
        self.log_path = os.path.join(self.dir, "stderr.log")
        self._out = open(self.out_path, "wb")
        self._err = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err, close_fds=True)
        self.pid = self.proc.pid
        self.returncode = None
        self.stopped_at = None
        harness.ALL.append(self)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait(self, timeout):
        """Waits for the exit (SIGKILL after timeout, then raises); returns
        (exit status, summary dict or None, stderr)."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(10)
            self._close()
            raise harness.HarnessError(f"mqk-loadgen (pid {self.pid}) still running after "
                                       f"{timeout} s: {self.argv}\n{self.log()}") from None
        self._close()
        with open(self.out_path, "rb") as f:
            out = f.read().decode("utf-8", "replace")
        try:
            summary = json.loads(out) if out.strip() else None
        except ValueError:
            raise AssertionError(f"stdout is not one JSON object:\n{out}") from None
        return self.returncode, summary, self.log()

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def _close(self):
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
            self._out.close()
            self._err.close()

    def cleanup(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._close()


def run_loadgen(args, timeout=60):
    lg = Loadgen(args)
    try:
        return lg.wait(timeout)
    finally:
        lg.cleanup()


def host(broker):
    return f"127.0.0.1:{broker.port}"


def plain_broker(start_broker, extra=(), **kw):
    """A mosquitto without the plugin (harness.Mosquitto(plugin=None))."""
    return start_broker([], plugin=None, extra=list(extra), **kw)


# ---- a subscriber that decodes ------------------------------------------------------------

class Received:
    """What a subscriber got: per device, the sequence numbers in arrival order."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seqs = defaultdict(list)
        self.items = []  # (device, seq, sent_us, generation, topic)
        self.foreign = []
        self.generation = 0

    def on_message(self, client, userdata, msg):
        d = decode(msg.payload)
        with self.lock:
            if d is None:
                self.foreign.append((msg.topic, msg.payload[:40]))
                return
            self.seqs[d[0]].append(d[1])
            self.items.append((d[0], d[1], d[2], self.generation, msg.topic, len(msg.payload),
                               d[3]))

    def total(self):
        with self.lock:
            return len(self.items)


def subscriber(broker, received, protocol=V311, qos=1):
    c = harness.Client(broker.port, harness.unique("sub"), protocol,
                       on_message=received.on_message)
    c.subscribe(DATA_FILTER, qos)
    return c


def check_sequences(received, devices, per_device):
    """Every device of `devices` sent 0..per_device-1, each received exactly once."""
    with received.lock:
        seqs = {d: list(s) for d, s in received.seqs.items()}
        foreign = list(received.foreign)
    bad = []
    items = [(d, n, i) for d, s in seqs.items() for i, n in enumerate(s)]
    found = harness.sequence_analysis(items, {d: per_device for d in devices})
    for d in devices:
        s = found[d]
        if s.missing or s.duplicates or s.unexpected:  # order is not asked for here
            bad.append(f"{d}: {s.received} received, missing {s.missing[:5]}, "
                       f"{s.duplicates} duplicates, unexpected {s.unexpected[:5]}")
    unexpected = sorted(set(seqs) - set(devices))
    total = sum(len(s) for s in seqs.values())
    print(f"{len(devices)} devices x {per_device}: {total} received, {len(bad)} devices "
          f"wrong, {len(unexpected)} unexpected devices, {len(foreign)} foreign payloads")
    assert not bad, "\n".join(bad[:20])
    assert not unexpected, unexpected[:10]
    assert not foreign, foreign[:5]
    assert total == len(devices) * per_device


def assert_ok(rc, summary, err):
    assert summary is not None, f"no summary on stdout; stderr:\n{err}"
    assert rc == 0, f"exit status {rc}; summary {summary}; stderr:\n{err}"
    assert summary["ok"] is True


# ---- 1. 200 x 50 at QoS 1 -----------------------------------------------------------------

def test_qos1_v311_every_sequence(start_broker):
    b = plain_broker(start_broker)
    received = Received()
    sub = subscriber(b, received, V311, qos=1)
    try:
        # 200 devices x 10 msg/s = 2,000 msg/s for 5 s: a pace one paho subscriber keeps.
        rc, s, err = run_loadgen(["--host", host(b), "-n", 200, "-c", 50, "-r", 10, "-Q", 1,
                                  "-P", 311, "--ramp-up", 1, "-q"], timeout=90)
        print(json.dumps(s))
        assert_ok(rc, s, err)
        assert s["devices"] == 200 and s["connected"] == 200
        assert s["sent"] == {"qos0": 0, "qos1": 10000, "qos2": 0, "total": 10000}
        assert s["acked"] == 10000 and s["in_flight"] == 0 and s["failed"] == 0
        assert s["skipped_offline"] == 0 and s["connect_errors"] == 0
        harness.wait_for(lambda: received.total() >= 10000, 60,
                         what="10,000 messages at the subscriber")
        time.sleep(0.5)  # any duplicate would come now
        devices = [f"ue-{i:05d}" for i in range(200)]
        check_sequences(received, devices, 50)
        with received.lock:
            items = list(received.items)
        # Topic from the template, --size 64 of padding, a plausible send time.
        now_us = time.time() * 1e6
        for dev, seq, sent_us, _, topic, size, trailer in items:
            assert topic == f"devices/{dev}/data"
            assert size == 64 and trailer == bytes(64 - 20 - len(dev))
            assert now_us - 120e6 < sent_us <= now_us
    finally:
        sub.close()


# ---- 2. MQTT 5 with QoS 2; QoS 0 -------------------------------------------------------------

def test_qos2_v5(start_broker):
    b = plain_broker(start_broker)
    received = Received()
    sub = subscriber(b, received, V5, qos=2)
    try:
        rc, s, err = run_loadgen(["--host", host(b), "-n", 20, "-c", 30, "-r", 20, "-Q", 2,
                                  "-P", 5, "-i", "v5q2-%d", "--first", 100, "-s", 100, "-q"],
                                 timeout=60)
        print(json.dumps(s))
        assert_ok(rc, s, err)
        assert s["protocol"] == "5" and s["qos"] == 2
        assert s["sent"] == {"qos0": 0, "qos1": 0, "qos2": 600, "total": 600}
        assert s["acked"] == 600 and s["in_flight"] == 0
        harness.wait_for(lambda: received.total() >= 600, 30, what="600 messages")
        time.sleep(0.5)
        check_sequences(received, [f"v5q2-{i}" for i in range(100, 120)], 30)
        with received.lock:
            assert {size for *_, size, _ in received.items} == {100}
    finally:
        sub.close()


def test_qos0(start_broker):
    b = plain_broker(start_broker)
    received = Received()
    sub = subscriber(b, received, V311, qos=0)
    try:
        rc, s, err = run_loadgen(["--host", host(b), "-n", 20, "-c", 30, "-r", 20, "-Q", 0,
                                  "-i", "q0-%03d", "-q"], timeout=60)
        print(json.dumps(s))
        assert_ok(rc, s, err)
        assert s["sent"] == {"qos0": 600, "qos1": 0, "qos2": 0, "total": 600}
        assert s["acked"] == 0 and s["in_flight"] == 0 and s["failed"] == 0
        # QoS 0 may lose messages in general; on loopback, with a subscriber that keeps up
        # and max_queued_messages 0 (harness), mosquitto delivers them all.
        harness.wait_for(lambda: received.total() >= 600, 30, what="600 messages")
        time.sleep(0.5)
        check_sequences(received, [f"q0-{i:03d}" for i in range(20)], 30)
    finally:
        sub.close()


# ---- 3. persistent sessions across a broker crash ---------------------------------------------

class PersistentSubscriber:
    """A paho v3.1.1 subscriber with a persistent session (clean_session False) that
    reconnects by itself; each connection is a new `generation` of what it receives."""

    def __init__(self, port, received):
        self.received = received
        self.client_id = harness.unique("psub")
        self.session_present = []
        self.connected = threading.Event()
        # By keyword: paho-mqtt 2 (Debian 13) takes a callback API version first.
        self.c = mqtt.Client(client_id=self.client_id, clean_session=False, protocol=V311)
        self.c.max_inflight_messages_set(20)
        self.c.max_queued_messages_set(0)
        self.c.reconnect_delay_set(0.1, 0.5)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda *a: self.connected.clear()
        self.c.on_message = received.on_message
        self.c.connect("127.0.0.1", port, keepalive=60)
        self.c.loop_start()
        if not self.connected.wait(10):
            self.close()
            raise harness.HarnessError("persistent subscriber not connected in 10 s")

    def _on_connect(self, client, userdata, flags, rc):
        if rc != 0:
            return
        with self.received.lock:
            self.received.generation += 1
        self.session_present.append(flags.get("session present", 0))
        if not flags.get("session present", 0):
            client.subscribe(DATA_FILTER, 1)
        self.connected.set()

    def close(self):
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()


def test_persistent_session_resend_after_broker_crash(start_broker):
    """
    What is true, and asserted. kill -9 gives mosquitto no chance to save anything, so
    the restarted broker knows only what its last save held. The test makes that save
    itself (SIGUSR1 writes the persistence database) after the subscriber subscribed
    with a persistent session and before the load starts: the restarted broker has the
    subscriber's session and subscription, and queues for it whatever arrives.

    Under the load the broker is first stopped (SIGSTOP) for a second, then killed:
    while it is stopped it acknowledges nothing, so every message sent in that second is
    unacknowledged at the kill and libmosquitto must send it again after the reconnect.
    Those, and everything sent after the restart, must all reach the subscriber.

    What may honestly be missing: messages the killed broker had acknowledged but not yet
    written to the subscriber's socket (mosquitto keeps them only in memory: when the
    subscriber's in-flight window of 20 is full they wait in its queue). So per device
    the missing sequence numbers, if any, are one run that starts right after the last
    one the subscriber got from the first broker, and ends before the first one sent
    while the broker was stopped. Duplicates are allowed (QoS 1) and counted.
    """
    db_dir = harness.make_tempdir("mqk-persist-")
    os.chmod(db_dir, 0o777)  # mosquitto started as root writes as user mosquitto
    db_file = os.path.join(db_dir, "mosquitto.db")
    b = plain_broker(start_broker, extra=[
        "persistence true",
        f"persistence_location {db_dir}/",
        "autosave_interval 3600",
        "set_tcp_nodelay true",
    ])
    received = Received()
    sub = PersistentSubscriber(b.port, received)
    lg = None
    restarted = None
    try:
        # The subscriber's session and subscription, on disk.
        harness.wait_for(lambda: b.log().count(f"Sending SUBACK to {sub.client_id}"), 10,
                         what="the subscriber's SUBACK")
        b.process.signal(signal.SIGUSR1)
        harness.wait_for(lambda: os.path.exists(db_file), 10, what=f"{db_file} (SIGUSR1)")

        n_dev, rate = 20, 20
        lg = Loadgen(["--host", host(b), "-n", n_dev, "-r", rate, "-d", 9, "-Q", 1,
                      "-i", "crash-%02d", "--drain", 30, "--connect-timeout", 60, "-v", "-v"])
        harness.wait_for(lambda: received.total() >= n_dev * rate * 2, 15,
                         what="2 s of load at the subscriber")

        b.process.signal(signal.SIGSTOP)
        stopped_us = time.time() * 1e6
        time.sleep(1.0)
        killed = b.process
        killed.signal(signal.SIGKILL)
        assert killed.wait_exit(10) == -signal.SIGKILL
        killed.stop()  # closes its log; it is gone already
        before_kill = {}
        with received.lock:
            for dev, seq, _, gen, *_ in received.items:
                if gen == 1:
                    before_kill[dev] = max(before_kill.get(dev, -1), seq)
        time.sleep(0.3)  # the devices see the connection refused a few times

        # The same configuration and port: the fixture stops this one and wants exit 0.
        restarted = harness.Process("mosquitto (restarted)", [harness.MOSQUITTO, "-c",
                                    b.conf_path], os.path.join(b.dir, "restarted.log"))
        b.process = restarted
        b.wait_ready(10)

        rc, s, err = lg.wait(90)
        print(json.dumps(s))
        assert_ok(rc, s, err)
        assert s["acked"] == s["sent"]["total"] and s["in_flight"] == 0
        assert s["disconnects"] >= n_dev and s["reconnects"] >= n_dev, s
        assert s["resent"] > 0, "nothing was unacknowledged when the broker died?"
        total = s["sent"]["total"]

        def all_in():
            with received.lock:
                last = {d: max(v) for d, v in received.seqs.items()}
            return sum(v + 1 for v in last.values()) >= total
        harness.wait_for(all_in, 30, what=f"the last message of every device ({total})")
        time.sleep(1.0)
        assert sub.session_present[1:] and all(sub.session_present[1:]), \
            f"the restarted broker did not restore the subscriber's session: " \
            f"{sub.session_present}"

        with received.lock:
            items = list(received.items)
            seqs = {d: list(v) for d, v in received.seqs.items()}
        devices = [f"crash-{i:02d}" for i in range(n_dev)]
        assert sorted(seqs) == devices
        assert sum(max(v) + 1 for v in seqs.values()) == total, "a device's last messages"
        # Sent while the broker was stopped (50 ms after SIGSTOP to be sure it was).
        while_stopped = defaultdict(list)
        for dev, seq, sent_us, gen, *_ in items:
            if sent_us >= stopped_us + 50e3:
                while_stopped[dev].append(seq)
        lost = dups = 0
        problems = []
        for dev in devices:
            got = set(seqs[dev])
            dups += len(seqs[dev]) - len(got)
            missing = sorted(set(range(max(got) + 1)) - got)
            lost += len(missing)
            first_stopped = min(while_stopped[dev]) if while_stopped[dev] else None
            if first_stopped is None:
                problems.append(f"{dev}: nothing sent while the broker was stopped arrived")
                continue
            if missing:
                last_old = before_kill.get(dev, -1)
                run_ok = (missing == list(range(missing[0], missing[-1] + 1))
                          and missing[0] == last_old + 1 and missing[-1] < first_stopped)
                if not run_ok:
                    problems.append(f"{dev}: missing {missing[:10]} (last from the killed "
                                    f"broker {last_old}, first sent while stopped "
                                    f"{first_stopped})")
        print(f"{n_dev} devices, {total} sent, {s['resent']} resent by libmosquitto after "
              f"the reconnect, {lost} lost (acknowledged by the killed broker, not "
              f"delivered), {dups} duplicates, {s['reconnects']} reconnects, "
              f"{s['connect_errors']} connect errors, {s['skipped_offline']} turns "
              f"skipped offline")
        assert not problems, "\n".join(problems)
    finally:
        if lg is not None:
            lg.cleanup()
        sub.close()


# ---- 4. commands ---------------------------------------------------------------------------------

def test_commands_answered(start_broker):
    b = plain_broker(start_broker)
    tag = harness.unique("cmd")
    v5_id, v3_id = f"{tag}-v5-0", f"{tag}-v3-0"
    lg5 = Loadgen(["--host", host(b), "-n", 1, "-P", 5, "-i", f"{tag}-v5-%d", "-r", 0,
                   "-d", 30, "-v", "-v"], name="mqk-loadgen v5")
    lg3 = Loadgen(["--host", host(b), "-n", 1, "-P", 311, "-i", f"{tag}-v3-%d", "-r", 0,
                   "-d", 30, "-v", "-v"], name="mqk-loadgen v3.1.1")
    answers = []
    got = threading.Condition()

    def on_message(client, userdata, msg):
        with got:
            answers.append(msg)
            got.notify_all()
    ctl = harness.Client(b.port, harness.unique("ctl"), V5, on_message=on_message)
    try:
        for cid in (v5_id, v3_id):
            b.wait_log(f"Sending SUBACK to {cid}", 15)
        reply_topic = f"replies/{tag}"
        ctl.subscribe(reply_topic, 1)
        ctl.subscribe(f"devices/{v3_id}/answers", 1)

        correlation = b"corr-\x00\x01-42"
        ctl.publish_wait(f"devices/{v5_id}/commands", b'{"action":"scan"}', qos=1,
                         properties=harness.v5_properties(response_topic=reply_topic,
                                                          correlation_data=correlation))
        ctl.publish_wait(f"devices/{v3_id}/commands", b"first v3 command", qos=1)
        ctl.publish_wait(f"devices/{v3_id}/commands", b"second v3 command", qos=1)
        with got:
            assert got.wait_for(lambda: len(answers) >= 3, 15), \
                [(m.topic, m.payload) for m in answers]
        time.sleep(0.3)
        by_topic = defaultdict(list)
        for m in answers:
            by_topic[m.topic].append(m)
        assert sorted(by_topic) == sorted([reply_topic, f"devices/{v3_id}/answers"])

        (a5,) = by_topic[reply_topic]
        dev, seq, sent_us, trailer = decode(a5.payload)
        assert (dev, seq, trailer) == (v5_id, 0, correlation)
        assert getattr(a5.properties, "CorrelationData", None) == correlation
        assert abs(sent_us - time.time() * 1e6) < 60e6

        a3 = [decode(m.payload) for m in by_topic[f"devices/{v3_id}/answers"]]
        assert [(d, q, t) for d, q, _, t in a3] == [(v3_id, 0, b"first v3 command"),
                                                   (v3_id, 1, b"second v3 command")]

        lg5.signal(signal.SIGTERM)
        lg3.signal(signal.SIGTERM)
        for lg, commands in ((lg5, 1), (lg3, 2)):
            rc, s, err = lg.wait(30)
            print(lg.name, json.dumps(s))
            assert_ok(rc, s, err)
            assert s["interrupted"] is True
            assert s["commands_received"] == commands and s["answers_sent"] == commands
            assert s["answers_acked"] == commands and s["answers_in_flight"] == 0
            assert s["sent"]["total"] == 0
    finally:
        ctl.close()
        lg5.cleanup()
        lg3.cleanup()


# ---- 5. bad arguments ------------------------------------------------------------------------------

BAD_ARGS = [
    (["--qos", "3"], "--qos: '3' is not 0, 1 or 2"),
    (["--protocol", "4"], "--protocol: '4' is not 311 or 5"),
    (["--devices", "0"], "--devices"),
    (["--devices", "12x"], "--devices"),
    (["--rate", "-1"], "--rate"),
    (["--rate", "nan"], "--rate"),
    (["--size", "99999999999"], "--size: '99999999999' is too big"),
    (["--id-pattern", "ue-%s"], "--id-pattern"),
    (["--id-pattern", "ue-%d-%d"], "exactly one"),
    (["--id-pattern", "ue"], "exactly one"),
    (["--host", ""], "--host"),
    (["--host", "127.0.0.1:1883,,127.0.0.1:1884"], "empty host"),
    (["--host", "127.0.0.1:99999"], "not a port"),
    (["--topic", "devices/+/data"], "--topic"),
    (["--commands", "devices/{id}/#/x"], "--commands"),
    (["--keepalive", "3"], "--keepalive"),
    (["--rate", "1", "--total-rate", "5"], "--total-rate"),
    (["--count", "5", "--rate", "0"], "--count"),
    (["--session-expiry", "60"], "--session-expiry"),
    (["--threads", "0"], "--threads"),
    (["--duration", "-5"], "--duration"),
    (["--devices", "1000000"], "file descriptors"),
    (["--bogus"], "unknown option"),
    (["-n"], "needs a value"),
    (["surplus"], "unexpected argument"),
]


def test_bad_arguments():
    harness.require_file(LOADGEN, "mqk-loadgen", executable=True)
    for args, expect in BAD_ARGS:
        p = subprocess.run([LOADGEN] + args, capture_output=True, timeout=10,
                           stdin=subprocess.DEVNULL)
        err = p.stderr.decode("utf-8", "replace")
        print(f"{args} -> {p.returncode}: {err.splitlines()[0] if err else ''}")
        assert p.returncode == 1, (args, p.returncode, err)
        assert err.startswith("Error: ") and expect in err.splitlines()[0], (args, err)
        assert p.stdout == b"", (args, p.stdout)
    # -h and -V: stdout, status 0.
    p = subprocess.run([LOADGEN, "-h"], capture_output=True, timeout=10)
    assert p.returncode == 0 and b"Usage: mqk-loadgen" in p.stdout and b"(default 64)" in p.stdout
    p = subprocess.run([LOADGEN, "--version"], capture_output=True, timeout=10)
    assert p.returncode == 0 and b"libmosquitto 2." in p.stdout, p.stdout


def test_unreachable_broker_is_bounded():
    """Nothing listens: every device is a connect error, the run ends, status 1."""
    port = harness.free_port()
    rc, s, err = run_loadgen(["--host", f"127.0.0.1:{port}", "-n", 5, "-d", 1,
                              "--connect-timeout", 2], timeout=30)
    print(json.dumps(s), err)
    assert rc == 1 and s is not None and s["ok"] is False
    assert s["never_connected"] == 5 and s["connect_errors"] >= 5 and s["sent"]["total"] == 0
    assert "never connected" in err


# ---- 6. scale -----------------------------------------------------------------------------------------

def test_2000_devices_two_threads(start_broker):
    b = plain_broker(start_broker)
    started = time.monotonic()
    rc, s, err = run_loadgen(["--host", host(b), "-n", 2000, "-T", 2, "-r", 1, "-d", 5,
                              "--ramp-up", 1, "-q"], timeout=90)
    took = time.monotonic() - started
    print(json.dumps(s), f"{took:.1f} s")
    assert_ok(rc, s, err)
    assert s["connected"] == 2000 and s["ever_connected"] == 2000 and s["threads"] == 2
    # 2,000 msg/s for 5 s after a 1 s ramp-up (half a second's worth on average).
    expected = 2000 * 5.5
    assert 0.9 * expected <= s["sent"]["total"] <= 1.05 * expected, s["sent"]
    assert s["acked"] == s["sent"]["total"] and s["in_flight"] == 0
    assert s["connect_errors"] == 0 and s["skipped_offline"] == 0
    assert took < 30
