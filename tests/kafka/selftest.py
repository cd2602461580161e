#!/usr/bin/python3
"""
selftest.py - checks and measures the real-Kafka harness (kafka.py) on this machine.

  python3 tests/kafka/selftest.py [--nodes 1|3|both] [--seconds S] [--kill-controller]

1 node: start to metadata-ready time, RSS, kcat -P / kcat -C round trip, stop.
3 nodes: the same, then a topic with replication factor 3 and min.insync.replicas 2; kcat -P
(acks=all, idempotent) sends a numbered line every millisecond for S seconds while the leader of
partition 0 is killed with SIGKILL and restarted; prints how long until a new leader, how long
the restarted node takes to rejoin the ISR, and that every number arrived exactly once.
Ends with a closing line 'N passed, N failed'; exit status 1 if anything failed.
"""

import argparse
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka  # noqa: E402

results = []


def check(name, ok, detail=""):
    results.append((name, bool(ok)))
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def rss_line(c):
    return ", ".join(f"node{n.id} {n.rss_kb() / 1024:.0f} MB" for n in c.nodes if n.alive())


def produce(bootstrap, topic, lines, extra=()):
    cmd = [kafka.KCAT, "-P", "-b", bootstrap, "-t", topic, "-X", "acks=all",
           "-X", "enable.idempotence=true", "-X", "message.timeout.ms=120000", *extra]
    r = subprocess.run(cmd, input="".join(f"{x}\n" for x in lines), text=True,
                       capture_output=True, timeout=180)
    return r


