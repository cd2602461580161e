#!/usr/bin/python3
"""
latency.py - where a record's milliseconds go, stage by stage, from the device to a Kafka
consumer, through mosquitto with the plugin and a real Kafka.

A record's way and who stamps it:

  publish   mqk-loadgen writes the PUBLISH (its payload carries the send time, µs)
  capture   mosquitto's thread hands the message to the plugin (CLOCK_REALTIME, µs)
  producev  the Kafka thread calls rd_kafka_producev (librdkafka's monotonic µs)
  ack       the Kafka thread serves the delivery report (Kafka acknowledged it, acks=all)
  append    Kafka appended it to its log: the topic has message.timestamp.type=
            LogAppendTime, so the record's timestamp is the broker's append time (ms)
  consumer  a Kafka consumer (its own process, partitions assigned, no group) received it

The plugin's own gaps (capture -> producev, producev -> ack, capture -> append) come from
its /metrics histograms (plugin/latency.c, buckets 100 µs .. 10 s), read before and after
each point; percentiles are interpolated inside a bucket as Prometheus' histogram_quantile
does. The others are per record in the consumer: publish -> append, append -> consumer
(the append time has ms resolution and counts as its middle, +0.5 ms) and publish ->
consumer, end to end, in µs. publish -> capture alone is not measured: with
LogAppendTime the record no longer carries the capture time (publish -> append minus
capture -> append gives it roughly).

Points: every rate (500, 5,000 msg/s and half the max: --half-max, or measured first by a
short flat-out run of mqk-loadgen into the 1-node set-up) times every linger.ms
(plugin_opt_kafka.linger.ms), against a 1-node Kafka and a 3-node one (replication factor
3, min.insync.replicas 2). Each point: a fresh mosquitto with the plugin (defaults
otherwise: the journal, acks=all, idempotence) and a fresh topic (4 partitions);
mqk-loadgen, 100 devices, QoS 1, 64-byte payloads, for --seconds. Rounds interleaved: every
point once per round, so that the machine's noise spreads; the table shows the median over
rounds of each number. mosquitto's CPU per message is over all its threads (the broker's,
the plugin's, librdkafka's).

  bench/latency.py [--rates 500,5000,half] [--half-max N] [--lingers 0,1,5] [--nodes 1,3]
                   [--seconds 4] [--rounds 2] [--devices 100] [--out FILE.md] [--smoke]

--smoke: one tiny point (1 node, 500 msg/s, 2 s, linger.ms 5); fails unless every record
arrived and every stage has numbers. A benchmark otherwise: it fails only when records went
missing or a stage has no numbers.
"""

import argparse
import json
import multiprocessing
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness as h  # noqa: E402

LOADGEN = os.path.join(h.BUILD_DIR, "tools", "mqk-loadgen")
FILTER = "devices/+/data"
PARTITIONS = 4
BROKER_CONF = ["max_queued_messages 1000", "max_inflight_messages 20"]
# The plugin's stages, by the histogram's name in /metrics.
PLUGIN_STAGES = [("capture_to_produce", "capture→producev"), ("produce_to_ack", "producev→ack"),
                 ("capture_to_append", "capture→append")]
CONSUMER_STAGES = [("publish_to_append", "publish→append"),
                   ("append_to_consumer", "append→consumer"),
                   ("publish_to_consumer", "publish→consumer")]
STAGES = [k for k, _ in PLUGIN_STAGES] + [k for k, _ in CONSUMER_STAGES]
TITLES = dict(PLUGIN_STAGES + CONSUMER_STAGES)


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, int(round(p / 100.0 * (len(sorted_values) - 1))))
    return sorted_values[k]


# ---- the plugin's histograms ---------------------------------------------------------

