#!/usr/bin/python3
"""
study.py - the study reproduced on this machine: A1, A2, A3 (hybrid clients) and A4 (this
plugin), as the number of devices grows and as the rate grows to saturation.

  A1  one mosquitto; mqk-controller in MQTT mode subscribed to it
  A2  3 mosquittos behind HAProxy; one MQTT-mode mqk-controller connected to every broker
      (open-source mosquitto has no cluster: see docs/study.md for why not bridges)
  A3  the same brokers + one mqk-hybrid per broker (MQTT subscriber -> Kafka producer, the
      study's HybridClient) + Kafka + mqk-controller pulling from Kafka
  A4  the same brokers with the plugin forwarding into Kafka + mqk-controller

Every point starts its brokers, proxy, hybrids and controller afresh (Kafka is shared by the
run, a topic per point), runs mqk-loadgen devices (QoS 1, 64-byte timestamped and numbered
payloads, mosquitto's default queue limits: max_queued_messages 1000, 20 in flight), and
records: sent, PUBACKed, received by the controller, lost (PUBACKed but never received),
duplicates, publish -> controller latency p50/p99, each broker's heap ($SYS/broker/heap/
current and maximum) and peak RSS, the CPU of every process, and the throughput.

  bench/study.py [--kafka real|dev] [--devices 10,100,1000,5000] [--rate 5]
                 [--rates 2000,5000,10000,20000,30000,40000,60000,80000]
                 [--rate-devices 100] [--seconds 10] [--archs A1,A2,A3,A4]
                 [--hybrid-sleep-ms 0] [--plugin-option NAME=VALUE] [--out docs/results]
                 [--smoke]

Writes study.csv, study.md, machine.txt and loss/latency/heap/throughput PNGs (gnuplot) into
--out. A benchmark, not a test: it fails only when an architecture received nothing.
--smoke: dev Kafka, 10 devices, one short point per architecture, into a temporary --out.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness as h  # noqa: E402

LOADGEN = os.path.join(h.BUILD_DIR, "tools", "mqk-loadgen")
CONTROLLER = os.path.join(h.BUILD_DIR, "examples", "controller", "mqk-controller")
HYBRID = os.path.join(h.BUILD_DIR, "tools", "mqk-hybrid")
FILTER = "devices/+/data"
# The controller stops once nothing came for this long (after the first message).
CONTROLLER_IDLE_S = 4

ARCHS = {
    "A1": dict(brokers=1, plugin=False, hybrid=False, kafka=False),
    "A2": dict(brokers=3, plugin=False, hybrid=False, kafka=False),
    "A3": dict(brokers=3, plugin=False, hybrid=True, kafka=True),
    "A4": dict(brokers=3, plugin=True, hybrid=False, kafka=True),
}

# mosquitto's own defaults for what it queues to a slow subscriber (the harness runs with
# no limit, for the tests): what A1-A3 lose when their subscriber falls behind.
BROKER_CONF = ["sys_interval 1", "max_queued_messages 1000", "max_inflight_messages 20"]

COLUMNS = ["arch", "sweep", "devices", "offered", "sent", "acked", "received", "lost",
           "lost_pct", "duplicates", "p50_ms", "p99_ms", "throughput", "heap_kb",
           "heap_max_kb", "rss_mb", "cpu_brokers", "cpu_proxy", "cpu_hybrids", "cpu_kafka",
           "cpu_controller", "cpu_loadgen", "seconds", "hybrid_lost"]


# ---- processes --------------------------------------------------------------------------

def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Tool:
    """One of our example programs run for one point: stdout (its JSON) and stderr in
    files; wait() reaps it with os.wait4, which gives its CPU time even though it exited."""

    def __init__(self, argv, workdir, name):
        self.name = name
        self.out = open(os.path.join(workdir, name + ".json"), "w+")
        self.err = open(os.path.join(workdir, name + ".log"), "w+")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=self.err)
        self.cpu = None
        self.status = None

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                self.cpu = usage.ru_utime + usage.ru_stime
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout=20.0):
        """SIGTERM (the tools print their summary then), SIGKILL if it lingers."""
        if self.proc.returncode is None and self.cpu is None:
            self.proc.send_signal(signal.SIGTERM)
            if not self.wait(timeout):
                self.proc.kill()
                self.wait(10)

    def result(self):
        self.out.seek(0)
        text = self.out.read()
        try:
            return json.loads(text)
        except ValueError:
            self.err.seek(0)
            raise h.HarnessError(f"{self.name} printed no JSON (exit {self.proc.returncode}):"
                                 f"\n{text[-2000:]}\n{self.err.read()[-2000:]}")

    def log_tail(self, n=3000):
        self.err.seek(0)
        return self.err.read()[-n:]

    def close(self):
        self.out.close()
        self.err.close()


class Heap:
    """A broker's $SYS heap: the largest heap/current seen and the last heap/maximum."""

    def __init__(self, port):
        self.current = self.maximum = 0
        self.client = h.Client(port, h.unique("heap"), on_message=self._on)
        self.client.subscribe("$SYS/broker/heap/+")

    def _on(self, client, userdata, msg):
        try:
            v = int(msg.payload.split()[0])
        except (ValueError, IndexError):
            return
        if msg.topic.endswith("/current"):
            self.current = max(self.current, v)
        elif msg.topic.endswith("/maximum"):
            self.maximum = max(self.maximum, v)

    def close(self):
        self.client.close()


