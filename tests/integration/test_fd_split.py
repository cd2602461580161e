"""
test_fd_split.py - mosquitto's thread keeps a descriptor table of its own (plugin/side.c),
with the real mosquitto, the built plugin and the session's Kafka:

- with a client connected and the commands thread running, /proc/<pid>/task/<tid>/fd of
  mosquitto's thread and of the plugin's Kafka thread (comm mqk-kafka) differ: the MQTT
  client's socket is in mosquitto's table only, the Kafka connections are in the Kafka
  thread's only (none in mosquitto's), the commands' wake connection has its plugin end
  on the side and mosquitto's end in mosquitto's table, the eventfds are in both under
  the same number; records flow, a command reaches its device (mosquitto's thread writes
  the hand-off's eventfd), a SIGHUP reload takes a new route, SIGTERM delivers everything
  and exits 0 with the shutdown line;
- durability journal: no segment file has a descriptor in either table, the journal's
  directory is in both, journal.state in mosquitto's only; kill -9 with Kafka down, started again with Kafka back: it
  replays, and every acknowledged message is in Kafka;
- another thread already in mosquitto (bench/idle_thread.c preloaded): the plugin says it
  shares mosquitto's table and why, and forwards as before.
"""

import os
import re
import signal

import harness
from harness import V311
from test_commands import WAKE_LINE, Commands, Device, command_broker, settle

SPLIT = r"mosquitto_kafka: the plugin's threads run on a descriptor table of their own"
SHARED = (r"mosquitto_kafka: the plugin's threads share mosquitto's descriptor table "
          r"\((\d+) threads already run in mosquitto")
REPLAY_RX = r"mosquitto_kafka: journal: replaying (\d+) records"
IDLE_THREAD = os.path.join(harness.BUILD_DIR, "bench", "mqk-bench-idle-thread.so")


def thread_by_name(pid, name):
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if f.read().strip() == name:
                return int(tid)
    raise AssertionError(f"no thread {name} in {pid}: "
                         f"{sorted(os.listdir(f'/proc/{pid}/task'))}")


def table(pid, tid):
    """fd number -> what it is ("socket:[inode]", a path, "anon_inode:[eventfd]")."""
    d = f"/proc/{pid}/task/{tid}/fd"
    out = {}
    for n in os.listdir(d):
        try:
            out[int(n)] = os.readlink(f"{d}/{n}")
        except FileNotFoundError:
            pass  # closed meanwhile
    return out


def sockets(tab):
    return {int(m.group(1)) for v in tab.values() if (m := re.match(r"socket:\[(\d+)\]", v))}


def tcp_sockets(pid):
    """inode -> (local port, remote port) of every TCP socket in pid's network namespace."""
    out = {}
    for name in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{name}") as f:
            next(f)
            for line in f:
                cols = line.split()
                local, remote, inode = cols[1], cols[2], int(cols[9])
                if inode:
                    out[inode] = (int(local.rsplit(":", 1)[1], 16),
                                  int(remote.rsplit(":", 1)[1], 16))
    return out


def kafka_ports(kafka):
    return {int(hp.rsplit(":", 1)[1]) for hp in kafka.bootstrap.split(",")}


