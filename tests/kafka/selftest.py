#!/usr/bin/python3
"""
selftest.py - checks and measures the real-Kafka harness (kafka.py) on this machine.

  python3 tests/kafka/selftest.py [--nodes 1|3|both|none] [--seconds S] [--kill-controller]
                                  [--listeners]

1 node: start to metadata-ready time, RSS, kcat -P / kcat -C round trip, stop.
3 nodes: the same, then a topic with replication factor 3 and min.insync.replicas 2; kcat -P
(acks=all, idempotent) sends a numbered line every millisecond for S seconds while the leader of
partition 0 is killed with SIGKILL and restarted; prints how long until a new leader, how long
the restarted node takes to rejoin the ISR, and that every number arrived exactly once.
--listeners: a 1-node cluster with the SSL, SASL_SSL, SASL_PLAINTEXT and MTLS listeners (tls.py's
PKI, one SASL user): kcat (the machine's librdkafka) sends and reads back 10 lines through each
listener and SASL mechanism, then fails as expected with a wrong password, an unknown user, a CA
that did not sign the broker, and no, an expired or a foreign client certificate on MTLS; prints
librdkafka's error line for each. SCRAM with librdkafka < 2.6.1 against Kafka 4.x is expected to
fail ("invalid credentials": librdkafka's bug #4895, fixed in 2.6.1), and checked to.
MQK_KAFKA_VERSION picks the Kafka release as everywhere.
Ends with a closing line 'N passed, N failed'; exit status 1 if anything failed.
"""

import argparse
import os
import re
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


def librdkafka_version():
    """(major, minor, patch) of the librdkafka kcat runs on."""
    r = subprocess.run([kafka.KCAT, "-V"], capture_output=True, text=True, timeout=10)
    m = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", r.stdout + r.stderr)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


def kcat_args(props):
    """kcat's -b and -X arguments for librdkafka properties."""
    args = ["-b", props["bootstrap.servers"]]
    for k, v in props.items():
        if k != "bootstrap.servers":
            args += ["-X", f"{k}={v}"]
    return args


def first_error(stderr):
    """librdkafka's first error line in kcat's stderr, without the timestamp and client name:
    "FAIL| ...: SASL authentication error: ..."."""
    for line in stderr.splitlines():
        m = re.match(r"%\d\|[\d.]+\|(\w+)\|[^|]*\|\s*(?:\[thrd:[^]]*\]:\s*)?(.*)", line)
        if m and m.group(1) in ("FAIL", "ERROR"):
            return f"{m.group(1)}| {m.group(2)}"
    return stderr.strip().splitlines()[-1] if stderr.strip() else "(nothing on stderr)"


def round_trip(props, topic, tag, n=10):
    """kcat -P of n lines tagged tag, then kcat -C from the beginning: (lines read back with
    the tag, kcat -P's first error line or None)."""
    r = subprocess.run([kafka.KCAT, "-P", "-t", topic, *kcat_args(props),
                        "-X", "message.timeout.ms=8000"],
                       input="".join(f"{tag} {i}\n" for i in range(n)), text=True,
                       capture_output=True, timeout=60)
    if r.returncode != 0:
        return 0, first_error(r.stderr)
    r = subprocess.run([kafka.KCAT, "-C", "-t", topic, *kcat_args(props), "-o", "beginning",
                        "-e", "-q"], capture_output=True, text=True, timeout=60)
    return sum(1 for line in r.stdout.splitlines() if line.startswith(tag + " ")), None


def refused(props, topic):
    """kcat -P of one line through props: (refused?, librdkafka's first error line). kcat
    gives up at once when every broker is down after an error (kcat -L would wait for -m)."""
    r = subprocess.run([kafka.KCAT, "-P", "-t", topic, *kcat_args(props),
                        "-X", "message.timeout.ms=5000"], input="refused\n", text=True,
                       capture_output=True, timeout=30)
    return r.returncode != 0, first_error(r.stderr)


