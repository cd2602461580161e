"""
test_security.py - the plugin against a real Kafka 4.x over TLS and SASL, configured through
plugin_opt_kafka.* lines (and plugin_opt_kafka_config_file where secrets are the point).

One Kafka node (the default release, 4.x) with, besides the PLAINTEXT listener this test uses
to create topics and check what arrived, an SSL listener (server certificate only), a
SASL_SSL listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and a mutual-TLS listener, on a
throwaway PKI (tests/kafka/tls.py).

  kinds     SSL, SASL_SSL PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512, mutual TLS: every message
            published is in Kafka (0 lost), and the commands consumer reads a command and
            delivers it to its device. SCRAM runs against Kafka 4.x when the linked
            librdkafka is 2.6.1 or later, else against Kafka 3.9 (MQK_KAFKA3_VERSION): older
            librdkafka sends SCRAM's client nonce twice and Kafka 4 refuses it;
  failures  wrong password, unknown user, a CA that did not sign the broker's certificate, an
            expired client certificate: mosquitto keeps serving its clients (PUBACKs, a
            subscriber gets everything), one ERR line names the cause and the broker, at most
            one more every 10 s; the records wait in the journal; with the configuration
            fixed and mosquitto restarted on that journal, every acknowledged record is in
            Kafka;
  scram     librdkafka < 2.6.1: the start-up warning, and Kafka 4.x refusing its SCRAM login
            with a line that says why; librdkafka >= 2.6.1: no warning;
  secrets   every secret in kafka_config_file, log_type all and kafka.debug all: no secret in
            mosquitto's log, the $SYS tree or a record; a config file others may read stops
            mosquitto with a line naming it.
"""

import ctypes
import os
import pwd
import re
import shutil
import time

import confluent_kafka as ck
import pytest

import harness
from harness import V311, V5

USER = "mqk-device-gw"
PASSWORD = "Sasl.Pw-7f3k9qZ"          # PLAIN and both SCRAMs
KEY_PASSWORD = "Key.Pw-44mB2xv"       # given as ssl.key.password in the secrets test
KAFKA3 = os.environ.get("MQK_KAFKA3_VERSION", "3.9.2")
CONSUMING = r"mosquitto_kafka: commands: consuming \S+ partitions \[\d"


def librdkafka_version():
    """The version of the librdkafka the plugin links (the system's librdkafka.so.1)."""
    lib = ctypes.CDLL("librdkafka.so.1")
    lib.rd_kafka_version.restype = ctypes.c_int
    lib.rd_kafka_version_str.restype = ctypes.c_char_p
    return lib.rd_kafka_version(), lib.rd_kafka_version_str().decode()


RDKAFKA, RDKAFKA_STR = librdkafka_version()
SCRAM_WORKS_ON_KAFKA4 = RDKAFKA >= 0x02060100


