"""
kafka_backends.py - the session's Kafka, by MQK_KAFKA: RealKafka (an Apache Kafka KRaft
cluster run by tests/kafka/kafka.py), DevKafka (librdkafka's mock cluster as the process
build/tools/mqk-devkafka) or ExternalKafka (a cluster of your own). Each offers
.bootstrap, .create_topics(names, partitions), .down(), .up(), .logs(), .cleanup().
"""

import os
import shutil
import signal
import time

import confluent_kafka as ck

from paths import DEVKAFKA, KAFKA_MODE, KAFKA_PY
from procs import (HarnessError, Process, kafka_module, make_tempdir, port_accepts,
                   require_file, unique, wait_for)

# What mqk-devkafka gives a topic it auto-creates (DEFAULT_AUTO_PARTITIONS): the tests
# create theirs with this many partitions on real Kafka too, so both see the same layout.
MOCK_PARTITIONS = 4


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
        from confluent_kafka.admin import NewTopic
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
