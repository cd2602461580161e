#!/usr/bin/python3
"""
durability.py - max sustained ingest of mosquitto with the plugin's journal on and off, per
journal_fsync, as ratios to plain mosquitto, measured in one run.

For each configuration, interleaved round by round so machine noise spreads evenly:
mosquitto (plain, or with the plugin forwarding every message to mqk-devkafka), and
--publishers connections of bench/flood.py publishing 200-byte messages as fast as the broker
takes them for --seconds. The rate is what the broker itself counts ($SYS/broker/publish/messages/received)
over the middle of the run. It prints, per configuration, the median rate over the rounds,
its ratio to plain mosquitto's, and mosquitto's CPU per message.

  bench/durability.py [--seconds 5] [--rounds 3] [--qos 0] [--publishers 4] [--csv out.csv]

A benchmark, not a test: it asserts only that the brokers ran. --smoke: one short round.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import harness as h  # noqa: E402

FLOOD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flood.py")

CONFIGS = [
    ("plain mosquitto", None),
    ("plugin, durability memory", [("durability", "memory")]),
    ("plugin, journal, fsync never", [("journal_fsync", "never")]),
    ("plugin, journal, fsync 1000 ms (default)", [("journal_fsync", "1000")]),
    ("plugin, journal, fsync 100 ms", [("journal_fsync", "100")]),
    ("plugin, journal, fsync always", [("journal_fsync", "always")]),
]


class Received:
    """The broker's own count of PUBLISHes received, as (arrival time, value) for each
    $SYS update (sys_interval 1): a rate is taken between two updates, never between an
    update and an arbitrary moment."""

    def __init__(self, port):
        self.updates = []
        self.client = h.Client(port, h.unique("sys"), on_message=self._on)
        self.client.subscribe("$SYS/broker/publish/messages/received")

    def _on(self, client, userdata, msg):
        self.updates.append((time.monotonic(), int(msg.payload)))

    def rate(self, since):
        """Messages per second between the first and the last update after `since`."""
        u = [x for x in self.updates if x[0] >= since]
        if len(u) < 2:
            return 0.0, 0
        return (u[-1][1] - u[0][1]) / (u[-1][0] - u[0][0]), u[-1][1] - u[0][1]


def stop_publishers(pubs):
    """Stops the publisher processes this benchmark started (SIGTERM, then SIGKILL after
    10 s) and reaps them."""
    for p in pubs:
        p.send_signal(signal.SIGTERM)
    for p in pubs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def machine_cpu():
    """(busy, all) CPU seconds of the whole machine so far, from /proc/stat's first line
    (idle and iowait are not busy)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / h.CLK_TCK, sum(ticks) / h.CLK_TCK


def disk_and_flushes():
    """(KiB written to disk, TLB shootdown interrupts) of the whole machine so far: what
    syncing a journal does beside the CPU (/proc/vmstat pgpgout, /proc/interrupts TLB)."""
    kib = flushes = 0
    with open("/proc/vmstat") as f:
        for line in f:
            if line.startswith("pgpgout "):
                kib = int(line.split()[1])
    with open("/proc/interrupts") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] == "TLB:":
                flushes = sum(int(x) for x in fields[1:] if x.isdigit())
    return kib, flushes