# ---- one point --------------------------------------------------------------------------

def run_point(kafka, arch, devices, seconds, rate=None, total_rate=None, hybrid_sleep=0,
              plugin_extra=()):
    """Runs one architecture at one load; returns a dict of COLUMNS."""
    spec = ARCHS[arch]
    work = tempfile.mkdtemp(prefix=f"mqk-study-{arch}-")
    brokers, heaps, tools, hybrids = [], [], [], []
    proxy = controller = loadgen = None
    topic = h.unique(f"study-{arch.lower()}")
    try:
        if spec["kafka"]:
            kafka.create_topic(topic)
        for i in range(spec["brokers"]):
            opts = []
            if spec["plugin"]:
                opts = [("bootstrap_servers", kafka.bootstrap), ("broker_id", f"b{i}"),
                        ("route_data", f"{FILTER} -> {topic} key=topic"),
                        ("stats_interval", "0")] + list(plugin_extra)
            brokers.append(h.Mosquitto(opts, plugin="built" if opts else None,
                                       extra=BROKER_CONF, name=f"{arch}-b{i}", log_debug=False))
        heaps = [Heap(b.port) for b in brokers]
        if spec["brokers"] > 1:
            # 2 descriptors a connection: within the 20,000 a process may have here
            proxy = h.HAProxy([b.port for b in brokers], maxconn=devices + 1000)
            entry = f"127.0.0.1:{proxy.port}"
        else:
            entry = f"127.0.0.1:{brokers[0].port}"
        for i, b in enumerate(brokers if spec["hybrid"] else []):
            hy = Tool([HYBRID, "-p", str(b.port), "-b", kafka.bootstrap, "-T", topic, "-q", "1",
                       "-t", FILTER, "-i", h.unique(f"hybrid{i}"),
                       "--poll-sleep-ms", str(hybrid_sleep)], work, f"hybrid{i}")
            hybrids.append(hy)
            tools.append(hy)
        ctl_args = [CONTROLLER, "-q", "-i", str(CONTROLLER_IDLE_S), "-d", str(seconds + 120)]
        if spec["kafka"]:
            ctl_args += ["-b", kafka.bootstrap, "-t", topic, "-g", h.unique("study")]
            if kafka.kind != "real":  # the mock answers a fetch only at fetch.wait.max.ms
                ctl_args += ["-X", "fetch.wait.max.ms=5"]
        else:
            ctl_args += ["-m", ",".join(f"127.0.0.1:{b.port}" for b in brokers), "-f", FILTER,
                         "--qos", "1"]
        controller = Tool(ctl_args, work, "controller")
        tools.append(controller)
        time.sleep(1.0 if not spec["kafka"] else 3.0)  # subscribed / joined its group
        for t in tools:
            if t.proc.poll() is not None:
                raise h.HarnessError(f"{t.name} exited at start: {t.result()}")

        load = ["--host", entry, "-n", str(devices), "-d", str(seconds), "-Q", "1", "--clean",
                "--commands", "", "-q", "-T", "2", "--ramp-up", f"{max(1.0, devices / 1000):g}",
                "--drain", "20"]
        load += ["-r", f"{rate:g}"] if rate is not None else ["-R", f"{total_rate:g}"]
        long_lived = [b.pid for b in brokers] + ([proxy.process.pid] if proxy else []) + \
            (kafka_pids(kafka) if spec["kafka"] else [])
        cpu0 = {pid: h.cpu_seconds(pid) for pid in long_lived}
        t0 = time.monotonic()
        loadgen = Tool([LOADGEN] + load, work, "loadgen")
        if not loadgen.wait(seconds + devices / 1000 + 60):
            loadgen.stop()
        summary = loadgen.result()
        if not controller.wait(seconds + 150):
            controller.stop()
        t1 = time.monotonic()
        cpu1 = {pid: h.cpu_seconds(pid) for pid in long_lived}
        report = controller.result()
        for hy in hybrids:
            hy.stop()
        hybrid_lost = sum(hy.result().get("failed", 0) + hy.result().get("dropped", 0)
                          for hy in hybrids)
        if report["unique"] < summary["acked"]:
            # where the loss happened: what the hybrids (or the controller) said about it
            for t in hybrids + [controller]:
                print(f"{arch} {devices} devices: {t.name} (exit {t.proc.returncode}): "
                      f"{json.dumps(t.result())}\n{t.log_tail()}", file=sys.stderr)
        for b in brokers:
            if not b.process.alive():
                raise h.HarnessError(f"{b.name} died:\n{b.log()[-3000:]}")
        rss = max(status_kb(b.pid, "VmHWM") for b in brokers) / 1024
    finally:
        for hp in heaps:
            hp.close()
        for t in tools + ([loadgen] if loadgen else []):
            t.stop()
            t.close()
        if proxy:
            proxy.cleanup()
        for b in brokers:
            b.cleanup()
        shutil.rmtree(work, ignore_errors=True)

    def cpu_pct(pids):
        s = sum((cpu1[p] or cpu0[p]) - cpu0[p] for p in pids if cpu0.get(p) is not None)
        return 100.0 * s / (t1 - t0)

    acked = summary["acked"]
    received = report["unique"]
    lost = max(0, acked - received)
    lat = report["latency_us"]
    offered = rate * devices if rate is not None else total_rate
    return dict(
        arch=arch, devices=devices, offered=offered, sent=summary["sent"]["total"],
        acked=acked, received=received, lost=lost,
        lost_pct=100.0 * lost / acked if acked else 0.0,
        duplicates=report["duplicates"], p50_ms=lat["p50"] / 1000, p99_ms=lat["p99"] / 1000,
        # between the controller's first and last message: what it got, while it got it
        throughput=received / report["duration_s"] if report["duration_s"] else 0,
        heap_kb=max(hp.current for hp in heaps) / 1024 if heaps else 0,
        heap_max_kb=max(hp.maximum for hp in heaps) / 1024 if heaps else 0,
        rss_mb=rss,
        cpu_brokers=cpu_pct([b.pid for b in brokers]),
        cpu_proxy=cpu_pct([proxy.process.pid]) if proxy else 0.0,
        cpu_hybrids=100.0 * sum(hy.cpu or 0 for hy in hybrids) / (t1 - t0),
        cpu_kafka=cpu_pct(kafka_pids(kafka)) if spec["kafka"] else 0.0,
        cpu_controller=100.0 * (controller.cpu or 0) / (t1 - t0),
        cpu_loadgen=100.0 * (loadgen.cpu or 0) / (t1 - t0),
        seconds=t1 - t0, hybrid_lost=hybrid_lost)


