"""
harness.py - the processes and clients the integration tests drive.

Like mosquitto's own broker tests, every test runs the real /usr/sbin/mosquitto with a
generated configuration that loads build/plugin/mosquitto_kafka.so, on a free port of
127.0.0.1, and reads what reached Kafka with confluent_kafka. Kafka is, by MQK_KAFKA,
either a real Apache Kafka (RealKafka: a KRaft cluster run by tests/kafka/kafka.py) or
librdkafka's mock cluster run as a process by build/tools/mqk-devkafka (DevKafka). Both
offer what the tests use: .bootstrap, .create_topics(names, partitions) (real Kafka does
not auto-create topics, so every test creates each topic it produces to), .down() and
.up() (an outage: every broker stopped, then started again on the same ports with its
data), .cleanup().

Rules every helper here keeps:
- only processes this module started are signalled, by their pid;
- everything listens on 127.0.0.1;
- every wait is bounded, and a missed bound raises with what was expected;
- nothing is skipped: a missing prerequisite raises (HarnessError), so ctest fails.

Environment:
  MQK_BUILD_DIR   the CMake build directory (default: <repo>/build)
  MQK_SOURCE_DIR  the repository (default: two levels above this file)
  MQK_VALGRIND=1  run mosquitto under valgrind (slower; any valgrind error fails the test)
  MQK_ASAN=1      the plugin is an MQK_SANITIZE=ON build (ASan+UBSan): mosquitto runs with
                  the sanitizer runtime preloaded, and any sanitizer report in its log fails
                  the test (tests/sanitize/README.md)
  MQK_KAFKA       real (the default): the session's Kafka is a 1-node Apache Kafka KRaft
                  cluster (fetched from Maven Central once per machine, see tests/kafka);
                  mock: mqk-devkafka. The failover, kafka_outage and stop_under_load tests
                  start real clusters of their own whatever this says.
"""

import atexit
import base64
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import sys
import time
import uuid

SOURCE_DIR = os.environ.get(
    "MQK_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
)
BUILD_DIR = os.environ.get("MQK_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
PLUGIN = os.path.join(BUILD_DIR, "plugin", "mosquitto_kafka.so")
DEVKAFKA = os.path.join(BUILD_DIR, "tools", "mqk-devkafka")
MOSQUITTO = "/usr/sbin/mosquitto"
HAPROXY = "/usr/sbin/haproxy"
PUBLIC_HEADER = os.path.join(SOURCE_DIR, "include", "mosquitto_kafka.h")
VALGRIND = os.environ.get("MQK_VALGRIND", "") not in ("", "0")
ASAN = os.environ.get("MQK_ASAN", "") not in ("", "0")
# Under valgrind everything mosquitto does is ~20x slower; under ASan about 2x.
SLOW = 10.0 if VALGRIND else 2.0 if ASAN else 1.0
KAFKA_MODE = os.environ.get("MQK_KAFKA", "") or "real"


def mosquitto_version():
    """The version of /usr/sbin/mosquitto as a tuple, e.g. (2, 0, 11); (0,) when unknown.
    2.0.11 (Debian 12) and 2.0.21 (Debian 13) differ in what plugins get: see
    docs/mosquitto-2.0.21.md."""
    try:
        out = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return (0,)
    m = re.search(r"mosquitto version (\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else (0,)


MOSQUITTO_VERSION = mosquitto_version()
KAFKA_PY = os.path.join(SOURCE_DIR, "tests", "kafka", "kafka.py")
# What mqk-devkafka gives a topic it auto-creates (DEFAULT_AUTO_PARTITIONS): the tests
# create theirs with this many partitions on real Kafka too, so both see the same layout.
MOCK_PARTITIONS = 4


class HarnessError(AssertionError):
    """A prerequisite is missing or a process did not behave: the test fails, never skips."""


def require_file(path, what, executable=False):
    if not os.path.isfile(path):
        raise HarnessError(f"{what} not found at {path}: build first "
                           f"(cmake -S . -B build && cmake --build build)")
    if executable and not os.access(path, os.X_OK):
        raise HarnessError(f"{what} at {path} is not executable")


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """Polls predicate until it returns a true value (returned) or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


def free_port():
    """A TCP port of 127.0.0.1 that was free a moment ago, outside the kernel's ephemeral
    range so that it is still free when a test starts a listener there again (kafka.py's
    free_ports says why)."""
    return kafka_module().free_ports(1)[0]


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def unique(prefix):
    """A name unique to this run: Kafka topics, client ids, group ids."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_tempdir(prefix):
    """A new directory under the system's temp directory, removed with everything in it when
    this process ends (MQK_KEEP_TMP=1 keeps them, to look at after a failure). World-readable
    and traversable: mosquitto drops to user mosquitto when started as root."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    if os.environ.get("MQK_KEEP_TMP", "") in ("", "0"):
        atexit.register(shutil.rmtree, d, True)
    return d


def make_journal_dir(parent):
    """A directory for the plugin's journal under parent, writable by user mosquitto (the
    broker drops to it when started as root, before the plugin starts)."""
    d = os.path.join(parent, "journal")
    os.makedirs(d, exist_ok=True)
    if os.geteuid() == 0:
        import pwd
        try:
            pw = pwd.getpwnam("mosquitto")
            os.chown(d, pw.pw_uid, pw.pw_gid)
        except KeyError:
            pass
    return d


def with_journal_dir(options, parent):
    """options, plus a journal_dir of the test's own under parent when the plugin runs with
    its default durability (journal) and the test named none: never the system's default
    directory, never another test's journal."""
    keys = {k for k, _ in options}
    if "journal_dir" in keys or ("durability", "memory") in options:
        return list(options)
    return list(options) + [("journal_dir", make_journal_dir(parent))]


_plugin_copy = None


def passwd_file(users):
    """A mosquitto password file with {user: password}, readable by user mosquitto."""
    d = make_tempdir("mqk-passwd-")
    path = os.path.join(d, "passwd")
    for i, (user, password) in enumerate(users.items()):
        argv = ["mosquitto_passwd", "-b"] + (["-c"] if i == 0 else []) + [path, user, password]
        subprocess.run(argv, check=True, capture_output=True, timeout=30)
    os.chmod(path, 0o644)
    return path


def built_plugin():
    """
    The built plugin, as mosquitto can load it. Started as root, mosquitto drops to user
    mosquitto before it loads plugins, and the build directory may sit below a directory
    only root can enter (a fresh clone under mktemp -d, say): so the tests load a copy in
    a world-readable directory of their own, made once per process and removed at exit.
    """
    global _plugin_copy
    if _plugin_copy is None:
        require_file(PLUGIN, "the plugin")
        d = make_tempdir("mqk-plugin-")
        atexit.register(shutil.rmtree, d, True)
        _plugin_copy = os.path.join(d, os.path.basename(PLUGIN))
        shutil.copy2(PLUGIN, _plugin_copy)
        os.chmod(_plugin_copy, 0o755)
    return _plugin_copy


# ---- the public header -------------------------------------------------------------

def read_header_macros(path=PUBLIC_HEADER):
    """Every `#define MQK_X "text"` of include/mosquitto_kafka.h, as {"MQK_X": "text"}."""
    require_file(path, "the public header")
    macros = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r'\s*#\s*define\s+(MQK_[A-Z0-9_]+)\s+"((?:[^"\\]|\\.)*)"', line)
            if m:
                macros[m.group(1)] = m.group(2)
    return macros


