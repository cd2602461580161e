#!/usr/bin/python3
"""
delivery.py - seed 003's three designs for delivering Kafka records to devices spread over
many brokers, measured side by side on this machine.

  broadcast     "everybody reads everything": every broker reads the whole commands
                topic (a consumer group each) and delivers what is for its own clients
                (commands_mode broadcast);
  targeted      "intelligent router": mqk-router reads the commands and the brokers'
                presence records and produces each command to the topic of the one broker
                that holds the device (commands_mode targeted);
  redistribute  "redistributors": all brokers share one consumer group on the commands
                topic; the broker that reads a command forwards it through Kafka to the
                back-channel topic of the broker that holds the device
                (commands_mode redistribute, commands_topic_broker). Run only when the
                built plugin knows the option (else said so, and left out).

Each design gets a cluster of its own (tests/integration/test_cluster_commands.py's
Cluster): one real Kafka (1 node, shared by the run; 6 partitions on the commands topic,
3 on each broker's topic), 3 mosquittos with the plugin behind one HAProxy (roundrobin,
MQTT health checks), --devices mqk-loadgen devices (MQTT v5, clean sessions, publishing
nothing but their answers) connected through HAProxy, mqk-router for targeted. Then:

  1. ramp: commands produced by this script (confluent_kafka, idempotent) at fixed
     offered rates (--rates, each for --step seconds) to random devices; each device
     answers on devices/<id>/answers, which the plugin forwards to Kafka, where this
     script reads the answers. A step's commands count as lost when unanswered --wait
     seconds after the step. The ramp stops at the first step that lost or duplicated
     a command, or that this script could not offer (under 90 %). Per step: delivered
     commands/s, produce -> device latency p50/p99 (the device's answer time, in its
     mqk_payload, minus the time this script called produce(): one machine, one clock),
     Kafka records and bytes read per broker (the plugin's commands/consumed counter x
     the command record's key + value bytes: Kafka's batch framing is not counted), CPU %
     of each component (utime + stime from /proc/<pid>/stat while the step's commands
     were produced: brokers, mqk-router, Kafka's JVM, HAProxy, mqk-loadgen). The summary
     is the highest step with zero loss and p99 within --p99-bound ms, and the highest
     with zero loss whatever the latency;
  2. kill: --kill-rate commands/s for --kill-seconds; --kill-at seconds in, one broker is
     killed (kill -9). Its devices reconnect through HAProxy to the others. Counted:
     commands lost (unanswered --kill-wait seconds after the end) and duplicated, apart
     for the killed broker's devices and the others; how soon the killed broker's
     devices reconnected (the other brokers' log timestamps, 1 s resolution); when
     delivery resumed for them (the first answer of one of them after the kill; and from
     which produce time on every command for them was delivered). Each lost command is
     then classified by why (classify(): dead-lettered, waiting in the killed broker's
     own topic, skipped by every survivor, gone with the killed broker, the last split by
     its group's committed offset), and the killed broker is started again (same
     broker_id, same port, so HAProxy sees it back): up to --restart-wait seconds, how
     many of the lost are answered after all, and the new duplicates.

Every broker's command consumers run with session.timeout.ms --session-timeout-ms (3000):
redistribute's shared group so that a killed broker's partitions move within the kill
phase, every design's so that the killed broker, started again, gets its partitions back
(librdkafka's default: 45 s, during which its group still holds the dead member).

Optionally --ws-devices paho devices over WebSockets (through HAProxy's WebSockets
frontend, or straight to the brokers' WebSockets listeners when HAProxy has none), when
the harness offers Mosquitto(websockets=True) and this mosquitto supports it (Debian 13's;
not Debian 12's 2.0.11); otherwise skipped, and the output says so.

Writes delivery.md, delivery.csv and delivery-latency.png, delivery-rate.png,
delivery-kill.png (gnuplot) to --out (default docs/results). A benchmark: it fails only
when a design delivered nothing, when gnuplot failed, or (--smoke) on any loss or
duplicate at the low rate.

  bench/delivery.py [--designs broadcast,targeted,redistribute] [--devices 3000]
                    [--rates 250,500,1000,2000,4000,8000] [--step 6] [--wait 8]
                    [--p99-bound 1000]
                    [--kill-rate 100] [--kill-seconds 20] [--kill-at 6] [--kill-wait 15]
                    [--restart-wait 15] [--session-timeout-ms 3000]
                    [--ws-devices 30] [--out docs/results] [--smoke]
"""

import argparse
import collections
import inspect
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness as h  # noqa: E402
import test_cluster_commands as tcc  # noqa: E402  (the Cluster, the tools)
import study  # noqa: E402  (kafka_pids, machine)

import confluent_kafka as ck  # noqa: E402

COMMAND_PARTITIONS = 6  # of the controller's commands topic
PARTITIONS = 3          # of each broker's topic, presence and the answers topic
PAYLOAD = 64    # bytes of a command's value: its id, padded


# ---- the three designs: what each broker is told, and what else runs ------------------
#
# A leg is a function of the cluster and a broker id that returns the broker's command
# options; LEGS says which topics it needs and whether mqk-router runs. The redistribute
# leg is written from its spec (branch redistribute): adjust it here when it lands.

def leg_broadcast(cl, bid):
    """Everybody reads everything: a consumer group per broker (the default group)."""
    return [("commands_topic", cl.commands)]


def leg_targeted(cl, bid):
    """The router picks the broker; each broker reads only its own topic."""
    return [("commands_mode", "targeted"),
            ("commands_topic", cl.broker_topic),
            ("presence_topic", cl.presence),
            ("commands_return_topic", cl.commands),
            ("commands_dead_letter_topic", cl.dead)]


def leg_redistribute(cl, bid):
    """One consumer group shared by every broker on the commands topic; a command read by
    the wrong broker goes to the right one's back-channel topic."""
    return [("commands_mode", "redistribute"),
            ("commands_topic", cl.commands),
            ("commands_group", f"{cl.tag}-redistributors"),
            ("commands_topic_broker", cl.broker_topic),
            ("presence_topic", cl.presence),
            ("commands_dead_letter_topic", cl.dead)]


LEGS = {
    # design: (leg, per-broker topics + presence + dead letters, mqk-router)
    "broadcast": (leg_broadcast, False, False),
    "targeted": (leg_targeted, True, True),
    "redistribute": (leg_redistribute, True, False),
}


def plugin_knows(word):
    """Whether the built plugin has this option or value in it (its strings)."""
    with open(h.built_plugin(), "rb") as f:
        return word.encode() in f.read()


def available(design):
    if design == "redistribute":
        return plugin_knows("commands_topic_broker")
    return True


def websockets_supported():
    """(True, '') when the harness can start mosquitto with a WebSockets listener and this
    mosquitto has them, else (False, why)."""
    if ("websockets" not in inspect.signature(h.Mosquitto.__init__).parameters
            or not hasattr(h, "websockets_supported")):
        return False, "tests/integration/harness.py has no Mosquitto(websockets=True)"
    if not h.websockets_supported():
        return False, ("this mosquitto refuses a websockets listener (Debian 12's 2.0.11 is "
                       "built without libwebsockets)")
    return True, ""