# ---- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki():
    """The throwaway PKI, readable by user mosquitto (the plugin runs as that user)."""
    d = harness.make_tempdir("mqk-pki-")
    p = harness.kafka_module().tls_module().Pki(os.path.join(d, "pki"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("mosquitto")
        for path in [p.dir, *p.files().values()]:
            os.chown(path, pw.pw_uid, pw.pw_gid)
    yield p
    shutil.rmtree(d, ignore_errors=True)


def secure_kafka(pki, version=None):
    return harness.RealKafka(version=version, listeners=["SSL", "SASL_SSL", "MTLS"], tls=pki,
                             sasl_users={USER: PASSWORD})


@pytest.fixture(scope="module")
def kafka4(pki):
    k = secure_kafka(pki)
    print(f"Kafka {k.cluster.version}: PLAINTEXT {k.bootstrap}, " +
          ", ".join(f"{n} {k.cluster.listener_bootstrap(n)}" for n in k.cluster.listeners))
    yield k
    k.cleanup()


@pytest.fixture(scope="module")
def kafka3(pki):
    """Kafka 3.9: SCRAM for a librdkafka older than 2.6.1."""
    k = secure_kafka(pki, KAFKA3)
    yield k
    k.cleanup()


def kafka_for(request, mechanism):
    if mechanism and mechanism.startswith("SCRAM") and not SCRAM_WORKS_ON_KAFKA4:
        return request.getfixturevalue("kafka3")
    return request.getfixturevalue("kafka4")


def plugin_options(kafka, listener, mechanism=None, user=USER, password=PASSWORD,
                   client="client", ca=None):
    """bootstrap_servers and plugin_opt_kafka.* lines for one listener of kafka."""
    props = kafka.cluster.client_config(listener, mechanism, user, password, client, ca)
    bootstrap = props.pop("bootstrap.servers")
    return [("bootstrap_servers", bootstrap)] + [(f"kafka.{k}", v) for k, v in props.items()]


class Inbox:
    """An MQTT client that keeps what it receives."""

    def __init__(self, port, subscribe=None, protocol=V5):
        self.got = []
        self.client = harness.Client(port, harness.unique("sec"), protocol,
                                     on_message=lambda c, u, m: self.got.append(m))
        if subscribe:
            self.client.subscribe(subscribe, qos=1)

    def wait(self, n, timeout=20.0):
        harness.wait_for(lambda: len(self.got) >= n, timeout * harness.SLOW,
                         what=f"{n} messages at {self.client.client_id} (has {len(self.got)})")

    def close(self):
        self.client.close()


def publish_numbers(port, topic_prefix, n):
    """n QoS 1 messages 0..n-1 from one client, every PUBACK awaited; returns the client id."""
    c = harness.Client(port, harness.unique("pub"), V311)
    infos = [c.publish(f"{topic_prefix}/{i % 5}", str(i).encode(), qos=1) for i in range(n)]
    harness.wait_published(infos, 60)
    c.close()
    return c.client_id


def numbers_in(records):
    return sorted(int(r.value) for r in records)


def send_command(bootstrap, topic, device):
    p = ck.Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "log_level": 3})
    done = []
    p.produce(topic, key=device.encode(), value=b"reboot",
              on_delivery=lambda err, msg: done.append(err))
    assert p.flush(30) == 0 and done == [None], f"producing the command: {done}"


# ---- every listener kind: forwarding and commands -----------------------------------------

