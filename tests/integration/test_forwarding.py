"""
test_forwarding.py - every matching PUBLISH reaches Kafka once, in order, with its metadata.

One broker for the module, with one route per test (each to Kafka topics of its own), so
that the per-route mqtt.seq of one test is not shared with another.
"""

import threading
import time

import pytest

import harness
from harness import HDR, V311, V5

BROKER_ID = "itest-fwd"
P = harness.unique("fwd")  # the Kafka topic prefix of this run


@pytest.fixture(scope="module")
def broker(kafka, start_module_broker):
    # Every Kafka topic the routes produce to, templated ones included (auto-creation is
    # off on real Kafka).
    kafka.create_topics([f"{P}-{t}" for t in ("bulk", "props", "ktopic", "knone", "kuser",
                                              "ktpl", "tpl.dev1.temp", "tpl.dev2.hum",
                                              "both1", "both2", "ret")])
    opts = [
        ("bootstrap_servers", kafka.bootstrap),
        ("broker_id", BROKER_ID),
        ("route_bulk", f"bulk/# -> {P}-bulk"),
        ("route_props", f"props/# -> {P}-props"),
        ("route_ktopic", f"keys/topic/# -> {P}-ktopic key=topic"),
        ("route_knone", f"keys/none/# -> {P}-knone key=none"),
        ("route_kuser", f"keys/user/# -> {P}-kuser key=username"),
        ("route_ktpl", f"keys/tpl/+/# -> {P}-ktpl key={{clientid}}-{{1}}"),
        ("route_tpl", f"tpl/+/data/+ -> {P}-tpl.{{1}}.{{2}}"),
        ("route_both1", f"both/# -> {P}-both1"),
        ("route_both2", f"both/+/x -> {P}-both2"),
        ("route_ret", f"ret/# -> {P}-ret"),
        ("stats_interval", "0"),
    ]
    return start_module_broker(opts, name="mosquitto-fwd")


def _hdr(rec, name):
    return rec.header_str(name)


