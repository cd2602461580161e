#!/usr/bin/python3
"""
linger.py - measures what librdkafka's linger.ms costs and buys inside mosquitto.

For each linger.ms value, in one run on this machine, interleaved round by round so
machine noise spreads evenly: mqk-devkafka (1 broker, 6 partitions), mosquitto with the
plugin (kafka.linger.ms=<value>), 20 MQTT clients publishing QoS 0 at a fixed total rate,
and a Kafka consumer. It prints, per value:

  - mosquitto's CPU (all its threads: the broker's and librdkafka's) per message, in µs;
  - publish -> consumer latency p50/p99/max (consumer receive time - record timestamp,
    which is the broker's receive time; ms resolution);
  - produce requests per second seen by Kafka is not observable on the mock, so CPU
    stands in for the batching cost.

This is a benchmark, not a test: it asserts nothing but that every record arrived.

  bench/linger.py [--rate 5000] [--seconds 6] [--rounds 2] [--lingers 0,1,5,20,50]
"""

import argparse
import multiprocessing
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import harness as h  # noqa: E402
from confluent_kafka import Consumer  # noqa: E402



def thread_cpu(pid):
    """CPU seconds per thread name of process pid (threads of one name are summed)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except OSError:
            continue
        name = head.split("(", 1)[1]
        fields = rest.split()
        name = "rdkafka" if name.startswith("rdk:") else name
        out[name] = out.get(name, 0) + (int(fields[11]) + int(fields[12])) / h.CLK_TCK
    return out


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, int(round(p / 100.0 * (len(sorted_values) - 1))))
    return sorted_values[k]


def consume(bootstrap, expected, wait, results):
    """In a child process: reads `expected` records, sends back their latencies in ms."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": h.unique("g"),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 5})
    consumer.subscribe(["bench"])
    latencies = []
    deadline = time.monotonic() + 60
    while wait and len(latencies) < expected and time.monotonic() < deadline:
        for m in consumer.consume(1000, 0.2):
            if m.error() is None:
                latencies.append(time.time() * 1000 - m.timestamp()[1])
    consumer.close()
    results.put(latencies)


def one_run(linger, rate, seconds, clients=20):
    kafka = h.DevKafka(brokers=1, topics=["bench:6"])
    broker = None
    pubs = []
    try:
        if linger is None:  # the baseline: plain mosquitto, a subscriber instead of Kafka
            broker = h.Mosquitto([], plugin=None)
        else:
            broker = h.Mosquitto([
                ("bootstrap_servers", kafka.bootstrap),
                ("broker_id", "bench"),
                ("route_all", "bench/# -> bench"),
                ("stats_interval", "0"),
                ("kafka.linger.ms", str(linger)),
            ])
        expected = int(rate * seconds)
        # The consumer runs in its own process: in this one, 20 paho network threads
        # would hold the GIL and delay it, which is not the pipeline's latency.
        results = multiprocessing.Queue()
        reader = multiprocessing.Process(target=consume,
                                         args=(kafka.bootstrap, expected, linger is not None,
                                               results))
        reader.start()
        # Let the consumer join before measuring.
        time.sleep(3)
        pubs = [h.Client(broker.port, client_id=f"ue-{i:03d}") for i in range(clients)]
        cpu0 = h.cpu_seconds(broker.pid)
        threads0 = thread_cpu(broker.pid)
        start = time.monotonic()
        for n in range(expected):
            due = start + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pubs[n % clients].publish(f"bench/ue-{n % clients:03d}", b"x" * 100, qos=0)
        h.wait_published([p.c.publish("bench/flush", b"", qos=1) for p in pubs], 30)
        latencies = results.get(timeout=40) if linger is not None else []
        cpu = h.cpu_seconds(broker.pid) - cpu0
        threads = {k: (v - threads0.get(k, 0)) / expected * 1e6
                   for k, v in thread_cpu(broker.pid).items()}
        reader.join(10)
        if linger is None:
            return {"cpu_us": cpu / expected * 1e6, "p50": float("nan"), "p99": float("nan"),
                    "max": float("nan"), "threads": threads}
        if len(latencies) < expected:
            raise SystemExit(f"linger.ms={linger}: {len(latencies)} of {expected} arrived")
        lat = sorted(latencies)
        return {"cpu_us": cpu / expected * 1e6, "p50": percentile(lat, 50),
                "p99": percentile(lat, 99), "max": lat[-1], "threads": threads}
    finally:
        for p in pubs:
            p.close()
        if broker:
            broker.cleanup()
        kafka.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=int, default=5000, help="messages/s in total (default 5000)")
    ap.add_argument("--seconds", type=float, default=6, help="per run (default 6)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds over all values (default 2)")
    ap.add_argument("--lingers", default="0,1,5,20,50", help="linger.ms values")
    args = ap.parse_args()
    lingers = [None] + [int(x) for x in args.lingers.split(",")]
    results = {v: [] for v in lingers}
    for r in range(args.rounds):
        for v in lingers:
            res = one_run(v, args.rate, args.seconds)
            split = ", ".join(f"{k} {t:.1f}" for k, t in sorted(res["threads"].items()))
            print(f"round {r + 1} linger.ms={v if v is not None else '(no plugin)'}: "
                  f"{res['cpu_us']:.1f} µs CPU/msg ({split}), "
                  f"p50 {res['p50']:.1f} ms, p99 {res['p99']:.1f} ms", file=sys.stderr)
            results[v].append(res)
    print(f"\n{args.rate} msg/s QoS 0, 100-byte payloads, {args.seconds:g} s x {args.rounds} "
          f"rounds, mosquitto + plugin -> mqk-devkafka\n")
    print("| linger.ms | mosquitto CPU µs/msg | p50 ms | p99 ms | max ms |")
    print("|---:|---:|---:|---:|---:|")
    for v in lingers:
        rs = results[v]
        print(f"| {v if v is not None else 'no plugin'} | {statistics.median(r['cpu_us'] for r in rs):.1f} "
              f"| {statistics.median(r['p50'] for r in rs):.1f} "
              f"| {statistics.median(r['p99'] for r in rs):.1f} "
              f"| {max(r['max'] for r in rs):.1f} |")


if __name__ == "__main__":
    main()