def scrape(port):
    """{stage: [(le seconds, cumulative count), ...]} from the plugin's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for stage, _ in PLUGIN_STAGES:
        rx = re.compile(rf'^mosquitto_kafka_{stage}_seconds_bucket\{{[^}}]*le="([^"]+)"\}} (\d+)$',
                        re.M)
        out[stage] = [(float("inf") if le == "+Inf" else float(le), int(n))
                      for le, n in rx.findall(text)]
    return out


def scraped(port):
    """Does /metrics show the histograms yet (the first rendering is on the first TICK)?"""
    try:
        return bool(scrape(port)["capture_to_produce"])
    except OSError:
        return False


def hist_delta(before, after):
    return {s: [(le, n - b) for (le, n), (_, b) in zip(after[s], before[s])] for s in after}


def hist_quantile(buckets, q):
    """Prometheus' histogram_quantile over cumulative buckets, in ms; None when empty."""
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return None
    rank = q * total
    lower_le, lower_n = 0.0, 0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return lower_le * 1000
            width = n - lower_n
            frac = (rank - lower_n) / width if width else 1.0
            return (lower_le + (le - lower_le) * frac) * 1000
        lower_le, lower_n = le, n
    return lower_le * 1000


# ---- the consumer, in a process of its own ------------------------------------------

def consume(bootstrap, topic, expected, stop, results):
    """Reads topic's records until `expected` (set by the parent) arrived or stop is set;
    sends back the consumer-side gaps in ms and the count."""
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING, \
        TIMESTAMP_LOG_APPEND_TIME
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": h.unique("latency"),
                  "enable.auto.commit": False, "fetch.wait.max.ms": 100,
                  "enable.partition.eof": False})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    gaps = {k: [] for k, _ in CONSUMER_STAGES}
    seen, wrong_type, foreign = 0, 0, 0
    unpack = struct.Struct(">Q").unpack_from
    pa, ac, pc = (gaps["publish_to_append"].append, gaps["append_to_consumer"].append,
                  gaps["publish_to_consumer"].append)
    while not stop.is_set() and (expected.value == 0 or seen < expected.value):
        # consume(n, timeout) waits for n records or the timeout: one poll that waits,
        # then what is there already, so that each record is stamped when it came.
        first = c.poll(0.1)
        if first is None:
            continue
        batch = [first] + c.consume(1000, 0)
        now_ms = time.time() * 1000
        for m in batch:
            if m.error() is not None:
                continue
            seen += 1
            ts_type, append_ms = m.timestamp()
            v = m.value()
            if ts_type != TIMESTAMP_LOG_APPEND_TIME:
                wrong_type += 1
                continue
            if v is None or len(v) < 20 or v[:2] != b"MQ":
                foreign += 1
                continue
            pub_ms = unpack(v, 12)[0] / 1000
            append_mid = append_ms + 0.5
            pa(append_mid - pub_ms)
            ac(now_ms - append_mid)
            pc(now_ms - pub_ms)
    c.close()
    results.put({"seen": seen, "wrong_type": wrong_type, "foreign": foreign,
                 "p": {k: (percentile(sorted(v), 50), percentile(sorted(v), 99))
                       for k, v in gaps.items()}})


# ---- one point -----------------------------------------------------------------------

def loadgen(port, rate, seconds, devices, work, drain=20):
    argv = [LOADGEN, "--host", f"127.0.0.1:{port}", "-n", str(devices), "-d", f"{seconds:g}",
            "-Q", "1", "--clean", "--commands", "", "-q", "-T", "2", "--ramp-up", "1",
            "--drain", str(drain), "-R", f"{rate:g}"]
    with open(os.path.join(work, "loadgen.json"), "w") as out, \
            open(os.path.join(work, "loadgen.err"), "w") as err:
        rc = subprocess.run(argv, stdout=out, stderr=err, timeout=seconds + drain + 60).returncode
    with open(os.path.join(work, "loadgen.json")) as f:
        text = f.read()
    try:
        summary = json.loads(text)
    except ValueError:
        with open(os.path.join(work, "loadgen.err")) as f:
            raise h.HarnessError(f"mqk-loadgen (exit {rc}) wrote no summary: {f.read()[-2000:]}")
    return summary


