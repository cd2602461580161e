"""
test_metrics.py - plugin_opt_metrics_listen, plugin_opt_metrics_textfile and /healthz.

1. N messages over two routes: GET /metrics says what $SYS/broker/kafka/... says, counter by
   counter, per route; `promtool check metrics` passes on it; a real Prometheus server (Debian's
   package, fetched by scripts/fetch-prometheus.sh, never installed) scrapes the broker and its
   HTTP API answers the delivered counter back; other paths 404, other methods 405; the
   textfile appears, passes promtool and is rewritten.
2. commands_topic on: the command counters and the consumer lag per partition.
3. /healthz under load while a real Kafka stops: 503 within health_max_unacked_s (5) plus a
   margin, 200 again once Kafka is back, and everything published is in Kafka afterwards.
"""

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request


import harness

SOURCE_DIR = os.environ.get("MQK_SOURCE_DIR",
                            os.path.join(os.path.dirname(__file__), "..", ".."))


def prometheus_bin():
    out = subprocess.run([os.path.join(SOURCE_DIR, "scripts", "fetch-prometheus.sh")],
                         capture_output=True, text=True, timeout=360)
    assert out.returncode == 0, f"fetch-prometheus.sh failed: {out.stderr}"
    return out.stdout.strip().splitlines()[-1]


def http(url, method="GET", timeout=5.0):
    """(status, body) of one request."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def parse_metrics(text):
    """{(name, frozenset(labels)): value} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def promtool_check(promtool, text):
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).strip()


ROUTE_COUNTERS = ["matched", "produced", "delivered", "failed", "buffer_full", "bad_topic",
                  "too_large", "refused", "dropped_oldest", "rejected"]


