#!/usr/bin/python3
"""
overhead.py - what the plugin costs mosquitto, against the targets, in one run.

  1. Max sustained ingest: plain mosquitto (alone, with the other core kept busy, with
     one idle thread preloaded into it, and with one on a descriptor table of its own as
     the plugin's threads are), the plugin with durability memory, and with the
     journal (journal_fsync 1000, the default), publishers flat out, rounds interleaved
     (bench/durability.py's rounds). Two ratios to plain: what the broker received on this
     machine with everything on its 2 cores, and what mosquitto's main thread (the one that
     serves the clients) spent per message, i.e. the ingest that thread could sustain with a
     core of its own.
     Then librdkafka alone (bench/floor.c) in the same Kafka, at the rate the plugin
     reached: its CPU per record with the plugin's producer settings and record shape
     (the plugin's 8 headers, and none), the floor under the plugin's all-threads cost.
  2. The plugin's work on mosquitto's thread per message: CPU time (mqk-bench-hotpath) and
     instructions (valgrind --tool=callgrind, collecting only the plugin's MESSAGE and TICK
     callbacks).
  3. RSS growth with 100,000 records buffered during a Kafka outage (memory and journal),
     then Kafka back and every record delivered.

  bench/overhead.py [--seconds 5] [--rounds 3] [--qos 0] [--records 100000] [--out FILE.md]
                    [--plugin-option NAME=VALUE]... [--variant NAME=VALUE[,NAME=VALUE]]...
                    [--ingest-only] [--smoke]

--plugin-option: one more plugin_opt_NAME VALUE for every configuration with the plugin.
--variant: one more configuration in the ingest rounds, durability memory with these
options (e.g. --variant kafka.linger.ms=1: the candidate beside the default, interleaved).
--ingest-only: only the ingest rounds (part 1 without librdkafka alone).

A benchmark, not a test: it fails only when something did not run or records went missing.
"""

import argparse
import glob
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import durability  # noqa: E402
import harness as h  # noqa: E402

HOTPATH = os.path.join(h.BUILD_DIR, "bench", "mqk-bench-hotpath")
LOADGEN = os.path.join(h.BUILD_DIR, "tools", "mqk-loadgen")
FLOOR = os.path.join(h.BUILD_DIR, "bench", "mqk-bench-librdkafka-floor")

IDLE_THREAD = os.path.join(h.BUILD_DIR, "bench", "mqk-bench-idle-thread.so")
IDLE_UNSHARED = os.path.join(h.BUILD_DIR, "bench", "mqk-bench-idle-thread-unshared.so")
SYNC_THREAD = os.path.join(h.BUILD_DIR, "bench", "mqk-bench-sync-thread.so")
# Two controls. The plugin's other threads (and the mock Kafka) take the other core: what
# does a busy other core alone do to plain mosquitto? (sha256sum of /dev/zero: one core.)
# And the plugin makes mosquitto a process of several threads: what does one thread that
# does nothing, preloaded into plain mosquitto, cost it? And the same thread on a descriptor
# table of its own, as the plugin's threads are (plugin/side.c): what is left of that cost.
BUSY = "plain mosquitto, other core busy"
IDLE = "plain mosquitto, one idle thread in it"
IDLE_OWN = "plain mosquitto, one idle thread with a table of its own"
# Two more for the journal: a thread in plain mosquitto that writes about as many bytes a
# second as the journal does at this ingest (a fixed 48 MB/s; the journal's own rate is in
# the table's disk column) and makes them durable every second, through a mapping
# and msync as the journal does, or with pwrite and fdatasync (bench/sync_thread.c).
# Writing a mapped page back write-protects it, and the TLB flush that needs interrupts
# every core running one of mosquitto's threads: does that, or the disk, cost mosquitto?
SYNC_MBPS = 48
SYNC_MAP = f"plain mosquitto, a thread writing {SYNC_MBPS} MB/s: mapping + msync every 1 s"
SYNC_WRITE = f"plain mosquitto, a thread writing {SYNC_MBPS} MB/s: pwrite + fdatasync every 1 s"
SYNC_MODE = {SYNC_MAP: "msync", SYNC_WRITE: "write"}
PRELOAD = {IDLE: IDLE_THREAD, IDLE_OWN: IDLE_UNSHARED, SYNC_MAP: SYNC_THREAD,
           SYNC_WRITE: SYNC_THREAD}
