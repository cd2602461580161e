#!/usr/bin/python3
"""
compare.py - A/B of plugin builds and settings at mosquitto's max ingest, in one run, rounds
interleaved, with plain mosquitto beside them: where the plugin's CPU per message goes.

Each configuration is LABEL=PLUGIN.so[,OPTION=VALUE...]: a build of the plugin (PLUGIN may be
`built`, this tree's) and plugin options added to the benchmark's (durability memory unless
given; kafka.* options pass through to librdkafka). For instance, the current tree against a
build of an older commit, and the current tree with a shallower librdkafka queue:

  bench/compare.py base=/tmp/base/build/plugin/mosquitto_kafka.so new=built \\
                   q2000=built,kafka.queue.buffering.max.messages=2000
  bench/compare.py [--seconds 4] [--rounds 3] [--kafka dev|real] [--nodes 1] [--smoke] CONFIG...

--kafka dev (default): mqk-devkafka, as bench/overhead.py: per configuration the median
msg/s mosquitto received, its ratio to plain mosquitto, mosquitto's CPU per message over all
its threads (overhead.py's "all threads"), the plugin's share of it (all threads minus plain
mosquitto's) and how that splits: mosquitto's main thread (minus plain's), the plugin's
Kafka thread (mqk-kafka), librdkafka's threads (rdk:*) and the rest.

--kafka real: a real Apache Kafka of --nodes nodes (topic `bench`, 6 partitions): per
configuration the median records per second Kafka acknowledged while the publishers ran flat
out ($SYS/broker/kafka/delivered): what the configuration costs in delivered throughput.

A benchmark, not a test: it fails only when a configuration received or delivered nothing.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import durability  # noqa: E402
import harness as h  # noqa: E402

PLAIN = "plain mosquitto"
GROUPS = ("main", "mqk-kafka", "rdk", "other")


def parse_config(text):
    """LABEL=PLUGIN[,OPT=VAL...] -> (label, plugin path, [(opt, val)])."""
    label, sep, rest = text.partition("=")
    if not sep or not label or not rest:
        raise SystemExit(f"Error: '{text}' is not LABEL=PLUGIN.so[,OPTION=VALUE...]")
    plugin, *opts = rest.split(",")
    extra = []
    for o in opts:
        k, sep, v = o.partition("=")
        if not sep or not k:
            raise SystemExit(f"Error: '{o}' in '{text}' is not OPTION=VALUE")
        extra.append((k, v))
    if not any(k in ("durability", "journal_fsync") for k, _ in extra):
        extra.insert(0, ("durability", "memory"))
    if plugin != "built" and not os.path.isfile(plugin):
        raise SystemExit(f"Error: {plugin}: no such file")
    return label, plugin, extra


def thread_cpu(pid):
    """CPU seconds per thread group (GROUPS) of process pid, from /proc."""
    out = dict.fromkeys(GROUPS, 0.0)
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        s = h.cpu_seconds(pid, tid) or 0.0
        if int(tid) == pid:
            out["main"] += s
        elif comm == "mqk-kafka":
            out["mqk-kafka"] += s
        elif comm.startswith("rdk:"):
            out["rdk"] += s
        else:
            out["other"] += s
    return out


def start(plugin, extra, bootstrap, stats_interval):
    options = None
    if plugin is not None:
        options = [("bootstrap_servers", bootstrap), ("broker_id", "bench"),
                   ("route_all", "bench/# -> bench"),
                   ("stats_interval", str(stats_interval))] + extra
    b = h.Mosquitto(options or [], plugin=plugin if options else None,
                    extra=["sys_interval 1", "max_inflight_messages 100"], name="bench",
                    log_debug=False)
    pub = subprocess.Popen(
        [sys.executable, durability.FLOOD, str(b.port), "--connections", "4", "--size", "200",
         "--qos", "0", "--id", h.unique("bp")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return b, pub


def stop(b, pub):
    durability.stop_publishers([pub])
    b.cleanup()


def ingest_round(bootstrap, plugin, extra, seconds):
    """(msg/s, {group: µs/msg}, all threads µs/msg) at max ingest."""
    b, pub = start(plugin, extra, bootstrap, 0)
    try:
        counter = durability.Received(b.port)
        time.sleep(1.5)  # warm-up
        t0, c0 = time.monotonic(), thread_cpu(b.pid)
        while time.monotonic() < t0 + seconds + 15:
            time.sleep(0.2)
            u = [x for x in counter.updates if x[0] >= t0]
            if len(u) >= 2 and u[-1][0] - u[0][0] >= seconds:
                break
        c1, t1 = thread_cpu(b.pid), time.monotonic()
        rate, _ = counter.rate(t0)
        counter.client.close()
        assert b.process.alive(), "mosquitto died"
    finally:
        stop(b, pub)
    msgs = max(rate * (t1 - t0), 1)
    per = {g: (c1[g] - c0[g]) / msgs * 1e6 for g in GROUPS}
    return rate, per, sum(per.values())


def delivered_round(bootstrap, plugin, extra, seconds):
    """Records per second Kafka acknowledged while the publishers ran flat out."""
    b, pub = start(plugin, extra, bootstrap, 1)
    try:
        ups = []
        c = h.Client(b.port, h.unique("sys"),
                     on_message=lambda cl, u, m: ups.append((time.monotonic(), int(m.payload))))
        c.subscribe("$SYS/broker/kafka/delivered")
        time.sleep(2)
        t0 = time.monotonic()
        time.sleep(seconds)
        u = [x for x in ups if x[0] >= t0]
        c.close()
    finally:
        stop(b, pub)
    return (u[-1][1] - u[0][1]) / (u[-1][0] - u[0][0]) if len(u) >= 2 else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="+", metavar="LABEL=PLUGIN[,OPT=VAL...]")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kafka", choices=("dev", "real"), default="dev")
    ap.add_argument("--nodes", type=int, default=1, help="real Kafka's nodes (default 1)")
    ap.add_argument("--smoke", action="store_true", help="one short round (CI)")
    a = ap.parse_args()
    if a.smoke:
        a.seconds, a.rounds = 2.0, 1
    configs = [parse_config(c) for c in a.configs]
    if a.kafka == "dev":
        configs.insert(0, (PLAIN, None, None))
        kafka = h.DevKafka(brokers=1)
    else:
        kafka = h.RealKafka(nodes=a.nodes)
    got = {c[0]: [] for c in configs}
    try:
        if a.kafka == "real":
            kafka.create_topic("bench", partitions=6)
        for r in range(a.rounds):
            order = configs if r % 2 == 0 else configs[::-1]
            for label, plugin, extra in order:
                if a.kafka == "dev":
                    res = ingest_round(kafka.bootstrap, plugin, extra, a.seconds)
                    line = f"{res[0]:,.0f} msg/s, all threads {res[2]:.2f} µs/msg"
                else:
                    res = delivered_round(kafka.bootstrap, plugin, extra, a.seconds)
                    line = f"{res:,.0f} records/s delivered"
                got[label].append(res)
                print(f"round {r + 1}: {label}: {line}", file=sys.stderr, flush=True)
    finally:
        kafka.cleanup()
    if a.kafka == "real":
        print(f"| configuration | records/s delivered ({a.nodes}-node Kafka, median) | rounds |")
        print("|---|---:|---|")
        for label, _, _ in configs:
            v = got[label]
            print(f"| {label} | {statistics.median(v):,.0f} | "
                  f"{', '.join(f'{x:,.0f}' for x in v)} |")
        return 0 if all(statistics.median(v) > 0 for v in got.values()) else 1
    med = {}
    for label, v in got.items():
        med[label] = (statistics.median(x[0] for x in v),
                      {g: statistics.median(x[1][g] for x in v) for g in GROUPS},
                      statistics.median(x[2] for x in v))
    base_rate, base_per, base_all = med[PLAIN]
    print("| configuration | msg/s | ratio | all threads µs/msg | plugin µs/msg "
          "| main thread (− plain) | mqk-kafka | rdk:* | other |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, _, _ in configs:
        rate, per, total = med[label]
        print(f"| {label} | {rate:,.0f} | {rate / base_rate:.3f} | {total:.2f} | "
              f"{total - base_all:.2f} | {per['main'] - base_per['main']:.2f} | "
              f"{per['mqk-kafka']:.2f} | {per['rdk']:.2f} | {per['other']:.2f} |")
    return 0 if all(m[0] > 1 for m in med.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