def topic_for(kafka, nodes):
    topic = h.unique("latency")
    config = {"message.timestamp.type": "LogAppendTime"}
    if nodes >= 3:
        config["min.insync.replicas"] = "2"
    kafka.create_topics([topic], partitions=PARTITIONS, config=config)
    return topic


def broker_for(kafka, topic, linger, metrics_port):
    opts = [("bootstrap_servers", kafka.bootstrap), ("broker_id", "latency"),
            ("route_data", f"{FILTER} -> {topic} key=topic"), ("stats_interval", "0"),
            ("metrics_listen", f"127.0.0.1:{metrics_port}")]
    if linger is not None:
        opts.append(("kafka.linger.ms", str(linger)))
    return h.Mosquitto(opts, extra=BROKER_CONF, name="latency", log_debug=False)


def run_point(kafka, nodes, rate, linger, seconds, devices):
    """One point; returns {stage: (p50, p99) ms, 'cpu_us', 'records', 'achieved', ...}."""
    work = tempfile.mkdtemp(prefix="mqk-latency-")
    topic = topic_for(kafka, nodes)
    metrics_port = h.free_port()
    broker = broker_for(kafka, topic, linger, metrics_port)
    stop = multiprocessing.Event()
    expected = multiprocessing.Value("q", 0)
    results = multiprocessing.Queue()
    reader = multiprocessing.Process(target=consume,
                                     args=(kafka.bootstrap, topic, expected, stop, results))
    try:
        reader.start()
        h.wait_for(lambda: scraped(metrics_port), 10, what="the plugin's /metrics")
        time.sleep(2)  # the consumer fetching, the producer connected
        before = scrape(metrics_port)
        cpu0 = h.cpu_seconds(broker.pid)
        summary = loadgen(broker.port, rate, seconds, devices, work)
        acked = int(summary["acked"])
        expected.value = acked
        delivered = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            after = scrape(metrics_port)
            delivered = after["capture_to_produce"][-1][1] - before["capture_to_produce"][-1][1]
            if delivered >= acked:
                break
            time.sleep(0.2)
        cpu = h.cpu_seconds(broker.pid) - cpu0
        res = results.get(timeout=60)
        stop.set()
        reader.join(10)
    finally:
        stop.set()
        if reader.is_alive():
            reader.terminate()
            reader.join(5)
        broker.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    delta = hist_delta(before, after)
    row = {"nodes": nodes, "rate": rate, "linger": linger, "records": res["seen"],
           "acked": acked, "delivered": delivered, "sent": int(summary["sent"]["total"]),
           "achieved": float(summary.get("rate", 0)), "cpu_us": cpu / max(acked, 1) * 1e6,
           "wrong_type": res["wrong_type"], "foreign": res["foreign"]}
    for stage, _ in PLUGIN_STAGES:
        row[stage] = (hist_quantile(delta[stage], 0.5), hist_quantile(delta[stage], 0.99))
    row.update(res["p"])
    return row


def max_rate(kafka, seconds, devices):
    """Max ingest of the 1-node set-up at zero loss: mqk-loadgen flat out (QoS 1, 20 in
    flight per device: mosquitto's pace), linger.ms as configured by default."""
    work = tempfile.mkdtemp(prefix="mqk-latency-max-")
    topic = topic_for(kafka, kafka.nodes)
    broker = broker_for(kafka, topic, None, h.free_port())
    try:
        summary = loadgen(broker.port, 200000, seconds, devices, work)
    finally:
        broker.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return float(summary["acked"]) / seconds


# ---- output --------------------------------------------------------------------------

def fmt(v):
    if v is None:
        return "–"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def median_pair(rows, stage, i):
    vals = [r[stage][i] for r in rows if r[stage][i] is not None]
    return statistics.median(vals) if vals else None