def test_tables_split_and_the_plugin_works(kafka, start_broker):
    topic, topic2, cmd_topic = (harness.unique(p) for p in ("fds", "fds2", "fdc"))
    kafka.create_topics([topic, topic2, cmd_topic], 1)
    tmp = harness.make_tempdir("mqk-fds-")
    routes = os.path.join(tmp, "routes.conf")
    with open(routes, "w") as f:
        f.write(f"route_a fd/a/# -> {topic}\n")
    os.chmod(tmp, 0o755)
    os.chmod(routes, 0o644)
    b = command_broker(start_broker, kafka, cmd_topic, [("routes_file", routes)])
    b.wait_log(SPLIT, 10)
    c = harness.Client(b.port, harness.unique("fdc"), V311)
    dev = Device(b.port, harness.unique("fddev"), V311)
    n = 300
    for i in range(n):
        c.publish_wait("fd/a/x", f"a{i}".encode(), qos=1)
    records = harness.read_topic(kafka.bootstrap, topic, n, timeout=60, grace=1)
    assert sorted(r.value for r in records) == sorted(f"a{i}".encode() for i in range(n))

    # A command: the commands thread queues it, mosquitto's thread delivers it and writes
    # the hand-off's eventfd, the commands thread settles it.
    settle()
    Commands(kafka.bootstrap).send(cmd_topic, dev.client_id, b"go")
    dev.wait(1)
    assert dev.payloads() == [b"go"]
    b.wait_log(WAKE_LINE, 10)

    pid = b.pid
    kafka_tid = thread_by_name(pid, "mqk-kafka")
    main, side = table(pid, pid), table(pid, kafka_tid)
    tcp = tcp_sockets(pid)
    main_s, side_s = sockets(main), sockets(side)
    client_port = c.c.socket().getsockname()[1]
    client = {i for i, (lp, rp) in tcp.items() if lp == b.port and rp == client_port}
    to_kafka = {i for i, (lp, rp) in tcp.items() if rp in kafka_ports(kafka)}
    # The commands thread's wake connection: its end on the side, mosquitto's in main.
    wake_plugin_end = {i for i in side_s if i in tcp and tcp[i][1] == b.port}
    wake_ports = {tcp[i][0] for i in wake_plugin_end}
    wake_broker_end = {i for i, (lp, rp) in tcp.items() if lp == b.port and rp in wake_ports}
    eventfds = {fd for fd, v in main.items() if "eventfd" in v}
    print(f"mosquitto's thread: {len(main)} descriptors ({len(main_s)} sockets); Kafka "
          f"thread {kafka_tid}: {len(side)} ({len(side_s)} sockets); client socket "
          f"{client}, Kafka connections {to_kafka & side_s}, wake {wake_plugin_end} -> "
          f"{wake_broker_end}, eventfds in both {sorted(eventfds & set(side))}")
    assert main != side, "one table for both threads"
    assert len(client) == 1 and client <= main_s and not client & side_s, (client, main, side)
    assert to_kafka & side_s, f"no Kafka connection in the Kafka thread's table: {side}"
    assert not to_kafka & main_s, f"librdkafka's sockets in mosquitto's table: {main}"
    assert len(wake_plugin_end) == 1 and not wake_plugin_end & main_s, (tcp, main, side)
    assert len(wake_broker_end) == 1 and wake_broker_end <= main_s
    assert not wake_broker_end & side_s
    shared = {fd for fd in eventfds if side.get(fd) == main[fd]}
    assert len(shared) >= 2, f"the buffer's and the hand-off's eventfds: {main} / {side}"
    # mosquitto opens its listener after plugin init: the side never had it.
    listener = {i for i, (lp, rp) in tcp.items() if lp == b.port and rp == 0}
    assert listener <= main_s and not listener & side_s, (listener, main, side)

    # SIGHUP: a route added in the file is in force, on the same tables.
    with open(routes, "w") as f:
        f.write(f"route_a fd/a/# -> {topic}\nroute_b fd/b/# -> {topic2}\n")
    b.process.signal(signal.SIGHUP)
    b.wait_log(r"routes_file .* reloaded \(mosquitto reloaded\): 1 added", 10)
    for i in range(100):
        c.publish_wait("fd/b/y", f"b{i}".encode(), qos=1)
    records = harness.read_topic(kafka.bootstrap, topic2, 100, timeout=60, grace=1)
    assert sorted(r.value for r in records) == sorted(f"b{i}".encode() for i in range(100))
    for i in range(200):
        c.publish_wait("fd/a/x", f"late{i}".encode(), qos=1)
    c.close()
    dev.close()
    assert b.stop() == 0
    log = b.log()
    assert re.search(r"mosquitto_kafka: shutdown: 0 records not delivered to Kafka$", log,
                     re.M), log[-3000:]
    assert "commands: consumed 1, delivered 1" in log, log[-3000:]
    records = harness.read_topic(kafka.bootstrap, topic, n + 200, timeout=60, grace=1)
    assert len({r.value for r in records}) == n + 200