class _Names:
    def __init__(self, macros, prefix):
        self._m = {k[len(prefix):]: v for k, v in macros.items() if k.startswith(prefix)}
        if not self._m:
            raise HarnessError(f"no {prefix}* macro in {PUBLIC_HEADER}")

    def __getattr__(self, name):
        try:
            return self._m[name]
        except KeyError:
            raise HarnessError(f"{PUBLIC_HEADER} defines no such name: {name}") from None


_MACROS = read_header_macros()
HDR = _Names(_MACROS, "MQK_HDR_")   # HDR.TOPIC == "mqtt.topic", HDR.USER_PREFIX, ...
ENV = _Names(_MACROS, "MQK_ENV_")   # ENV.PAYLOAD == "payload", ...
SYS_PREFIX = _MACROS["MQK_SYS_PREFIX"]


# ---- processes ---------------------------------------------------------------------

# Every Process started: the log dump of a failed test shows those that were running
# during it.
ALL = []


class Process:
    """A child process with its output in a file; stop() is SIGTERM, bounded wait, SIGKILL."""

    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env, close_fds=True)
        self.pid = self.proc.pid
        self.returncode = None
        self.stopped_at = None
        # Under valgrind, mosquitto (which blocks SIGTERM outside epoll_wait, as all
        # librdkafka threads do) now and then loses a SIGTERM: valgrind's signal
        # machinery, not mosquitto's (200 of 200 without valgrind exit at once). Resend.
        self.resend_term = False
        ALL.append(self)

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, pattern, timeout, flags=re.M):
        """Waits until the output matches the regex; returns the match."""
        rx = re.compile(pattern, flags)

        def found():
            m = rx.search(self.log())
            if m is None and not self.alive():
                # One last look: the process may have written it just before exiting.
                m = rx.search(self.log())
                if m is None:
                    raise HarnessError(f"{self.name} exited ({self.proc.returncode}) without "
                                       f"logging /{pattern}/; its log:\n{self.log()}")
            return m
        return wait_for(found, timeout, what=f"{self.name} to log /{pattern}/")

    def wait_exit(self, timeout):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"{self.name} (pid {self.pid}) still running after "
                               f"{timeout:.1f} s") from None
        return self.returncode

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout=10.0):
        """SIGTERM, wait up to timeout, then SIGKILL. Returns the exit code (or -9)."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    self.proc.wait(timeout=min(5.0, max(0.0, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        os.kill(self.pid, signal.SIGKILL)
                        self.proc.wait(timeout=10)
                        break
                    if self.resend_term:
                        os.kill(self.pid, signal.SIGTERM)
        self.returncode = self.proc.returncode
        self._log.close()
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
        return self.returncode


class Tool:
    """One of the example tools run in the background: stdout (its JSON summary) and stderr
    in files of their own. Listed in ALL, so that a failed test shows its stderr."""

    def __init__(self, name, argv):
        require_file(argv[0], name, executable=True)
        self.name = name
        self.argv = [str(a) for a in argv]
        self.dir = make_tempdir(f"mqk-{name}-")
        self.out_path = os.path.join(self.dir, "stdout")
        self.log_path = os.path.join(self.dir, "stderr")
        with open(self.out_path, "wb") as out, open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, close_fds=True)
        self.pid = self.proc.pid
        self.stopped_at = None
        ALL.append(self)

    @property
    def returncode(self):
        return self.proc.returncode

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout):
        """Waits (bounded) for the exit; returns (exit status, the JSON on stdout or None)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise HarnessError(f"{self.name} (pid {self.pid}) still running after "
                               f"{timeout} s; stderr:\n{self.log()}") from None
        self.stopped_at = time.monotonic()
        assert rc >= 0, f"{self.name} died of signal {-rc}; stderr:\n{self.log()}"
        with open(self.out_path) as f:
            text = f.read()
        try:
            return rc, json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            raise AssertionError(f"{self.name} printed no JSON: {text!r}\n{self.log()}")

    def stop(self):
        """SIGTERM, a bounded wait, then SIGKILL."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
        return self.proc.returncode


class DevKafka:
    """build/tools/mqk-devkafka: a librdkafka mock cluster as a process."""

    def __init__(self, brokers=3, topics=(), timeout=15.0):
        require_file(DEVKAFKA, "mqk-devkafka", executable=True)
        self.dir = make_tempdir("mqk-devkafka-")
        bootstrap_file = os.path.join(self.dir, "bootstrap")
        argv = [DEVKAFKA, "--brokers", str(brokers), "--bootstrap-file", bootstrap_file]
        for t in topics:
            argv += ["--topic", t]
        self.process = Process("mqk-devkafka", argv, os.path.join(self.dir, "devkafka.log"))

        def ready():
            if not self.process.alive():
                raise HarnessError(f"mqk-devkafka exited ({self.process.proc.returncode}); "
                                   f"its output:\n{self.process.log()}")
            try:
                with open(bootstrap_file) as f:
                    text = f.read().strip()
            except OSError:
                return None
            return text if text and ":" in text else None
        try:
            self.bootstrap = wait_for(ready, timeout, what="mqk-devkafka's bootstrap file")
        except BaseException:
            self.process.stop()
            raise
        # It must accept connections on every listed broker.
        for hp in self.bootstrap.split(","):
            host, port = hp.rsplit(":", 1)
            if host not in ("127.0.0.1", "localhost"):
                self.stop()
                raise HarnessError(f"mqk-devkafka listens on {hp}, not 127.0.0.1")
            wait_for(lambda: port_accepts(int(port)), timeout, what=f"Kafka mock broker {hp}")

    kind = "mock"

    def create_topics(self, names, partitions=MOCK_PARTITIONS, replication_factor=None,
                      config=None, timeout=15.0):
        """Makes the mock create each topic (asking for its metadata auto-creates it, with
        MOCK_PARTITIONS partitions; the mock has no CreateTopics). replication_factor and
        config mean nothing to the mock and are ignored."""
        for name in names:
            got = topic_partitions(self.bootstrap, name, timeout)
            if got != partitions:
                raise HarnessError(f"mqk-devkafka made topic {name} with {got} partitions, "
                                   f"the test wants {partitions}: the mock auto-creates "
                                   f"{MOCK_PARTITIONS} (other counts: --topic at its start)")

    def create_topic(self, name, partitions=MOCK_PARTITIONS, **kw):
        self.create_topics([name], partitions, **kw)

    def _signal_and_wait(self, sig, line, timeout=10.0):
        before = self.process.log().count(line)
        self.process.signal(sig)
        wait_for(lambda: self.process.log().count(line) > before, timeout,
                 what=f"mqk-devkafka to log {line!r}")

    def down(self):
        """An outage: SIGUSR1 closes and refuses every mock broker's connections."""
        self._signal_and_wait(signal.SIGUSR1, "every broker is down")
        self.is_down = True

    def up(self):
        """SIGUSR2: the brokers are back on the same ports, with their data. No-op when up."""
        if getattr(self, "is_down", False):
            self._signal_and_wait(signal.SIGUSR2, "every broker is up")
            self.is_down = False

    def logs(self):
        return [(f"mqk-devkafka (pid {self.process.pid}) log", self.process.log())]

    def stop(self):
        rc = self.process.stop()
        return rc

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