def kafka_pids(kafka):
    if hasattr(kafka, "cluster"):
        return [n.pid for n in kafka.cluster.nodes if n.pid]
    return [kafka.process.pid]


# ---- output -----------------------------------------------------------------------------

def fmt(v):
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def write_csv(path, rows):
    with open(path, "w") as f:
        f.write(",".join(COLUMNS) + "\n")
        for r in rows:
            f.write(",".join(fmt(r[c]) for c in COLUMNS) + "\n")


def read_csv(path):
    """study.csv back into rows: numbers as floats, arch and sweep as they are."""
    with open(path) as f:
        names = f.readline().strip().split(",")
        return [{n: v if n in ("arch", "sweep") else float(v)
                 for n, v in zip(names, line.strip().split(","))} for line in f if line.strip()]


def markdown(rows, sweep):
    out = ["| arch | devices | offered msg/s | PUBACKed | received | lost % | dup | "
           "p50 ms | p99 ms | msg/s | heap max KB | RSS MB | CPU % brokers / proxy / hybrids "
           "/ Kafka / controller |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
           "---:|---|"]
    for r in rows:
        if r["sweep"] != sweep:
            continue
        out.append(
            f"| {r['arch']} | {r['devices']:,} | {r['offered']:,.0f} | {r['acked']:,} | "
            f"{r['received']:,} | {r['lost_pct']:.2f} | {r['duplicates']} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['throughput']:,.0f} | {r['heap_max_kb']:,.0f} | "
            f"{r['rss_mb']:.1f} | {r['cpu_brokers']:.0f} / {r['cpu_proxy']:.0f} / "
            f"{r['cpu_hybrids']:.0f} / {r['cpu_kafka']:.0f} / {r['cpu_controller']:.0f} |")
    return "\n".join(out)


