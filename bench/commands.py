#!/usr/bin/python3
"""
commands.py - broadcast or targeted: what each costs in Kafka reads, and in latency.

For each mode of docs/commands.md, in one run on this machine, rounds interleaved so that
machine noise spreads evenly: a real Kafka (the tests' tests/kafka, 1 node), N mosquittos
with the plugin (3 by default), mqk-router in targeted mode, 300 mqk-loadgen devices
(MQTT v5, QoS 1, 1 msg/s each, connected round-robin straight to the brokers: HAProxy's
health-check connections would add presence records no real deployment has twice a
second) - the cluster of tests/integration/test_cluster_commands.py. Then:

  0. warm-up: 100 commands, not measured;
  1. idle: mqk-controller sends --commands commands (default 500, one every 10 ms) to
     random devices and waits for every answer;
  2. loaded: the same with 100 more devices uploading --load msg/s (default 10,000, QoS 0)
     through the plugin into Kafka.

It prints, per mode:
  - Kafka records read per delivered command: broadcast, the brokers' consumed counters /
    delivered; targeted, (the router's records read + the brokers' consumed + the presence
    records the router reads) / delivered. Presence records come per connect and
    disconnect, not per command: they are shown apart too;
  - command -> device latency (the device's answer time in its payload minus the
    controller's send time, one machine's clock) and the round trip, p50/p99, idle and
    loaded.

A benchmark, not a test: it fails only when a command was not answered (the numbers
would mean nothing), and prints a one-line conclusion.

  bench/commands.py [--brokers 3] [--commands 500] [--every 0.01] [--load 10000]
                    [--rounds 2] [--modes broadcast,targeted]
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness as h  # noqa: E402
import test_cluster_commands as tcc  # noqa: E402  (the cluster, the tools)


def one_run(kafka, mode, args):
    cl = tcc.Cluster(kafka, mode, n_brokers=args.brokers, haproxy=False,
                     devices=args.devices, hold=30)
    try:
        # Not measured: new topics, groups and a producer's first requests in a fresh
        # cluster are slower than the steady state the comparison is about.
        cl.controller(min(100, args.commands), args.every)
        start = cl.settled()
        idle = cl.controller(args.commands, args.every)
        load = cl.upload(args.load, 3 + args.commands * args.every + 20)
        time.sleep(3)
        loaded = cl.controller(args.commands, args.every)
        up = cl.stop_json(load)
        for c in (idle, loaded):
            if c["answered"] != c["sent"] or c["sent"] != args.commands:
                raise SystemExit(f"{mode}: {c['answered']} of {c['sent']} commands answered "
                                 f"({args.commands} asked): the numbers would mean nothing")
        end = cl.settled()
        router = cl.stop_json(cl.router) if cl.router is not None else None
    finally:
        cl.close()
    total = {k: sum(x[k] for x in end) for k in tcc.COUNTERS}
    before = {k: sum(x[k] for x in start) for k in tcc.COUNTERS}
    if mode == "broadcast":
        # The two measured runs: every broker read every command.
        delivered = total["delivered"] - before["delivered"]
        command_records = total["consumed"] - before["consumed"]
        presence = 0
    else:
        # The router's summary comes at its exit, so whole lives here, warm-up and
        # start-up probes included, on every side: records_read is every command record
        # it read (returns included), presence_records every presence record (devices
        # connecting and leaving: the 300, the 100 uploaders, probes).
        delivered = total["delivered"]
        command_records = router["records_read"] + total["consumed"]
        presence = router["presence_records"]
    return {
        "mode": mode, "delivered": delivered,
        "per_command": (command_records + presence) / delivered,
        "command_records_per": command_records / delivered, "presence": presence,
        "router": {k: router[k] for k in ("records_read", "returns_read", "routed",
                                          "dead_lettered", "presence_records")}
        if router else None,
        "idle": idle, "loaded": loaded,
        "upload_rate": up["sent"]["total"] / up["duration_s"] if up else 0.0,
    }


def ms(us):
    return us / 1000.0 if isinstance(us, (int, float)) else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", type=int, default=3, help="mosquittos (default 3)")
    ap.add_argument("--devices", type=int, default=300, help="devices (default 300)")
    ap.add_argument("--commands", type=int, default=500,
                    help="commands per measurement (default 500)")
    ap.add_argument("--every", type=float, default=0.01,
                    help="seconds between commands (default 0.01)")
    ap.add_argument("--load", type=int, default=10000,
                    help="upload msg/s during the loaded measurement (default 10000)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds over the modes (default 2)")
    ap.add_argument("--modes", default="broadcast,targeted", help="modes to compare")
    args = ap.parse_args()
    modes = args.modes.split(",")
    for m in modes:
        if m not in tcc.MODES:
            ap.error(f"--modes: {m!r} is not broadcast or targeted")
    kafka = h.start_kafka()
    results = {m: [] for m in modes}
    try:
        for r in range(args.rounds):
            for m in modes:
                res = one_run(kafka, m, args)
                results[m].append(res)
                i, lo = res["idle"], res["loaded"]
                print(f"round {r + 1} {m}: {res['per_command']:.2f} records read per "
                      f"delivered command ({res['delivered']} delivered, "
                      f"{res['presence']} presence records, router {res['router']}); "
                      f"command -> device p50/p99 idle {ms(i['delivery_us']['p50']):.1f}/"
                      f"{ms(i['delivery_us']['p99']):.1f} ms, loaded "
                      f"{ms(lo['delivery_us']['p50']):.1f}/"
                      f"{ms(lo['delivery_us']['p99']):.1f} ms at "
                      f"{res['upload_rate']:,.0f} msg/s", file=sys.stderr)
    finally:
        kafka.cleanup()

    def med(m, f):
        return statistics.median(f(x) for x in results[m])
    print(f"\n{args.brokers} brokers, {args.devices} devices (MQTT v5, 1 msg/s each), "
          f"{args.commands} commands every {args.every:g} s per measurement, loaded = "
          f"{args.load:,} msg/s QoS 0 upload; medians of {args.rounds} rounds\n")
    print("| mode | Kafka records read / delivered command | of which command records "
          "| presence records | command -> device p50 / p99 ms, idle "
          "| loaded | round trip p50 / p99 ms, idle | loaded |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for m in modes:
        def lat(which, key):
            return (f"{med(m, lambda x: ms(x[which][key]['p50'])):.1f} / "
                    f"{med(m, lambda x: ms(x[which][key]['p99'])):.1f}")
        print(f"| {m} | {med(m, lambda x: x['per_command']):.2f} "
              f"| {med(m, lambda x: x['command_records_per']):.2f} "
              f"| {med(m, lambda x: x['presence']):.0f} "
              f"| {lat('idle', 'delivery_us')} | {lat('loaded', 'delivery_us')} "
              f"| {lat('idle', 'rtt_us')} | {lat('loaded', 'rtt_us')} |")
    if "broadcast" in modes and "targeted" in modes:
        b = med("broadcast", lambda x: x["per_command"])
        t = med("targeted", lambda x: x["per_command"])
        tc = med("targeted", lambda x: x["command_records_per"])
        hop = {w: med("targeted", lambda x: ms(x[w]["delivery_us"]["p50"]))
               - med("broadcast", lambda x: ms(x[w]["delivery_us"]["p50"]))
               for w in ("idle", "loaded")}
        print(f"\nConclusion: broadcast reads one record per broker per command ({b:.2f} "
              f"with {args.brokers}), targeted {t:.2f} here ({tc:.2f} command records, the "
              f"rest presence, which grows with connections, not commands) at "
              f"{hop['idle']:+.1f} ms p50 idle and {hop['loaded']:+.1f} ms loaded (one more "
              f"hop) and one more process: targeted reads less from {int(t) + 1} brokers on, "
              f"one record per command more with each broker; broadcast is the choice for a "
              f"few brokers and modest command rates.")

if __name__ == "__main__":
    main()