_kafka_module = None


def kafka_module():
    """tests/kafka/kafka.py, imported by path (a `kafka` package elsewhere must not win)."""
    global _kafka_module
    if _kafka_module is None:
        require_file(KAFKA_PY, "tests/kafka/kafka.py")
        spec = importlib.util.spec_from_file_location("mqk_kafka_cluster", KAFKA_PY)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        _kafka_module = mod
    return _kafka_module


class RealKafka:
    """
    A real Apache Kafka: an N-node KRaft cluster (tests/kafka/kafka.py's KafkaCluster) in
    a temporary directory, on 127.0.0.1 ports of its own. Topic auto-creation is off: a
    test creates every topic it produces to (create_topics, through confluent_kafka's
    AdminClient: one request for many topics, no JVM started). Three nodes: topics get
    replication factor 3 and min.insync.replicas 2. The JVMs die with the process that
    started them (setpriv --pdeathsig), so start it from the main thread.
    """

    kind = "real"

    def __init__(self, nodes=1, extra_config=None, timeout=120.0, version=None, **cluster):
        """cluster: more KafkaCluster arguments (listeners, tls, sasl_users, ...): a
        cluster with TLS and SASL listeners besides the PLAINTEXT one the tests use."""
        km = kafka_module()
        try:
            km.fetch(version)
        except km.KafkaError as e:
            raise HarnessError(f"cannot fetch Apache Kafka (python3 {KAFKA_PY} fetch): {e}")
        self.cluster = km.KafkaCluster(nodes=nodes, extra_config=extra_config,
                                       die_with_parent=True, version=version, **cluster)
        self.nodes = nodes
        started = time.monotonic()
        try:
            self.cluster.start(timeout)
        except BaseException:
            self.cluster.stop()
            raise
        self.bootstrap = self.cluster.bootstrap
        self._down = []
        KAFKAS.append(self)
        try:
            self._warm_up(timeout)
        except BaseException:
            self.cluster.stop()
            raise
        self.start_seconds = time.monotonic() - started

    def _warm_up(self, timeout):
        """
        One idempotent produce before any test: a fresh cluster creates its transaction
        state topic on the first InitProducerId, which on a busy 2-core machine took more
        than 10 s once, and a test's first producer must not pay for that.
        """
        topic = "mqk-warm-up"
        self.create_topics([topic], partitions=1)
        p = ck.Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                         "log_level": 3})
        done = []
        p.produce(topic, b"warm-up", on_delivery=lambda err, msg: done.append(err))
        left = p.flush(timeout)
        if left or not done or done[0] is not None:
            raise HarnessError(f"Kafka not ready for idempotent producers within {timeout} s: "
                               f"{done[0] if done else 'no delivery report'}")

    def create_topics(self, names, partitions=MOCK_PARTITIONS, replication_factor=None,
                      config=None, replica_assignment=None, timeout=60.0):
        """Creates the topics (default: MOCK_PARTITIONS partitions, replication factor 1 on
        one node, 3 with min.insync.replicas=2 on three) and waits until every alive node
        knows a leader for each partition. replica_assignment ([[broker ids], ...] per
        partition, the first the preferred leader) replaces partitions and the factor."""
        from confluent_kafka.admin import AdminClient, NewTopic
        rf = replication_factor or (3 if self.nodes >= 3 else 1)
        if config is None:
            config = {"min.insync.replicas": "2"} if self.nodes >= 3 else {}
        config = {k: str(v) for k, v in config.items()}
        if replica_assignment is not None:
            partitions = len(replica_assignment)
            new = [NewTopic(n, partitions, replica_assignment=replica_assignment,
                            config=config) for n in names]
        else:
            new = [NewTopic(n, num_partitions=partitions, replication_factor=rf, config=config)
                   for n in names]
        admin_create_topics(self.cluster.alive_bootstrap(), new, timeout)
        for name in names:
            self.cluster.wait_topic(name, partitions, timeout)

    def create_topic(self, name, partitions=MOCK_PARTITIONS, **kw):
        self.create_topics([name], partitions, **kw)

    def down(self, node_ids=None):
        """Stops the nodes given (default: all) with SIGTERM, a controlled shutdown (SIGKILL
        after a bounded wait); their ports and data stay for up()."""
        ids = node_ids or [n.id for n in self.cluster.nodes if n.alive()]
        for i in ids:
            self.cluster.stop_node(i)
            self._down.append(i)

    def kill(self, node_id):
        """kill -9 of one node (a crash); up() starts it again."""
        self.cluster.kill(node_id)
        self._down.append(node_id)

    def up(self, timeout=120.0):
        """Starts every stopped node again (same ids, ports and data) and waits until all
        serve metadata listing every broker. No-op when none is down."""
        if not self._down:
            return 0.0
        started = time.monotonic()
        for i in self._down:
            node = self.cluster.node(i)
            for port in node.ports:
                if port_accepts(port):
                    raise HarnessError(f"port {port} of Kafka node {i} was taken meanwhile")
            # All at once: a KRaft quorum needs a majority of its voters up to serve.
            self.cluster._launch(node)
        self._down = []
        self.cluster.wait_ready(timeout)
        return time.monotonic() - started

    def logs(self, lines=60):
        out = []
        if not os.path.isdir(self.cluster.workdir):
            return out
        for n in self.cluster.nodes:
            out.append((f"Kafka {self.cluster.version} node {n.id} (pid {n.pid}) log: {n.log}",
                        kafka_module()._tail(n.log, lines)))
        return out

    def cleanup(self):
        self.cluster.stop()