class Cluster(tcc.Cluster):
    """test_cluster_commands' Cluster for any of the three designs: its topics, brokers,
    HAProxy (with room for every device), mqk-router for targeted, and the fleet. The
    devices publish nothing but their answers (-r 0) and use clean sessions."""

    def __init__(self, kafka, design, n_brokers, devices, ws_devices=0, session_ms=3000):
        self.design = design
        self.leg, self.channels, self.with_router = LEGS[design]
        self.ws_devices = ws_devices
        self.session_ms = session_ms
        self.ws = []
        self.ws_note = ""
        self.produced = 0
        self.killed = []  # brokers killed and started again: their dead processes
        # The parent's mode decides nothing we use but the router and the topics, which
        # _start below does itself.
        super().__init__(kafka, "broadcast", n_brokers=n_brokers, haproxy=True,
                         devices=devices, data_rate=0, hold=5)
        self.mode = design

    def _start(self, haproxy, data_rate):
        k = self.kafka
        started = time.monotonic()
        k.create_topics([self.commands], COMMAND_PARTITIONS)
        k.create_topics([self.answers], PARTITIONS)
        if self.channels:
            k.create_topics([self.broker_topic.replace("{broker}", b)
                             for b in self.broker_ids], PARTITIONS)
            k.create_topics([self.presence], PARTITIONS, config={"cleanup.policy": "compact"})
            k.create_topics([self.dead], 1)
        ws = False
        if self.ws_devices:
            ws, why = websockets_supported()
            if not ws:
                self.ws_note = f"WebSockets devices skipped: {why}"
        for bid in self.broker_ids:
            self.brokers.append(h.Mosquitto(self.broker_options(bid), extra=tcc.BROKER_EXTRA,
                                            name=f"mosquitto-{bid[-1]}",
                                            **({"websockets": True} if ws else {})))
        for b in self.brokers:
            b.wait_log(r"commands: consuming", 60)
        if self.design == "redistribute":
            self.wait_shared_topic_spread()
        self.sys = [h.SysCounters(b.port) for b in self.brokers]
        h.wait_for(lambda: all("commands/consumed" in s.values for s in self.sys), 15,
                   what="every broker's $SYS command counters")
        if self.with_router:
            self.router = self.tool("router", [
                tcc.ROUTER, "-b", k.bootstrap, "--presence", self.presence,
                "--commands", self.commands, "--group", h.unique("router"),
                "--broker-topic", self.broker_topic, "--hold", str(self.hold),
                "--dead-letter", self.dead, "-q"])
        proxy = {}
        if ws and "ws_ports" in inspect.signature(h.HAProxy.__init__).parameters:
            proxy = {"ws_ports": [b.ws_port for b in self.brokers]}
        self.haproxy = h.HAProxy([b.port for b in self.brokers],
                                 maxconn=self.devices + self.ws_devices + 200, **proxy)
        h.wait_for(lambda: all(" as hc " in b.log() for b in self.brokers), 15,
                   what="HAProxy's health checks on every broker")
        self.fleet = self.tool("fleet", [
            tcc.LOADGEN, "--host", self.hosts(), "-n", str(self.devices), "--id-pattern",
            self.device_prefix + "-%05d", "-P", "5", "--clean", "-r", "0", "-d", "3600",
            "--ramp-up", str(max(2, self.devices // 600)), "-T", "2", "-q"])
        counts = h.wait_for(self._fleet_connected, 120, interval=0.5,
                            what=f"{self.devices} devices connected")
        if ws:
            # Through HAProxy's WebSockets frontend when it has one, else round-robin
            # straight to the brokers' WebSockets listeners.
            ports = ([self.haproxy.ws_port] if getattr(self.haproxy, "ws_port", None)
                     else [b.ws_port for b in self.brokers])
            self.ws = [WsDevice(ports[i % len(ports)], f"{self.tag}-ws-{i:03d}")
                       for i in range(self.ws_devices)]
            self.ws_note = (f"{len(self.ws)} of the devices over WebSockets (paho), "
                            + ("through HAProxy" if len(ports) == 1 else
                               "straight to the brokers (this HAProxy has no ws_ports)"))
        for b in self.brokers:
            self.probe(b)
        self.setup_seconds = time.monotonic() - started
        print(f"[{self.design}] {len(self.brokers)} brokers, devices per broker {counts}"
              f"{f', {len(self.ws)} over WebSockets' if self.ws else ''}, ready in "
              f"{self.setup_seconds:.1f} s", file=sys.stderr, flush=True)

    def wait_shared_topic_spread(self, timeout=60):
        """redistribute: until the brokers' latest assignments of the shared commands topic
        are disjoint and cover it (the group settled)."""
        rx = re.compile(r"commands: consuming (\S+) partitions \[([0-9,]*)\]")

        def spread():
            sets = []
            for b in self.brokers:
                last = None
                for topic, parts in rx.findall(b.log()):
                    if topic == self.commands:
                        last = {int(x) for x in parts.split(",") if x}
                if last is None:
                    return None
                sets.append(last)
            union = set().union(*sets)
            return (union == set(range(COMMAND_PARTITIONS))
                    and sum(map(len, sets)) == len(union)) or None
        h.wait_for(spread, timeout, interval=0.2,
                   what="the shared commands topic's partitions spread over the brokers")

    def broker_options(self, bid):
        return [("bootstrap_servers", self.kafka.bootstrap),
                ("broker_id", bid),
                ("route_answers", f"devices/+/answers -> {self.answers} key=clientid"),
                ("stats_interval", "1")] + self.leg(self, bid) + [
                    # A dead member's partitions move after this, not librdkafka's 45 s:
                    # redistribute's shared group in the kill phase, and every design's
                    # broker started again after it (its group still holds the dead
                    # member until then: it would consume nothing for 45 s).
                    ("commands_kafka.session.timeout.ms", str(self.session_ms)),
                    ("commands_kafka.heartbeat.interval.ms",
                     str(max(100, self.session_ms // 6)))]

    def produce(self, device, payload, headers=None):
        self.produced += 1  # the probes: commands too, for the router's count
        return super().produce(device, payload, headers)

    def device_ids(self):
        return ([f"{self.device_prefix}-{i:05d}" for i in range(self.devices)]
                + [d.client_id for d in self.ws])

    def where(self, broker):
        """Device ids whose latest connection in broker's log is there (clients that
        connected more than once are rare here: clean sessions, no moves)."""
        rx = re.compile(r"New client connected from \S+ as (\S+) ")
        return set(rx.findall(broker.log()))

    def restart(self, i):
        """Starts broker i again after a kill -9: same broker_id and options, same ports
        (HAProxy's health checks find it back). The dead one is kept for its log and
        cleaned up at close."""
        old = self.brokers[i]
        self.killed.append(old)
        try:
            self.sys[i].close()
        except Exception:
            pass
        self.brokers[i] = h.Mosquitto(
            self.broker_options(self.broker_ids[i]), extra=tcc.BROKER_EXTRA, name=old.name,
            port=old.port, ws_port=old.ws_port,
            **({"websockets": True} if old.ws_port else {}))
        self.sys[i] = h.SysCounters(self.brokers[i].port)
        return self.brokers[i]

    def close(self, check=True):
        for d in self.ws:
            d.close()
        try:
            super().close(check)
        finally:
            for b in self.killed:
                b.cleanup()


class WsDevice:
    """A paho MQTT v5 device over WebSockets: answers each command on devices/<id>/answers
    with an mqk_payload whose trailer is the command's payload (as mqk-loadgen does)."""

    def __init__(self, port, client_id):
        import paho.mqtt.client as mqtt
        self.client_id = client_id
        self.seq = 0
        self.c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5, transport="websockets")
        self.c.on_message = self._on_message
        # Subscribed again at every connect: after a kill -9 it reconnects (through
        # HAProxy: to another broker), with a new session.
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(
            f"devices/{client_id}/commands", qos=1)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_message(self, client, userdata, msg):
        import test_controller
        client.publish(f"devices/{self.client_id}/answers",
                       test_controller.mqk_payload(self.client_id, self.seq, bytes(msg.payload)),
                       qos=1)
        self.seq += 1

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


# ---- commands out, answers back --------------------------------------------------------

class Commander:
    """Produces command records to the cluster's commands topic at a fixed rate (key: the
    device; value: the command id, padded to PAYLOAD bytes) and reads the answers the
    plugin forwards to the answers topic, pairing each with its command by the answer's
    trailer (include/mqk_payload.h). The consumer thread owns `answers`; the main thread
    reads it under `lock`."""

    def __init__(self, cl):
        self.cl = cl
        self.sent = {}            # id -> (device, produce time µs)
        self.placed = {}          # id -> (partition, offset) in the commands topic
        self.answers = collections.defaultdict(list)  # id -> [device answer time µs]
        self.lock = threading.Lock()
        self.next_id = 0
        self.producer = ck.Producer({"bootstrap.servers": cl.kafka.bootstrap,
                                     "enable.idempotence": True, "linger.ms": 2,
                                     "log_level": 3})
        self.consumer = ck.Consumer({"bootstrap.servers": cl.kafka.bootstrap,
                                     "group.id": h.unique("answers"),
                                     "enable.auto.commit": False, "fetch.wait.max.ms": 20,
                                     "log_level": 3})
        parts = []
        for p in range(PARTITIONS):
            _, high = self.consumer.get_watermark_offsets(ck.TopicPartition(cl.answers, p),
                                                          timeout=15)
            parts.append(ck.TopicPartition(cl.answers, p, high))
        self.consumer.assign(parts)
        self.stopping = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.stopping:
            for m in self.consumer.consume(500, 0.1):
                if m.error() is not None:
                    continue
                v = m.value() or b""
                if len(v) < 20 or v[:2] != b"MQ":
                    continue
                n = v[3]
                at_us = int.from_bytes(v[12:20], "big")
                trailer = v[20 + n:]
                try:
                    cid = int(trailer[:10])
                except ValueError:
                    continue
                with self.lock:
                    self.answers[cid].append(at_us)

    def _placed(self, cid):
        def cb(err, msg):  # served by poll()/flush() on this (the main) thread
            if err is None:
                self.placed[cid] = (msg.partition(), msg.offset())
        return cb

    def record_bytes(self, device):
        return len(device.encode()) + PAYLOAD

    def run(self, rate, seconds, devices, at=None):
        """Offers rate commands/s for seconds to random devices; calls at[0]() once
        at[1] seconds in. Returns the ids sent and the wall seconds it took."""
        ids = []
        start = time.monotonic()
        fired = at is None
        while True:
            now = time.monotonic() - start
            if now >= seconds:
                break
            if not fired and now >= at[1]:
                at[0]()
                fired = True
            due = int(rate * now) + 1 - len(ids)
            for _ in range(max(0, due)):
                cid = self.next_id
                self.next_id += 1
                dev = random.choice(devices)
                value = f"{cid:010d}".encode().ljust(PAYLOAD, b".")
                t_us = time.time_ns() // 1000
                try:
                    self.producer.produce(self.cl.commands, key=dev.encode(), value=value,
                                          on_delivery=self._placed(cid))
                except BufferError:
                    self.producer.poll(0.01)
                    continue
                self.sent[cid] = (dev, t_us)
                ids.append(cid)
            self.producer.poll(0)
            time.sleep(0.004)
        took = time.monotonic() - start
        if self.producer.flush(30) != 0:
            raise h.HarnessError("commands not acknowledged by Kafka in 30 s")
        return ids, took

    def wait(self, ids, timeout):
        """Waits until every id is answered, or timeout seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(i in self.answers for i in ids):
                    break
            time.sleep(0.1)
        time.sleep(1.0)  # duplicates come soon after, if they come

    def outcome(self, ids):
        """{sent, answered, lost, duplicates, latencies_ms} for these ids."""
        with self.lock:
            got = {i: list(self.answers.get(i, ())) for i in ids}
        lat = sorted((got[i][0] - self.sent[i][1]) / 1000.0 for i in ids if got[i])
        return {"sent": len(ids), "answered": sum(1 for i in ids if got[i]),
                "lost": sum(1 for i in ids if not got[i]),
                "duplicates": sum(len(got[i]) - 1 for i in ids if len(got[i]) > 1),
                "lat": lat}

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.consumer.close()
        self.producer.flush(5)


def pct(sorted_values, p):
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, int(round(p / 100.0 * (len(sorted_values) - 1))))
    return sorted_values[i]


# ---- CPU per component -----------------------------------------------------------------

def components(cl, kafka):
    out = {"brokers": [b.pid for b in cl.brokers], "kafka": study.kafka_pids(kafka),
           "haproxy": [cl.haproxy.process.pid], "loadgen": [cl.fleet.pid]}
    out["router"] = [cl.router.pid] if cl.router is not None else []
    return out


def cpu_now(pids):
    return {p: h.cpu_seconds(p) for ps in pids.values() for p in ps}


def cpu_pct(pids, c0, c1, seconds):
    """CPU % of each component between two cpu_now() (a process gone since: its last)."""
    return {name: 100.0 * sum((c1.get(p) or c0[p]) - c0[p] for p in ps
                              if c0.get(p) is not None) / seconds
            for name, ps in pids.items()}


# ---- one design --------------------------------------------------------------------------

def consumed(cl):
    """Per broker: command records read (commands/consumed: redistribute counts its
    back-channel's too) and presence records read (commands/presence_read, redistribute
    only; 0 where the plugin has no such counter)."""
    return ([int(s.values.get("commands/consumed", "0")) for s in cl.sys],
            [int(s.values.get("commands/presence_read", "0")) for s in cl.sys])


def run_design(kafka, design, a):
    cl = Cluster(kafka, design, a.brokers, a.devices, a.ws_devices, a.session_timeout_ms)
    com = None
    res = {"design": design, "steps": [], "kill": None, "router": None, "ws": cl.ws_note,
           "setup_s": cl.setup_seconds}
    try:
        com = Commander(cl)
        devices = cl.device_ids()
        rec_bytes = sum(com.record_bytes(d) for d in devices[:100]) / min(100, len(devices))
        pids = components(cl, kafka)
        ws_ids = {d.client_id for d in cl.ws}
        # Not measured: a fresh cluster's first requests are slower than its steady state.
        ids, _ = com.run(50, 1.0, devices)
        com.wait(ids, a.wait)
        for rate in a.rates:
            n0, c0, t0 = consumed(cl), cpu_now(pids), time.monotonic()
            ids, took = com.run(rate, a.step, devices)
            c1, t1 = cpu_now(pids), time.monotonic()
            com.wait(ids, a.wait)
            time.sleep(1.2)  # the $SYS counters come once a second
            n1 = consumed(cl)
            o = com.outcome(ids)
            ws = com.outcome([i for i in ids if com.sent[i][0] in ws_ids])
            per_broker = [y - x for x, y in zip(n0[0], n1[0])]
            presence = [y - x for x, y in zip(n0[1], n1[1])]
            step = {"design": design, "phase": "ramp", "offered": rate,
                    "offered_real": len(ids) / took, "sent": o["sent"],
                    "answered": o["answered"], "lost": o["lost"],
                    "duplicates": o["duplicates"], "delivered_per_s": o["answered"] / took,
                    "p50_ms": pct(o["lat"], 50), "p99_ms": pct(o["lat"], 99),
                    "max_ms": o["lat"][-1] if o["lat"] else float("nan"),
                    "read_records": per_broker, "presence_read": presence,
                    "ws_sent": ws["sent"], "ws_answered": ws["answered"],
                    "read_kb": [n * rec_bytes / 1024.0 for n in per_broker],
                    "read_per_cmd": sum(per_broker) / max(1, o["answered"]),
                    "cpu": cpu_pct(pids, c0, c1, t1 - t0)}
            res["steps"].append(step)
            cpu = step["cpu"]
            print(f"[{design}] {rate:g} cmd/s offered ({step['offered_real']:,.0f} real): "
                  f"{o['answered']:,}/{o['sent']:,} answered, lost {o['lost']}, dup "
                  f"{o['duplicates']}, p50/p99 {step['p50_ms']:.1f}/{step['p99_ms']:.1f} ms; "
                  f"records read per broker {per_broker}"
                  f"{f' (+ presence {presence})' if any(presence) else ''}; CPU % brokers "
                  f"{cpu['brokers']:.0f} router {cpu['router']:.0f} Kafka "
                  f"{cpu['kafka']:.0f} haproxy {cpu['haproxy']:.0f} loadgen "
                  f"{cpu['loadgen']:.0f}{ws_line(ws) if ws_ids else ''}",
                  file=sys.stderr, flush=True)
            if o["lost"] or o["duplicates"] or step["offered_real"] < 0.9 * rate:
                break
        if a.kill_seconds > 0:
            res["kill"] = kill_run(cl, com, devices, a)
        if cl.router is not None:
            rep = cl.stop_json(cl.router)
            res["router"] = {k: rep.get(k) for k in ("records_read", "presence_records",
                                                     "routed", "dead_lettered")} if rep else None
            if rep:
                res["router"]["commands_produced"] = com.next_id + cl.produced
    finally:
        if com is not None:
            com.close()
        killed = res["kill"]["broker"] if res.get("kill") else None
        cl.close(check=False)
        bad = [f"{b.name} exited with {b.process.returncode}" for i, b in enumerate(cl.brokers)
               if i != killed and b.process.returncode != 0]
        if bad:
            raise SystemExit(f"{design}: " + "; ".join(bad))
    return res


def connections(broker):
    """[(epoch second, client id)] of every connection in broker's log (log_timestamp)."""
    rx = re.compile(r"^(\d+): New client connected from \S+ as (\S+) ", re.M)
    return [(int(ts), cid) for ts, cid in rx.findall(broker.log())]


def ws_line(o):
    return f"; over WebSockets {o['answered']}/{o['sent']} answered"


def log_times(broker, ids, after):
    """{device: first epoch second after `after` it connected to broker}."""
    out = {}
    for t, cid in connections(broker):
        if cid in ids and t >= int(after) and cid not in out:
            out[cid] = t
    return out


def command_id(value):
    """The command id a command record's value starts with (Commander.run), or None."""
    try:
        return int((value or b"")[:10])
    except ValueError:
        return None


def read_topic(kafka, topic, timeout=15.0):
    """{command id: [(partition, offset, timestamp ms, headers dict)]} of every record of
    topic, from its beginning to its end (as it is when read)."""
    c = ck.Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": h.unique("kill"),
                     "enable.auto.commit": False, "enable.partition.eof": True,
                     "log_level": 3})
    out = collections.defaultdict(list)
    try:
        parts = list(c.list_topics(topic, timeout=10).topics[topic].partitions)
        c.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in parts])
        eof, deadline = set(), time.monotonic() + timeout
        while len(eof) < len(parts):
            if time.monotonic() > deadline:
                raise h.HarnessError(f"{topic} not read to its end in {timeout:g} s")
            for m in c.consume(500, 0.2):
                if m.error() is not None:
                    if m.error().code() == ck.KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                    continue
                cid = command_id(m.value())
                if cid is not None:
                    hdr = {k: (v or b"").decode("utf-8", "replace")
                           for k, v in (m.headers() or [])}
                    out[cid].append((m.partition(), m.offset(), m.timestamp()[1], hdr))
    finally:
        c.close()
    return out


def committed(kafka, group, topic):
    """{partition: the offset group committed on topic} (absent: nothing committed)."""
    c = ck.Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group,
                     "enable.auto.commit": False, "log_level": 3})
    try:
        parts = list(c.list_topics(topic, timeout=10).topics[topic].partitions)
        got = c.committed([ck.TopicPartition(topic, p) for p in parts], timeout=10)
        return {tp.partition: tp.offset for tp in got if tp.offset >= 0}
    finally:
        c.close()


# Why a command of the kill phase was lost (unanswered within --kill-wait), per design:
WHY = [("dead", "dead-lettered"),
       ("waiting", "waiting in the killed broker's own topic"),
       ("skipped", "skipped by every surviving broker"),
       ("with_it", "gone with the killed broker")]


def classify(cl, com, victim, lost, at):
    """Sorts the lost command ids by why, from what Kafka and the survivors say:
    dead: in the dead-letter topic (its mqk.reason);
    waiting: in the killed broker's own topic (targeted: routed there by mqk-router;
      redistribute: forwarded to its back-channel), stamped after the kill;
    skipped: broadcast, produced after the kill (so the killed broker cannot have read
      it), unanswered: every survivor read it and skipped it, the device being connected
      to none of them (the survivors' counters check the number: check_skipped);
    with_it: the rest, the killed broker's to deliver before it died; split by its
      consumer group's committed offset on the topic it read the command from:
      "committed" (settled, i.e. handed to its mosquitto: gone with it) and "uncommitted"
      (read but not settled, or not read yet when it died).
    Returns ({why: [ids]}, {dead-letter reason: n}, {with_it split: n})."""
    kill_ms = at * 1000
    out = {w: [] for w, _ in WHY}
    reasons = collections.Counter()
    left = set(lost)
    if cl.channels:
        dead = read_topic(cl.kafka, cl.dead)
        for i in sorted(left):
            if i in dead:
                out["dead"].append(i)
                reasons[dead[i][-1][3].get("mqk.reason", "(no mqk.reason)")] += 1
        left -= set(out["dead"])
        own_topic = cl.broker_topic.replace("{broker}", cl.broker_ids[victim])
        own = read_topic(cl.kafka, own_topic)
        out["waiting"] = sorted(i for i in left if any(r[2] >= kill_ms for r in own.get(i, ())))
        left -= set(out["waiting"])
    if cl.design == "broadcast":
        out["skipped"] = sorted(i for i in left if com.sent[i][1] > at * 1e6)
        left -= set(out["skipped"])
    out["with_it"] = sorted(left)
    # Where the killed broker read each of the rest, and what its group had committed there.
    bid = cl.broker_ids[victim]
    if cl.design == "broadcast":
        group, topic = f"mosquitto-kafka-commands-{bid}", cl.commands
        where = {i: com.placed.get(i) for i in left}
    else:  # targeted: its own topic; redistribute: its back-channel (+ the shared topic)
        group = (f"mosquitto-kafka-commands-{bid}" if cl.design == "targeted"
                 else f"{cl.tag}-redistributors-{bid}")
        topic = own_topic
        where = {i: own[i][-1][:2] if own.get(i) else None for i in left}
    done = committed(cl.kafka, group, topic)
    split = collections.Counter()
    for i, pl in where.items():
        if pl is None:
            split["not in its topic" if cl.design != "broadcast" else "offset unknown"] += 1
        else:
            split["committed" if pl[1] < done.get(pl[0], 0) else "uncommitted"] += 1
    return out, dict(reasons), dict(split)


def survivor_counters(cl, victim):
    """{counter: sum over the surviving brokers} of commands/consumed, delivered, skipped."""
    return {k: sum(int(s.values.get(f"commands/{k}", "0")) for j, s in enumerate(cl.sys)
                   if j != victim) for k in ("consumed", "delivered", "skipped")}


def kill_run(cl, com, devices, a):
    """kill -9 of the first broker a.kill_at seconds into a.kill_seconds of commands."""
    victim = 0
    state = {}

    def kill():
        state["moved"] = cl.where(cl.brokers[victim])
        state["at"] = time.time()
        os.kill(cl.brokers[victim].pid, signal.SIGKILL)

    before = survivor_counters(cl, victim)
    ids, took = com.run(a.kill_rate, a.kill_seconds, devices, at=(kill, a.kill_at))
    com.wait(ids, a.kill_wait)
    at = state["at"]
    time.sleep(1.2)  # the survivors' $SYS counters come once a second
    after_c = survivor_counters(cl, victim)
    moved = state["moved"] & set(devices)
    # The killed broker's devices are also those that came to a surviving broker after
    # the kill (clean sessions, nobody moves otherwise): a check on its log.
    came = set()
    for b in cl.brokers[victim + 1:]:
        seen_before = {cid for t, cid in connections(b) if t < int(at)}
        came |= {cid for t, cid in connections(b) if t >= int(at)} - seen_before
    came &= set(devices)
    if moved != came:
        print(f"[{cl.design}] note: {len(moved)} devices in {cl.brokers[victim].name}'s log, "
              f"{len(came)} came to the others after the kill ({len(moved & came)} in both; "
              f"its log: {len(cl.brokers[victim].log()):,} characters): counting "
              f"{len(moved | came)}", file=sys.stderr, flush=True)
    moved |= came
    kill_us = at * 1e6
    with com.lock:
        got = {i: list(com.answers.get(i, ())) for i in ids}
    mine = [i for i in ids if com.sent[i][0] in moved]
    others = [i for i in ids if com.sent[i][0] not in moved]
    lost_mine = [i for i in mine if not got[i]]
    lost_others = [i for i in others if not got[i]]
    dup = sum(len(got[i]) - 1 for i in ids if len(got[i]) > 1)
    after = [got[i][0] for i in mine if got[i] and got[i][0] > kill_us]
    first = (min(after) - kill_us) / 1e6 if after else float("nan")
    # From which produce time on (relative to the kill) every command for the killed
    # broker's devices was delivered.
    last_lost = max(((com.sent[i][1] - kill_us) / 1e6 for i in lost_mine), default=None)
    resumed = max(0.0, last_lost) if last_lost is not None else 0.0
    back = {}
    for b in cl.brokers[victim + 1:]:
        back.update(log_times(b, moved, at))
    # Logged in whole seconds: connected before t + 1, so at most t + 1 - at after.
    rc = sorted(t + 1 - at for t in back.values())
    # Delivered fraction per second of produce time, the killed broker's devices.
    bins = collections.defaultdict(lambda: [0, 0])
    for i in mine:
        s = int((com.sent[i][1] - kill_us) // 1e6)
        bins[s][0] += 1
        bins[s][1] += 1 if got[i] else 0
    lat_after = sorted((got[i][0] - com.sent[i][1]) / 1000.0 for i in mine
                       if got[i] and com.sent[i][1] > kill_us)
    why, reasons, split = classify(cl, com, victim, lost_mine + lost_others, at)
    # Broadcast: every survivor reads every command; one delivers it or all skip it. So
    # the commands skipped by every survivor are those read minus those they delivered;
    # of them, those for the killed broker's devices produced before the kill were its to
    # deliver; the rest must be the "skipped" ones.
    d = {c: after_c[c] - before[c] for c in before}
    survivors = len(cl.brokers) - 1
    pre_mine = sum(1 for i in mine if com.sent[i][1] <= kill_us)
    skipped_check = (d["consumed"] // survivors - d["delivered"] - pre_mine
                     if cl.design == "broadcast" else None)
    # The killed broker started again (same broker_id, same port): what waited for it.
    with com.lock:
        dup_before = sum(len(com.answers.get(i, ())) - 1 for i in ids
                         if len(com.answers.get(i, ())) > 1)
    restarted = time.time()
    cl.restart(victim)
    cl.brokers[victim].wait_log(r"commands: consuming", 30)
    h.wait_for(lambda: "commands/consumed" in cl.sys[victim].values, 15,
               what=f"{cl.brokers[victim].name}'s $SYS counters after its restart")
    back_in = time.time() - restarted
    lost_all = set(lost_mine + lost_others)
    deadline = time.monotonic() + a.restart_wait
    while time.monotonic() < deadline:
        with com.lock:
            if all(i in com.answers for i in lost_all):
                break
        time.sleep(0.2)
    time.sleep(1.0)  # duplicates come soon after, if they come
    with com.lock:
        now = {i: list(com.answers.get(i, ())) for i in ids}
    recovered = {w: sum(1 for i in why[w] if now[i]) for w, _ in WHY}
    restart_dup = sum(len(v) - 1 for v in now.values() if len(v) > 1) - dup_before
    restart_read = int(cl.sys[victim].values.get("commands/consumed", "0"))
    k = {"broker": victim, "moved_devices": len(moved), "reconnected": len(back),
         "reconnect_p50_s": pct(rc, 50), "reconnect_max_s": rc[-1] if rc else float("nan"),
         "sent": len(ids), "to_moved": len(mine), "lost_moved": len(lost_mine),
         "lost_others": len(lost_others), "duplicates": dup, "first_after_s": first,
         "resumed_s": resumed if mine else float("nan"),
         "moved_p99_ms": pct(lat_after, 99), "offered": a.kill_rate,
         **{f"lost_{w}": len(why[w]) for w, _ in WHY},
         **{f"recovered_{w}": recovered[w] for w, _ in WHY},
         "dead_reasons": reasons, "with_it_split": split, "skipped_check": skipped_check,
         "survivors": d, "restart_s": back_in, "restart_dup": restart_dup,
         "restart_read": restart_read,
         "bins": sorted((s, n, ok) for s, (n, ok) in bins.items())}
    print(f"[{cl.design}] kill -9 of {cl.brokers[victim].name} {a.kill_at:g} s into "
          f"{a.kill_rate:g} cmd/s: {len(moved)} devices on it, {len(back)} back within "
          f"{k['reconnect_max_s']:.1f} s (p50 {k['reconnect_p50_s']:.1f} s); of {len(ids)} "
          f"commands, {len(mine)} for them: lost {len(lost_mine)}, others lost "
          f"{len(lost_others)}, duplicates {dup}; first delivery to one of them "
          f"{first:.2f} s after the kill, every command produced from "
          f"{k['resumed_s']:.2f} s after the kill on delivered", file=sys.stderr, flush=True)
    print(f"[{cl.design}] lost {len(lost_all)}: " + ", ".join(
        f"{label} {len(why[w])}" for w, label in WHY)
        + f"; dead-letter reasons {reasons or '-'}; of those gone with it, by its group's "
        f"committed offset: {split or '-'}; survivors' counters over the phase {d}"
        + (f" -> skipped by every survivor after the kill: {skipped_check}"
           if skipped_check is not None else ""), file=sys.stderr, flush=True)
    print(f"[{cl.design}] started again (same broker_id, port {cl.brokers[victim].port}), "
          f"consuming after {back_in:.1f} s, read {restart_read} command records; "
          f"answered since: " + ", ".join(f"{label} {recovered[w]}/{len(why[w])}"
                                          for w, label in WHY)
          + f"; new duplicates {restart_dup}", file=sys.stderr, flush=True)
    return k


# ---- output ------------------------------------------------------------------------------

CSV = ["design", "phase", "offered", "offered_real", "sent", "answered", "lost",
       "duplicates", "delivered_per_s", "p50_ms", "p99_ms", "max_ms", "read_per_cmd",
       "read_kb_per_broker", "cpu_brokers", "cpu_router", "cpu_kafka", "cpu_haproxy",
       "cpu_loadgen", "moved_devices", "reconnect_p50_s", "reconnect_max_s", "lost_moved",
       "lost_others", "first_after_s", "resumed_s", "lost_dead", "lost_waiting",
       "lost_skipped", "lost_with_it", "recovered_dead", "recovered_waiting",
       "recovered_skipped", "recovered_with_it", "skipped_check", "restart_s", "restart_dup"]


def csv_rows(results):
    rows = []
    for r in results:
        for s in r["steps"]:
            row = dict(s)
            row["read_kb_per_broker"] = "/".join(f"{x:.1f}" for x in s["read_kb"])
            for c in ("brokers", "router", "kafka", "haproxy", "loadgen"):
                row[f"cpu_{c}"] = s["cpu"][c]
            rows.append(row)
        k = r["kill"]
        if k:
            rows.append(dict(k, design=r["design"], phase="kill", answered=k["sent"]
                             - k["lost_moved"] - k["lost_others"],
                             lost=k["lost_moved"] + k["lost_others"]))
    return rows


def fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if v != v else f"{v:.3f}"
    return str(v)


def best_step(r, p99_bound=None):
    """The step with the highest delivered rate that lost nothing (and, with p99_bound,
    kept p99 within it in ms), or None."""
    ok = [s for s in r["steps"] if not s["lost"] and not s["duplicates"]
          and (p99_bound is None or s["p99_ms"] <= p99_bound)]
    return max(ok, key=lambda s: s["delivered_per_s"]) if ok else None


def markdown(results, a, seconds):
    out = [f"# Delivering Kafka records to devices on {a.brokers} brokers: three designs\n",
           f"`bench/delivery.py` ({'--smoke, ' if a.smoke else ''}{a.devices:,} mqk-loadgen "
           f"devices through HAProxy, real Kafka 1 node, {COMMAND_PARTITIONS} partitions on "
           f"the commands topic; ramp {', '.join(f'{x:g}' for x in a.rates)} cmd/s "
           f"offered, {a.step:g} s each; run took {seconds / 60:.1f} min; machine: "
           f"below). Numbers of one run on "
           f"a shared 2-core machine.{' ' + a.note if a.note else ''}\n",
           f"## At the highest offered rate delivered with zero loss and p99 within "
           f"{a.p99_bound:g} ms\n",
           "| design | offered cmd/s | delivered cmd/s | produce → device p50 / p99 ms "
           "| Kafka records read per delivered command (brokers) | KB read per broker "
           "| mqk-router: records read per command, whole run (+ presence records) "
           "| CPU % brokers / router / Kafka / HAProxy / loadgen |",
           "|---|---:|---:|---:|---:|---|---|---|"]
    for r in results:
        s = best_step(r, a.p99_bound)
        if s is None:
            out.append(f"| {r['design']} | none without loss | | | | | | |")
            continue
        c = s["cpu"]
        ro = r["router"]
        router = (f"{ro['records_read'] / ro['commands_produced']:.2f} "
                  f"(+{ro['presence_records']:,})" if ro else "–")
        pres = sum(s["presence_read"])
        out.append(f"| {r['design']} | {s['offered']:,.0f} | {s['delivered_per_s']:,.0f} | "
                   f"{s['p50_ms']:.1f} / {s['p99_ms']:.1f} | {s['read_per_cmd']:.2f}"
                   f"{f' (+{pres:,} presence)' if pres else ''} | "
                   f"{' / '.join(f'{x:,.0f}' for x in s['read_kb'])} | {router} | "
                   f"{c['brokers']:.0f} / "
                   f"{c['router']:.0f} / {c['kafka']:.0f} / {c['haproxy']:.0f} / "
                   f"{c['loadgen']:.0f} |")
    out += ["\nRecords read: the brokers' `commands/consumed` counters over the step / "
            "commands answered (redistribute: the shared topic and the back-channels; the "
            "presence records each broker reads there, `commands/presence_read`, in "
            "brackets); KB: those counters × the command record's key + value bytes "
            "(Kafka's batch framing not counted). Latency: the device's answer time (its "
            "payload) minus the time the command was handed to the producer.\n",
            "Highest rate delivered with zero loss, whatever the latency: " + "; ".join(
                f"{r['design']} {best_step(r)['delivered_per_s']:,.0f} cmd/s (p99 "
                f"{best_step(r)['p99_ms']:,.0f} ms)" if best_step(r) else
                f"{r['design']} none" for r in results)
            + f" (a step counts as lost what was unanswered {a.wait:g} s after it; the ramp "
            "stops at the first step that lost, or that this script could not offer).\n",
            "## Every step of the ramp\n",
            "| design | offered | real | sent | answered | lost | dup | delivered/s "
            "| p50 ms | p99 ms | read/cmd | CPU % brokers / router / Kafka |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        for s in r["steps"]:
            c = s["cpu"]
            out.append(f"| {r['design']} | {s['offered']:,.0f} | {s['offered_real']:,.0f} | "
                       f"{s['sent']:,} | {s['answered']:,} | {s['lost']} | {s['duplicates']} "
                       f"| {s['delivered_per_s']:,.0f} | {s['p50_ms']:.1f} | "
                       f"{s['p99_ms']:.1f} | {s['read_per_cmd']:.2f} | {c['brokers']:.0f} / "
                       f"{c['router']:.0f} / {c['kafka']:.0f} |")
    if any(r["kill"] for r in results):
        out += [f"\n## One broker killed (kill -9) {a.kill_at:g} s into {a.kill_seconds:g} s "
                f"of {a.kill_rate:g} cmd/s\n",
                "| design | devices on it | reconnected, p50 / max s after the kill "
                "| commands for them | lost | others lost | duplicates "
                "| first delivery to them, s after | all delivered from produce time, s after "
                "| lost: dead-lettered / waiting in its topic / skipped by every survivor / "
                "gone with it | restarted: back in s / lost then answered / new duplicates |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in results:
            k = r["kill"]
            if not k:
                continue
            out.append(f"| {r['design']} | {k['moved_devices']:,} | {k['reconnected']:,}, "
                       f"{k['reconnect_p50_s']:.1f} / {k['reconnect_max_s']:.1f} | "
                       f"{k['to_moved']:,} | {k['lost_moved']} | {k['lost_others']} | "
                       f"{k['duplicates']} | {k['first_after_s']:.2f} | "
                       f"{k['resumed_s']:.2f} | "
                       + " / ".join(str(k[f"lost_{w}"]) for w, _ in WHY)
                       + f" | {k['restart_s']:.1f} / "
                       f"{sum(k[f'recovered_{w}'] for w, _ in WHY)} / {k['restart_dup']} |")
        out.append(f"\nLost: unanswered {a.kill_wait:g} s after the last command. Reconnect "
                   "times: upper bounds from the other brokers' log timestamps (whole "
                   "seconds).\n")
        out.append(WHY_TEXT.format(restart_wait=a.restart_wait))
        for r in results:
            k = r["kill"]
            if k:
                out.append(why_line(r["design"], k))
    routers = [r for r in results if r["router"]]
    if routers:
        out.append("\nmqk-router over the whole run (warm-up, ramp, kill): " + "; ".join(
            f"{r['design']}: {r['router']}" for r in routers))
    for r in results:
        if r["ws"]:
            ws = (f": {sum(x['ws_answered'] for x in r['steps'])} of "
                  f"{sum(x['ws_sent'] for x in r['steps'])} commands to them answered in "
                  f"the ramp" if any(x["ws_sent"] for x in r["steps"]) else "")
            out.append(f"\n{r['design']}: {r['ws']}{ws}.")
    skipped = [d for d in a.skipped]
    if skipped:
        out.append("\nNot run: " + "; ".join(skipped) + ".")
    out += ["\n## Machine\n", "```", study.machine("real (1 node)").rstrip(), "```"]
    return "\n".join(out) + "\n"


WHY_TEXT = """Why each lost command was lost, from what Kafka and the survivors say
(`classify()`): **dead-lettered**: in the dead-letter topic (its `mqk.reason` below);
**waiting in its topic**: in the killed broker's own topic, stamped after the kill (targeted:
mqk-router routed it there, from the presence the killed broker had published; redistribute:
a survivor forwarded it to the killed broker's back-channel); **skipped by every survivor**
(broadcast): produced after the kill, so the killed broker cannot have read it: both
survivors read it and skipped it, the device being connected to neither at that moment (the
survivors' `commands/consumed`, `delivered` counters give the same number: read − delivered −
the killed broker's commands from before the kill); **gone with it**: the rest, the killed
broker's to deliver; split by its consumer group's committed offset where it read them:
*committed* (settled: handed to its mosquitto, which died with them; at-least-once ends at
that hand-off, docs/commands.md) or *uncommitted* (read and not settled, or not read yet).
Then the killed broker is started again (same `broker_id`, same port: HAProxy's health check
finds it; its devices stay where they reconnected) and the script waits up to
{restart_wait:g} s for the lost commands: "back in" is the time until it consumed again,
"lost then answered" how many of the lost were answered after all (read again from its topic
or its group's committed offset and forwarded / returned to where the device is now), "new
duplicates" answers to commands already answered.
"""


def why_line(design, k):
    parts = [f"{design}: lost {k['lost_moved'] + k['lost_others']}"]
    parts.append(", ".join(f"{label} {k[f'lost_{w}']} (answered after the restart: "
                           f"{k[f'recovered_{w}']})" for w, label in WHY if k[f"lost_{w}"])
                 or "none")
    if k["dead_reasons"]:
        parts.append("dead-letter reasons: " + ", ".join(
            f"`{r}` {n}" for r, n in sorted(k["dead_reasons"].items())))
    if k["with_it_split"]:
        parts.append("gone with it, by its group's committed offset: " + ", ".join(
            f"{s} {n}" for s, n in sorted(k["with_it_split"].items())))
    sv = k["survivors"]
    parts.append(f"survivors' counters over the phase: consumed {sv['consumed']:,}, "
                 f"delivered {sv['delivered']:,}, skipped {sv['skipped']:,}"
                 + (f" (so skipped by every survivor after the kill: {k['skipped_check']})"
                    if k["skipped_check"] is not None else ""))
    if design == "broadcast":
        parts.append("nothing can be recovered by the restart: it reads the commands topic "
                     "from its group's committed offset and skips what is for devices now "
                     f"connected elsewhere (read {k['restart_read']} records after the restart)")
    else:
        parts.append(f"after the restart it read {k['restart_read']} command records")
    return "* " + "; ".join(parts) + "."


def plot(out_dir, results, prefix="delivery"):
    gp = shutil.which("gnuplot")
    if gp is None:
        print("gnuplot not found (scripts/install-deps.sh installs gnuplot-nox): no plots",
              file=sys.stderr)
        return None
    script = ["set terminal pngcairo size 800,500", "set key top left", "set grid",
              "set datafile separator ','"]
    done = []

    def block(name, points):
        script.extend([f"${name} << EOD"] + [f"{x:g},{y:g}" for x, y in points] + ["EOD"])

    series = {"latency": [], "rate": [], "kill": []}
    for i, r in enumerate(results):
        d = r["design"]
        block(f"p99_{i}", [(s["offered"], s["p99_ms"]) for s in r["steps"]
                           if s["p99_ms"] == s["p99_ms"]])
        block(f"p50_{i}", [(s["offered"], s["p50_ms"]) for s in r["steps"]
                           if s["p50_ms"] == s["p50_ms"]])
        series["latency"] += [f"$p99_{i} using 1:2 with linespoints lc {i + 1} title '{d} p99'",
                              f"$p50_{i} using 1:2 with linespoints lc {i + 1} dt 2 "
                              f"title '{d} p50'"]
        block(f"rate_{i}", [(s["offered"], s["delivered_per_s"]) for s in r["steps"]])
        series["rate"].append(f"$rate_{i} using 1:2 with linespoints lc {i + 1} title '{d}'")
        if r["kill"] and r["kill"]["bins"]:
            block(f"kill_{i}", [(s, 100.0 * ok / n) for s, n, ok in r["kill"]["bins"]])
            series["kill"].append(f"$kill_{i} using 1:2 with linespoints lc {i + 1} "
                                  f"title '{d}'")
    plots = [
        # (name, x label, y label, log x and y, title)
        ("latency", "offered commands/s", "produce -> device (ms)", True,
         "produce -> device latency against the offered rate"),
        ("rate", "offered commands/s", "delivered commands/s", False,
         "commands delivered per second (zero-loss steps and the first lossy one)"),
        ("kill", "second the command was produced, relative to the kill -9",
         "delivered (%)", False,
         "commands for the devices of the killed broker: delivered, by produce second"),
    ]
    for name, xl, yl, logy, title in plots:
        if not series[name]:
            continue
        path = os.path.join(out_dir, f"{prefix}-{name}.png")
        script += [f"set output '{path}'", f'set xlabel "{xl}"', f'set ylabel "{yl}"',
                   "set logscale xy" if logy else "unset logscale",
                   "set yrange [0:105]" if name == "kill" else "set autoscale y",
                   "set key bottom right" if name == "kill" else "set key top left",
                   f'set title "{title}"', "plot " + ", ".join(series[name])]
        done.append(os.path.basename(path))
    r = subprocess.run([gp], input="\n".join(script) + "\n", text=True, capture_output=True,
                       timeout=60)
    if r.returncode != 0:
        print(f"gnuplot failed:\n{r.stderr}", file=sys.stderr)
        return None
    return done


# ---- main ----------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--designs", default="broadcast,targeted,redistribute",
                    help="designs to run (default broadcast,targeted,redistribute)")
    ap.add_argument("--brokers", type=int, default=3, help="mosquittos (default 3)")
    ap.add_argument("--devices", type=int, default=3000, help="mqk-loadgen devices "
                    "(default 3000)")
    ap.add_argument("--rates", default="250,500,1000,2000,4000,8000",
                    help="offered commands/s of the ramp (default 250,500,1000,2000,4000,"
                    "8000)")
    ap.add_argument("--step", type=float, default=6.0, help="seconds per rate (default 6)")
    ap.add_argument("--wait", type=float, default=8.0,
                    help="seconds to wait for a step's answers (default 8)")
    ap.add_argument("--p99-bound", type=float, default=1000.0,
                    help="the summary's rate: zero loss and p99 within this, ms (default "
                    "1000)")
    ap.add_argument("--kill-rate", type=float, default=100.0,
                    help="commands/s around the kill (default 100)")
    ap.add_argument("--kill-seconds", type=float, default=20.0,
                    help="seconds of commands around the kill; 0: no kill (default 20)")
    ap.add_argument("--kill-at", type=float, default=6.0,
                    help="the kill, seconds into them (default 6)")
    ap.add_argument("--kill-wait", type=float, default=15.0,
                    help="seconds to wait for their answers (default 15)")
    ap.add_argument("--restart-wait", type=float, default=15.0,
                    help="after the kill phase, the killed broker is started again: seconds "
                    "to wait for what waited for it (default 15)")
    ap.add_argument("--ws-devices", type=int, default=30,
                    help="paho devices over WebSockets, when possible (default 30; 0: none)")
    ap.add_argument("--session-timeout-ms", type=int, default=3000,
                    help="redistribute: the shared group's session.timeout.ms, how soon a "
                    "killed broker's partitions move (default 3000)")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "docs", "results"))
    ap.add_argument("--note", default="", help="a sentence for delivery.md's header "
                    "(e.g. which plugin build ran)")
    ap.add_argument("--smoke", action="store_true",
                    help="300 devices, 50 cmd/s, a short kill; fails on any loss at 50 cmd/s")
    a = ap.parse_args()
    if a.smoke:
        a.devices, a.rates, a.step, a.wait = 300, "50", 3.0, 6.0
        a.kill_rate, a.kill_seconds, a.kill_at, a.kill_wait = 50.0, 5.0, 2.0, 4.0
        a.restart_wait = 6.0
        a.ws_devices = min(a.ws_devices, 6)
        a.out = tempfile.mkdtemp(prefix="mqk-delivery-smoke-")
    try:
        a.rates = [float(x) for x in a.rates.split(",") if x]
    except ValueError:
        ap.error(f"--rates: {a.rates!r} is not a list of numbers")
    designs = [d for d in a.designs.split(",") if d]
    for d in designs:
        if d not in LEGS:
            ap.error(f"--designs: {d!r} is not one of {', '.join(LEGS)}")
    if not a.rates or a.devices < 1 or a.brokers < 2 or a.step <= 0:
        ap.error("--rates, --devices, --brokers (2 or more) and --step must be given")
    if a.kill_seconds > 0 and not 0 <= a.kill_at < a.kill_seconds:
        ap.error(f"--kill-at {a.kill_at:g}: must fall within --kill-seconds "
                 f"{a.kill_seconds:g}")
    for path, what in ((tcc.LOADGEN, "mqk-loadgen"), (tcc.ROUTER, "mqk-router")):
        h.require_file(path, what, executable=True)
    a.skipped = []
    run = []
    for d in designs:
        if available(d):
            run.append(d)
        else:
            a.skipped.append(f"{d} (this plugin build has no commands_mode {d}: "
                             f"commands_topic_broker unknown)")
            print(f"[{d}] skipped: this plugin build has no commands_mode {d}",
                  file=sys.stderr)
    if not run:
        print("Error: no design to run", file=sys.stderr)
        return 1
    os.makedirs(a.out, exist_ok=True)
    started = time.monotonic()
    kafka = h.start_kafka("real")
    results = []
    try:
        for d in run:
            results.append(run_design(kafka, d, a))
            rows = csv_rows(results)
            with open(os.path.join(a.out, "delivery.csv"), "w") as f:
                f.write(",".join(CSV) + "\n")
                for row in rows:
                    f.write(",".join(fmt(row.get(c, "")) for c in CSV) + "\n")
    finally:
        kafka.cleanup()
    md = markdown(results, a, time.monotonic() - started)
    with open(os.path.join(a.out, "delivery.md"), "w") as f:
        f.write(md)
    plotted = plot(a.out, results)
    print(md)
    print(f"written: {a.out}/delivery.md, delivery.csv"
          + (", " + ", ".join(plotted) if plotted else ""))
    problems = [f"{r['design']} delivered nothing" for r in results
                if not any(s["answered"] for s in r["steps"])]
    if plotted is None:
        problems.append("no plots")
    if a.smoke:  # 50 commands/s: every design keeps up; a loss there is a bug
        problems += [f"{r['design']} lost {s['lost']} and duplicated {s['duplicates']} of "
                     f"{s['sent']} at {s['offered']:g} cmd/s" for r in results
                     for s in r["steps"] if s["lost"] or s["duplicates"]]
        problems += [f"{r['design']}: the kill measured nothing" for r in results
                     if not r["kill"] or not r["kill"]["sent"]]
        # The breakdown's two sources must agree: broadcast's commands skipped by every
        # survivor, per command (produced after the kill, unanswered) and from the
        # survivors' counters.
        problems += [f"{r['design']}: {r['kill']['lost_skipped']} lost commands produced "
                     f"after the kill, but the survivors' counters say "
                     f"{r['kill']['skipped_check']} were skipped by every survivor"
                     for r in results if r["kill"] and r["kill"]["skipped_check"] is not None
                     and r["kill"]["skipped_check"] != r["kill"]["lost_skipped"]]
    if problems:
        print("Error: " + "; ".join(problems), file=sys.stderr)
        return 1
    if a.smoke:
        shutil.rmtree(a.out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