INGEST = [
    ("plain mosquitto", None, None),
    (BUSY, None, None),
    (IDLE, None, None),
    (IDLE_OWN, None, None),
    (SYNC_MAP, None, None),
    (SYNC_WRITE, None, None),
    ("plugin, durability memory", [("durability", "memory")], 0.97),
    ("plugin, journal, fsync 1000 ms", [("journal_fsync", "1000")], 0.95),
    ("plugin, journal, fsync never (a control)", [("journal_fsync", "never")], None),
]
HOT = [("durability memory", "raw, 1 route"),
       ("journal, fsync 1000 ms", "raw, 1 route, journal fsync 1000")]


def sync_thread_env(mode):
    """The sync thread's settings, in this process's environment for the mosquitto about to
    start (it inherits it); its file goes in a directory of its own, returned."""
    d = tempfile.mkdtemp(prefix="mqk-sync-thread-")
    os.chmod(d, 0o777)  # mosquitto may run as the mosquitto user by the time it writes
    os.environ.update(MQK_SYNC_DIR=d, MQK_SYNC_MODE=mode, MQK_SYNC_MBPS=str(SYNC_MBPS))
    return d


def sync_thread_done(d):
    """Checks that the thread wrote (else the control measured nothing) and cleans up."""
    wrote = glob.glob(os.path.join(d, "sync-thread.*"))
    for k in ("MQK_SYNC_DIR", "MQK_SYNC_MODE", "MQK_SYNC_MBPS"):
        os.environ.pop(k, None)
    shutil.rmtree(d, ignore_errors=True)
    if not wrote:
        raise h.HarnessError(f"bench/sync_thread.c wrote no file in {d}")