# Every Kafka started: the log dump of a failed test shows theirs too.
KAFKAS = []


def admin_create_topics(bootstrap, new_topics, timeout):
    """CreateTopics through confluent_kafka's AdminClient: one request for all of them."""
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    futures = admin.create_topics(new_topics, operation_timeout=timeout / 2,
                                  request_timeout=timeout)
    errors = []
    for name, f in futures.items():
        try:
            f.result(timeout)
        except Exception as e:  # KafkaException with the broker's error
            errors.append(f"{name}: {e}")
    if errors:
        raise HarnessError("creating Kafka topics failed: " + "; ".join(errors))


class ExternalKafka:
    """
    MQK_KAFKA=external: a Kafka cluster of your own, at MQK_KAFKA_BOOTSTRAP (PLAINTEXT,
    reachable from this machine), for the tests that do not stop Kafka. Each test creates
    its topics (unique names, left behind) with MQK_KAFKA_REPLICATION (default 1) replicas.
    A test that takes Kafka down fails with a clear message: it needs a cluster it owns.
    """

    kind = "external"

    def __init__(self):
        self.bootstrap = os.environ.get("MQK_KAFKA_BOOTSTRAP", "")
        if not self.bootstrap:
            raise HarnessError("MQK_KAFKA=external needs MQK_KAFKA_BOOTSTRAP=host:port[,...]")
        self.replication = int(os.environ.get("MQK_KAFKA_REPLICATION", "1"))
        self.nodes = self.replication

    def create_topics(self, names, partitions=MOCK_PARTITIONS, replication_factor=None,
                      config=None, timeout=60.0):
        from confluent_kafka.admin import NewTopic
        rf = replication_factor or self.replication
        config = {k: str(v) for k, v in (config or {}).items()}
        admin_create_topics(self.bootstrap, [NewTopic(n, num_partitions=partitions,
                                                      replication_factor=rf, config=config)
                                             for n in names], timeout)
        for name in names:
            got = topic_partitions(self.bootstrap, name, timeout)
            if got != partitions:
                raise HarnessError(f"topic {name}: {got} partitions, {partitions} wanted")

    def create_topic(self, name, partitions=MOCK_PARTITIONS, **kw):
        self.create_topics([name], partitions, **kw)

    def down(self, *args, **kw):
        raise HarnessError("MQK_KAFKA=external: this test stops Kafka, which it does only to a "
                           "cluster of its own: run it with MQK_KAFKA=real")

    def up(self, *args, **kw):
        return 0.0

    def logs(self):
        return []

    def cleanup(self):
        pass


def start_kafka(mode=None):
    """The session's Kafka, by MQK_KAFKA: a 1-node RealKafka (real, the default), a
    3-broker DevKafka (mock) or a cluster of your own (external, ExternalKafka). Anything
    else is an error."""
    mode = mode or KAFKA_MODE
    if mode == "real":
        k = RealKafka(nodes=1)
    elif mode == "mock":
        k = DevKafka(brokers=3)
    elif mode == "external":
        k = ExternalKafka()
    else:
        raise HarnessError(f"MQK_KAFKA={mode!r}: expected 'real', 'mock' or 'external'")
    return k