def one_round(devkafka, extra, seconds, qos, publishers, preload=None, account=None):
    """One configuration flat out: (msg/s, mosquitto's CPU µs per message over all its
    threads, and on its main thread alone: the one that serves the clients). preload: a
    library to LD_PRELOAD into mosquitto. account: a dict given gets the rest of the
    machine's CPU per message (µs): "publishers", "kafka" (mqk-devkafka), "machine" (every
    process, these and mosquitto included), and "cores_busy" (how many of the machine's
    cores were busy on average): where the CPU a configuration needs came from; and
    "disk_mb_s" and "flushes_s", the machine's disk writes and TLB shootdowns a second."""
    options = None
    if extra is not None:
        options = [("bootstrap_servers", devkafka.bootstrap), ("broker_id", "bench"),
                   ("route_all", "bench/# -> bench"), ("stats_interval", "0")] + extra
    b = h.Mosquitto(options or [], plugin="built" if options else None,
                    extra=["sys_interval 1", "max_inflight_messages 100"], name="bench",
                    log_debug=False, preload=preload)
    pubs = []
    try:
        # One flood.py process, `publishers` connections: cheap enough that mosquitto,
        # not the publishers, limits the rate (mosquitto_pub spent ~4x the broker's CPU).
        pubs.append(subprocess.Popen(
            [sys.executable, FLOOD, str(b.port), "--connections", str(publishers),
             "--size", "200", "--qos", str(qos), "--id", h.unique("bp")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        counter = Received(b.port)
        time.sleep(1.5)  # warm-up
        t0, c0, m0 = time.monotonic(), h.cpu_seconds(b.pid), h.cpu_seconds(b.pid, b.pid)
        p0, k0, w0 = (h.cpu_seconds(pubs[0].pid), h.cpu_seconds(devkafka.process.pid),
                      machine_cpu())
        d0 = disk_and_flushes()
        # Two $SYS updates at least `seconds` apart (they come every 1-3 s under load).
        deadline = t0 + seconds + 15
        while time.monotonic() < deadline:
            time.sleep(0.2)
            u = [x for x in counter.updates if x[0] >= t0]
            if len(u) >= 2 and u[-1][0] - u[0][0] >= seconds:
                break
        c1, m1, t1 = h.cpu_seconds(b.pid), h.cpu_seconds(b.pid, b.pid), time.monotonic()
        p1, k1, w1 = (h.cpu_seconds(pubs[0].pid), h.cpu_seconds(devkafka.process.pid),
                      machine_cpu())
        d1 = disk_and_flushes()
        rate, n = counter.rate(t0)
        counter.client.close()
        assert b.process.alive(), "mosquitto died"
    finally:
        stop_publishers(pubs)
        b.cleanup()
    msgs = max(rate * (t1 - t0), 1)
    if account is not None:
        account.update(publishers=(p1 - p0) / msgs * 1e6, kafka=(k1 - k0) / msgs * 1e6,
                       machine=(w1[0] - w0[0]) / msgs * 1e6,
                       cores_busy=(w1[0] - w0[0]) / (w1[1] - w0[1]) * os.cpu_count(),
                       disk_mb_s=(d1[0] - d0[0]) / 1024 / (t1 - t0),
                       flushes_s=(d1[1] - d0[1]) / (t1 - t0))
    return rate, (c1 - c0) / msgs * 1e6, (m1 - m0) / msgs * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--qos", type=int, default=0, choices=(0, 1))
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--csv", help="also write the table as CSV to this path")
    ap.add_argument("--smoke", action="store_true", help="one short round (CI)")
    a = ap.parse_args()
    if a.smoke:
        a.seconds, a.rounds = 1.0, 1
    dk = h.DevKafka(brokers=1)
    rates = {name: [] for name, _ in CONFIGS}
    cpus = {name: [] for name, _ in CONFIGS}
    try:
        for r in range(a.rounds):
            for name, extra in CONFIGS:
                rate, cpu, _ = one_round(dk, extra, a.seconds, a.qos, a.publishers)
                rates[name].append(rate)
                cpus[name].append(cpu)
                print(f"round {r + 1}: {name}: {rate:,.0f} msg/s, {cpu:.2f} µs CPU/msg",
                      file=sys.stderr, flush=True)
    finally:
        dk.cleanup()
    base = statistics.median(rates[CONFIGS[0][0]])
    print(f"\n{a.publishers} publishers flat out, QoS {a.qos}, 200-byte messages, "
          f"{a.rounds} interleaved rounds of {a.seconds:.0f} s, medians\n")
    print("| configuration | msg/s | ratio to plain | mosquitto CPU µs/msg |")
    print("|---|---:|---:|---:|")
    rows = []
    for name, _ in CONFIGS:
        rate, cpu = statistics.median(rates[name]), statistics.median(cpus[name])
        rows.append((name, rate, rate / base, cpu))
        print(f"| {name} | {rate:,.0f} | {rate / base:.3f} | {cpu:.2f} |")
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("configuration,msg_per_s,ratio,cpu_us_per_msg\n")
            for name, rate, ratio, cpu in rows:
                f.write(f"\"{name}\",{rate:.0f},{ratio:.4f},{cpu:.3f}\n")
    if any(r[1] <= 1 for r in rows):
        print("Error: a configuration received nothing", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