def test_metrics_agree_with_sys_promtool_prometheus_textfile(kafka, start_broker):
    promdir = prometheus_bin()
    promtool = os.path.join(promdir, "promtool")
    topic_a, topic_b = harness.unique("metrics-a"), harness.unique("metrics-b")
    kafka.create_topics([topic_a, topic_b])
    port = harness.free_port()
    tfdir = harness.make_tempdir("mqk-textfile-")
    os.chmod(tfdir, 0o777)  # mosquitto runs as user mosquitto when started as root
    textfile = os.path.join(tfdir, "mosquitto_kafka.prom")
    broker = start_broker([
        ("bootstrap_servers", kafka.bootstrap),
        ("broker_id", "itest-metrics"),
        ("route_a", f"ma/# -> {topic_a}"),
        ("route_b", f"mb/# -> {topic_b}"),
        ("stats_interval", "1"),
        ("metrics_listen", f"127.0.0.1:{port}"),
        ("metrics_textfile", textfile),
    ], name="mosquitto-metrics")
    base = f"http://127.0.0.1:{port}"
    stats = harness.SysCounters(broker.port)
    n_a, n_b = 600, 400
    c = harness.Client(broker.port, harness.unique("metrics-pub"))
    infos = [c.publish(f"ma/{i % 7}", b"x" * 50, qos=1) for i in range(n_a)]
    infos += [c.publish(f"mb/{i % 3}", b"y" * 80, qos=1) for i in range(n_b)]
    c.publish("unrouted/topic", b"z", qos=1).wait_for_publish(10)
    harness.wait_published(infos, 30)
    c.close()
    total = n_a + n_b
    sys_final = stats.wait_for({"delivered": total, "in_flight": 0,
                                "routes/a/delivered": n_a, "routes/b/delivered": n_b},
                               timeout=30)
    assert sys_final == {"delivered": total, "in_flight": 0, "routes/a/delivered": n_a,
                         "routes/b/delivered": n_b}, sys_final

    # The metrics are rendered once a second: wait until they show the same.
    broker_l = ("broker", "itest-metrics")

    def scraped():
        status, body = http(base + "/metrics")
        if status != 200:
            return None
        m = parse_metrics(body)
        if m.get(("mosquitto_kafka_delivered_total", frozenset([broker_l]))) == total and \
                any(k[0] == "mosquitto_kafka_kafka_broker_up" for k in m):
            return body
        return None
    text = harness.wait_for(scraped, 15, interval=0.2, what="/metrics: delivered == total, librdkafka's statistics in")
    metrics = parse_metrics(text)
    time.sleep(1.5)  # $SYS publishes every second too: both settled
    sys_v = dict(stats.values)
    stats.close()

    # $SYS and /metrics agree, counter by counter, totals and per route.
    compared = 0
    mismatches = []
    for name in ["received", "unrouted", "excluded"] + ROUTE_COUNTERS:
        got = metrics.get((f"mosquitto_kafka_{name}_total", frozenset([broker_l])))
        compared += 1
        if got is None or int(got) != int(sys_v[name]):
            mismatches.append((name, sys_v.get(name), got))
    for route in ("a", "b"):
        for name in ROUTE_COUNTERS:
            got = metrics.get((f"mosquitto_kafka_route_{name}_total",
                               frozenset([broker_l, ("route", route)])))
            compared += 1
            if got is None or int(got) != int(sys_v[f"routes/{route}/{name}"]):
                mismatches.append((f"routes/{route}/{name}",
                                   sys_v.get(f"routes/{route}/{name}"), got))
        got = metrics.get(("mosquitto_kafka_route_in_flight",
                           frozenset([broker_l, ("route", route)])))
        compared += 1
        if got is None or int(got) != int(sys_v[f"routes/{route}/in_flight"]):
            mismatches.append((f"routes/{route}/in_flight", sys_v.get(f"routes/{route}/in_flight"),
                               got))
    for name in ("journal_replayed", "journal_errors"):
        got = metrics.get((f"mosquitto_kafka_{name}_total", frozenset([broker_l])))
        compared += 1
        if got is None or int(got) != int(sys_v[name]):
            mismatches.append((name, sys_v.get(name), got))
    print(f"$SYS vs /metrics: {compared} values compared, {len(mismatches)} differ "
          f"{mismatches}; received {int(metrics[('mosquitto_kafka_received_total', frozenset([broker_l]))])}, "
          f"route a delivered {n_a}, route b delivered {n_b}")
    assert not mismatches, mismatches
    assert metrics[("mosquitto_kafka_received_total", frozenset([broker_l]))] == total + 1
    assert metrics[("mosquitto_kafka_unrouted_total", frozenset([broker_l]))] == 1
    assert metrics[("mosquitto_kafka_oldest_unacked_age_seconds", frozenset([broker_l]))] == 0
    assert metrics[("mosquitto_kafka_buffer_records", frozenset([broker_l]))] == 0
    assert metrics[("mosquitto_kafka_buffer_limit_bytes", frozenset([broker_l]))] > 0
    assert metrics[("mosquitto_kafka_healthy", frozenset([broker_l]))] == 1
    render_s = metrics[("mosquitto_kafka_metrics_render_seconds", frozenset([broker_l]))]
    # librdkafka's statistics: a Kafka broker of the producer, up.
    up = {k: v for k, v in metrics.items() if k[0] == "mosquitto_kafka_kafka_broker_up"}
    assert any(v == 1 for v in up.values()), up  # librdkafka connects to the brokers it needs
    print(f"rendering on mosquitto's thread: {render_s * 1e6:.0f} µs for {len(text)} bytes "
          f"({len(metrics)} samples)")

    rc, out = promtool_check(promtool, text)
    print(f"promtool check metrics: exit {rc} {out!r}")
    assert rc == 0, out

    excerpt = [ln for ln in text.splitlines()
               if re.match(r"(# (HELP|TYPE) )?mosquitto_kafka_(route_)?(delivered_total|in_flight|"
                           r"oldest_unacked|buffer_|healthy|kafka_broker_up|kafka_broker_rtt_avg)",
                           ln)]
    print("/metrics excerpt:\n  " + "\n  ".join(excerpt))

    # Other paths, other methods.
    assert http(base + "/nope")[0] == 404
    assert http(base + "/metrics", method="POST")[0] == 405
    assert http(base + "/healthz", method="DELETE")[0] == 405
    status, body = http(base + "/healthz")
    print(f"/healthz: {status} {body.strip()}")
    assert status == 200 and json.loads(body)["status"] == "ok"

    # A real Prometheus scrapes the broker; its query API gives the counter back.
    pdir = harness.make_tempdir("mqk-prometheus-")
    pport = harness.free_port()
    with open(os.path.join(pdir, "prometheus.yml"), "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: mosquitto_kafka\n"
                f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n")
    prom = harness.Process("prometheus", [
        os.path.join(promdir, "prometheus"),
        f"--config.file={os.path.join(pdir, 'prometheus.yml')}",
        f"--storage.tsdb.path={os.path.join(pdir, 'data')}",
        f"--web.listen-address=127.0.0.1:{pport}",
    ], os.path.join(pdir, "prometheus.log"))
    try:
        q = urllib.parse.quote('mosquitto_kafka_route_delivered_total{route="a"}')

        def answered():
            try:
                status, body = http(f"http://127.0.0.1:{pport}/api/v1/query?query={q}")
            except OSError:
                return None
            if status != 200:
                return None
            res = json.loads(body)["data"]["result"]
            return res if res else None
        t0 = time.monotonic()
        res = harness.wait_for(answered, 60, interval=0.5, what="Prometheus' answer")
        print(f"Prometheus {pport}: query {urllib.parse.unquote(q)} -> "
              f"{res[0]['metric']} = {res[0]['value'][1]} ({time.monotonic() - t0:.1f} s)")
        assert float(res[0]["value"][1]) == n_a
        assert res[0]["metric"]["broker"] == "itest-metrics"
    finally:
        prom.stop()

    # The textfile: there, valid, rewritten.
    harness.wait_for(lambda: os.path.exists(textfile), 10, what="the textfile")
    with open(textfile) as f:
        first = f.read()
    rc, out = promtool_check(promtool, first)
    assert rc == 0, out
    m1 = os.stat(textfile).st_mtime_ns
    harness.wait_for(lambda: os.stat(textfile).st_mtime_ns != m1, 10, what="a rewrite")
    with open(textfile) as f:
        second = f.read()
    assert "mosquitto_kafka_delivered_total{broker=\"itest-metrics\"} %d" % total in second
    assert not [n for n in os.listdir(tfdir) if n != "mosquitto_kafka.prom"], os.listdir(tfdir)
    print(f"textfile {textfile}: {len(second)} bytes, promtool exit {rc}, rewritten")
    # Its directory no longer writable: logged, counted, mosquitto goes on.
    os.chmod(tfdir, 0o555)
    try:
        line = broker.wait_log(r"mosquitto_kafka: metrics_textfile: cannot write '.*': .*$", 10)
        errors = harness.wait_for(
            lambda: parse_metrics(http(base + "/metrics")[1]).get(
                ("mosquitto_kafka_textfile_errors_total", frozenset([broker_l]))), 10,
            what="textfile_errors_total > 0")
    finally:
        os.chmod(tfdir, 0o777)
    print(f"textfile write error: {line.group(0)!r}, textfile_errors_total {errors:.0f}")
    assert broker.process.alive() and errors >= 1
    assert broker.stop() == 0


def test_command_counters_and_consumer_lag(kafka, start_broker):
    """commands_topic on: the command counters and the consumer's lag per partition, from
    librdkafka's statistics of the commands consumer."""
    import confluent_kafka as ck
    topic = harness.unique("metrics-cmds")
    kafka.create_topic(topic)
    parts = harness.topic_partitions(kafka.bootstrap, topic)
    port = harness.free_port()
    broker = start_broker([
        ("bootstrap_servers", kafka.bootstrap),
        ("broker_id", "itest-metrics-cmd"),
        ("commands_topic", topic),
        ("commands_kafka.auto.offset.reset", "earliest"),
        ("stats_interval", "1"),
        ("metrics_listen", f"127.0.0.1:{port}"),
    ], name="mosquitto-metrics-cmd")
    broker.wait_log(r"mosquitto_kafka: commands: consuming \S+ partitions \[\d", 30)
    p = ck.Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 0, "log_level": 3})
    went = set()
    for i in range(6):
        # Six devices, none here: spread over the partitions by key.
        p.produce(topic, key=harness.unique("absent"), value=b"cmd-%d" % i,
                  on_delivery=lambda err, msg: went.add(str(msg.partition())))
    assert p.flush(30) == 0 and went
    b = ("broker", "itest-metrics-cmd")

    def settled():
        status, body = http(f"http://127.0.0.1:{port}/metrics")
        m = parse_metrics(body) if status == 200 else {}
        lags = {dict(k[1])["partition"]: v for k, v in m.items()
                if k[0] == "mosquitto_kafka_commands_consumer_lag"}
        last[0] = body
        if m.get(("mosquitto_kafka_commands_skipped_total", frozenset([b]))) == 6 and \
                went <= set(lags) and sum(lags.values()) == 0:
            return m, lags, body
        return None
    last = [""]
    try:
        m, lags, body = harness.wait_for(settled, 30, interval=0.3,
                                         what="command counters and lags in /metrics")
    except harness.HarnessError:
        print("the last /metrics:\n" + last[0])
        raise
    counters = {n: int(m[(f"mosquitto_kafka_commands_{n}_total", frozenset([b]))])
                for n in ("consumed", "delivered", "skipped", "returned", "dead_lettered")}
    print(f"commands in /metrics: {counters}; consumer lag per partition {lags}")
    print("  " + "\n  ".join(ln for ln in body.splitlines() if "consumer_lag" in ln or
                             "client=\"commands\"" in ln and "broker_up" in ln))
    assert counters == {"consumed": 6, "delivered": 0, "skipped": 6, "returned": 0,
                        "dead_lettered": 0}, counters
    # A partition never read from has no known lag (librdkafka's -1): left out.
    assert went <= set(lags) <= {str(i) for i in range(parts)}, (went, lags)
    rc, out = promtool_check(os.path.join(prometheus_bin(), "promtool"), body)
    assert rc == 0, out
    assert broker.stop() == 0


