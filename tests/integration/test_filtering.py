"""
test_filtering.py - only what a route matches and no exclude refuses reaches Kafka, $SYS
never does, and the counters under $SYS/broker/kafka say so.
"""

import re
import time

import harness
from harness import HDR, V311, V5


def test_filters_excludes_and_sys(kafka, start_broker):
    p = harness.unique("flt")
    kafka.create_topics([f"{p}-temp", f"{p}-any"])
    b = start_broker([
        ("bootstrap_servers", kafka.bootstrap),
        ("broker_id", "itest-flt"),
        ("route_temp", f"sensors/+/temp -> {p}-temp"),
        ("route_any", f"# -> {p}-any"),
        ("exclude", "sensors/bad/#"),
        ("exclude", "secret/#"),
        ("stats_interval", "1"),
    ], name="mosquitto-flt")

    stats = harness.SysCounters(b.port)

    c = harness.Client(b.port, harness.unique("flt"), V5)
    sent = {
        # topic: (to temp, to any)
        "sensors/s1/temp": (True, True),
        "sensors/s2/temp": (True, True),
        "sensors/s1/hum": (False, True),
        "sensors/s1/temp/extra": (False, True),
        "sensors/bad/temp": (False, False),   # excluded
        "secret/x": (False, False),           # excluded
        "other": (False, True),
        "$SYS/fake": (False, False),          # reserved (and '#' does not match '$...')
        "$CONTROL/fake": (False, False),
        "$dollar/topic": (False, False),      # '#' does not match topics starting with '$'
    }
    # Each $ topic from a client of its own, first: mosquitto may refuse a $SYS/$CONTROL
    # publish and close that connection, which must not cut the other publishes short.
    for topic in [t for t in sent if t.startswith("$")]:
        d = harness.Client(b.port, harness.unique("dollar"), V5)
        d.c.publish(topic, topic.encode(), qos=1)
        time.sleep(0.2)
        d.close()
    for topic in [t for t in sent if not t.startswith("$")]:
        c.publish_wait(topic, topic.encode(), qos=1)
    # A marker, last, from the same client: when it is in Kafka, everything before it
    # was routed (routing happens in order on the broker thread).
    c.publish_wait("sensors/zz/temp", b"marker")
    c.close()

    want_temp = sorted([t.encode() for t, (a, _) in sent.items() if a] + [b"marker"])
    want_any = sorted([t.encode() for t, (_, a) in sent.items() if a] + [b"marker"])
    temp = harness.read_topic(kafka.bootstrap, f"{p}-temp", len(want_temp), timeout=30,
                              grace=2)
    anyr = harness.read_topic(kafka.bootstrap, f"{p}-any", len(want_any), timeout=30,
                              grace=2)
    print(f"route temp: {len(want_temp)} expected, {len(temp)} received; "
          f"route any: {len(want_any)} expected, {len(anyr)} received")
    assert sorted(r.value for r in temp) == want_temp
    assert sorted(r.value for r in anyr) == want_any
    for r in temp + anyr:
        assert not r.header_str(HDR.TOPIC).startswith("$"), f"a $ topic was forwarded: {r}"

    # The counters: 11 messages forwarded to Kafka (matched >= 1 route), 2 excluded.
    # What mosquitto lets through of $SYS/$CONTROL/$dollar reaches the plugin as unrouted
    # (or not at all), so received is checked as a range.
    n_temp, n_any = len(want_temp), len(want_any)
    expect = {
        "routes/temp/matched": n_temp, "routes/temp/delivered": n_temp,
        "routes/any/matched": n_any, "routes/any/delivered": n_any,
        "routes/temp/failed": 0, "routes/any/failed": 0,
        "excluded": 2,
        "matched": n_any,
        "delivered": n_temp + n_any,
        "failed": 0,
    }

    got = stats.wait_for(expect)
    counters = dict(stats.values)
    stats.close()
    print("counters: " + ", ".join(f"{k}={v}" for k, v in sorted(counters.items())))
    assert got == expect, f"$SYS counters: expected {expect}, got {got}"
    received = int(counters.get("received", "-1"))
    assert n_any + 2 <= received <= n_any + 5, (
        f"received: {n_any + 2}..{n_any + 5} expected, got {received}")
    # Every published value is a number.
    bad = {k: v for k, v in counters.items() if not re.fullmatch(r"\d+", v)}
    assert not bad, f"non-numeric counters: {bad}"


def test_no_route_nothing_forwarded(kafka, start_broker):
    """A broker whose routes match nothing forwards nothing, and counts it as unrouted."""
    p = harness.unique("none")
    kafka.create_topic(p)
    b = start_broker([
        ("bootstrap_servers", kafka.bootstrap),
        ("route_only", f"only/this -> {p}"),
        ("stats_interval", "1"),
    ], name="mosquitto-none")
    stats = harness.SysCounters(b.port)
    c = harness.Client(b.port, harness.unique("n"), V311)
    for i in range(50):
        c.publish_wait(f"only/that/{i}", b"x")
    c.publish_wait("only/this", b"marker")
    c.close()
    recs = harness.read_topic(kafka.bootstrap, p, 1, timeout=30, grace=2)
    print(f"51 sent, 1 routed, {len(recs)} received")
    assert [r.value for r in recs] == [b"marker"], f"only the marker expected, got {recs}"
    expect = {"unrouted": 50, "matched": 1, "delivered": 1, "routes/only/matched": 1}
    got = stats.wait_for(expect)
    stats.close()
    print(f"counters: {got}")
    assert got == expect, f"$SYS counters: expected {expect}, got {got}"