def table(groups):
    head = ["nodes", "msg/s", "linger.ms"] + [f"{TITLES[s]} p50 / p99" for s in STAGES] + \
        ["mosquitto CPU µs/msg"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for key, rows in groups.items():
        nodes, rate, linger = key
        cells = [str(nodes), f"{rate:,.0f}", str(linger)]
        for s in STAGES:
            cells.append(f"{fmt(median_pair(rows, s, 0))} / {fmt(median_pair(rows, s, 1))}")
        cells.append(f"{statistics.median(r['cpu_us'] for r in rows):.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def problems_of(row):
    out = []
    tag = f"{row['nodes']} node(s), {row['rate']:g} msg/s, linger.ms {row['linger']}"
    if row["records"] < row["acked"] or row["acked"] == 0:
        out.append(f"{tag}: {row['records']} of {row['acked']} PUBACKed records arrived")
    if row["wrong_type"] or row["foreign"]:
        out.append(f"{tag}: {row['wrong_type']} records without LogAppendTime, "
                   f"{row['foreign']} not mqk-loadgen's")
    for s in STAGES:
        if row[s][0] is None or row[s][1] is None:
            out.append(f"{tag}: no numbers for {TITLES[s]}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="500,5000,half",
                    help="total msg/s; 'half': half the max (default 500,5000,half)")
    ap.add_argument("--half-max", type=float, default=None,
                    help="the rate 'half' stands for (default: measured first)")
    ap.add_argument("--lingers", default="0,1,5", help="linger.ms values (default 0,1,5)")
    ap.add_argument("--nodes", default="1,3", help="Kafka cluster sizes (default 1,3)")
    ap.add_argument("--seconds", type=float, default=4.0, help="per point (default 4)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds over all points (default 2)")
    ap.add_argument("--devices", type=int, default=100, help="MQTT clients (default 100)")
    ap.add_argument("--out", help="also write the table to this Markdown file")
    ap.add_argument("--smoke", action="store_true", help="one tiny point (ctest)")
    a = ap.parse_args()
    if a.smoke:
        a.rates, a.lingers, a.nodes, a.seconds, a.rounds, a.devices = "500", "5", "1", 2.0, 1, 10
    h.require_file(LOADGEN, "mqk-loadgen", executable=True)
    lingers = [int(x) for x in a.lingers.split(",") if x]
    nodes_list = [int(x) for x in a.nodes.split(",") if x]
    started = time.monotonic()
    groups, problems = {}, []
    half = a.half_max
    for nodes in nodes_list:
        kafka = h.RealKafka(nodes=nodes)
        try:
            print(f"Kafka with {nodes} node(s) up in {kafka.start_seconds:.0f} s",
                  file=sys.stderr, flush=True)
            rates = []
            for x in a.rates.split(","):
                if x == "half":
                    if half is None:
                        half = max_rate(kafka, 4.0, a.devices) / 2
                        print(f"max ingest {2 * half:,.0f} msg/s: half is {half:,.0f}",
                              file=sys.stderr, flush=True)
                    rates.append(round(half))
                elif x:
                    rates.append(float(x))
            for r in range(a.rounds):
                for rate in rates:
                    for linger in lingers:
                        row = run_point(kafka, nodes, rate, linger, a.seconds, a.devices)
                        groups.setdefault((nodes, rate, linger), []).append(row)
                        problems += problems_of(row)
                        print(f"round {r + 1}: {nodes} node(s), {rate:,.0f} msg/s (achieved "
                              f"{row['achieved']:,.0f}), linger.ms {linger}: "
                              + ", ".join(f"{TITLES[s]} {fmt(row[s][0])}/{fmt(row[s][1])}"
                                          for s in STAGES)
                              + f" ms; {row['cpu_us']:.1f} µs/msg; {row['records']:,} of "
                              f"{row['acked']:,} arrived", file=sys.stderr, flush=True)
        finally:
            kafka.cleanup()
    text = (f"mqk-loadgen {a.devices} devices, QoS 1, 64-byte payloads, {a.seconds:g} s a point, "
            f"{a.rounds} round(s) interleaved (medians); mosquitto + plugin (journal, acks=all) "
            f"-> real Kafka, {PARTITIONS} partitions, LogAppendTime; p50 / p99 in ms; run took "
            f"{(time.monotonic() - started) / 60:.1f} min\n\n" + table(groups))
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    if problems:
        print("Error: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