def consume(bootstrap, topic, timeout=60):
    cmd = [kafka.KCAT, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
           "-f", "%p %s\n"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return [line.split(" ", 1) for line in r.stdout.splitlines() if line]


def one_node(workdir):
    print("== 1 node", flush=True)
    c = kafka.KafkaCluster(os.path.join(workdir, "one"), nodes=1, die_with_parent=True)
    try:
        c.start()
        check("1 node metadata-ready", True,
              f"format {c.timings['format_s']:.1f} s, JVM start to metadata-ready "
              f"{c.timings['start_to_ready_s']:.1f} s; RSS {rss_line(c)}")
        t = time.monotonic()
        c.create_topic("selftest", partitions=2)
        print(f"  create-topic (TopicCommand JVM + wait for leaders) {time.monotonic() - t:.1f} s")
        n = 20000
        t = time.monotonic()
        r = produce(c.bootstrap, "selftest", range(n))
        check("kcat -P 1 node", r.returncode == 0,
              f"{n} lines in {time.monotonic() - t:.1f} s {r.stderr.strip()[-300:]}")
        got = consume(c.bootstrap, "selftest")
        nums = sorted(int(v) for _, v in got)
        check("kcat -C 1 node", nums == list(range(n)), f"{len(got)} of {n} read back")
        print(f"  RSS after load: {rss_line(c)}")
    finally:
        t = time.monotonic()
        c.stop(remove=True)
        print(f"  stop {time.monotonic() - t:.1f} s")


def three_nodes(workdir, seconds, kill_controller=False):
    print("== 3 nodes", flush=True)
    c = kafka.KafkaCluster(os.path.join(workdir, "three"), nodes=3, die_with_parent=True)
    try:
        c.start()
        check("3 nodes metadata-ready", True,
              f"format {c.timings['format_s']:.1f} s, JVM start to metadata-ready "
              f"{c.timings['start_to_ready_s']:.1f} s; RSS {rss_line(c)}")
        topic = "failover"
        c.create_topic(topic, partitions=3, replication_factor=3,
                       config={"min.insync.replicas": 2})
        desc = c.describe_topic(topic)
        print("  " + desc.replace("\n", "\n  ").rstrip())
        check("topic RF 3, min.insync.replicas 2",
              "ReplicationFactor: 3" in desc and "min.insync.replicas=2" in desc)

        controller = c.quorum_leader()
        part = 0
        if kill_controller:  # the worst case: the partition's leader is the active controller
            part = next(p for p in range(3) if c.leader(topic, p) == controller)
        leader = c.leader(topic, part)
        print(f"  leader of {topic}/{part}: node {leader}; active KRaft controller: node {controller}"
              f"{' (the same node: the kill also forces a controller election)' if controller == leader else ''}")
        # Continuous load: one numbered line per ms into kcat -P (acks=all, idempotent).
        cmd = [kafka.KCAT, "-P", "-b", c.bootstrap, "-t", topic, "-X", "acks=all",
               "-X", "enable.idempotence=true", "-X", "message.timeout.ms=120000",
               "-X", "linger.ms=5"]
        err = open(os.path.join(c.workdir, "kcat-produce.err"), "w")
        prod = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=err, text=True)
        sent = [0]
        stop_feed = threading.Event()

        def feed():
            i = 0
            t0 = time.monotonic()
            while not stop_feed.is_set() and time.monotonic() - t0 < seconds:
                prod.stdin.write(f"{i}\n")
                i += 1
                if i % 50 == 0:
                    prod.stdin.flush()
                    time.sleep(0.05)
            prod.stdin.flush()
            sent[0] = i
        feeder = threading.Thread(target=feed)
        feeder.start()
        time.sleep(3)
        killed_at = time.monotonic()
        c.kill(leader)
        print(f"  kill -9 node {leader} (pid {c.node(leader).pid})")
        new_leader, took = c.wait_new_leader(topic, part, leader, timeout=60)
        check("new leader after kill -9", new_leader != leader,
              f"node {new_leader} leads {topic}/{part} {took:.1f} s after the kill")
        info = c.partition(topic, part)
        print(f"  {topic}/{part} now: leader {info[0]}, replicas {info[1]}, isr {info[2]}"
              if info else "  (nodes disagree on metadata right now)")
        time.sleep(max(0.0, 8 - (time.monotonic() - killed_at)))
        print(f"  RSS while node {leader} is down: {rss_line(c)}")
        took = c.restart(leader)
        print(f"  restart node {leader}: metadata-ready in {took:.1f} s")
        parts = [0, 1, 2]
        rejoin = max(c.wait_in_sync(topic, p, leader, timeout=90) for p in parts)
        check("restarted node rejoins the ISR", True,
              f"node {leader} in the ISR of all {len(parts)} partitions "
              f"{rejoin:.1f} s after metadata-ready")
        feeder.join(timeout=seconds + 30)
        prod.stdin.close()
        rc = prod.wait(timeout=150)
        err.close()
        check("kcat -P through the failover", rc == 0 and not feeder.is_alive(),
              f"{sent[0]} lines sent, kcat exit {rc}; stderr: "
              f"{kafka._tail(err.name, 3).strip()[-400:]}")
        got = consume(c.bootstrap, topic)
        nums = [int(v) for _, v in got]
        lost = set(range(sent[0])) - set(nums)
        dups = len(nums) - len(set(nums))
        check("0 lost, 0 duplicates", not lost and not dups,
              f"{len(nums)} read back of {sent[0]} sent, {len(lost)} lost, {dups} duplicates")
        print(f"  RSS after load: {rss_line(c)}")
    finally:
        t = time.monotonic()
        c.stop(remove=True)
        print(f"  stop {time.monotonic() - t:.1f} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", choices=["1", "3", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--kill-controller", action="store_true",
                    help="kill the leader that is also the active KRaft controller")
    ap.add_argument("--workdir", help="default: a new temporary directory (removed)")
    a = ap.parse_args()
    t = time.monotonic()
    fetched = kafka.is_fetched()
    kafka.fetch()
    info = kafka.fetch_info()
    print(f"Kafka {info['version']} in {kafka.lib_dir()}: {info['jars']} jars, "
          f"{info['lib_bytes'] / 1e6:.1f} MB; the fetch that filled it downloaded "
          f"{info['downloaded_bytes'] / 1e6:.1f} MB in {info['seconds']} s; this run's fetch "
          f"{time.monotonic() - t:.2f} s ({'cached, no network' if fetched else 'downloaded'})")
    import tempfile
    workdir = a.workdir or tempfile.mkdtemp(prefix="mqk-kafka-selftest-")
    try:
        for name, fn in (("1", one_node), ("3", three_nodes)):
            if a.nodes in (name, "both"):
                try:
                    fn(workdir) if name == "1" else fn(workdir, a.seconds, a.kill_controller)
                except Exception as e:  # noqa: BLE001 - report and go on to the other size
                    check(f"{name}-node run", False, f"{type(e).__name__}: {e}")
    finally:
        if not a.workdir:
            import shutil
            shutil.rmtree(workdir, ignore_errors=True)
    passed = sum(ok for _, ok in results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
