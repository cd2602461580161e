"""
test_haproxy.py - two mosquittos with different routes behind one HAProxy (TCP mode, MQTT
health checks): each forwards what its own routes say, and names itself in mqtt.broker.
"""

import re
from collections import defaultdict

import harness
from harness import HDR, V311, V5


def test_two_brokers_behind_haproxy(kafka, start_broker, start_haproxy):
    topic = harness.unique("ha")
    kafka.create_topic(topic)
    # Both route site/<own letter>/# to the same Kafka topic; broker a also takes
    # common/#, broker b excludes site/b/private/#.
    a = start_broker([
        ("bootstrap_servers", kafka.bootstrap),
        ("broker_id", "ha-a"),
        ("route_site", f"site/a/# -> {topic}"),
        ("route_common", f"common/# -> {topic}"),
        ("stats_interval", "0"),
    ], name="mosquitto-a")
    b = start_broker([
        ("bootstrap_servers", kafka.bootstrap),
        ("broker_id", "ha-b"),
        ("route_site", f"site/b/# -> {topic}"),
        ("exclude", "site/b/private/#"),
        ("stats_interval", "0"),
    ], name="mosquitto-b")
    h = start_haproxy([a.port, b.port])
    # Both servers must pass their MQTT health check before clients connect, or
    # roundrobin sends everyone to the one that is up.
    harness.wait_for(lambda: a.log().count("New client connected") >= 1
                     and b.log().count("New client connected") >= 1, 15,
                     what="HAProxy's MQTT health checks on both brokers")

    n_clients, per_topic = 8, 50
    clients = [harness.Client(h.port, harness.unique(f"ha{i}"), V5 if i % 2 else V311)
               for i in range(n_clients)]
    topics = ["site/a/t", "site/b/t", "site/b/private/t", "common/t", "elsewhere/t"]
    for c in clients:
        infos = [c.publish(f"{t}/{c.client_id}", f"{c.client_id}:{t}:{i}".encode(), qos=1)
                 for t in topics for i in range(per_topic)]
        harness.wait_published(infos, 30)
    for c in clients:
        c.close()

    # Which broker did each client reach? Each mosquitto logs "New client connected from
    # ... as <client id>".
    def landed(broker):
        return set(re.findall(r"New client connected from \S+ as (\S+)", broker.log()))
    on_a = {c.client_id for c in clients} & landed(a)
    on_b = {c.client_id for c in clients} & landed(b)
    print(f"{len(on_a)} clients on ha-a, {len(on_b)} on ha-b")
    assert len(on_a) + len(on_b) == n_clients and not on_a & on_b, (on_a, on_b)
    assert on_a and on_b, f"roundrobin should use both brokers: a={on_a}, b={on_b}"

    # Broker a forwards site/a and common of its clients (2 x 50 each), broker b site/b
    # but not site/b/private (1 x 50 each).
    expected = set()
    for cid in on_a:
        for t in ("site/a/t", "common/t"):
            expected |= {(f"{cid}:{t}:{i}", "ha-a") for i in range(per_topic)}
    for cid in on_b:
        expected |= {(f"{cid}:site/b/t:{i}", "ha-b") for i in range(per_topic)}
    recs = harness.read_topic(kafka.bootstrap, topic, len(expected), timeout=60, grace=2)
    got = [(r.value.decode(), r.header_str(HDR.BROKER)) for r in recs]
    per_broker = defaultdict(int)
    for _, brk in got:
        per_broker[brk] += 1
    sent = n_clients * len(topics) * per_topic
    print(f"{sent} sent through HAProxy, {len(expected)} expected in Kafka, {len(got)} "
          f"received ({dict(per_broker)}), {len(got) - len(set(got))} duplicates")
    assert len(got) == len(set(got)), "duplicates in Kafka"
    missing, extra = expected - set(got), set(got) - expected
    assert not missing and not extra, (f"{len(missing)} missing (e.g. {sorted(missing)[:3]}), "
                                       f"{len(extra)} unexpected (e.g. {sorted(extra)[:3]})")
    # The per-broker sequences are independent: each broker's site route counts 1..N.
    for brk, cids, n_routes in (("ha-a", on_a, 2), ("ha-b", on_b, 1)):
        seqs = sorted(int(r.header_str(HDR.SEQ)) for r in recs
                      if r.header_str(HDR.BROKER) == brk and r.header_str(HDR.ROUTE) == "site")
        assert seqs == list(range(1, len(cids) * per_topic + 1)), \
            f"{brk}: route site {HDR.SEQ} not 1..{len(cids) * per_topic}"