def max_zero_loss(rows, arch):
    ok = [r["throughput"] for r in rows
          if r["arch"] == arch and r["sweep"] == "rate" and r["lost"] == 0]
    return max(ok) if ok else 0.0


PLOTS = [
    # (file, sweep, x column, y column, y label, log y)
    ("loss.png", "devices", "devices", "lost_pct", "messages lost (%)", False),
    ("latency.png", "devices", "devices", "p99_ms", "publish -> controller p99 (ms)", True),
    ("heap.png", "devices", "devices", "heap_max_kb", "broker heap maximum (KB)", False),
    ("throughput.png", "devices", "devices", "throughput", "received (msg/s)", True),
    ("saturation.png", "rate", "offered", "throughput", "received (msg/s)", False),
    ("saturation-loss.png", "rate", "offered", "lost_pct", "messages lost (%)", False),
]


def plot(out_dir, archs, rows):
    """One PNG per PLOTS entry whose sweep ran, a line per architecture, from study.csv
    (gnuplot). Returns the files written, or None when gnuplot failed."""
    gp = shutil.which("gnuplot")
    if gp is None:
        print("gnuplot not found (scripts/install-deps.sh installs gnuplot-nox): no plots",
              file=sys.stderr)
        return None
    done = []
    script = ["set datafile separator ','", "set terminal pngcairo size 800,500",
              "set key top left", "set grid", "set logscale x"]
    for name, sweep, x, y, ylabel, logy in PLOTS:
        if not any(r["sweep"] == sweep for r in rows):
            continue
        done.append(name)
        script += [f"set output '{os.path.join(out_dir, name)}'",
                   f"set xlabel '{'devices' if x == 'devices' else 'offered msg/s'}'",
                   f"set ylabel '{ylabel}'",
                   "set logscale y" if logy else "unset logscale y",
                   f"set title '{ylabel} against {x}'"]
        # one datablock per architecture, its points in x order: a line joins them
        series = []
        for i, a in enumerate(archs):
            points = sorted((r[x], r[y]) for r in rows if r["arch"] == a and r["sweep"] == sweep)
            block = f"$d{len(done)}_{i}"
            script += [f"{block} << EOD"] + [f"{px:g},{py:g}" for px, py in points] + ["EOD"]
            series.append(f"{block} using 1:2 with linespoints title '{a}'")
        script.append("plot " + ", ".join(series))
    r = subprocess.run([gp], input="\n".join(script) + "\n", text=True, capture_output=True,
                       timeout=60)
    if r.returncode != 0:
        print(f"gnuplot failed:\n{r.stderr}", file=sys.stderr)
        return None
    return done


def machine(kafka_kind):
    def cmd(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
        except OSError:
            return ""
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), "?")
    mem = status_line("/proc/meminfo", "MemTotal")
    mosq = cmd(["mosquitto", "-h"]).splitlines()[0:1]
    return (f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n"
            f"cpu: {model}, {os.cpu_count()} cores\nmemory: {mem}\n"
            f"kernel: {platform.release()}\n"
            f"mosquitto: {mosq[0] if mosq else '?'}\n"
            f"kafka: {kafka_kind}\n")


def status_line(path, field):
    for line in open(path):
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return "?"