class Mosquitto:
    """
    /usr/sbin/mosquitto on 127.0.0.1:<free port> with the plugin and the given options.

    options: list of (key, value) for plugin_opt_<key> <value>, in order (duplicates kept).
    extra: more mosquitto.conf lines. plugin: "built" (a loadable copy of the built plugin),
    a path, or None for no plugin line at all. log_debug=False: no debug lines (the
    benchmarks: "log_type all" writes a line per PUBLISH, a good part of the broker's work).
    preload: a library to LD_PRELOAD into mosquitto (bench/overhead.py's idle thread).
    websockets=True: a second listener, `protocol websockets` (MQTT over WebSockets, any
    path), on 127.0.0.1:<ws_port>, next to the plain one on <port>; ready means both accept.
    Only a mosquitto built with libwebsockets has it (Debian 13's; Debian 12's refuses to
    start: websockets_supported() below, docs/platforms.md).
    port, ws_port: fixed ports instead of free ones (a broker started again where HAProxy
    expects it, after a kill -9; no retry on another port then).
    """

    def __init__(self, options, extra=(), plugin="built", wait=True, name="mosquitto",
                 start_timeout=10.0, listen=True, log_debug=True, preload=None,
                 websockets=False, port=None, ws_port=None):
        if plugin == "built":
            plugin = built_plugin()
        if plugin is not None:
            require_file(plugin, "the plugin")
        if not os.path.isfile(MOSQUITTO):
            raise HarnessError(f"{MOSQUITTO} not found: scripts/install-deps.sh installs it")
        self.name = name
        self.dir = make_tempdir("mqk-mosquitto-")
        self.conf_path = os.path.join(self.dir, "mosquitto.conf")
        self.log_path = os.path.join(self.dir, "mosquitto.log")
        self.valgrind_log = os.path.join(self.dir, "valgrind.log")
        self.process = None
        self.websockets = websockets
        self.listen = listen
        self.ws_port = None
        last_error = None
        for _attempt in range(3):
            self.port = port or free_port()
            lines = []
            if listen:
                lines += [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
            if websockets:
                self.ws_port = ws_port or free_port()
                lines += [f"listener {self.ws_port} 127.0.0.1", "protocol websockets"]
            lines += [
                "log_dest stderr",
                *(["log_type all"] if log_debug else
                  [f"log_type {t}" for t in ("error", "warning", "notice", "information")]),
                "log_timestamp true",
                "persistence false",
                "max_queued_messages 0",
            ]
            lines += list(extra)
            if plugin is not None:
                lines.append(f"plugin {plugin}")
                for key, value in with_journal_dir(options, self.dir):
                    lines.append(f"plugin_opt_{key} {value}")
            with open(self.conf_path, "w") as f:
                f.write("\n".join(lines) + "\n")
            os.chmod(self.conf_path, 0o644)
            argv = [MOSQUITTO, "-c", self.conf_path]
            if VALGRIND:
                # --vgdb=no: no gdbserver FIFOs left in /tmp (vgdb-pipe-*).
                argv = ["valgrind", "--vgdb=no", "--error-exitcode=99", "--leak-check=full",
                        "--errors-for-leak-kinds=definite", "--track-fds=no",
                        "--keep-debuginfo=yes", "--num-callers=30",
                        "--suppressions=" + os.path.join(os.path.dirname(__file__),
                                                         "valgrind.supp"),
                        f"--log-file={self.valgrind_log}"] + argv
            env = sanitizer_env() if ASAN else None
            if preload:
                require_file(preload, "the library to preload")
                env = dict(env or os.environ)
                env["LD_PRELOAD"] = ":".join(x for x in (env.get("LD_PRELOAD"), preload) if x)
            self.process = Process(name, argv, self.log_path, env=env)
            self.process.resend_term = VALGRIND
            if not wait:
                return
            try:
                self.wait_ready(start_timeout * SLOW)
                return
            except HarnessError as e:
                last_error = e
                self.process.stop()
                if "Address already in use" not in self.log() or port or ws_port:
                    raise
        raise last_error

    @property
    def pid(self):
        return self.process.pid

    def log(self):
        return self.process.log() if self.process else ""

    def wait_ready(self, timeout):
        def ready():
            if not self.process.alive():
                raise HarnessError(f"{self.name} exited ({self.process.proc.returncode}) while "
                                   f"starting; its log:\n{self.log()}")
            return ((not self.listen or port_accepts(self.port)) and
                    (self.ws_port is None or port_accepts(self.ws_port)))
        ports = " and ".join(([str(self.port)] if self.listen else []) +
                             ([f"{self.ws_port} (websockets)"] if self.ws_port else []))
        wait_for(ready, timeout, what=f"{self.name} to accept on 127.0.0.1:{ports}")

    def wait_log(self, pattern, timeout=10.0):
        return self.process.wait_log(pattern, timeout * SLOW)

    def stop(self, timeout=30.0):
        """SIGTERM and a bounded wait; returns the exit code."""
        return self.process.stop(timeout * SLOW)

    def valgrind_report(self):
        try:
            with open(self.valgrind_log) as f:
                return f.read()
        except OSError:
            return ""

    def sanitizer_report(self):
        """With MQK_ASAN=1: every ASan, LeakSanitizer and UBSan report in mosquitto's log
        (from its first line to the end of the log), or "" when there is none."""
        if not ASAN:
            return ""
        return sanitizer_report(self.log())

    def cleanup(self):
        if self.process:
            self.process.stop(10.0 * SLOW)
            # The log goes with the directory: keep any report for the session's end
            # (conftest.py fails the session on one nobody checked before).
            report = self.sanitizer_report()
            if report and not getattr(self, "sanitizer_checked", False):
                SANITIZER_REPORTS.append((f"{self.name} (pid {self.pid})", report))
        shutil.rmtree(self.dir, ignore_errors=True)


_WS_PROBE = []


def websockets_probe(timeout=10.0):
    """
    Can this machine's /usr/sbin/mosquitto take MQTT over WebSockets? Starts it once (no
    plugin) with only a `protocol websockets` listener and sees what happens: it accepts on
    that port (built with libwebsockets: Debian 13), or it exits (Debian 12's 2.0.11 logs
    "Opening websockets listen socket on port N." then "Error: Unable to start any listening
    sockets, exiting."). Returns (supported, mosquitto's log); the first answer is kept for
    the rest of the run.
    """
    if _WS_PROBE:
        return _WS_PROBE[0]
    b = Mosquitto([], plugin=None, listen=False, websockets=True, wait=False,
                  name="mosquitto-ws-probe")
    try:
        state = wait_for(lambda: ("exited" if not b.process.alive() else
                                  "accepts" if port_accepts(b.ws_port) else None),
                         timeout * SLOW, what="mosquitto to accept on a websockets listener "
                                              "or to exit")
        if state == "accepts":
            b.stop()
        answer = (state == "accepts", b.log())
    finally:
        b.cleanup()
    _WS_PROBE.append(answer)
    return answer


def websockets_supported():
    """websockets_probe()'s answer alone: True where Mosquitto(websockets=True) works."""
    return websockets_probe()[0]


# ---- MQK_ASAN=1: mosquitto with the sanitizer runtime preloaded --------------------------

SANITIZE_DIR = os.path.join(SOURCE_DIR, "tests", "sanitize")
# Reports found only when a broker was removed (conftest.py fails the session on them).
SANITIZER_REPORTS = []
# The first line of each kind of report: ASan ("==12==ERROR: AddressSanitizer: ..."),
# LeakSanitizer ("==12==ERROR: LeakSanitizer: detected memory leaks"), UBSan
# ("file.c:84:5: runtime error: ...").
_SANITIZER_LINE = re.compile(r"^.*(?:==\d+==ERROR: \w+Sanitizer|: runtime error: |"
                             r"^SUMMARY: \w+Sanitizer).*$", re.M)


def sanitizer_report(text):
    m = _SANITIZER_LINE.search(text)
    if m is None:
        return ""
    report = text[m.start():]
    return "" if _only_mosquittos_own_leaks(report) else report


# A stack frame of mosquitto's own binary, of libc's start-up, or of the sanitizer runtime.
_NOT_PLUGIN_FRAME = re.compile(r"\(/usr/sbin/mosquitto\+0x|libc_start|/libc\.so|libsanitizer/")


def _only_mosquittos_own_leaks(report):
    """
    Is this a LeakSanitizer report whose every leak was allocated by mosquitto itself
    (every frame in /usr/sbin/mosquitto, libc's start-up or the sanitizer)? mosquitto does
    not free the per-listener configuration it reads (per_listener_settings true). On
    2.0.11 lsan.supp's config__read names it; 2.0.21's binary has no symbols for its own
    functions, so its frames are only "/usr/sbin/mosquitto+0x...". A leak of the plugin's
    always has a frame in the plugin or in a library it called (librdkafka, libcjson, ...).
    """
    if "ERROR: LeakSanitizer" not in report or re.search(r"ERROR: AddressSanitizer|"
                                                          r": runtime error: ", report):
        return False
    blocks = re.split(r"^(?=(?:Direct|Indirect) leak of )", report, flags=re.M)[1:]
    for block in blocks:
        frames = re.findall(r"^\s+#\d+ 0x[0-9a-f]+ .*$", block, re.M)
        if not frames or any(not _NOT_PLUGIN_FRAME.search(f) for f in frames):
            return False
    return bool(blocks)


def _plugin_runtime(name):
    """The path of the sanitizer runtime (libasan.so.N) the built plugin was linked with."""
    out = subprocess.run(["ldd", PLUGIN], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"^\s*" + re.escape(name) + r"\.so\.\d+ => (\S+)", out, re.M)
    if m is None:
        raise HarnessError(f"MQK_ASAN=1, but {PLUGIN} is not linked with {name}: build it "
                           f"with cmake -DMQK_SANITIZE=ON (and MQK_BUILD_DIR pointing there)")
    return m.group(1)


def sanitizer_env():
    """
    The environment mosquitto runs in with MQK_ASAN=1. /usr/sbin/mosquitto is not built
    with ASan, and the ASan runtime must be loaded before anything allocates: LD_PRELOAD
    puts it there, so mosquitto's own allocations are tracked too and the plugin's checks
    work. libubsan comes with the plugin (DT_NEEDED). Before it, nodlclose.so (built by
    MQK_SANITIZE=ON; tests/sanitize/nodlclose.c) keeps the plugin and its libraries
    loaded until LeakSanitizer has looked at exit; it defines dlclose only, so ASan not
    being the very first library costs nothing but its own dlclose interceptor
    (verify_asan_link_order=0). A first error aborts the broker: the test fails on its
    exit code and on the report in its log (conftest.py).
    """
    require_file(PLUGIN, "the plugin")
    nodlclose = os.path.join(BUILD_DIR, "sanitize", "nodlclose.so")
    require_file(nodlclose, "tests/sanitize/nodlclose.c's library (MQK_SANITIZE=ON)")
    env = dict(os.environ)
    env["LD_PRELOAD"] = nodlclose + ":" + _plugin_runtime("libasan")
    env["ASAN_OPTIONS"] = ":".join([
        "detect_leaks=1",
        "verify_asan_link_order=0",
        # mosquitto, librdkafka and libc are built without frame pointers: the slow
        # (DWARF) unwinder gives whole stacks, which the suppressions match on.
        "fast_unwind_on_malloc=0",
        "malloc_context_size=30",
        "print_suppressions=0",
    ])
    # LeakSanitizer reads its suppressions at exit, as user mosquitto: from a copy beside
    # the plugin's, since the source tree may sit below a directory only root can enter.
    supp = os.path.join(os.path.dirname(built_plugin()), "lsan.supp")
    if not os.path.exists(supp):
        shutil.copy2(os.path.join(SANITIZE_DIR, "lsan.supp"), supp)
        os.chmod(supp, 0o644)
    # exitcode=0: a leak report alone does not change mosquitto's exit code; the report in
    # its log fails the test (conftest.py), unless every leak is mosquitto's own
    # (sanitizer_report).
    env["LSAN_OPTIONS"] = "suppressions=" + supp + ":exitcode=0"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    return env


# The opening handshake of MQTT over WebSockets (RFC 6455 with subprotocol "mqtt", as MQTT
# 5.0 section 6 asks), which HAProxy sends as its health check of a websockets listener:
# a mosquitto that answers "101 Switching Protocols" can take a WebSockets client.
WS_HANDSHAKE = ("GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n")


class HAProxy:
    """
    haproxy -db -f cfg: TCP mode, MQTT health checks, roundrobin over the given ports, on
    127.0.0.1:<port>. ws_ports (each broker's ws_port, Mosquitto(websockets=True)): a second
    frontend on 127.0.0.1:<ws_port>, TCP passthrough (the WebSockets handshake is mosquitto's
    business) roundrobin over those, each checked with a WebSockets opening handshake.
    """

    def __init__(self, backend_ports, timeout=10.0, maxconn=1000, ws_ports=()):
        if not os.path.isfile(HAPROXY):
            raise HarnessError(f"{HAPROXY} not found: scripts/install-deps.sh installs it")
        self.dir = make_tempdir("mqk-haproxy-")
        self.port = free_port()
        self.ws_port = free_port() if ws_ports else None
        self.cfg_path = os.path.join(self.dir, "haproxy.cfg")
        # Health check: an MQTT 3.1.1 CONNECT (client id "hc", clean session), expecting
        # CONNACK "accepted" (20 02 00 00).
        connect = "100e00044d5154540402003c00026863"
        servers = "\n".join(
            f"    server mqtt{i} 127.0.0.1:{p} check inter 500ms fall 2 rise 1"
            for i, p in enumerate(backend_ports))
        cfg = f"""global
    maxconn {maxconn}

defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 2s

frontend mqtt_in
    bind 127.0.0.1:{self.port}
    default_backend mosquittos

backend mosquittos
    balance roundrobin
    option tcp-check
    tcp-check connect
    tcp-check send-binary {connect}
    tcp-check expect binary 20020000
{servers}
"""
        if ws_ports:
            ws_servers = "\n".join(
                f"    server ws{i} 127.0.0.1:{p} check inter 500ms fall 2 rise 1"
                for i, p in enumerate(ws_ports))
            cfg += f"""
frontend mqtt_ws_in
    bind 127.0.0.1:{self.ws_port}
    default_backend mosquittos_ws

backend mosquittos_ws
    balance roundrobin
    option tcp-check
    tcp-check connect
    tcp-check send-binary {WS_HANDSHAKE.encode().hex()}
    tcp-check expect string "HTTP/1.1 101"
{ws_servers}
"""
        with open(self.cfg_path, "w") as f:
            f.write(cfg)
        check = subprocess.run([HAPROXY, "-c", "-f", self.cfg_path], capture_output=True,
                               timeout=30)
        if check.returncode != 0:
            raise HarnessError(f"haproxy -c refused {self.cfg_path}:\n"
                               f"{check.stdout.decode()}{check.stderr.decode()}\n{cfg}")
        self.process = Process("haproxy", [HAPROXY, "-db", "-f", self.cfg_path],
                               os.path.join(self.dir, "haproxy.log"))
        try:
            def ready():
                if not self.process.alive():
                    raise HarnessError(f"haproxy exited; its log:\n{self.process.log()}")
                return port_accepts(self.port) and (self.ws_port is None or
                                                    port_accepts(self.ws_port))
            wait_for(ready, timeout, what=f"haproxy to accept on 127.0.0.1:{self.port}")
        except BaseException:
            self.process.stop()
            raise

    def log(self):
        return self.process.log()

    def cleanup(self):
        self.process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- MQTT clients (paho-mqtt 1.6) -----------------------------------------------------

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5


class Client:
    """A connected paho client running its own network thread.

    max_inflight stays at 20, mosquitto's receive maximum: a v3.1.1 client with more QoS 2
    messages in flight gets PUBREC 0x97 and is disconnected.

    websockets=True: MQTT over WebSockets (paho's transport "websockets", path /mqtt, the
    path MQTT.js and browsers use) to a broker's or HAProxy's ws_port."""

    def __init__(self, port, client_id=None, protocol=V311, username=None, password=None,
                 host="127.0.0.1", timeout=10.0, on_message=None, max_inflight=20, clean=True,
                 websockets=False):
        self.client_id = client_id or unique("c")
        self.protocol = protocol
        self.username = username
        self.websockets = websockets
        kwargs = {"client_id": self.client_id, "protocol": protocol}
        if protocol != V5:
            kwargs["clean_session"] = clean
        if websockets:
            kwargs["transport"] = "websockets"
        self.c = mqtt.Client(**kwargs)
        if websockets:
            self.c.ws_set_options(path="/mqtt")
        self.c.max_inflight_messages_set(max_inflight)
        self.c.max_queued_messages_set(0)
        if username is not None:
            self.c.username_pw_set(username, password)
        self._connected = threading.Event()
        self._rc = None
        self.c.on_connect = self._on_connect
        if on_message:
            self.c.on_message = on_message
        if protocol == V5 and not clean:
            from paho.mqtt.properties import Properties
            from paho.mqtt.packettypes import PacketTypes
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 600
            self.c.connect(host, port, keepalive=60, clean_start=False, properties=props)
        else:
            self.c.connect(host, port, keepalive=60)
        self.c.loop_start()
        if not self._connected.wait(timeout * SLOW):
            self.c.loop_stop()
            raise HarnessError(f"MQTT client {self.client_id} not connected to "
                               f"{host}:{port} within {timeout} s")
        if self._rc != 0:
            self.c.loop_stop()
            raise HarnessError(f"MQTT client {self.client_id} refused: rc={self._rc}")

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        self._rc = rc if isinstance(rc, int) else rc.value
        self._connected.set()

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        """Queues a PUBLISH; returns paho's MQTTMessageInfo."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise HarnessError(f"{self.client_id}: publish to {topic!r} failed: rc={info.rc}")
        return info

    def publish_wait(self, topic, payload, qos=1, retain=False, properties=None, timeout=10.0):
        info = self.publish(topic, payload, qos, retain, properties)
        wait_published([info], timeout)
        return info

    def subscribe(self, topic, qos=0, timeout=10.0):
        done = threading.Event()
        self.c.on_subscribe = lambda *a, **k: done.set()
        self.c.subscribe(topic, qos)
        if not done.wait(timeout * SLOW):
            raise HarnessError(f"{self.client_id}: no SUBACK for {topic!r} in {timeout} s")

    def close(self):
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()


def wait_published(infos, timeout):
    """Waits until every MQTTMessageInfo is published (QoS0 written, QoS1 acked, QoS2 done)."""
    deadline = time.monotonic() + timeout * SLOW
    for info in infos:
        while not info.is_published():
            if time.monotonic() > deadline:
                pending = sum(1 for i in infos if not i.is_published())
                raise HarnessError(f"{pending} of {len(infos)} PUBLISHes not completed "
                                   f"within {timeout} s")
            time.sleep(0.005)


def v5_properties(user=(), content_type=None, response_topic=None, correlation_data=None,
                  payload_format=None):
    props = Properties(PacketTypes.PUBLISH)
    if user:
        props.UserProperty = list(user)
    if content_type is not None:
        props.ContentType = content_type
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if correlation_data is not None:
        props.CorrelationData = correlation_data
    if payload_format is not None:
        props.PayloadFormatIndicator = payload_format
    return props


# ---- Kafka reader (confluent_kafka 1.7) ------------------------------------------------

import confluent_kafka as ck  # noqa: E402


class Record:
    __slots__ = ("topic", "partition", "offset", "key", "value", "headers", "timestamp",
                 "timestamp_type")

    def __init__(self, m):
        self.topic = m.topic()
        self.partition = m.partition()
        self.offset = m.offset()
        self.key = m.key()
        self.value = m.value()
        self.headers = list(m.headers() or [])
        self.timestamp_type, self.timestamp = m.timestamp()

    def header(self, name, default=None):
        """The value (bytes) of the only header called name; default when absent."""
        values = [v for n, v in self.headers if n == name]
        if len(values) > 1:
            raise AssertionError(f"header {name} appears {len(values)} times: {self.headers}")
        return values[0] if values else default

    def header_str(self, name, default=None):
        v = self.header(name)
        return default if v is None else v.decode("utf-8")

    def __repr__(self):
        return (f"Record({self.topic}[{self.partition}]@{self.offset} key={self.key!r} "
                f"value={self.value[:60]!r} headers={self.headers})")


def topic_partitions(bootstrap, topic, timeout=15.0):
    """The partition count of topic; asking creates it on the mock cluster, which
    auto-creates. A consumer's metadata request asks for that with allow.auto.create.topics
    (librdkafka 2.0.2's got the topic created without it, 2.8.0's, Debian 13's, does not).
    Real Kafka here has auto-creation off: there the flag changes nothing."""
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": unique("mqk-md"),
                     "log_level": 3, "allow.auto.create.topics": True})
    try:
        def count():
            try:
                md = c.list_topics(topic, timeout=2)
            except ck.KafkaException:  # a busy or restarting broker: ask again
                return None
            t = md.topics.get(topic)
            if t is None or t.error is not None or not t.partitions:
                return None
            return len(t.partitions)
        return wait_for(count, timeout, interval=0.2, what=f"metadata of Kafka topic {topic}")
    finally:
        c.close()


def read_topic(bootstrap, topic, expect, timeout=60.0, grace=1.0):
    """
    Reads Kafka topic from the beginning of every partition until `expect` records are in,
    or `timeout` seconds pass, then `grace` seconds more to catch extra records (duplicates,
    records that should not exist). Returns the records in arrival order; never raises on a
    count mismatch: the caller asserts and prints what it got.
    """
    return read_topics(bootstrap, [topic], expect, timeout, grace)


def read_topics(bootstrap, topics, expect, timeout=60.0, grace=1.0):
    """read_topic for several topics at once: `expect` records in all of them."""
    assign = []
    for topic in topics:
        parts = topic_partitions(bootstrap, topic)
        assign += [ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(parts)]
    c = ck.Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": unique("mqk-test"),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 50,
        "log_level": 3,
    })
    records = []
    try:
        c.assign(assign)
        deadline = time.monotonic() + timeout
        end = None
        while True:
            now = time.monotonic()
            if end is None and (len(records) >= expect or now >= deadline):
                end = now + grace
            if end is not None and now >= end:
                break
            msgs = c.consume(num_messages=10000, timeout=0.2)
            for m in msgs:
                if m.error():
                    if m.error().code() == ck.KafkaError._PARTITION_EOF:
                        continue
                    raise HarnessError(f"consuming {m.topic()}: {m.error()}")
                records.append(Record(m))
    finally:
        c.close()
    return records


def decode_json(value):
    import json
    return json.loads(value.decode("utf-8"))


def b64(data):
    return base64.b64encode(data).decode("ascii")


def heap_current(port, timeout=10.0):
    """mosquitto's own $SYS/broker/heap/current (bytes), the next time it is published
    after a subscription (sys_interval 1 makes that within a second)."""
    seen = []
    c = Client(port, unique("heap"), V5, on_message=lambda cl, u, m: seen.append(int(m.payload)))
    try:
        c.subscribe("$SYS/broker/heap/current")
        wait_for(lambda: len(seen) >= 2, timeout * SLOW, interval=0.05,
                 what="two $SYS/broker/heap/current updates")
        return seen[-1]
    finally:
        c.close()


class SysCounters:
    """Subscribes to $SYS/broker/kafka/# and keeps the latest value of every counter,
    by its name under the prefix ("delivered", "routes/<name>/matched", ...)."""

    def __init__(self, port):
        self.values = {}
        self.client = Client(port, unique("sys"), V311, on_message=self._on_message)
        self.client.subscribe(SYS_PREFIX + "/#")

    def _on_message(self, client, userdata, msg):
        if msg.topic.startswith(SYS_PREFIX + "/"):
            self.values[msg.topic[len(SYS_PREFIX) + 1:]] = msg.payload.decode("utf-8", "replace")

    def wait_for(self, expect, timeout=10.0):
        """Waits until every counter of expect ({name: int}) has that value; returns the
        values seen for those names (the caller asserts, so a mismatch shows numbers)."""
        try:
            wait_for(lambda: all(self.values.get(k) == str(v) for k, v in expect.items()),
                     timeout * SLOW, interval=0.1, what=f"$SYS counters {expect}")
        except HarnessError:
            pass
        return {k: int(self.values[k]) if self.values.get(k, "").isdigit() else self.values.get(k)
                for k in expect}

    def close(self):
        self.client.close()


# ---- steady load and what reached Kafka of it -------------------------------------------

class Load:
    """
    Steady QoS 1 load: n_clients MQTT clients, one thread each, together about `rate`
    messages per second. Client <cid> publishes to "<topic_prefix>/<cid>" the payloads
    "<cid>:0", "<cid>:1", ... (its own sequence). start(), then stop(): stop() waits for
    every PUBACK unless the broker went away (wait_acks=False). clean=False: persistent
    sessions (a v3.1.1 clean session false, a v5 session expiry). A client whose connection
    breaks stops publishing (stop_under_load SIGTERMs mosquitto under it); anything else
    going wrong is in .errors. websockets=True: the clients connect over WebSockets (port is
    then a ws_port).
    """

    def __init__(self, port, n_clients, rate, topic_prefix, prefix="load", protocol=V311,
                 clean=True, websockets=False):
        self.topic_prefix = topic_prefix
        self.interval = n_clients / float(rate)
        self.clients = [Client(port, unique(f"{prefix}{i}"), protocol, clean=clean,
                               websockets=websockets)
                        for i in range(n_clients)]
        self.infos = {c.client_id: [] for c in self.clients}
        self.errors = []
        self.disconnected = set()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(c,), daemon=True)
                         for c in self.clients]
        self.started_at = self.stopped_at = None

    def start(self):
        self.started_at = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def _run(self, client):
        infos = self.infos[client.client_id]
        topic = f"{self.topic_prefix}/{client.client_id}"
        due = time.monotonic()
        n = 0
        try:
            while not self._stop.is_set():
                info = client.c.publish(topic, f"{client.client_id}:{n}".encode(), qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    self.disconnected.add(client.client_id)
                    return
                infos.append(info)
                n += 1
                due += self.interval
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -1.0:
                    due = time.monotonic()  # behind by a second: do not burst to catch up
        except Exception as e:  # reported by stop()
            self.errors.append(f"{client.client_id}: {e!r}")

    def stop(self, wait_acks=True, timeout=60.0):
        """Stops publishing; returns {client id: messages published} (PUBACKed ones when
        wait_acks, which raises if some are not acknowledged within timeout)."""
        self._stop.set()
        for t in self._threads:
            t.join(10)
        self.stopped_at = time.monotonic()
        if any(t.is_alive() for t in self._threads):
            self.errors.append("a publisher thread did not stop within 10 s")
        if wait_acks:
            wait_published([i for infos in self.infos.values() for i in infos], timeout)
        for c in self.clients:
            try:
                c.close()
            except Exception:
                pass
        if wait_acks:
            return {cid: len(infos) for cid, infos in self.infos.items()}
        return {cid: sum(1 for i in infos if i.is_published())
                for cid, infos in self.infos.items()}

    def published(self):
        """How many messages were handed to the clients so far (all of them)."""
        return sum(len(infos) for infos in self.infos.values())


def sequence_report(records, published):
    """
    Checks records of a Load against {client id: messages published}: every "<cid>:<n>"
    for n < published[cid] present (else lost), none twice (duplicates), each client's
    records in one partition in increasing n by offset (else out of order). Records of
    unknown clients or beyond what was published count as unexpected. Returns a dict of
    counts plus examples.
    """
    per_client = {cid: [] for cid in published}
    unexpected = []
    for r in records:
        try:
            cid, n = r.value.decode().rsplit(":", 1)
            n = int(n)
        except (ValueError, UnicodeDecodeError):
            unexpected.append(r.value)
            continue
        if cid not in per_client or n >= published[cid]:
            unexpected.append(r.value)
            continue
        per_client[cid].append((r.partition, r.offset, n))
    lost = duplicates = out_of_order = 0
    examples = []
    for cid, items in per_client.items():
        ns = [n for _, _, n in items]
        distinct = set(ns)
        duplicates += len(ns) - len(distinct)
        missing = published[cid] - len(distinct)
        lost += missing
        if missing:
            gaps = sorted(set(range(published[cid])) - distinct)
            examples.append(f"{cid}: {missing} lost, e.g. {gaps[:5]}")
        parts = {p for p, _, _ in items}
        if len(parts) > 1:
            examples.append(f"{cid}: records in partitions {sorted(parts)}")
        ordered = [n for _, _, n in sorted(items)]
        bad = sum(1 for a, b in zip(ordered, ordered[1:]) if b <= a)
        out_of_order += bad
        if bad:
            examples.append(f"{cid}: {bad} records out of publish order")
    return {"published": sum(published.values()), "in_kafka": len(records), "lost": lost,
            "duplicates": duplicates, "out_of_order": out_of_order,
            "unexpected": len(unexpected), "examples": examples[:20]}


def format_report(rep):
    return (f"{rep['published']} published, {rep['in_kafka']} in Kafka, {rep['lost']} lost, "
            f"{rep['duplicates']} duplicates, {rep['out_of_order']} out of order, "
            f"{rep['unexpected']} unexpected")