def test_journal_kill_9_and_replay(kafka_up_after, start_broker):
    kafka = kafka_up_after
    topic = harness.unique("fdj")
    kafka.create_topic(topic, 1)
    journal = harness.make_journal_dir(harness.make_tempdir("mqk-fdj-"))
    options = [("bootstrap_servers", kafka.bootstrap), ("broker_id", harness.unique("fdj")),
               ("route_j", f"j/# -> {topic}"), ("journal_dir", journal),
               ("journal_segment_mb", "1"), ("journal_max_mb", "64")]
    b = start_broker(options, name="mosquitto-fdj")
    b.wait_log(SPLIT, 10)
    kafka.down()
    c = harness.Client(b.port, harness.unique("fdj"), V311)
    n = 3000  # ~1.5 MiB: a second segment, and the spare made ahead on the side
    payload = b"j" * 400
    for i in range(n):
        c.publish_wait("j/x", payload + str(i).encode(), qos=1)
    pid = b.pid
    main, side = table(pid, pid), table(pid, thread_by_name(pid, "mqk-kafka"))
    segments = [v for t in (main, side) for v in t.values() if v.endswith(".mqkj")]
    dirs = {fd for fd, v in main.items() if v == os.path.realpath(journal)}
    print(f"{n} acknowledged with Kafka down; journal files {sorted(os.listdir(journal))}; "
          f"directory descriptors in both tables {dirs}")
    assert not segments, f"segment descriptors kept: {segments}"
    assert len(dirs) == 1 and all(side.get(fd) == main[fd] for fd in dirs), (main, side)
    # journal.state (its flock) is mosquitto's alone: the lock goes with mosquitto's close.
    assert sum(v.endswith("/journal.state") for v in main.values()) == 1, main
    assert not any(v.endswith("/journal.state") for v in side.values()), side
    assert sum(f.endswith(".mqkj") for f in os.listdir(journal)) >= 2
    b.expect_exit = -signal.SIGKILL
    os.kill(pid, signal.SIGKILL)
    b.process.wait_exit(10)
    c.close()

    kafka.up()
    b2 = start_broker(options, name="mosquitto-fdj-2")
    b2.wait_log(SPLIT, 10)
    b2.wait_log(REPLAY_RX, 15)
    replayed = int(re.search(REPLAY_RX, b2.log()).group(1))
    records = harness.read_topic(kafka.bootstrap, topic, n, timeout=90, grace=2)
    values = {r.value for r in records}
    missing = [i for i in range(n) if payload + str(i).encode() not in values]
    print(f"restarted: replayed {replayed}; {len(values)} distinct records in Kafka, "
          f"{len(missing)} acknowledged ones missing")
    assert replayed >= n and not missing, missing[:10]
    assert b2.stop() == 0


def test_another_thread_first_no_split(kafka, start_broker):
    harness.require_file(IDLE_THREAD, "bench/idle_thread.c's library")
    topic = harness.unique("fdn")
    kafka.create_topic(topic, 1)
    b = start_broker([("bootstrap_servers", kafka.bootstrap), ("route_n", f"n/# -> {topic}"),
                      ("durability", "memory")], name="mosquitto-fdn", preload=IDLE_THREAD)
    m = b.wait_log(SHARED, 10)
    assert SPLIT not in b.log()
    pid = b.pid
    assert table(pid, pid) == table(pid, thread_by_name(pid, "mqk-kafka"))
    c = harness.Client(b.port, harness.unique("fdn"), V311)
    for i in range(200):
        c.publish_wait("n/x", f"n{i}".encode(), qos=1)
    c.close()
    records = harness.read_topic(kafka.bootstrap, topic, 200, timeout=60, grace=1)
    print(f"{m.group(0)}; {len(records)} records in Kafka")
    assert sorted(r.value for r in records) == sorted(f"n{i}".encode() for i in range(200))
    assert b.stop() == 0