# ---- main -------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kafka", choices=("real", "dev"), default="real")
    ap.add_argument("--devices", default="10,100,1000,5000")
    ap.add_argument("--rate", type=float, default=5.0, help="msg/s per device (devices sweep)")
    ap.add_argument("--rates", default="2000,5000,10000,20000,30000,40000,60000,80000",
                    help="total msg/s (saturation sweep); '' skips it")
    ap.add_argument("--rate-devices", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--archs", default="A1,A2,A3,A4")
    ap.add_argument("--hybrid-sleep-ms", type=int, default=0,
                    help="mqk-hybrid --poll-sleep-ms (the study slept; 0: as fast as it can)")
    ap.add_argument("--plugin-option", action="append", default=[], metavar="NAME=VALUE",
                    help="A4: one more plugin_opt_NAME VALUE (e.g. kafka.linger.ms=0)")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "docs", "results"))
    ap.add_argument("--smoke", action="store_true", help="one short point per architecture")
    ap.add_argument("--replot", action="store_true",
                    help="only draw the plots again from --out's study.csv")
    a = ap.parse_args()
    if a.replot:
        rows = read_csv(os.path.join(a.out, "study.csv"))
        archs = sorted({r["arch"] for r in rows})
        plotted = plot(a.out, archs, rows)
        print("written: " + ", ".join(plotted) if plotted else "no plots")
        return 0 if plotted else 1
    if a.smoke:
        a.kafka, a.devices, a.rate, a.rates, a.seconds = "dev", "10", 20.0, "", 2.0
        a.out = tempfile.mkdtemp(prefix="mqk-study-smoke-")
    archs = [x for x in a.archs.split(",") if x]
    plugin_extra = []
    for o in a.plugin_option:
        if "=" not in o:
            ap.error(f"--plugin-option {o}: NAME=VALUE expected")
        plugin_extra.append(tuple(o.split("=", 1)))
    for x in archs:
        if x not in ARCHS:
            ap.error(f"--archs: unknown architecture {x} (A1..A4)")
    for path, what in ((LOADGEN, "mqk-loadgen"), (CONTROLLER, "mqk-controller"),
                       (HYBRID, "mqk-hybrid")):
        if what != "mqk-hybrid" or "A3" in archs:
            h.require_file(path, what, executable=True)
    os.makedirs(a.out, exist_ok=True)

    started = time.monotonic()
    kafka = h.RealKafka(nodes=1) if a.kafka == "real" else h.DevKafka(brokers=1)
    rows = []

    def record(row, sweep):
        row["sweep"] = sweep
        rows.append(row)
        print(f"{row['arch']} {sweep}: {row['devices']} devices, offered {row['offered']:,.0f}"
              f" msg/s: PUBACKed {row['acked']:,}, received {row['received']:,}, lost "
              f"{row['lost_pct']:.2f} %, dup {row['duplicates']}, p50/p99 {row['p50_ms']:.1f}/"
              f"{row['p99_ms']:.1f} ms, {row['throughput']:,.0f} msg/s, heap max "
              f"{row['heap_max_kb']:,.0f} KB, RSS {row['rss_mb']:.1f} MB",
              file=sys.stderr, flush=True)
        write_csv(os.path.join(a.out, "study.csv"), rows)

    def point(arch, devices, **load):
        return run_point(kafka, arch, devices, a.seconds, hybrid_sleep=a.hybrid_sleep_ms,
                         plugin_extra=plugin_extra, **load)

    try:
        for n in [int(x) for x in a.devices.split(",") if x]:
            for arch in archs:
                record(point(arch, n, rate=a.rate), "devices")
        for arch in archs:
            for total in [float(x) for x in a.rates.split(",") if x]:
                row = point(arch, a.rate_devices, total_rate=total)
                record(row, "rate")
                if row["lost"] > 0 or row["throughput"] < 0.8 * total:
                    break  # saturated: the next rate only loses more
        if a.rates:
            for arch in archs:
                best = max_zero_loss(rows, arch)
                if best > 0:
                    record(point(arch, a.rate_devices, total_rate=best / 2), "half")
    finally:
        kafka.cleanup()

    with open(os.path.join(a.out, "machine.txt"), "w") as f:
        f.write(machine(a.kafka))
    md = [f"# Study results\n\nMachine: see machine.txt. Run took "
          f"{(time.monotonic() - started) / 60:.1f} min; Kafka: {a.kafka}; mqk-hybrid "
          f"--poll-sleep-ms {a.hybrid_sleep_ms}; plugin options "
          f"{', '.join(a.plugin_option) or 'the defaults'}.\n",
          f"## Devices sweep ({a.rate:g} msg/s per device, QoS 1, {a.seconds:g} s)\n",
          markdown(rows, "devices")]
    if a.rates:
        md += [f"\n## Rate sweep ({a.rate_devices} devices, QoS 1, to saturation)\n",
               markdown(rows, "rate"),
               "\n## At half each architecture's max zero-loss rate\n", markdown(rows, "half"),
               "\n## Max throughput at zero loss\n",
               "| arch | msg/s |", "|---|---:|"]
        md += [f"| {x} | {max_zero_loss(rows, x):,.0f} |" for x in archs]
    with open(os.path.join(a.out, "study.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    plotted = plot(a.out, archs, rows)
    print("\n".join(md))
    print(f"\nwritten: {a.out}/study.csv, study.md, machine.txt"
          + (", " + ", ".join(plotted) if plotted else ""))
    problems = [f"{r['arch']} received nothing" for r in rows if r["received"] == 0]
    if plotted is None:
        problems.append("no plots")
    if a.smoke:  # 200 msg/s: every architecture keeps up; a loss there is a bug
        problems += [f"{r['arch']} lost {r['lost']} at {r['offered']:g} msg/s" for r in rows
                     if r["lost"] or r["duplicates"]]
    if problems:
        print("Error: " + "; ".join(problems), file=sys.stderr)
        return 1
    if a.smoke:
        shutil.rmtree(a.out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