KINDS = {
    "ssl": ("SSL", None),
    "sasl_ssl-plain": ("SASL_SSL", "PLAIN"),
    "sasl_ssl-scram-sha-256": ("SASL_SSL", "SCRAM-SHA-256"),
    "sasl_ssl-scram-sha-512": ("SASL_SSL", "SCRAM-SHA-512"),
    "mtls": ("MTLS", None),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_forwards_and_consumes(request, start_broker, kind):
    listener, mechanism = KINDS[kind]
    kafka = kafka_for(request, mechanism)
    topic, commands = harness.unique(f"sec-{kind}"), harness.unique(f"seccmd-{kind}")
    kafka.create_topics([topic, commands])
    b = start_broker(plugin_options(kafka, listener, mechanism) + [
        ("broker_id", harness.unique("sec")),
        ("route_s", f"sec/# -> {topic}"),
        ("commands_topic", commands),
        ("stats_interval", "1"),
    ], extra=["set_tcp_nodelay true"], name=f"mosquitto-{kind}")
    b.wait_log(CONSUMING, 60)  # the consumer has joined its group through that listener
    n = 500
    device = Inbox(b.port)
    publish_numbers(b.port, "sec", n)
    time.sleep(0.3 * harness.SLOW)  # the device is seen connected at the next TICK
    send_command(kafka.bootstrap, commands, device.client.client_id)
    device.wait(1)
    recs = harness.read_topic(kafka.bootstrap, topic, n, timeout=60)
    got = numbers_in(recs)
    lost = len(set(range(n)) - set(got))
    print(f"{kind} on Kafka {kafka.cluster.version}, librdkafka {RDKAFKA_STR}: {n} published, "
          f"{len(recs)} in Kafka, {lost} lost, {len(got) - len(set(got))} duplicates; "
          f"command delivered to {device.client.client_id} on {device.got[0].topic}")
    device.close()
    assert lost == 0 and len(recs) == n, f"{n} expected in Kafka, got {len(recs)}"
    assert device.got[0].topic == f"devices/{device.client.client_id}/commands"
    assert device.got[0].payload == b"reboot"
    log = b.log()
    assert "authentication failed" not in log and "Kafka TLS" not in log, log[-3000:]


# ---- refusals: mosquitto serves on, records wait, nothing is lost after the fix ----------

FAILURES = {
    # name: (listener, mechanism, user, password, client certificate, CA, cause)
    "wrong-password": ("SASL_SSL", "PLAIN", USER, "not-the-password", None, None,
                       "Kafka authentication failed"),
    "unknown-user": ("SASL_SSL", "PLAIN", "nobody-here", PASSWORD, None, None,
                     "Kafka authentication failed"),
    "foreign-ca": ("SSL", None, None, None, None, "other",
                   "Kafka TLS: the broker's certificate could not be verified"),
    "expired-client-certificate": ("MTLS", None, None, None, "expired", None,
                                   "Kafka TLS: the broker refused this client's certificate"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_refused_then_fixed(kafka4, start_broker, case):
    listener, mechanism, user, password, client, ca, cause = FAILURES[case]
    kafka = kafka4
    topic = harness.unique(f"secf-{case}")
    kafka.create_topics([topic])
    journal = harness.make_journal_dir(harness.make_tempdir("mqk-secj-"))
    common = [("broker_id", harness.unique("secf")), ("route_s", f"secf/# -> {topic}"),
              ("journal_dir", journal), ("stats_interval", "1")]
    bad = plugin_options(kafka, listener, mechanism, user, password, client or "client", ca)
    b = start_broker(bad + common, name=f"mosquitto-{case}")
    port = kafka.cluster.listener_bootstrap(listener).split(":")[-1]
    rx = (re.escape(f"mosquitto_kafka: {cause}: ") +
          rf"(?:ssl|sasl_ssl)://127\.0\.0\.1:{port}/\S+: .*; records wait in the journal "
          r"until Kafka takes them$")
    first = b.wait_log(rx, 30)
    first_at = time.monotonic()
    print(f"{case}: {first.group(0)}")
    # mosquitto serves its clients all the same.
    n = 300
    watcher = Inbox(b.port, subscribe="secf/#")
    publish_numbers(b.port, "secf", n)
    watcher.wait(n)
    in_kafka = harness.read_topic(kafka.bootstrap, topic, 1, timeout=3, grace=0)
    if case == "wrong-password":  # long enough for librdkafka to try again a few times
        time.sleep(max(0.0, first_at + 15 - time.monotonic()))
    lines = len(re.findall(rx, b.log(), re.M))
    attempts = len(re.findall(r"librdkafka FAIL: ", b.log()))
    elapsed = time.monotonic() - first_at
    rc = b.stop()
    log = b.log()
    left = re.search(r"mosquitto_kafka: shutdown: (\d+) records not delivered to Kafka yet: "
                     r"they stay in the journal", log)
    print(f"{case}: {n} published, {n} PUBACKed, {len(watcher.got)} at a subscriber, "
          f"{len(in_kafka)} in Kafka; the cause logged {lines} times in {elapsed:.0f} s "
          f"({attempts} failed attempts at debug level); "
          f"shutdown: {left.group(0) if left else 'no journal line'}")
    watcher.close()
    assert rc == 0
    assert len(watcher.got) == n
    assert in_kafka == [], f"{len(in_kafka)} records reached Kafka through a refused login"
    assert lines <= 2 + elapsed / 10, f"{lines} lines in {elapsed:.0f} s: not rate-limited"
    assert left and int(left.group(1)) == n, log[-3000:]

    # Fixed and restarted on the same journal: every acknowledged record reaches Kafka.
    fixed = start_broker(plugin_options(kafka, listener, "PLAIN" if mechanism else None) +
                         common, name=f"mosquitto-{case}-fixed")
    recs = harness.read_topic(kafka.bootstrap, topic, n, timeout=60)
    got = numbers_in(recs)
    lost = len(set(range(n)) - set(got))
    print(f"{case} fixed: {n} acknowledged, {len(recs)} in Kafka, {lost} lost, "
          f"{len(got) - len(set(got))} duplicates")
    assert lost == 0, f"{lost} of {n} acknowledged records lost"
    fixed.wait_log(r"mosquitto_kafka: journal: replaying \d+ records", 5)


# ---- SCRAM and the linked librdkafka ------------------------------------------------------

SCRAM_WARNING = (r"mosquitto_kafka: sasl\.mechanisms SCRAM-SHA-512 with librdkafka "
                 + re.escape(RDKAFKA_STR) + r": Kafka 4\.x refuses SCRAM logins from "
                 r"librdkafka older than 2\.6\.1")


def test_scram_against_kafka4_with_this_librdkafka(kafka4, start_broker):
    """librdkafka < 2.6.1 (Debian 12's 2.0.2): a warning at start-up, and Kafka 4.x
    refusing the login with a line that says what to do. 2.6.1 or later: no warning, and
    SCRAM works against Kafka 4.x (test_forwards_and_consumes ran it there)."""
    topic = harness.unique("secscram")
    kafka4.create_topics([topic])
    b = start_broker(plugin_options(kafka4, "SASL_SSL", "SCRAM-SHA-512") + [
        ("route_s", f"scram/# -> {topic}"), ("stats_interval", "0")], name="mosquitto-scram")
    b.wait_log(r"mosquitto_kafka: route s: ", 10)
    if SCRAM_WORKS_ON_KAFKA4:
        publish_numbers(b.port, "scram", 10)
        recs = harness.read_topic(kafka4.bootstrap, topic, 10, timeout=30)
        print(f"librdkafka {RDKAFKA_STR}, SCRAM-SHA-512 on Kafka {kafka4.cluster.version}: "
              f"10 published, {len(recs)} in Kafka; warning lines: "
              f"{len(re.findall(SCRAM_WARNING, b.log()))}")
        assert len(recs) == 10
        assert not re.search(SCRAM_WARNING, b.log()), b.log()[-2000:]
        return
    warning = b.wait_log(SCRAM_WARNING + r".*$", 5)
    refused = b.wait_log(r"mosquitto_kafka: Kafka authentication failed: sasl_ssl://\S+: "
                         r"SASL authentication error: .*with Kafka 4\.x, SCRAM needs "
                         r"librdkafka 2\.6\.1 or later.*$", 30)
    print(f"librdkafka {RDKAFKA_STR}, Kafka {kafka4.cluster.version}:\n{warning.group(0)}\n"
          f"{refused.group(0)}")
    assert len(re.findall(SCRAM_WARNING, b.log())) == 1


# ---- secrets ------------------------------------------------------------------------------

def config_file(directory, props, mode=0o640):
    """A kafka_config_file, root's with group mosquitto (as an admin would install it)."""
    path = os.path.join(directory, "kafka.properties")
    with open(path, "w") as f:
        f.write("# mosquitto-kafka: Kafka credentials\n\n")
        f.writelines(f"{k}={v}\n" for k, v in props.items())
    if os.geteuid() == 0:
        os.chown(path, 0, pwd.getpwnam("mosquitto").pw_gid)
    os.chmod(path, mode)
    return path


def test_no_secret_anywhere(request, kafka4, pki, start_broker):
    mechanism = "SCRAM-SHA-512" if SCRAM_WORKS_ON_KAFKA4 else "PLAIN"
    kafka = kafka4
    topic, commands = harness.unique("secs"), harness.unique("secscmd")
    kafka.create_topics([topic, commands])
    props = kafka.cluster.client_config("SASL_SSL", mechanism, USER, PASSWORD)
    bootstrap = props.pop("bootstrap.servers")
    # A client certificate too (the SASL_SSL listener does not ask for it), for its key's
    # password: one more secret to look for.
    props.update({"ssl.certificate.location": pki.client_cert,
                  "ssl.key.location": pki.client_key, "ssl.key.password": KEY_PASSWORD})
    d = harness.make_tempdir("mqk-seccfg-")
    path = config_file(d, props)
    options = [("bootstrap_servers", bootstrap), ("kafka_config_file", path),
               ("kafka.debug", "all"), ("broker_id", harness.unique("secs")),
               ("route_s", f"secs/# -> {topic} format=json"), ("commands_topic", commands),
               ("stats_interval", "1")]
    b = start_broker(options, name="mosquitto-secrets")  # log_type all
    b.wait_log(CONSUMING, 60)
    sys_values = []
    spy = harness.Client(b.port, harness.unique("sys"), V311,
                         on_message=lambda c, u, m: sys_values.append((m.topic, m.payload)))
    spy.subscribe("$SYS/#")
    n = 50
    device = Inbox(b.port)
    publish_numbers(b.port, "secs", n)
    time.sleep(0.3 * harness.SLOW)
    send_command(kafka.bootstrap, commands, device.client.client_id)
    device.wait(1)
    recs = harness.read_topic(kafka.bootstrap, topic, n, timeout=60)
    time.sleep(1.5 * harness.SLOW)  # one more round of $SYS
    spy.close()
    device.close()
    rc = b.stop()
    log = b.log()
    secrets = {"sasl.password": PASSWORD, "ssl.key.password": KEY_PASSWORD}
    where = []
    for name, secret in secrets.items():
        if secret in log:
            where.append(f"{name} in mosquitto's log: "
                         + next(line for line in log.splitlines() if secret in line))
        where += [f"{name} in {t}" for t, v in sys_values if secret.encode() in v]
        for r in recs:
            blobs = [r.value or b"", r.key or b""] + [v or b"" for _, v in r.headers]
            if any(secret.encode() in x for x in blobs):
                where.append(f"{name} in a record of {topic}")
    redacted = len(re.findall(r"(sasl\.password|ssl\.key\.password) = \[redacted\]", log))
    print(f"{mechanism} with kafka_config_file, log_type all, kafka.debug all: {n} published, "
          f"{len(recs)} in Kafka, command delivered; log {len(log.splitlines())} lines "
          f"({redacted} '[redacted]' lines from librdkafka's configuration dump), "
          f"{len(sys_values)} $SYS messages; secrets found: {where or 'none'}")
    assert rc == 0
    assert len(recs) == n and len(device.got) == 1
    assert re.search(rf"mosquitto_kafka: kafka_config_file \S+: {len(props)} librdkafka "
                     rf"properties", log)
    assert redacted >= 2, "librdkafka's configuration dump did not run: the check saw nothing"
    assert not where, "\n".join(where)


def test_config_file_readable_by_all_refused(kafka4, start_broker):
    d = harness.make_tempdir("mqk-seccfg-")
    path = config_file(d, {"sasl.password": PASSWORD}, mode=0o644)
    b = harness.Mosquitto([("bootstrap_servers", kafka4.bootstrap),
                           ("kafka_config_file", path)], wait=False, name="mosquitto-cfg644")
    try:
        harness.wait_for(lambda: not b.process.alive(), 15, what="mosquitto to refuse to start")
        log = b.log()
        m = re.search(r"mosquitto_kafka: plugin_opt_kafka_config_file: '" + re.escape(path) +
                      r"' may be read by every user \(mode 0644\).*$", log, re.M)
        print(m.group(0) if m else log)
        assert m
        assert PASSWORD not in log
    finally:
        b.cleanup()
