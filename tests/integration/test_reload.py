"""
test_reload.py - routes changed without a restart (plugin_opt_routes_file) and routes by
client (clientid=, username=, qos=, retain= selectors), against real Kafka.

test_reload_under_load: thousands of QoS 1 messages a second from persistent-session
clients while the routes file is rewritten (atomically, by rename) to add, change and
remove routes, with SIGHUP, without (the TICK notices the file), with a bad file in
between, and once in place with its size and time kept so that only mosquitto's reload
event (MOSQ_EVT_RELOAD) can notice it. Afterwards every message is in Kafka exactly under
one of the route sets that were in force, each client's messages go through the sets in
order, every route name's mqtt.seq runs 1..N without a gap across its changes, nothing is
lost and no client was disconnected.
"""

import os
import re
import signal
import time

import harness
from harness import HDR, V311, V5

RATE = 3000         # messages a second, all clients together
CLIENTS = 6
PHASE_S = 4.0       # load under each route set
REPLAY_RX = r"mosquitto_kafka: journal: replaying (\d+) records"


def write_atomically(path, text):
    """As an admin's tool would: a new file renamed over the old one."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


def write_in_place(path, text):
    """The same inode, size and modification time: only a reload event can notice."""
    st = os.stat(path)
    data = text.encode()
    assert len(data) <= st.st_size, "in-place text longer than the file it replaces"
    data += b"#" * (st.st_size - len(data))  # a comment pads it to the same size
    if len(data) > len(text) and not text.endswith("\n"):
        raise AssertionError("in-place text must end with a newline")
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    st2 = os.stat(path)
    assert (st2.st_ino, st2.st_size, st2.st_mtime_ns) == (st.st_ino, st.st_size,
                                                          st.st_mtime_ns)


def read_topics(bootstrap, topics, expect, timeout=90.0, grace=2.0):
    return harness.read_topics(bootstrap, topics, expect, timeout, grace)


def test_reload_under_load(kafka, start_broker):
    p = harness.unique("rl")
    t = {k: f"{p}-{k}" for k in ("conf", "a1", "a2", "b", "b2", "sel")}
    kafka.create_topics(list(t.values()), partitions=3)
    d = harness.make_tempdir("mqk-reload-")
    path = os.path.join(d, "routes.conf")
    # The route sets, in order: (file text, how it is applied, {(route, Kafka topic)}).
    # Every set takes every load message (mosquitto.conf's route_conf in all of them),
    # and no two sets are the same, so a message's records name the set it went by.
    phases = [
        ("# start\nroute_a load/# -> {a1}\n", None, {("a", "a1")}),
        ("route_a load/# -> {a1}\nroute_b load/# -> {b} key=topic\n", "sighup",
         {("a", "a1"), ("b", "b")}),
        ("route_a load/# -> {a2}\nroute_b load/# -> {b} key=topic\nexclude load/none/#\n",
         "tick", {("a", "a2"), ("b", "b")}),
        ("route_a load/# -> {a2}\nroute_sel load/# -> {sel} clientid=nobody-*\n", "sighup",
         {("a", "a2")}),
        ("# a bad file: route_broken has no Kafka topic, so nothing changes\n"
         "route_a load/# -> {a1}\nroute_broken load/# ->\n", "bad", None),
        ("route_a load/# -> {a1}\nroute_b load/# -> {b2} qos=1\n", "in-place",
         {("a", "a1"), ("b", "b2")}),
    ]
    write_atomically(path, phases[0][0].format(**t))
    b = start_broker([
        ("bootstrap_servers", kafka.bootstrap),
        ("broker_id", "itest-reload"),
        ("route_conf", f"load/# -> {t['conf']} key=clientid"),
        ("routes_file", path),
        ("stats_interval", "1"),
    ], name="mosquitto-reload", log_debug=False)
    b.wait_log(r"routes_file .*: 1 route, 0 excludes", 5)

    load = harness.Load(b.port, CLIENTS, RATE, "load/x", prefix="rl", clean=False)
    dropped = []
    for c in load.clients:
        c.c.on_disconnect = lambda cl, u, rc, *a, cid=c.client_id: dropped.append((cid, rc))
    load.start()
    sets = [phases[0][2]]
    reloads = sighups = 0
    time.sleep(PHASE_S)
    for text, how, routes in phases[1:]:
        text = text.format(**t)
        n_ok = len(re.findall(r"reloaded \(", b.log()))
        n_err = len(re.findall(r"routes are unchanged", b.log()))
        if how == "in-place":
            write_in_place(path, text)
            time.sleep(1.5)  # the TICK looks every second: it must not see a change
            assert len(re.findall(r"reloaded \(", b.log())) == n_ok, \
                "the TICK reloaded a file whose inode, size and time did not change"
        else:
            write_atomically(path, text)
        if how in ("sighup", "in-place", "bad"):
            b.process.signal(signal.SIGHUP)
            sighups += 1
        if how == "bad":
            harness.wait_for(lambda: len(re.findall(r"routes are unchanged", b.log())) > n_err,
                             5, what="the bad routes file's error line")
        else:
            harness.wait_for(lambda: len(re.findall(r"reloaded \(", b.log())) > n_ok, 5,
                             what=f"the reload ({how})")
            reloads += 1
            sets.append(routes)
        time.sleep(PHASE_S)
    log_before_stop = b.log()
    dropped_under_load = list(dropped)  # stop() closes the clients: those are not drops
    published = load.stop(timeout=120)
    total = sum(published.values())
    elapsed = load.stopped_at - load.started_at
    assert not load.errors, load.errors

    # What the log says: a summary line per reload, the bad file named with its line.
    lines = re.findall(r"^.*mosquitto_kafka: routes_file .*$", log_before_stop, re.M)
    print("\n".join(lines))
    assert re.search(r"reloaded \(the file changed\): 0 added, 1 changed, 0 removed", 
                     log_before_stop), "the TICK's reload of the changed file"
    assert re.search(r"reloaded \(mosquitto reloaded\): 1 added, 1 changed, 1 removed",
                     log_before_stop), ("the in-place change, only mosquitto's reload event "
                                        "can have noticed it")
    assert re.search(re.escape(path) + r":3: route_broken: .* the routes are unchanged",
                     log_before_stop)

    # Everything the plugin delivered: wait for its counters to settle, then read it all.
    stats = harness.SysCounters(b.port)
    harness.wait_for(lambda: stats.values.get("in_flight") == "0" and
                     stats.values.get("matched") == str(total), 60, interval=0.2,
                     what=f"the plugin to have matched {total} messages, none in flight")
    delivered = int(stats.values["delivered"])
    failed = int(stats.values["failed"])
    stats.close()
    records = read_topics(kafka.bootstrap, list(t.values()), delivered)
    by_topic = {v: k for k, v in t.items()}

    # Each message's records: which (route, topic) pairs it went to.
    got = {}
    seqs = {}
    for r in records:
        cid, n = r.value.decode().rsplit(":", 1)
        route = r.header_str(HDR.ROUTE)
        assert r.header_str(HDR.CLIENT_ID) == cid
        assert r.header_str(HDR.TOPIC) == f"load/x/{cid}"
        got.setdefault((cid, int(n)), []).append((route, by_topic[r.topic]))
        seqs.setdefault(route, []).append(int(r.header_str(HDR.SEQ)))
    lost = wrong = duplicates = out_of_order = 0
    examples = []
    for cid, count in published.items():
        last = 0
        for n in range(count):
            rs = got.get((cid, n))
            if not rs:
                lost += 1
                examples.append(f"{cid}:{n} not in Kafka")
                continue
            pairs = set(rs)
            duplicates += len(rs) - len(pairs)
            conf = ("conf", "conf") in pairs
            pairs.discard(("conf", "conf"))
            idx = [i for i, s in enumerate(sets) if s == pairs]
            if not conf or not idx:
                wrong += 1
                examples.append(f"{cid}:{n} went to {sorted(rs)}")
                continue
            if idx[0] < last:
                out_of_order += 1
                examples.append(f"{cid}:{n} under route set {idx[0]} after set {last}")
            last = idx[0]
    gaps = {}
    for route, ss in seqs.items():
        s = harness.one_sequence(ss)  # 1 .. the highest, each once
        if s.missing or s.duplicates or s.unexpected:
            gaps[route] = (len(ss), max(ss), len(set(ss)))
    in_kafka = len({(cid, n) for cid, n in got})
    clients_disconnected = len({cid for cid, _ in dropped_under_load})
    log_drops = [ln for ln in log_before_stop.splitlines()
                 if re.search(r"(disconnected|Socket error|closed its connection|exceeded "
                              r"timeout)", ln) and any(c in ln for c in published)]
    print(f"reload under load: {total} published in {elapsed:.1f} s "
          f"({total / elapsed:.0f} msg/s, {CLIENTS} QoS 1 persistent-session clients), "
          f"{in_kafka} in Kafka ({len(records)} records, {delivered} delivered, {failed} "
          f"failed), {lost} lost, {wrong} under a wrong route set, {out_of_order} out of "
          f"route-set order, {duplicates} duplicates, {clients_disconnected} clients "
          f"disconnected ({len(log_drops)} in mosquitto's log), {reloads} reloads "
          f"({sighups} SIGHUPs, 1 bad file)")
    print("records per route:", {k: len(v) for k, v in sorted(seqs.items())})
    assert total / elapsed > 1000, "the load was not thousands of messages a second"
    assert not examples, examples[:20]
    assert lost == wrong == out_of_order == duplicates == 0
    assert not gaps, f"mqtt.seq not 1..N per route (count, last, distinct): {gaps}"
    assert clients_disconnected == 0 and not log_drops, (dropped_under_load, log_drops)
    assert failed == 0
    assert reloads == 4
    # Each route set took messages: the switches happened under load.
    used = {i for i in range(len(sets))
            for s in [sets[i]] if any(set(rs) - {("conf", "conf")} == s for rs in got.values())}
    assert used == set(range(len(sets))), f"route sets that took messages: {sorted(used)}"


def test_selectors(kafka, start_broker):
    """clientid=, username=, qos=, retain= send the right messages to the right topics."""
    p = harness.unique("sel")
    names = ("trucks", "ops", "anon", "q1", "ret", "combo", "all")
    t = {k: f"{p}-{k}" for k in names}
    kafka.create_topics(list(t.values()), partitions=1)
    d = harness.make_tempdir("mqk-sel-")
    path = os.path.join(d, "routes.conf")
    write_atomically(path, "\n".join([
        "# routes by client",
        f"route_trucks fleet/# -> {t['trucks']} key=clientid clientid=truck-*",
        f"route_ops fleet/# -> {t['ops']} username=op?",
        f"route_anon fleet/# -> {t['anon']} username=",
        f"route_q1 fleet/+/+ -> {t['q1']} qos=1",
        f"route_ret fleet/# -> {t['ret']} retain=true",
    ]) + "\n")
    b = start_broker([
        ("bootstrap_servers", kafka.bootstrap),
        ("broker_id", "itest-sel"),
        ("route_combo", f"fleet/# -> {t['combo']} clientid=truck-? qos=2 retain=false"),
        ("route_all", f"fleet/# -> {t['all']}"),
        ("routes_file", path),
    ], name="mosquitto-sel")

    # (client id, username): with and without a username, trucks and cars.
    clients = [("truck-1", None), ("truck-22", "op1"), ("car-1", "operator"), ("car-2", None)]
    want = {k: set() for k in names}
    for cid, user in clients:
        c = harness.Client(b.port, cid, V5, username=user, password="x" if user else None)
        for qos in (0, 1, 2):
            for retain in (False, True):
                payload = f"{cid} q{qos} r{int(retain)}"
                c.publish_wait(f"fleet/{cid}/q{qos}r{int(retain)}", payload.encode(), qos=qos,
                               retain=retain)
                truck = cid.startswith("truck-")
                for route, takes in (
                        ("trucks", truck),
                        ("ops", user is not None and len(user) == 3 and user.startswith("op")),
                        ("anon", user is None),
                        ("q1", qos == 1),
                        ("ret", retain),
                        ("combo", re.fullmatch(r"truck-.", cid) and qos == 2 and not retain),
                        ("all", True)):
                    if takes:
                        want[route].add(payload.encode())
        c.close()
    counts = {}
    for route in names:
        recs = harness.read_topic(kafka.bootstrap, t[route], len(want[route]), timeout=30,
                                  grace=1.5)
        got = [r.value for r in recs]
        counts[route] = (len(want[route]), len(got))
        assert sorted(got) == sorted(want[route]), (route, sorted(got), sorted(want[route]))
        assert all(r.header_str(HDR.ROUTE) == route for r in recs)
    print("selectors, route: (expected, in Kafka):", counts)
    assert counts["all"] == (24, 24)
    assert counts["combo"] == (1, 1)


BAD_FILES = [
    ("bad-line", "route_fine a/# -> a\n\nroute_x a/# -> t qos=3\n", 3,
     r"route_x: qos='3' is not 0, 1 or 2"),
    ("name-in-both", "route_ok a/# -> other\n", 1,
     r"route 'ok' is also plugin_opt_route_ok in mosquitto.conf"),
    ("bad-selector", "route_x a/# -> t colour=blue\n", 1,
     r"route_x: unknown route attribute 'colour=blue'"),
]


def test_bad_routes_file_stops_mosquitto(start_broker):
    """At start-up a routes file with an error stops mosquitto with one line naming the
    file and the line."""
    for case, text, line, why in BAD_FILES:
        d = harness.make_tempdir("mqk-badroutes-")
        path = os.path.join(d, "routes.conf")
        write_atomically(path, text)
        b = start_broker([("bootstrap_servers", "127.0.0.1:9"), ("route_ok", "ok/# -> ok"),
                          ("routes_file", path)], wait=False, name=f"mosquitto-{case}")
        b.expect_exit = None
        rc = b.process.wait_exit(10 * harness.SLOW)
        m = re.search(r"^(?:\d+: )?mosquitto_kafka: plugin_opt_routes_file " + re.escape(path) +
                      f":{line}: " + why + ".*$", b.log(), re.M)
        print(f"{case}: exit code {rc}, line: {m.group(0) if m else None}")
        assert rc != 0 and m, b.log()
        lines = [ln for ln in b.log().splitlines() if "mosquitto_kafka: " in ln]
        assert len(lines) == 1, f"{case}: one line expected: {lines}"


def test_removed_route_delivered_and_restart_maps_by_name(kafka_up_after, start_broker):
    """Records wait in the journal (Kafka down) while a reload removes one route, changes
    another and adds a third: the removed route's records still reach Kafka, each record
    goes where its route said when the message came in. Then records written after the
    reload wait in the journal across a restart: the new run maps them to its routes by
    name (the segment started after the reload names the new definitions)."""
    kafka = kafka_up_after
    p = harness.unique("rlj")
    t = {k: f"{p}-{k}" for k in ("a1", "a2", "x", "c")}
    kafka.create_topics(list(t.values()), partitions=1)
    d = harness.make_tempdir("mqk-reloadj-")
    path = os.path.join(d, "routes.conf")
    journal = harness.make_journal_dir(d)
    write_atomically(path, f"route_a j/# -> {t['a1']}\nroute_x j/# -> {t['x']}\n")
    options = [("bootstrap_servers", kafka.bootstrap), ("broker_id", "itest-reloadj"),
               ("routes_file", path), ("journal_dir", journal), ("flush_timeout_ms", "1000")]
    n = 300
    b = start_broker(options, name="mosquitto-reloadj")
    kafka.down()
    c = harness.Client(b.port, "rlj-1", V311, clean=False)
    harness.wait_published([c.publish(f"j/{i}", f"p1:{i}".encode(), qos=1) for i in range(n)],
                           30)
    write_atomically(path, f"route_a j/# -> {t['a2']}\nroute_c j/# -> {t['c']}\n")
    b.process.signal(signal.SIGHUP)
    b.wait_log(r"reloaded \(.*\): 1 added, 1 changed, 1 removed", 5)
    harness.wait_published([c.publish(f"j/{i}", f"p2:{i}".encode(), qos=1) for i in range(n)],
                           30)
    kafka.up()
    want = {"a1": {f"p1:{i}" for i in range(n)}, "x": {f"p1:{i}" for i in range(n)},
            "a2": {f"p2:{i}" for i in range(n)}, "c": {f"p2:{i}" for i in range(n)}}
    got = {}
    for k in want:
        recs = harness.read_topic(kafka.bootstrap, t[k], len(want[k]), timeout=90, grace=1)
        got[k] = {r.value.decode() for r in recs}
        assert len(recs) == len(want[k]) and got[k] == want[k], (k, len(recs))
        assert {r.header_str(HDR.ROUTE) for r in recs} == {k[0]}
    print("in-run, Kafka down during the reload: " +
          ", ".join(f"route {k[0]} -> {t[k]}: {len(got[k])} of {len(want[k])}" for k in want))

    # After the reload, with Kafka down again: the journal keeps them across a restart.
    kafka.down()
    harness.wait_published([c.publish(f"j/{i}", f"p3:{i}".encode(), qos=1) for i in range(n)],
                           30)
    c.close()
    assert b.stop() == 0
    assert re.search(r"shutdown: \d+ records not delivered to Kafka yet: they stay in the "
                     r"journal", b.log()), b.log()
    b2 = start_broker(options, name="mosquitto-reloadj-2")
    b2.wait_log(REPLAY_RX, 15)
    replayed = int(re.search(REPLAY_RX, b2.log()).group(1))
    kafka.up()
    for k in ("a2", "c"):
        want[k] |= {f"p3:{i}" for i in range(n)}
        recs = harness.read_topic(kafka.bootstrap, t[k], len(want[k]), timeout=90, grace=1)
        got[k] = {r.value.decode() for r in recs}
        assert len(recs) == len(want[k]) and got[k] == want[k], (k, len(recs))
    print(f"after a restart: {replayed} records replayed from the journal; route a -> "
          f"{t['a2']}: {len(got['a2'])} of {len(want['a2'])}, route c -> {t['c']}: "
          f"{len(got['c'])} of {len(want['c'])}")
    assert replayed == 2 * n