def listeners(workdir):
    print("== TLS and SASL listeners (1 node)", flush=True)
    user, password = "alice", "alice-secret"
    c = kafka.KafkaCluster(os.path.join(workdir, "listeners"), nodes=1, die_with_parent=True,
                           listeners=list(kafka.LISTENER_KINDS), sasl_users={user: password})
    try:
        c.start()
        check("1 node with SSL, SASL_SSL, SASL_PLAINTEXT and MTLS listeners ready", True,
              f"format {c.timings['format_s']:.1f} s (PKI and SCRAM users included), "
              f"metadata-ready {c.timings['start_to_ready_s']:.1f} s; " +
              ", ".join(f"{x} {c.listener_bootstrap(x)}" for x in c.listeners))
        topic = "listeners"
        c.create_topic(topic, partitions=1)
        rdk = librdkafka_version()
        scram_works = kafka.major(c.version) < 4 or rdk >= (2, 6, 1)
        print(f"  Kafka {c.version}, librdkafka {'.'.join(map(str, rdk))}: SCRAM expected to "
              f"{'work' if scram_works else 'fail (librdkafka < 2.6.1 against Kafka 4.x)'}")
        for name, mech in (("SSL", None), ("MTLS", None), ("SASL_SSL", "PLAIN"),
                           ("SASL_SSL", "SCRAM-SHA-256"), ("SASL_SSL", "SCRAM-SHA-512"),
                           ("SASL_PLAINTEXT", "PLAIN"), ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
                           ("SASL_PLAINTEXT", "SCRAM-SHA-512")):
            what = f"{name} {mech}" if mech else name
            props = c.client_config(name, mech, user, password)
            got, error = round_trip(props, topic, what.replace(" ", "_"))
            if mech and mech.startswith("SCRAM") and not scram_works:
                check(f"{what}: refused as expected", got == 0 and error and
                      "invalid credentials" in error, f"{got} of 10 read back; {error}")
            else:
                check(f"{what}: 10 sent, 10 read back", got == 10,
                      f"{got} of 10 read back" + (f"; {error}" if error else ""))
        for what, props, want in (
                ("SASL_SSL PLAIN, wrong password",
                 c.client_config("SASL_SSL", "PLAIN", user, "wrong"),
                 "Invalid username or password"),
                ("SASL_SSL PLAIN, unknown user",
                 c.client_config("SASL_SSL", "PLAIN", "nobody", password),
                 "Invalid username or password"),
                ("SASL_SSL SCRAM-SHA-512, wrong password",
                 c.client_config("SASL_SSL", "SCRAM-SHA-512", user, "wrong"),
                 "invalid credentials"),
                ("SASL_SSL SCRAM-SHA-512, unknown user",
                 c.client_config("SASL_SSL", "SCRAM-SHA-512", "nobody", password),
                 "invalid credentials"),
                ("SSL, a CA that did not sign the broker", c.client_config("SSL", ca="other"),
                 "certificate verify failed"),
                ("MTLS, no client certificate", c.client_config("MTLS", client=None),
                 "alert bad certificate"),
                ("MTLS, expired client certificate", c.client_config("MTLS", client="expired"),
                 "alert certificate unknown"),
                ("MTLS, client certificate of another CA",
                 c.client_config("MTLS", client="other-client"), "alert certificate unknown")):
            no, error = refused(props, topic)
            check(f"{what}: refused", no and want in error, error)
    finally:
        t = time.monotonic()
        c.stop(remove=True)
        print(f"  stop {time.monotonic() - t:.1f} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", choices=["1", "3", "both", "none"], default="both")
    ap.add_argument("--listeners", action="store_true",
                    help="also check the TLS and SASL listeners (1 node)")
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
        if a.listeners:
            try:
                listeners(workdir)
            except Exception as e:  # noqa: BLE001 - reported as a failed check
                check("listeners run", False, f"{type(e).__name__}: {e}")
    finally:
        if not a.workdir:
            import shutil
            shutil.rmtree(workdir, ignore_errors=True)
    passed = sum(ok for _, ok in results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