CLIENTS, RATE, LIMIT = 4, 200, 5


def test_healthz_turns_503_when_kafka_stops_and_200_when_back(start_broker):
    kafka1 = harness.RealKafka(nodes=1)
    try:
        _healthz_outage(kafka1, start_broker)
    finally:
        kafka1.cleanup()


def _healthz_outage(kafka1, start_broker):
    topic = harness.unique("health")
    kafka1.create_topic(topic, 2)
    port = harness.free_port()
    broker = start_broker([
        ("bootstrap_servers", kafka1.bootstrap),
        ("broker_id", "itest-health"),
        ("route_h", f"h/# -> {topic}"),
        ("stats_interval", "1"),
        ("metrics_listen", f"127.0.0.1:{port}"),
        ("health_max_unacked_s", str(LIMIT)),
    ], name="mosquitto-health")
    url = f"http://127.0.0.1:{port}/healthz"
    harness.wait_for(lambda: http(url)[0] == 200, 15, what="/healthz 200 at start")
    load = harness.Load(broker.port, CLIENTS, RATE, "h", prefix="hl").start()
    seen = []
    try:
        time.sleep(3)
        status, body = http(url)
        seen.append(("before", status, body.strip()))
        assert status == 200, body
        kafka1.down()
        down_at = time.monotonic()

        def unhealthy():
            status, body = http(url)
            return (status, body.strip()) if status == 503 else None
        status, body = harness.wait_for(unhealthy, LIMIT + 10, interval=0.1,
                                        what="/healthz 503")
        to_503 = time.monotonic() - down_at
        seen.append((f"{to_503:.1f} s after Kafka stopped", status, body))
        m = parse_metrics(http(f"http://127.0.0.1:{port}/metrics")[1])
        hb = frozenset([("broker", "itest-health")])
        outage_metrics = {k: m[(f"mosquitto_kafka_{k}", hb)] for k in (
            "oldest_unacked_age_seconds", "buffer_records", "buffer_used_bytes", "healthy")}
        print(f"/metrics at the 503: {outage_metrics}")
        time.sleep(2)
        up_s = kafka1.up()
        up_at = time.monotonic()

        def healthy():
            status, body = http(url)
            return (status, body.strip()) if status == 200 else None
        status, body = harness.wait_for(healthy, 60, interval=0.1, what="/healthz 200 again")
        to_200 = time.monotonic() - up_at
        seen.append((f"{to_200:.1f} s after Kafka was back (start took {up_s:.1f} s)",
                     status, body))
        time.sleep(2)
    finally:
        published = load.stop(wait_acks=True, timeout=60)
    for when, status, body in seen:
        print(f"/healthz {when}: {status} {body}")
    total = sum(published.values())
    records = harness.read_topic(kafka1.bootstrap, topic, total, timeout=120, grace=2)
    rep = harness.sequence_report(records, published)
    print(harness.format_report(rep))
    assert not load.errors and not load.disconnected, (load.errors, load.disconnected)
    assert (rep["lost"], rep["unexpected"]) == (0, 0), harness.format_report(rep)
    assert rep["in_kafka"] >= total
    assert to_503 <= LIMIT + 3, f"503 only {to_503:.1f} s after Kafka stopped (limit {LIMIT})"
    assert "not acknowledged by Kafka" in seen[1][2] or "no acknowledgement" in seen[1][2]
    assert to_200 <= 30
    # The metrics rendered within the last second agree with the 503.
    assert outage_metrics["oldest_unacked_age_seconds"] >= LIMIT - 1.5, outage_metrics
    assert outage_metrics["buffer_records"] > 0 and outage_metrics["buffer_used_bytes"] > 0
    assert broker.stop() == 0