def test_20000_messages_10_clients_qos012_v311_v5(kafka, broker):
    """20,000 messages, 10 clients, QoS 0/1/2, MQTT 3.1.1 and 5: all in Kafka, once, in order."""
    n_clients, per_client = 10, 2000
    total = n_clients * per_client
    specs = []
    for i in range(n_clients):
        specs.append({
            "cid": harness.unique(f"bulk{i}"),
            "qos": i % 3,
            "protocol": V5 if i % 2 else V311,
            "username": f"user{i}" if i % 4 == 0 else None,
        })
    clients = [harness.Client(broker.port, s["cid"], s["protocol"], s["username"])
               for s in specs]
    errors = []

    def publish_all(client, spec):
        try:
            infos = []
            for n in range(per_client):
                infos.append(client.publish(f"bulk/{spec['cid']}/{n % 5}",
                                            f"{spec['cid']}:{n}".encode(), qos=spec["qos"]))
                # QoS 0 has no flow control: pace it by what the socket has taken, in
                # windows of 200, so nothing piles up in paho or the broker.
                if len(infos) % 200 == 0:
                    harness.wait_published(infos[-200:], 60)
            harness.wait_published(infos, 120)
        except Exception as e:  # reported by the main thread
            errors.append(f"{spec['cid']}: {e}")

    t0_ms = int(time.time() * 1000)
    threads = [threading.Thread(target=publish_all, args=(c, s)) for c, s in zip(clients, specs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180 * harness.SLOW)
    t1_ms = int(time.time() * 1000)
    for c in clients:
        c.close()
    assert not any(t.is_alive() for t in threads), "publisher threads still running after 180 s"
    assert not errors, errors
    print(f"published {total} messages in {(t1_ms - t0_ms) / 1000:.1f} s")

    records = harness.read_topic(kafka.bootstrap, f"{P}-bulk", total, timeout=120)
    by_spec = {s["cid"]: s for s in specs}
    rep = harness.sequence_report(records, {cid: per_client for cid in by_spec})
    print(harness.format_report(rep))
    assert (rep["in_kafka"], rep["lost"], rep["duplicates"], rep["unexpected"]) == \
        (total, 0, 0, 0), harness.format_report(rep) + "\n" + "\n".join(rep["examples"])

    # Headers of every record.
    bad = []
    boots = set()
    seqs = []
    for r in records:
        cid, n = r.value.decode().rsplit(":", 1)
        s = by_spec[cid]
        want = {
            HDR.TOPIC: f"bulk/{cid}/{int(n) % 5}",
            HDR.CLIENT_ID: cid,
            HDR.QOS: str(s["qos"]),
            HDR.RETAIN: "0",
            HDR.BROKER: BROKER_ID,
            HDR.ROUTE: "bulk",
        }
        got = {name: _hdr(r, name) for name in want}
        if got != want:
            bad.append(f"{r}: headers {got}, expected {want}")
        if _hdr(r, HDR.USERNAME) != s["username"]:
            bad.append(f"{r}: {HDR.USERNAME}={_hdr(r, HDR.USERNAME)!r}, expected {s['username']!r}")
        if r.key != cid.encode():
            bad.append(f"{r}: key {r.key!r}, expected the client id {cid!r}")
        if r.timestamp_type != 1 or not (t0_ms - 2000 <= r.timestamp <= t1_ms + 2000):
            bad.append(f"{r}: timestamp ({r.timestamp_type}, {r.timestamp}) not a create time "
                       f"within [{t0_ms - 2000}, {t1_ms + 2000}]")
        boots.add(_hdr(r, HDR.BOOT))
        seqs.append(int(_hdr(r, HDR.SEQ)))
        if len(bad) > 20:
            break
    assert not bad, f"{len(bad)}+ records with wrong metadata:\n" + "\n".join(bad[:20])
    assert len(boots) == 1 and next(iter(boots)).isdigit(), f"one {HDR.BOOT}, got {boots}"
    boot_us = int(next(iter(boots)))
    assert abs(boot_us / 1e6 - time.time()) < 3600, f"{HDR.BOOT}={boot_us} is not a recent µs time"
    seq = harness.one_sequence(seqs, total)
    assert (seq.missing, seq.duplicates, seq.unexpected) == ([], 0, []), (
        f"{HDR.SEQ} should be 1..{total} without gaps or repeats: {seq}")

    # Per client: one partition, publish order = offset order = seq order.
    order_errors = []
    for cid in by_spec:
        mine = [r for r in records if r.value.startswith(cid.encode() + b":")]
        parts = {r.partition for r in mine}
        if len(parts) != 1:
            order_errors.append(f"{cid}: records in {len(parts)} partitions {sorted(parts)}")
            continue
        mine.sort(key=lambda r: r.offset)
        ns = [int(r.value.rsplit(b":", 1)[1]) for r in mine]
        if ns != list(range(per_client)):
            first = next(i for i, (a, b) in enumerate(zip(ns, range(per_client))) if a != b)
            order_errors.append(f"{cid}: out of publish order at offset index {first}: "
                                f"{ns[max(0, first - 2):first + 3]}")
        s = [int(_hdr(r, HDR.SEQ)) for r in mine]
        if s != sorted(s):
            order_errors.append(f"{cid}: {HDR.SEQ} not increasing with offsets")
    partitions_used = len({r.partition for r in records})
    print(f"{n_clients} clients, each in 1 partition ({partitions_used} partitions used), "
          f"{len(order_errors)} ordering errors")
    assert not order_errors, "\n".join(order_errors)


def test_v5_properties_become_headers(kafka, broker):
    c = harness.Client(broker.port, harness.unique("props"), V5)
    user = [("a", "1"), ("b", "2"), ("a", "3"), ("unicode-ä", "välue ü")]
    props = harness.v5_properties(user=user, content_type="application/json",
                                  response_topic="reply/here", correlation_data=b"\x00corr\xff",
                                  payload_format=1)
    c.publish_wait("props/with", b'{"x": 1}', qos=1, properties=props)
    c.publish_wait("props/without", b"plain", qos=1)
    c.close()
    records = harness.read_topic(kafka.bootstrap, f"{P}-props", 2, timeout=30)
    print(f"2 sent, {len(records)} received")
    assert len(records) == 2, f"2 records expected, got {len(records)}: {records}"
    with_props = next(r for r in records if _hdr(r, HDR.TOPIC) == "props/with")
    without = next(r for r in records if _hdr(r, HDR.TOPIC) == "props/without")

    user_headers = [(n, v) for n, v in with_props.headers if n.startswith(HDR.USER_PREFIX)]
    want = [(HDR.USER_PREFIX + n, v.encode()) for n, v in user]
    assert user_headers == want, f"user properties in order: expected {want}, got {user_headers}"
    assert with_props.header(HDR.CONTENT_TYPE) == b"application/json"
    assert with_props.header(HDR.RESPONSE_TOPIC) == b"reply/here"
    assert with_props.header(HDR.CORRELATION_DATA) == b"\x00corr\xff"
    assert with_props.header(HDR.PAYLOAD_FORMAT) == b"1"
    assert with_props.value == b'{"x": 1}'

    v5_names = {HDR.CONTENT_TYPE, HDR.RESPONSE_TOPIC, HDR.CORRELATION_DATA, HDR.PAYLOAD_FORMAT}
    extra = [n for n, _ in without.headers if n in v5_names or n.startswith(HDR.USER_PREFIX)]
    assert extra == [], f"a PUBLISH without properties got property headers {extra}"


def test_keys(kafka, broker):
    cid = harness.unique("keys")
    c = harness.Client(broker.port, cid, V311, username="alice")
    c.publish_wait("keys/topic/a/b", b"1")
    c.publish_wait("keys/none/a", b"2")
    c.publish_wait("keys/user/a", b"3")
    c.publish_wait("keys/tpl/zone7/q", b"4")
    c.close()
    cases = [("ktopic", b"keys/topic/a/b"), ("knone", None), ("kuser", b"alice"),
             ("ktpl", f"{cid}-zone7".encode())]
    got = {}
    for route, key in cases:
        recs = harness.read_topic(kafka.bootstrap, f"{P}-{route}", 1, timeout=30)
        assert len(recs) == 1, f"route {route}: 1 record expected, got {len(recs)}"
        got[route] = recs[0].key
        assert recs[0].header_str(HDR.USERNAME) == "alice"
        assert recs[0].header_str(HDR.ROUTE) == route
    print(f"keys: {got}")
    assert got == dict(cases), f"keys expected {dict(cases)}, got {got}"


def test_topic_template(kafka, broker):
    c = harness.Client(broker.port, harness.unique("tpl"), V5)
    c.publish_wait("tpl/dev1/data/temp", b"21.5")
    c.publish_wait("tpl/dev2/data/hum", b"40")
    c.close()
    for topic, value in ((f"{P}-tpl.dev1.temp", b"21.5"), (f"{P}-tpl.dev2.hum", b"40")):
        recs = harness.read_topic(kafka.bootstrap, topic, 1, timeout=30)
        assert [r.value for r in recs] == [value], f"{topic}: expected [{value!r}], got {recs}"
    print("2 sent to templated topics, 2 received")


def test_message_matching_two_routes_goes_to_both(kafka, broker):
    c = harness.Client(broker.port, harness.unique("both"), V311)
    c.publish_wait("both/a/x", b"both-routes")
    c.publish_wait("both/a/y", b"first-route-only")
    c.close()
    r1 = harness.read_topic(kafka.bootstrap, f"{P}-both1", 2, timeout=30)
    r2 = harness.read_topic(kafka.bootstrap, f"{P}-both2", 1, timeout=30)
    print(f"both1: {len(r1)} records (2 expected), both2: {len(r2)} (1 expected)")
    assert sorted(r.value for r in r1) == [b"both-routes", b"first-route-only"]
    assert [r.value for r in r2] == [b"both-routes"]
    assert {r.header_str(HDR.ROUTE) for r in r1} == {"both1"}
    assert {r.header_str(HDR.ROUTE) for r in r2} == {"both2"}
    assert sorted(int(r.header_str(HDR.SEQ)) for r in r1) == [1, 2]
    assert [int(r.header_str(HDR.SEQ)) for r in r2] == [1]


def test_retain_flag(kafka, broker):
    c = harness.Client(broker.port, harness.unique("ret"), V311)
    c.publish_wait("ret/a", b"kept", retain=True)
    c.publish_wait("ret/a", b"", retain=True)  # clears the retained message
    c.publish_wait("ret/b", b"not kept", retain=False)
    c.close()
    recs = harness.read_topic(kafka.bootstrap, f"{P}-ret", 3, timeout=30)
    got = sorted((r.value, r.header_str(HDR.RETAIN)) for r in recs)
    want = sorted([(b"kept", "1"), (b"", "1"), (b"not kept", "0")])
    assert got == want, f"(value, {HDR.RETAIN}) expected {want}, got {got}"