def ingest(seconds, rounds, publishers, qos, plugin_options=(), variants=(), devkafka=None):
    """The ingest rounds, in devkafka (stopped by the caller) or in a DevKafka of their own."""
    configs = [(name, None if extra is None else extra + list(plugin_options), target)
               for name, extra, target in INGEST]
    for v in variants:
        configs.append((f"plugin, durability memory, {', '.join(f'{k}={x}' for k, x in v)}",
                        [("durability", "memory")] + list(plugin_options) + list(v), 0.97))
    dk = devkafka or h.DevKafka(brokers=1)
    got = {name: [] for name, _, _ in configs}
    spent = {name: [] for name, _, _ in configs}  # durability.one_round's account
    try:
        for r in range(rounds):
            for name, extra, _ in configs:
                busy = sync_dir = None
                if name == BUSY:
                    busy = subprocess.Popen(["sha256sum", "/dev/zero"],
                                            stdout=subprocess.DEVNULL)
                if name in SYNC_MODE:
                    sync_dir = sync_thread_env(SYNC_MODE[name])
                account = {}
                try:
                    rate, cpu, main = durability.one_round(
                        dk, extra, seconds, qos, publishers,
                        preload=PRELOAD.get(name), account=account)
                finally:
                    if busy:
                        busy.kill()
                        busy.wait()
                    if sync_dir:
                        sync_thread_done(sync_dir)
                got[name].append((rate, cpu, main))
                spent[name].append(account)
                print(f"round {r + 1}: {name}: {rate:,.0f} msg/s, main thread "
                      f"{main:.2f} µs/msg", file=sys.stderr, flush=True)
    finally:
        if devkafka is None:
            dk.cleanup()
    med = {name: tuple(statistics.median(x[i] for x in v) for i in range(3))
           for name, v in got.items()}
    base_rate, base_cpu, base_main = med[INGEST[0][0]]
    # The plugin's cost per record over all of mosquitto's threads: the all-threads CPU
    # per message with it minus plain mosquitto's (target: 1.5 µs).
    lines = ["| configuration | msg/s | ratio | target | main thread µs/msg | thread ratio "
             "| all threads µs/msg | plugin, all threads µs/msg (≤ 1.5) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, _, target in configs:
        rate, cpu, main = med[name]
        lines.append(f"| {name} | {rate:,.0f} | {rate / base_rate:.3f} | "
                     f"{'≥ %.2f' % target if target else '–'} | {main:.2f} | "
                     f"{base_main / main:.3f} | {cpu:.2f} | "
                     f"{'%.2f' % (cpu - base_cpu) if target else '–'} |")
    ok = all(m[0] > 1 for m in med.values())
    return lines + machine_budget(configs, med, spent), ok, med


def machine_budget(configs, med, spent):
    """Where each configuration's CPU came from, per message received: mosquitto, the
    publishers, the mock Kafka, the whole machine (everything that ran, other processes
    too); and how many cores were busy. With cores to spare, mosquitto's main thread sets
    the rate (the thread ratio above); with every core busy, the machine's CPU does."""
    acc = {name: {k: statistics.median(a[k] for a in v) for k in v[0]}
           for name, v in spent.items()}
    lines = ["", f"Where the CPU came from (µs per message received; {os.cpu_count()} cores; "
             "the mock Kafka is mqk-devkafka, the publishers bench/flood.py):", "",
             "| configuration | mosquitto | publishers | mock Kafka | whole machine "
             "| cores busy | disk writes MB/s | TLB shootdowns/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, _, _ in configs:
        a = acc[name]
        lines.append(f"| {name} | {med[name][1]:.2f} | {a['publishers']:.2f} | "
                     f"{a['kafka']:.2f} | {a['machine']:.2f} | {a['cores_busy']:.2f} | "
                     f"{a['disk_mb_s']:.1f} | {a['flushes_s']:,.0f} |")
    return lines


MEMORY = "plugin, durability memory"
FLOOR_SHAPES = [("plugin", "the plugin's 8 headers"), ("none", "no headers")]


def floor(dk, rate, seconds, rounds, plugin_cost, off_main):
    """librdkafka alone (bench/floor.c) in the ingest's Kafka (topic bench, as the ingest's
    route; 4 keys, as its 4 publishers' client ids), at the plugin's rate for `seconds`,
    rounds interleaved: its CPU per record, the floor under plugin_cost (the plugin's
    all-threads µs per record) and off_main (the part of it beside mosquitto's main
    thread: the Kafka thread, librdkafka's, the side thread)."""
    records = max(int(rate * seconds), 1000)
    got = {mode: [] for mode, _ in FLOOR_SHAPES}
    for r in range(rounds):
        for mode, _ in FLOOR_SHAPES:
            p = subprocess.run([FLOOR, "-b", dk.bootstrap, "-t", "bench", "-n", str(records),
                                "-r", str(int(rate)), "-d", "4", "-H", mode, "-q"],
                               capture_output=True, text=True, timeout=seconds * 3 + 120)
            m = re.search(r"rate=(\S+) cpu_us=(\S+) thread_us=(\S+) rest_us=(\S+)", p.stdout)
            if p.returncode != 0 or m is None:
                raise h.HarnessError(f"mqk-bench-librdkafka-floor -H {mode}: exit "
                                     f"{p.returncode}\n{p.stdout}{p.stderr[-2000:]}")
            got[mode].append(tuple(float(x) for x in m.groups()))
            print(f"round {r + 1}: librdkafka alone, headers {mode}: {got[mode][-1][0]:,.0f} "
                  f"records/s, {got[mode][-1][1]:.2f} µs/record", file=sys.stderr, flush=True)
    med = {mode: tuple(statistics.median(x[i] for x in v) for i in range(4))
           for mode, v in got.items()}
    lines = ["| record shape | records/s | CPU µs/record all threads | producing thread "
             "| librdkafka's threads |", "|---|---:|---:|---:|---:|"]
    for mode, label in FLOOR_SHAPES:
        rate_got, cpu, thread, rest = med[mode]
        lines.append(f"| {label} | {rate_got:,.0f} | {cpu:.2f} | {thread:.2f} | {rest:.2f} |")
    alone = med["plugin"][1]
    lines.append(f"\nThe plugin costs {plugin_cost:.2f} µs per record over all of mosquitto's "
                 f"threads ({off_main:.2f} beside its main thread), librdkafka alone "
                 f"{alone:.2f} with the same record (its 8 headers: "
                 f"{alone - med['none'][1]:+.2f}): the plugin adds {plugin_cost - alone:+.2f} "
                 f"µs on top of librdkafka ({off_main - alone:+.2f} beside the main thread); "
                 f"librdkafka alone is {'already over' if alone > 1.5 else 'within'} the "
                 f"1.5 µs target.")
    return lines


def callgrind_instructions(scenario, messages):
    """Instructions per message in the plugin's MESSAGE and TICK callbacks."""
    d = tempfile.mkdtemp(prefix="mqk-callgrind-")
    out = os.path.join(d, "callgrind.out")
    r = subprocess.run(["valgrind", "--tool=callgrind", "--vgdb=no",
                        f"--callgrind-out-file={out}", "--toggle-collect=on_message", "--toggle-collect=on_tick", HOTPATH,
                        str(messages), scenario], capture_output=True, text=True, timeout=900)
    try:
        if r.returncode != 0:
            raise h.HarnessError(f"callgrind {scenario}: exit {r.returncode}\n{r.stderr[-2000:]}")
        with open(out) as f:
            m = re.search(r"^totals: (\d+)", f.read(), re.M)
        return int(m.group(1)) / messages
    finally:
        for f in glob.glob(os.path.join(d, "*")):
            os.unlink(f)
        os.rmdir(d)


def hotpath(messages, cg_messages, ns_by_label):
    lines = ["| durability | ns/msg on mosquitto's thread (CPU) | target | instructions/msg "
             "(callgrind) |", "|---|---:|---:|---:|"]
    for label, scenario in HOT:
        r = subprocess.run([HOTPATH, str(messages), scenario], capture_output=True, text=True,
                           timeout=600)
        row = [x for x in r.stdout.splitlines() if x.startswith(f"| {scenario} ")]
        if r.returncode != 0 or len(row) != 1:
            raise h.HarnessError(f"mqk-bench-hotpath {scenario}: exit {r.returncode}\n"
                                 f"{r.stdout}{r.stderr}")
        ns = float(row[0].split("|")[2])
        ins = callgrind_instructions(scenario, cg_messages)
        ns_by_label[label] = ns
        lines.append(f"| {label} | {ns:.0f} | ≤ 1,500 | {ins:,.0f} |")
    return lines


def rss_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k = line.split(":")[0]
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(line.split()[1])
    return out


def outage_rss(records):
    """RSS before and after `records` QoS 1 records are buffered with Kafka down."""
    lines = ["| durability | records buffered | RSS before MB | after MB | growth MB "
             "(anon + file) | target | delivered after Kafka came back |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    ok = True
    for label, extra in (("memory", [("durability", "memory")]), ("journal", [])):
        dk = h.DevKafka(brokers=1)
        b = counters = None
        try:
            topic = h.unique("outage")
            dk.create_topic(topic)
            b = h.Mosquitto([("bootstrap_servers", dk.bootstrap), ("broker_id", "outage"),
                             ("route_data", f"devices/+/data -> {topic}"),
                             ("stats_interval", "1")] + extra, name=f"outage-{label}",
                            log_debug=False)
            counters = h.SysCounters(b.port)
            time.sleep(1.0)
            dk.down()
            time.sleep(1.0)
            before = rss_kb(b.pid)
            devices = 100
            r = subprocess.run([LOADGEN, "--host", f"127.0.0.1:{b.port}", "-n", str(devices),
                                "-c", str(records // devices), "-R", "20000", "-Q", "1",
                                "-s", "200", "--clean", "--commands", "", "-q",
                                "--drain", "60"], capture_output=True, text=True, timeout=300)
            after = rss_kb(b.pid)
            if r.returncode != 0:
                raise h.HarnessError(f"mqk-loadgen: exit {r.returncode}\n{r.stderr[-2000:]}")
            dk.up()
            got = counters.wait_for({"delivered": records}, timeout=120)["delivered"]
            growth = (after["VmRSS"] - before["VmRSS"]) / 1024
            anon = (after["RssAnon"] - before["RssAnon"]) / 1024
            file_ = (after["RssFile"] + after["RssShmem"] - before["RssFile"]
                     - before["RssShmem"]) / 1024
            ok = ok and got == records
            lines.append(f"| {label} | {records:,} | {before['VmRSS'] / 1024:.1f} | "
                         f"{after['VmRSS'] / 1024:.1f} | {growth:.1f} ({anon:.1f} + "
                         f"{file_:.1f}) | ≤ 64 | {got:,} |")
        finally:
            if counters:
                counters.close()
            if b:
                b.cleanup()
            dk.cleanup()
    return lines, ok


def ceiling(med, ns):
    """What mosquitto's thread can do at best with the plugin: the cost of a thread beside it
    on a table of its own (the control) plus the plugin's own work on it (hotpath)."""
    plain = med[INGEST[0][0]][2]
    own = med[IDLE_OWN][2]
    parts = [f"{label}: {plain:.2f} / ({own:.2f} + {ns[label] / 1000:.2f}) = "
             f"{plain / (own + ns[label] / 1000):.3f}" for label, _ in HOT]
    return ("The ceiling this run measures for mosquitto's thread with the plugin: plain "
            "mosquitto's µs per message over (the thread with an idle thread on a table of its "
            "own beside it + the plugin's work on it), " + "; ".join(parts) + ".")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--qos", type=int, default=0, choices=(0, 1))
    ap.add_argument("--records", type=int, default=100000)
    ap.add_argument("--out", help="also write the tables (markdown) to this file")
    ap.add_argument("--plugin-option", action="append", default=[], metavar="NAME=VALUE",
                    help="one more plugin_opt_NAME VALUE for every configuration with the plugin")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=VALUE[,...]",
                    help="one more configuration: durability memory with these options")
    ap.add_argument("--ingest-only", action="store_true", help="only the ingest rounds")
    ap.add_argument("--smoke", action="store_true", help="tiny and quick (CI)")
    a = ap.parse_args()

    def pairs(text, what):
        out = []
        for o in text.split(","):
            if "=" not in o:
                ap.error(f"{what} {text}: NAME=VALUE expected")
            out.append(tuple(o.split("=", 1)))
        return out
    plugin_options = [p for o in a.plugin_option for p in pairs(o, "--plugin-option")]
    variants = [pairs(v, "--variant") for v in a.variant]
    messages, cg = 200000, 20000
    if a.smoke:
        a.seconds, a.rounds, a.records, messages, cg = 1.0, 1, 2000, 5000, 2000
    for path, what in ((HOTPATH, "mqk-bench-hotpath"), (LOADGEN, "mqk-loadgen"),
                       (FLOOR, "mqk-bench-librdkafka-floor")):
        h.require_file(path, what, executable=True)
    h.require_file(IDLE_THREAD, "bench/idle_thread.c's library")
    h.require_file(IDLE_UNSHARED, "bench/idle_thread.c's library (IDLE_UNSHARE)")
    h.require_file(SYNC_THREAD, "bench/sync_thread.c's library")

    out = [f"# What the plugin costs mosquitto\n\n{time.strftime('%Y-%m-%d')}, "
           f"{os.cpu_count()} cores, one run.\n",
           f"## Max sustained ingest ({a.publishers} publishers flat out, QoS {a.qos}, 200 bytes, "
           f"{a.rounds} interleaved rounds of {a.seconds:g} s, medians)\n"]
    dk = h.DevKafka(brokers=1)
    try:
        lines, ok_ingest, med = ingest(a.seconds, a.rounds, a.publishers, a.qos,
                                       plugin_options, variants, devkafka=dk)
        out += lines
        if not a.ingest_only:
            rate = med[MEMORY][0]
            out.append(f"\n## librdkafka alone (bench/floor.c), at the rate the plugin reached "
                       f"({rate:,.0f} records/s, {a.seconds:g} s, {a.rounds} interleaved "
                       f"rounds, medians)\n")
            plain = med[INGEST[0][0]]
            out += floor(dk, rate, a.seconds, a.rounds, med[MEMORY][1] - plain[1],
                         (med[MEMORY][1] - med[MEMORY][2]) - (plain[1] - plain[2]))
    finally:
        dk.cleanup()
    if plugin_options:
        out.append(f"\nPlugin options added: {', '.join(a.plugin_option)}.")
    if a.ingest_only:
        text = "\n".join(out) + "\n"
        print(text)
        if a.out:
            with open(a.out, "w") as f:
                f.write(text)
        return 0 if ok_ingest else 1
    ns = {}
    out += ["\n## The plugin's work on mosquitto's thread\n"] + hotpath(messages, cg, ns)
    out += ["\n" + ceiling(med, ns)]
    lines, ok_rss = outage_rss(a.records)
    out += [f"\n## RSS with {a.records:,} records buffered during a Kafka outage\n"] + lines
    text = "\n".join(out) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    if not (ok_ingest and ok_rss):
        print("Error: a configuration received nothing, or records were not delivered",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
