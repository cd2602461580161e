#!/usr/bin/python3
"""
kafka.py - fetch and run a real Apache Kafka (KRaft) cluster on 127.0.0.1 for the tests.

Standard library only. Used as a module by the integration tests (KafkaCluster) and as a command:

  python3 tests/kafka/kafka.py fetch                      download Kafka once per machine
  python3 tests/kafka/kafka.py start N DIR                start an N-node cluster (N = 1 or 3)
          [--listeners SSL,SASL_SSL,SASL_PLAINTEXT,MTLS] [--sasl-user NAME:PASSWORD ...]
  python3 tests/kafka/kafka.py status DIR                 nodes, pids, RSS, brokers in metadata
  python3 tests/kafka/kafka.py bootstrap DIR [LISTENER]   print the bootstrap servers (of LISTENER)
  python3 tests/kafka/kafka.py create-topic DIR TOPIC [--partitions P] [--replication-factor R]
                                                          [--config k=v ...]
  python3 tests/kafka/kafka.py leader DIR TOPIC [PARTITION] [--not NODE]
                                                          leader now, or wait for one other than NODE
  python3 tests/kafka/kafka.py in-sync DIR TOPIC NODE     wait until NODE is back in every ISR
  python3 tests/kafka/kafka.py metadata DIR [TOPIC]       kcat -L -J of the cluster
  python3 tests/kafka/kafka.py controller DIR             node id of the active KRaft controller
  python3 tests/kafka/kafka.py kill DIR NODE              kill -9 one node (failover tests)
  python3 tests/kafka/kafka.py stop-node DIR NODE         SIGTERM one node (controlled shutdown)
  python3 tests/kafka/kafka.py restart DIR NODE           start a stopped/killed node again
  python3 tests/kafka/kafka.py stop DIR [--remove]        stop every node (and remove DIR)

Rules kept here (the same as tests/integration/harness.py):
- only processes this module started are signalled, by the pid it recorded, and only after
  /proc/<pid>/cmdline shows that pid still is that node's `java ... kafka.Kafka <its config>`;
- everything listens on 127.0.0.1, on free ports picked here (free_ports: below the kernel's
  ephemeral range, so a node started again gets its ports back);
- every wait is bounded, and a missed bound raises KafkaError saying what was expected, with the
  tail of the node's log;
- nothing reaches the network except `fetch`, and only while the cache is not complete.

Environment:
  MQK_KAFKA_VERSION   Kafka release (default DEFAULT_VERSION; 3.x and 4.x releases: 4.x logs
                      through log4j2, 3.x through reload4j, each fetched by its pom profile)
  MQK_KAFKA_CACHE     the cache, one directory per release in it (default
                      ${XDG_CACHE_HOME:-~/.cache}/mosquitto-kafka): kafka-<version>/lib holds the
                      jars, kafka-<version>/m2 Maven's own repository
  MQK_KAFKA_HEAP      heap per node (default 384m; -Xms = -Xmx)
  MQK_KAFKA_JVM_OPTS  extra JVM options per node, appended (e.g. "-XX:+UseG1GC")
  MQK_KAFKA_FETCH_TIMEOUT  seconds the first download may take (default 900)
"""

import argparse
import fcntl
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import base64
import zipfile

DEFAULT_VERSION = "4.4.0"  # keep in step with <kafka.version> in pom.xml
HERE = os.path.dirname(os.path.abspath(__file__))
POM = os.path.join(HERE, "pom.xml")
KCAT = shutil.which("kcat") or "/usr/bin/kcat"
JAVA = shutil.which("java") or "/usr/bin/java"
MVN = shutil.which("mvn") or "/usr/bin/mvn"
STATE = "cluster.json"

# Bounds (seconds).
FORMAT_TIMEOUT = 120
READY_TIMEOUT = 120
STOP_TIMEOUT = 30
TOOL_TIMEOUT = 120


class KafkaError(AssertionError):
    """A prerequisite is missing or Kafka did not behave: the test fails, never skips."""


def log(msg):
    print(f"[kafka] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- fetch / cache

def kafka_version():
    return os.environ.get("MQK_KAFKA_VERSION") or DEFAULT_VERSION


def major(version):
    """The major number of a Kafka release ("4.4.0" -> 4)."""
    m = re.match(r"(\d+)\.", version or "")
    if not m:
        raise KafkaError(f"MQK_KAFKA_VERSION={version!r} is not a Kafka release such as 4.4.0")
    return int(m.group(1))


def logging_backend(version):
    """"log4j2" for Kafka 4.x and later, "reload4j" (the log4j 1.2 API) before: the pom's
    profile, and which configuration file the JVMs are given."""
    return "log4j2" if major(version) >= 4 else "reload4j"


def cache_dir(version=None):
    version = version or kafka_version()
    base = os.environ.get("MQK_KAFKA_CACHE")
    if not base:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME") or
                            os.path.join(os.path.expanduser("~"), ".cache"), "mosquitto-kafka")
    return os.path.join(os.path.abspath(base), f"kafka-{version}")


def lib_dir(version=None):
    return os.path.join(cache_dir(version), "lib")


def _required_jars(version):
    return [f"kafka_2.13-{version}.jar", f"kafka-server-{version}.jar",
            f"kafka-raft-{version}.jar", f"kafka-metadata-{version}.jar",
            f"kafka-clients-{version}.jar", f"kafka-tools-{version}.jar"]


def _has_logging_jars(lib, version):
    """The slf4j binding of the version's backend is there (else the broker logs nowhere)."""
    names = os.listdir(lib)
    want = ("log4j-slf4j2-impl-", "log4j-core-") if logging_backend(version) == "log4j2" else \
        ("slf4j-reload4j-", "reload4j-")
    return all(any(n.startswith(w) for n in names) for w in want)


def _complete_marker(version):
    return os.path.join(lib_dir(version), ".complete")


def is_fetched(version=None):
    version = version or kafka_version()
    marker = _complete_marker(version)
    if not os.path.isfile(marker):
        return False
    try:
        with open(marker) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return False
    if info.get("version") != version:
        return False
    return all(os.path.isfile(os.path.join(lib_dir(version), j))
               for j in _required_jars(version)) and _has_logging_jars(lib_dir(version), version)


def _dir_bytes(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def fetch(version=None, timeout=None):
    """Makes sure the jars of Kafka `version` are in the cache; returns the lib directory.

    Once complete (lib/.complete), this does not run Maven at all, so it does not touch the
    network. Concurrent callers serialize on an flock of <cache>/.lock (bounded wait)."""
    version = version or kafka_version()
    timeout = float(timeout or os.environ.get("MQK_KAFKA_FETCH_TIMEOUT") or 900)
    if is_fetched(version):
        return lib_dir(version)
    cache = cache_dir(version)
    os.makedirs(cache, exist_ok=True)
    deadline = time.monotonic() + timeout
    with open(os.path.join(cache, ".lock"), "w") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise KafkaError(f"timed out after {timeout:.0f} s waiting for another fetch "
                                     f"of Kafka {version} (lock {cache}/.lock)")
                time.sleep(0.5)
        if is_fetched(version):  # another process finished it meanwhile
            return lib_dir(version)
        for tool in (MVN, JAVA):
            if not os.access(tool, os.X_OK):
                raise KafkaError(f"{tool} not found: apt-get install maven openjdk-17-jdk-headless")
        tmp = os.path.join(cache, "lib.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        m2 = os.path.join(cache, "m2")
        m2_before = _dir_bytes(m2)
        cmd = [MVN, "-B", "-q", "-f", POM, f"-Dkafka.version={version}",
               f"-Dmqk.logging={logging_backend(version)}",
               f"-Dmqk.lib.dir={tmp}", f"-Dmqk.build.dir={os.path.join(cache, 'target')}",
               f"-Dmaven.repo.local={m2}", "dependency:copy-dependencies"]
        # lib/ lost but m2/ still there: try offline first (-o), so no network is touched.
        offline_first = os.path.isdir(os.path.join(m2, "org", "apache", "kafka", "kafka_2.13",
                                                   version))
        started = time.monotonic()
        out_path = os.path.join(cache, "fetch.log")
        rc = None
        for offline in ([True, False] if offline_first else [False]):
            log(f"fetching Kafka {version} " + ("from the cache's m2/ (offline)" if offline else
                f"from Maven Central into {cache} (once per machine)"))
            with open(out_path, "a") as out:
                proc = subprocess.Popen(cmd[:1] + (["-o"] if offline else []) + cmd[1:],
                                        stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
                try:
                    rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)  # mvn's own process group, started above
                    proc.wait(timeout=30)
                    raise KafkaError(f"fetching Kafka {version} took more than {timeout:.0f} s "
                                     f"(see {out_path})")
            if rc == 0:
                break
        seconds = time.monotonic() - started
        if rc != 0:
            raise KafkaError(f"mvn failed ({rc}) fetching Kafka {version}: "
                             f"{_tail(out_path, 30)}")
        missing = [j for j in _required_jars(version) if not os.path.isfile(os.path.join(tmp, j))]
        if missing or not _has_logging_jars(tmp, version):
            raise KafkaError(f"fetch of Kafka {version} lacks {missing or 'its logging jars'} "
                             f"in {tmp}")
        jars = sorted(j for j in os.listdir(tmp) if j.endswith(".jar"))
        info = {"version": version, "logging": logging_backend(version),
                "seconds": round(seconds, 1), "jars": len(jars),
                "lib_bytes": _dir_bytes(tmp), "downloaded_bytes": _dir_bytes(m2) - m2_before,
                "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with open(os.path.join(tmp, ".complete"), "w") as f:
            json.dump(info, f, indent=1)
        final = lib_dir(version)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        log(f"fetched Kafka {version}: {len(jars)} jars, {info['lib_bytes'] / 1e6:.1f} MB, "
            f"{info['downloaded_bytes'] / 1e6:.1f} MB downloaded, {seconds:.1f} s")
        return final


def fetch_info(version=None):
    with open(_complete_marker(version or kafka_version())) as f:
        return json.load(f)


_class_cache = {}


def find_main_class(lib, candidates):
    """The first of candidates (dotted class names) that some jar in lib contains."""
    key = (lib, tuple(candidates))
    if key in _class_cache:
        return _class_cache[key]
    entries = [c.replace(".", "/") + ".class" for c in candidates]
    found = {}
    for jar in sorted(os.listdir(lib)):
        if not jar.endswith(".jar") or not jar.startswith("kafka"):
            continue
        with zipfile.ZipFile(os.path.join(lib, jar)) as z:
            names = set(z.namelist())
        for cls, entry in zip(candidates, entries):
            if entry in names:
                found.setdefault(cls, jar)
    for cls in candidates:
        if cls in found:
            _class_cache[key] = cls
            return cls
    raise KafkaError(f"none of {candidates} in {lib}")


# --------------------------------------------------------------------------- helpers

_tls_module = None


def tls_module():
    """tests/kafka/tls.py (python3-cryptography), imported by path and only when a cluster
    wants TLS: the rest of this module needs the standard library only."""
    global _tls_module
    if _tls_module is None:
        import importlib.util
        spec = importlib.util.spec_from_file_location("mqk_kafka_tls",
                                                      os.path.join(HERE, "tls.py"))
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except ImportError as e:
            raise KafkaError(f"TLS listeners need python3-cryptography "
                             f"(apt-get install python3-cryptography): {e}")
        sys.modules[spec.name] = mod
        _tls_module = mod
    return _tls_module

def _tail(path, lines=20):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            data = f.read().decode("utf-8", "replace")
        return "\n".join(data.splitlines()[-lines:])
    except OSError as e:
        return f"({path}: {e})"


def _ephemeral_range():
    """The kernel's range for outgoing connections' source ports (ip_local_port_range)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count):
    """count distinct TCP ports of 127.0.0.1 that were free a moment ago, for listeners that
    must come back on the same port after a stop (a Kafka node, a crashed mosquitto).

    They are picked below the kernel's ephemeral range, never inside it: while a listener
    is down, any outgoing connection on the machine may get its port as a source port (or
    a client reconnecting to it may connect to itself), and the listener could not bind it
    again ("Address already in use" on restart). Ports outside the range are given to no
    outgoing connection. Each is checked free by binding it; a random start spreads runs
    side by side apart."""
    low, _ = _ephemeral_range()
    first = max(1024, low - 12000)
    span = low - first
    if span < count * 4:
        first, span = low, 0  # no room below the range: the kernel picks (bind to 0)
    picked, socks = [], []
    try:
        if span == 0:
            for _ in range(count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind(("127.0.0.1", 0))
                socks.append(s)
            return [s.getsockname()[1] for s in socks]
        start = random.randrange(span)
        for i in range(span):
            port = first + (start + i) % span
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
            picked.append(port)
            if len(picked) == count:
                return picked
        raise OSError(f"no {count} free ports in 127.0.0.1:{first}-{first + span - 1}")
    finally:
        for s in socks:
            s.close()


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def random_cluster_id():
    """Like org.apache.kafka.common.Uuid.randomUuid().toString(): base64url, no padding."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _proc_state(pid):
    """'R', 'S', 'Z', ... or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        return data[data.rindex(")") + 2]
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def kcat_metadata(bootstrap, topic=None, timeout=5):
    """kcat -L -J as a dict, or None when no broker answered within timeout."""
    cmd = [KCAT, "-b", bootstrap, "-L", "-J", "-m", str(max(1, int(timeout)))]
    if topic:
        cmd += ["-t", topic]
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        return None
    if r.returncode != 0 or not r.stdout.strip():
        return None
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def partition_info(md, topic, partition):
    """(leader, replicas, isrs) of topic/partition in a kcat -L -J dict, or None."""
    for t in (md or {}).get("topics", []):
        if t.get("topic") != topic or t.get("error"):
            continue
        for p in t.get("partitions", []):
            if p.get("partition") == partition:
                return (p.get("leader", -1), [r["id"] for r in p.get("replicas", [])],
                        [r["id"] for r in p.get("isrs", [])])
    return None


# --------------------------------------------------------------------------- the cluster

# Kafka 3.x (reload4j): the node's log4j.properties and the tools' one.
LOG4J = """\
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={log}
log4j.appender.file.Append=true
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.network.RequestChannel$=WARN
log4j.logger.org.apache.kafka.clients.NetworkClient=WARN
log4j.logger.state.change.logger=INFO
"""

TOOL_LOG4J = """\
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
"""

# Kafka 4.x (log4j2): the same, as log4j2.xml (log4j-core reads XML without more jars).
LOG4J2 = """\
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn">
  <Appenders>
    <File name="file" fileName="{log}" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="kafka.network.RequestChannel$" level="warn"/>
    <Logger name="org.apache.kafka.clients.NetworkClient" level="warn"/>
    <Logger name="state.change.logger" level="info"/>
  </Loggers>
</Configuration>
"""

TOOL_LOG4J2 = """\
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn">
  <Appenders>
    <Console name="stderr" target="SYSTEM_ERR">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="warn"><AppenderRef ref="stderr"/></Root>
  </Loggers>
</Configuration>
"""


def log_config(version, path_stem, text3, text4):
    """Writes the logging configuration for version's backend at path_stem + its extension;
    returns the JVM option that names it."""
    if logging_backend(version) == "log4j2":
        path = path_stem + "log4j2.xml"
        text, opt = text4, f"-Dlog4j2.configurationFile={path_stem}log4j2.xml"
    else:
        path = path_stem + "log4j.properties"
        text, opt = text3, f"-Dlog4j.configuration=file:{path_stem}log4j.properties"
    if text is not None:
        with open(path, "w") as f:
            f.write(text)
    return opt


# The extra client listeners a cluster can have besides PLAINTEXT (which the tests keep for
# their own admin and checks, and the brokers for replication) and CONTROLLER: the listener
# name -> its security protocol. MTLS is an SSL listener that requires a client certificate.
LISTENER_KINDS = {"SSL": "SSL", "SASL_SSL": "SASL_SSL", "SASL_PLAINTEXT": "SASL_PLAINTEXT",
                  "MTLS": "SSL"}
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
# User names and passwords go into a JAAS line and StorageTool's --add-scram argument unquoted.
_CREDENTIAL = re.compile(r"[A-Za-z0-9._@-]{1,64}$")


def security_config(listeners, tls=None, plain_users=None):
    """The server.properties lines of the extra listeners (names from LISTENER_KINDS): TLS from
    tls (an object with broker_keystore, password and ca_cert, as tls.Pki has: a PKCS#12
    keystore and a PEM truststore), SASL with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 on each
    SASL listener; PLAIN's users and passwords are in its JAAS line, SCRAM's are in the
    metadata (KafkaCluster formats the storage with them)."""
    props = {}
    if any(LISTENER_KINDS[name] in ("SSL", "SASL_SSL") for name in listeners):
        if tls is None:
            raise KafkaError(f"listeners {list(listeners)} need a PKI (tls=)")
        props.update({
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": tls.broker_keystore,
            "ssl.keystore.password": tls.password,
            "ssl.key.password": tls.password,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": tls.ca_cert,
        })
    if "MTLS" in listeners:
        props["listener.name.mtls.ssl.client.auth"] = "required"
    jaas_users = "".join(f' user_{u}="{pw}"' for u, pw in sorted((plain_users or {}).items()))
    for name in listeners:
        if not LISTENER_KINDS[name].startswith("SASL_"):
            continue
        prefix = f"listener.name.{name.lower()}."
        props[prefix + "sasl.enabled.mechanisms"] = ",".join(SASL_MECHANISMS)
        props[prefix + "plain.sasl.jaas.config"] = \
            f"org.apache.kafka.common.security.plain.PlainLoginModule required{jaas_users};"
        for mech in SCRAM_MECHANISMS:
            props[prefix + f"{mech.lower()}.sasl.jaas.config"] = \
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return props


def broker_config(n, node_id, port, cport, voters, data_dir, extra=None, listener_ports=None,
                  security=None):
    """server.properties of one combined broker+controller node. listener_ports: the extra
    listeners' names -> ports; security: their settings (security_config)."""
    rf = 3 if n >= 3 else 1
    isr = 2 if n >= 3 else 1
    extra_listeners = "".join(f",{name}://127.0.0.1:{p}"
                              for name, p in (listener_ports or {}).items())
    props = {
        "process.roles": "broker,controller",
        "node.id": node_id,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}"
                     f"{extra_listeners}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}{extra_listeners}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT" +
        "".join(f",{name}:{LISTENER_KINDS[name]}" for name in (listener_ports or {})),
        "log.dirs": data_dir,
        # Topics: only what the tests create, durable settings for 3 nodes.
        "auto.create.topics.enable": "false",
        "num.partitions": 1,
        "default.replication.factor": rf,
        "min.insync.replicas": isr,
        "offsets.topic.replication.factor": rf,
        "offsets.topic.num.partitions": 4,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": isr,
        "transaction.state.log.num.partitions": 4,
        "unclean.leader.election.enable": "false",
        # Fast-ish failure detection and group handling for tests.
        "group.initial.rebalance.delay.ms": 0,
        "group.min.session.timeout.ms": 1000,
        "broker.heartbeat.interval.ms": 500,
        "broker.session.timeout.ms": 3000,
        "controller.quorum.election.timeout.ms": 1000,
        "controller.quorum.fetch.timeout.ms": 2000,
        "replica.lag.time.max.ms": 10000,
        # Small footprint on a 2-core machine.
        "num.network.threads": 2,
        "num.io.threads": 4,
        "background.threads": 2,
        "num.replica.fetchers": 1,
        "num.recovery.threads.per.data.dir": 1,
        "log.cleaner.threads": 1,
        "log.cleaner.dedupe.buffer.size": 8 * 1024 * 1024,
        "log.segment.bytes": 64 * 1024 * 1024,
        "delete.topic.enable": "true",
    }
    props.update(security or {})
    props.update(extra or {})
    return "".join(f"{k}={v}\n" for k, v in props.items())


def default_jvm_opts():
    heap = os.environ.get("MQK_KAFKA_HEAP") or "384m"
    extra = os.environ.get("MQK_KAFKA_JVM_OPTS", "").split()
    # SerialGC: one small heap per node, no GC threads competing for the 2 cores. C1 only
    # (TieredStopAtLevel=1): a 3-node cluster is ready in ~6 s instead of ~10 s on 2 cores.
    # Either can be replaced through MQK_KAFKA_JVM_OPTS (-XX:+UseG1GC, -XX:TieredStopAtLevel=4).
    opts = [f"-Xms{heap}", f"-Xmx{heap}"]
    if not any(re.match(r"-XX:\+Use\w*GC$", o) for o in extra):
        opts.append("-XX:+UseSerialGC")
    if not any(o.startswith("-XX:TieredStopAtLevel=") for o in extra):
        opts.append("-XX:TieredStopAtLevel=1")
    opts += ["-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
             "-Djava.net.preferIPv4Stack=true"]
    return opts + extra


TOOL_JVM_OPTS = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                 "-Djava.awt.headless=true", "-Djava.net.preferIPv4Stack=true"]


class Node:
    def __init__(self, node_id, port, controller_port, directory, pid=None, listener_ports=None):
        self.id = node_id
        self.port = port
        self.controller_port = controller_port
        self.listener_ports = dict(listener_ports or {})  # extra listener name -> port
        self.dir = directory
        self.pid = pid
        self.proc = None  # Popen, when this process started the node

    @property
    def ports(self):
        return [self.port, self.controller_port, *self.listener_ports.values()]

    @property
    def config(self):
        return os.path.join(self.dir, "server.properties")

    @property
    def log(self):
        return os.path.join(self.dir, "server.log")

    @property
    def stdout(self):
        return os.path.join(self.dir, "stdout.log")

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def to_json(self):
        return {"id": self.id, "port": self.port, "controller_port": self.controller_port,
                "listener_ports": self.listener_ports, "dir": self.dir, "pid": self.pid}

    def is_ours(self, pid=None):
        """True when pid (default: the recorded one) is this node's JVM, not a reused pid."""
        pid = pid or self.pid
        if not pid:
            return False
        args = _cmdline(pid)
        return "kafka.Kafka" in args and self.config in args

    def alive(self):
        if not self.pid:
            return False
        if self.proc is not None:
            return self.proc.poll() is None
        state = _proc_state(self.pid)
        return state is not None and state != "Z" and self.is_ours()

    def rss_kb(self):
        return rss_kb(self.pid) if self.alive() else None

    def log_tail(self, lines=25):
        return f"--- {self.log} ---\n{_tail(self.log, lines)}\n--- {self.stdout} ---\n" \
               f"{_tail(self.stdout, 10)}"


class KafkaCluster:
    """An N-node KRaft cluster (combined broker+controller) under workdir.

    KafkaCluster(workdir, nodes=3).start() formats fresh storage and starts the nodes;
    KafkaCluster.load(workdir) attaches to one a `start` command left running.

    Besides PLAINTEXT and CONTROLLER, each node can have extra client listeners, each on its
    own port: listeners=["SSL", "SASL_SSL", "SASL_PLAINTEXT", "MTLS"] (any of them, see
    LISTENER_KINDS). TLS listeners use tls (a tls.Pki; default: one made in workdir/pki).
    SASL listeners accept PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512: sasl_users (name ->
    password) get all three, plain_users only PLAIN, scram_users only the two SCRAMs (their
    credentials are written into the metadata when the storage is formatted)."""

    def __init__(self, workdir=None, nodes=1, version=None, jvm_opts=None, extra_config=None,
                 die_with_parent=False, listeners=(), tls=None, sasl_users=None,
                 plain_users=None, scram_users=None):
        if nodes < 1:
            raise KafkaError("nodes must be >= 1")
        unknown = [name for name in listeners if name not in LISTENER_KINDS]
        if unknown or len(set(listeners)) != len(listeners):
            raise KafkaError(f"listeners {list(listeners)}: each at most once, of "
                             f"{list(LISTENER_KINDS)}")
        self.listeners = list(listeners)
        self.plain_users = {**(sasl_users or {}), **(plain_users or {})}
        self.scram_users = {**(sasl_users or {}), **(scram_users or {})}
        for user, password in [*self.plain_users.items(), *self.scram_users.items()]:
            if not (_CREDENTIAL.match(user) and _CREDENTIAL.match(password)):
                raise KafkaError(f"SASL user {user!r}: names and passwords are 1..64 of "
                                 f"[A-Za-z0-9._@-]")
        self.tls = tls
        self.version = version or kafka_version()
        self.n = nodes
        self.own_workdir = workdir is None
        self.workdir = os.path.abspath(workdir or tempfile.mkdtemp(prefix="mqk-kafka-"))
        self.jvm_opts = jvm_opts if jvm_opts is not None else default_jvm_opts()
        self.extra_config = extra_config or {}
        self.die_with_parent = die_with_parent
        self.cluster_id = None
        self.nodes = []
        self.timings = {}

    # ----- state

    @property
    def lib(self):
        return lib_dir(self.version)

    @property
    def classpath(self):
        return os.path.join(self.lib, "*")

    @property
    def bootstrap(self):
        return ",".join(n.address for n in self.nodes)

    def alive_bootstrap(self):
        return ",".join(n.address for n in self.nodes if n.alive())

    def node(self, node_id):
        for n in self.nodes:
            if n.id == int(node_id):
                return n
        raise KafkaError(f"no node {node_id} (nodes: {[n.id for n in self.nodes]})")

    def listener_bootstrap(self, name="PLAINTEXT"):
        """The bootstrap servers of one listener ("PLAINTEXT" or one of self.listeners)."""
        if name == "PLAINTEXT":
            return self.bootstrap
        if name not in self.listeners:
            raise KafkaError(f"no listener {name} (this cluster has PLAINTEXT"
                             f"{''.join(', ' + x for x in self.listeners)})")
        return ",".join(f"127.0.0.1:{n.listener_ports[name]}" for n in self.nodes)

    def client_config(self, name, mechanism=None, user=None, password=None, client="client",
                      ca=None):
        """librdkafka properties to reach listener name: bootstrap.servers,
        security.protocol; for TLS ssl.ca.location (ca "other": the PKI's second CA); on
        MTLS the certificate of client ("client", "expired", "other-client", None: none); on
        SASL listeners sasl.mechanisms (default PLAIN), sasl.username and sasl.password."""
        props = {"bootstrap.servers": self.listener_bootstrap(name),
                 "security.protocol": LISTENER_KINDS.get(name, "PLAINTEXT")}
        if props["security.protocol"] in ("SSL", "SASL_SSL"):
            props.update(self.tls.rdkafka(client if name == "MTLS" else None, ca))
        if props["security.protocol"].startswith("SASL_"):
            props.update({"sasl.mechanisms": mechanism or "PLAIN", "sasl.username": user or "",
                          "sasl.password": password or ""})
        return props

    def _save(self):
        state = {"version": self.version, "nodes_count": self.n, "cluster_id": self.cluster_id,
                 "bootstrap": self.bootstrap, "jvm_opts": self.jvm_opts,
                 "listeners": {name: self.listener_bootstrap(name) for name in self.listeners},
                 "nodes": [n.to_json() for n in self.nodes]}
        tmp = os.path.join(self.workdir, STATE + ".tmp")
        with open(tmp, "w") as f:
            json.dump(state, f, indent=1)
        os.replace(tmp, os.path.join(self.workdir, STATE))
        with open(os.path.join(self.workdir, "bootstrap"), "w") as f:
            f.write(self.bootstrap + "\n")

    @classmethod
    def load(cls, workdir):
        workdir = os.path.abspath(workdir)
        path = os.path.join(workdir, STATE)
        try:
            with open(path) as f:
                state = json.load(f)
        except OSError as e:
            raise KafkaError(f"no cluster in {workdir}: {e}")
        c = cls(workdir, nodes=state["nodes_count"], version=state["version"],
                jvm_opts=state["jvm_opts"])
        c.own_workdir = False
        c.cluster_id = state["cluster_id"]
        c.nodes = [Node(d["id"], d["port"], d["controller_port"], d["dir"], d.get("pid"),
                        d.get("listener_ports")) for d in state["nodes"]]
        c.listeners = list(state.get("listeners", {}))
        if os.path.isdir(os.path.join(workdir, "pki")):
            c.tls = tls_module().Pki.load(os.path.join(workdir, "pki"))
        return c

    # ----- set up

    def _java(self, main, args, jvm_opts, log_opt):
        return [JAVA, *jvm_opts, log_opt, "-cp", self.classpath, main, *args]

    def _tool_log4j(self):
        """The JVM option naming the tools' logging configuration (written once)."""
        stem = os.path.join(self.workdir, "tools-")
        exists = os.path.exists(stem + ("log4j2.xml" if logging_backend(self.version) == "log4j2"
                                        else "log4j.properties"))
        return log_config(self.version, stem, None if exists else TOOL_LOG4J,
                          None if exists else TOOL_LOG4J2)

    def run_tool(self, main, args, timeout=TOOL_TIMEOUT, check=True):
        """Runs one of Kafka's command-line classes; returns CompletedProcess."""
        cmd = self._java(main, args, TOOL_JVM_OPTS, self._tool_log4j())
        try:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            raise KafkaError(f"{main} {' '.join(args)} took more than {timeout} s")
        if check and r.returncode != 0:
            raise KafkaError(f"{main} {' '.join(args)} failed ({r.returncode}):\n"
                             f"{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
        return r

    def create(self):
        """Picks ports, writes the configs and formats every node's storage (fresh cluster id)."""
        fetch(self.version)
        os.makedirs(self.workdir, exist_ok=True)
        if os.path.exists(os.path.join(self.workdir, STATE)):
            raise KafkaError(f"{self.workdir} already holds a cluster: stop it with --remove, "
                             f"or use an empty directory")
        per_node = 2 + len(self.listeners)
        ports = free_ports(per_node * self.n)
        self.nodes = []
        for i in range(self.n):
            d = os.path.join(self.workdir, f"node{i + 1}")
            os.makedirs(d, exist_ok=True)
            mine = ports[per_node * i:per_node * (i + 1)]
            self.nodes.append(Node(i + 1, mine[0], mine[1], d,
                                   listener_ports=dict(zip(self.listeners, mine[2:]))))
        voters = ",".join(f"{n.id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        if self.tls is None and any(LISTENER_KINDS[x] in ("SSL", "SASL_SSL")
                                    for x in self.listeners):
            self.tls = tls_module().Pki(os.path.join(self.workdir, "pki"))
        security = security_config(self.listeners, self.tls, self.plain_users)
        for node in self.nodes:
            with open(node.config, "w") as f:
                f.write(broker_config(self.n, node.id, node.port, node.controller_port, voters,
                                      os.path.join(node.dir, "data"), self.extra_config,
                                      node.listener_ports, security))
            log_config(self.version, os.path.join(node.dir, ""), LOG4J.format(log=node.log),
                       LOG4J2.replace("{log}", node.log))
        self.cluster_id = random_cluster_id()
        started = time.monotonic()
        procs = []
        for node in self.nodes:
            scram = [a for user, pw in sorted(self.scram_users.items()) for m in SCRAM_MECHANISMS
                     for a in ("--add-scram", f"{m}=[name={user},password={pw}]")]
            cmd = self._java("kafka.tools.StorageTool",
                             ["format", "-t", self.cluster_id, "-c", node.config, *scram],
                             TOOL_JVM_OPTS, self._tool_log4j())
            out = open(os.path.join(node.dir, "format.log"), "w")
            procs.append((node, out, subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                                      stderr=subprocess.STDOUT)))
        deadline = time.monotonic() + FORMAT_TIMEOUT
        failed = []
        for node, out, p in procs:
            try:
                rc = p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()  # our own child
                p.wait(timeout=10)
                rc = "timeout"
            out.close()
            if rc != 0:
                failed.append(f"node {node.id}: {rc}: "
                              f"{_tail(os.path.join(node.dir, 'format.log'), 10)}")
        if failed:
            raise KafkaError("formatting storage failed:\n" + "\n".join(failed))
        self.timings["format_s"] = time.monotonic() - started
        self._save()
        return self

    def _launch(self, node):
        cmd = [JAVA, *self.jvm_opts, log_config(self.version, os.path.join(node.dir, ""), None,
                                                None),
               f"-Dkafka.logs.dir={node.dir}", "-cp", self.classpath, "kafka.Kafka", node.config]
        if self.die_with_parent:
            # The JVM gets SIGKILL when the thread that started it exits (a test run that dies
            # leaves no broker behind). setpriv keeps the pid: it execs java.
            cmd = ["setpriv", "--pdeathsig", "KILL", "--", *cmd]
        out = open(node.stdout, "a")
        try:
            node.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=node.dir,
                                         start_new_session=True)
        finally:
            out.close()
        node.pid = node.proc.pid
        node.started_at = time.monotonic()
        self._save()

    def start(self, timeout=READY_TIMEOUT):
        """Formats (if not yet) and starts every node; returns once all N brokers are in the
        metadata every node serves."""
        if not self.nodes:
            self.create()
        started = time.monotonic()
        for node in self.nodes:
            if not node.alive():
                self._launch(node)
        self.wait_ready(timeout)
        self.timings["start_to_ready_s"] = time.monotonic() - started
        return self

    # ----- waiting

    def _check_alive(self, nodes):
        for node in nodes:
            if not node.alive():
                raise KafkaError(f"Kafka node {node.id} (pid {node.pid}) exited\n"
                                 f"{node.log_tail()}")

    def brokers_seen(self, node, timeout=2):
        md = kcat_metadata(node.address, timeout=timeout)
        if md is None:
            return None
        return sorted(b["id"] for b in md.get("brokers", []))

    def wait_ready(self, timeout=READY_TIMEOUT, nodes=None):
        """Waits until every alive node (or those given) answers metadata listing all alive
        brokers."""
        deadline = time.monotonic() + timeout
        while True:
            targets = nodes or [n for n in self.nodes if n.pid]
            self._check_alive(targets)
            want = sorted(n.id for n in self.nodes if n.alive())
            seen = {}
            for node in targets:
                seen[node.id] = self.brokers_seen(node) if port_accepts(node.port) else None
            if all(s == want for s in seen.values()):
                return seen
            if time.monotonic() >= deadline:
                raise KafkaError(f"timed out after {timeout:.0f} s waiting for brokers {want} in "
                                 f"every node's metadata; seen {seen}\n" +
                                 "\n".join(n.log_tail(10) for n in targets))
            time.sleep(0.2)

    # ----- topics and leaders

    def topic_command_class(self):
        return find_main_class(self.lib, ["org.apache.kafka.tools.TopicCommand",
                                          "kafka.admin.TopicCommand"])

    def create_topic(self, topic, partitions=1, replication_factor=None, config=None,
                     timeout=60):
        """Creates topic with Kafka's own kafka-topics class; waits until every alive node's
        metadata shows a leader for each partition."""
        rf = replication_factor or (3 if self.n >= 3 else 1)
        args = ["--bootstrap-server", self.alive_bootstrap(), "--create", "--topic", topic,
                "--partitions", str(partitions), "--replication-factor", str(rf)]
        if config is None and self.n >= 3:
            config = {"min.insync.replicas": 2}
        for k, v in (config or {}).items():
            args += ["--config", f"{k}={v}"]
        self.run_tool(self.topic_command_class(), args)
        self.wait_topic(topic, partitions, timeout)

    def delete_topic(self, topic):
        self.run_tool(self.topic_command_class(),
                      ["--bootstrap-server", self.alive_bootstrap(), "--delete", "--topic", topic])

    def describe_topic(self, topic):
        return self.run_tool(self.topic_command_class(),
                             ["--bootstrap-server", self.alive_bootstrap(), "--describe",
                              "--topic", topic]).stdout

    def quorum_leader(self):
        """The node id of the active KRaft controller (MetadataQuorumCommand describe --status).
        Metadata responses do not tell it: in KRaft their controller id is any broker."""
        cls = find_main_class(self.lib, ["org.apache.kafka.tools.MetadataQuorumCommand",
                                         "kafka.admin.MetadataQuorumCommand"])
        out = self.run_tool(cls, ["--bootstrap-server", self.alive_bootstrap(), "describe",
                                  "--status"]).stdout
        m = re.search(r"^LeaderId:\s*(-?\d+)", out, re.M)
        if not m:
            raise KafkaError(f"no LeaderId in MetadataQuorumCommand output:\n{out}")
        return int(m.group(1))

    def metadata(self, topic=None, node=None, timeout=5):
        bootstrap = self.node(node).address if node is not None else self.alive_bootstrap()
        md = kcat_metadata(bootstrap, topic, timeout)
        if md is None:
            raise KafkaError(f"no metadata from {bootstrap} within {timeout} s")
        return md

    def wait_topic(self, topic, partitions, timeout=60):
        def ok():
            for node in (n for n in self.nodes if n.alive()):
                md = kcat_metadata(node.address, topic, 3)
                for p in range(partitions):
                    info = partition_info(md, topic, p)
                    if info is None or info[0] < 0:
                        return False
            return True
        self._wait(ok, timeout, f"topic {topic} with {partitions} partitions led on every node")

    def partition(self, topic, partition=0):
        """(leader, replicas, isrs) as the alive nodes agree on them, or None if they do not."""
        views = set()
        for node in (n for n in self.nodes if n.alive()):
            info = partition_info(kcat_metadata(node.address, topic, 3), topic, partition)
            if info is None:
                return None
            views.add((info[0], tuple(info[1]), tuple(sorted(info[2]))))
        if len(views) != 1:
            return None
        leader, replicas, isrs = views.pop()
        return leader, list(replicas), list(isrs)

    def leader(self, topic, partition=0, timeout=30):
        """The broker id leading topic/partition (all alive nodes agreeing)."""
        return self._wait(lambda: (lambda i: i[0] if i and i[0] >= 0 else None)(
            self.partition(topic, partition)), timeout, f"a leader of {topic}/{partition}")

    def wait_new_leader(self, topic, partition, old, timeout=60):
        """Waits until alive nodes agree on a leader other than old; returns (leader, seconds)."""
        started = time.monotonic()

        def new():
            info = self.partition(topic, partition)
            if info and info[0] >= 0 and info[0] != old:
                return info[0]
            return None
        leader = self._wait(new, timeout, f"a leader of {topic}/{partition} other than {old}")
        return leader, time.monotonic() - started

    def wait_in_sync(self, topic, partition, node_id, timeout=60):
        """Waits until node_id is in the ISR of topic/partition; returns seconds waited."""
        started = time.monotonic()
        self._wait(lambda: (lambda i: i and int(node_id) in i[2])(
            self.partition(topic, partition)), timeout,
            f"node {node_id} in the ISR of {topic}/{partition}")
        return time.monotonic() - started

    def partitions(self, topic):
        """The partition numbers of topic, from the metadata of the alive nodes."""
        for t in self.metadata(topic).get("topics", []):
            if t.get("topic") == topic and not t.get("error"):
                return sorted(p["partition"] for p in t.get("partitions", []))
        raise KafkaError(f"no topic {topic} in the metadata")

    def wait_topic_in_sync(self, topic, node_id, timeout=60):
        """Waits until node_id is in the ISR of every partition of topic it replicates;
        returns seconds waited."""
        started = time.monotonic()
        for p in self.partitions(topic):
            info = self.partition(topic, p)
            if info is None or int(node_id) in info[1]:
                self.wait_in_sync(topic, p, node_id,
                                  max(0.1, timeout - (time.monotonic() - started)))
        return time.monotonic() - started

    def _wait(self, predicate, timeout, what, interval=0.2):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise KafkaError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)

    # ----- failures and stopping

    def _signal(self, node, sig):
        """Signals node's JVM, only if the recorded pid still is that JVM."""
        if node.alive() and node.is_ours():
            os.kill(node.pid, sig)
            return True
        return False

    def _wait_exit(self, node, timeout):
        deadline = time.monotonic() + timeout
        while node.alive():
            if time.monotonic() >= deadline:
                return False
            if node.proc is not None:
                try:
                    node.proc.wait(timeout=0.1)
                except subprocess.TimeoutExpired:
                    pass
            else:
                time.sleep(0.1)
        return True

    def kill(self, node_id):
        """kill -9 one node (a crash)."""
        node = self.node(node_id)
        if not self._signal(node, signal.SIGKILL):
            raise KafkaError(f"node {node_id} is not running")
        if not self._wait_exit(node, 10):
            raise KafkaError(f"node {node_id} (pid {node.pid}) survived SIGKILL for 10 s")
        node.stopped_at = time.monotonic()

    def stop_node(self, node_id, timeout=STOP_TIMEOUT):
        """SIGTERM (controlled shutdown), then SIGKILL after timeout seconds."""
        node = self.node(node_id)
        if self._signal(node, signal.SIGTERM) and not self._wait_exit(node, timeout):
            log(f"node {node.id} (pid {node.pid}) ignored SIGTERM for {timeout} s: SIGKILL")
            self._signal(node, signal.SIGKILL)
            if not self._wait_exit(node, 10):
                raise KafkaError(f"node {node_id} (pid {node.pid}) survived SIGKILL")

    def restart(self, node_id, timeout=READY_TIMEOUT):
        """Starts a stopped or killed node again (same id, ports, data) and waits until it
        serves metadata listing every alive broker; returns seconds."""
        node = self.node(node_id)
        if node.alive():
            raise KafkaError(f"node {node_id} is still running (pid {node.pid})")
        for port in node.ports:
            if port_accepts(port):
                raise KafkaError(f"port {port} of node {node_id} was taken meanwhile")
        started = time.monotonic()
        self._launch(node)
        self.wait_ready(timeout)
        return time.monotonic() - started

    def stop(self, timeout=STOP_TIMEOUT, remove=None):
        """Stops every node: SIGTERM to all, bounded wait, SIGKILL to the rest. Removes the
        work directory if this object made it (or remove=True)."""
        running = [n for n in self.nodes if n.alive()]
        for node in running:
            self._signal(node, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node in running:
            if not self._wait_exit(node, max(0.1, deadline - time.monotonic())):
                log(f"node {node.id} (pid {node.pid}) ignored SIGTERM for {timeout} s: SIGKILL")
                self._signal(node, signal.SIGKILL)
                if not self._wait_exit(node, 10):
                    raise KafkaError(f"node {node.id} (pid {node.pid}) survived SIGKILL")
        if remove if remove is not None else self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def status(self):
        rows = []
        for n in self.nodes:
            alive = n.alive()
            rows.append({"id": n.id, "pid": n.pid, "alive": alive, "address": n.address,
                         "controller_port": n.controller_port,
                         "rss_mb": round(n.rss_kb() / 1024, 1) if alive and n.rss_kb() else None,
                         "brokers_seen": self.brokers_seen(n) if alive else None})
        return rows


# --------------------------------------------------------------------------- command line

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("fetch", help="download Kafka into the cache (once per machine)")
    p.add_argument("--version")
    p = sub.add_parser("start", help="start an N-node KRaft cluster in DIR")
    p.add_argument("nodes", type=int, choices=[1, 3])
    p.add_argument("dir")
    p.add_argument("--version")
    p.add_argument("--timeout", type=float, default=READY_TIMEOUT)
    p.add_argument("--listeners", default="", metavar="L,...",
                   help=f"extra listeners, of {','.join(LISTENER_KINDS)} (PKI in DIR/pki)")
    p.add_argument("--sasl-user", action="append", default=[], metavar="NAME:PASSWORD",
                   help="a user of the SASL listeners, PLAIN and SCRAM (repeatable)")
    for name in ("stop", "status", "bootstrap"):
        p = sub.add_parser(name)
        p.add_argument("dir")
        if name == "stop":
            p.add_argument("--remove", action="store_true", help="also delete DIR")
        if name == "bootstrap":
            p.add_argument("listener", nargs="?", default="PLAINTEXT")
    for name in ("kill", "stop-node", "restart"):
        p = sub.add_parser(name)
        p.add_argument("dir")
        p.add_argument("node", type=int)
    p = sub.add_parser("create-topic")
    p.add_argument("dir")
    p.add_argument("topic")
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument("--replication-factor", type=int)
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    p = sub.add_parser("leader")
    p.add_argument("dir")
    p.add_argument("topic")
    p.add_argument("partition", type=int, nargs="?", default=0)
    p.add_argument("--not", dest="not_node", type=int, metavar="NODE",
                   help="wait for a leader other than NODE; prints 'LEADER SECONDS'")
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("in-sync", help="wait until NODE is in the ISR of every partition")
    p.add_argument("dir")
    p.add_argument("topic")
    p.add_argument("node", type=int)
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("controller", help="node id of the active KRaft controller")
    p.add_argument("dir")
    p = sub.add_parser("metadata")
    p.add_argument("dir")
    p.add_argument("topic", nargs="?")
    a = ap.parse_args(argv)

    if a.cmd == "fetch":
        lib = fetch(a.version)
        print(lib)
        print(json.dumps(fetch_info(a.version)))
        return 0
    if a.cmd == "start":
        users = dict(u.split(":", 1) for u in a.sasl_user)
        c = KafkaCluster(a.dir, nodes=a.nodes, version=a.version,
                         listeners=[x for x in a.listeners.split(",") if x],
                         sasl_users=users)
        try:
            c.start(timeout=a.timeout)
        except BaseException:
            c.stop(remove=False)
            raise
        log(f"{a.nodes} node(s) ready in {c.timings['start_to_ready_s']:.1f} s "
            f"(format {c.timings['format_s']:.1f} s); pids "
            f"{[n.pid for n in c.nodes]}; logs in {a.dir}/node*/server.log")
        print(c.bootstrap)
        for name in c.listeners:
            print(f"{name} {c.listener_bootstrap(name)}")
        return 0
    c = KafkaCluster.load(a.dir)
    if a.cmd == "stop":
        c.stop(remove=a.remove)
    elif a.cmd == "status":
        print(json.dumps(c.status(), indent=1))
    elif a.cmd == "bootstrap":
        print(c.listener_bootstrap(a.listener))
    elif a.cmd == "kill":
        c.kill(a.node)
    elif a.cmd == "stop-node":
        c.stop_node(a.node)
    elif a.cmd == "restart":
        print(f"{c.restart(a.node):.1f}")
    elif a.cmd == "create-topic":
        cfg = dict(kv.split("=", 1) for kv in a.config) if a.config else None
        c.create_topic(a.topic, a.partitions, a.replication_factor, cfg)
        print(c.describe_topic(a.topic), end="")
    elif a.cmd == "leader":
        if a.not_node is not None:
            leader, took = c.wait_new_leader(a.topic, a.partition, a.not_node, a.timeout)
            print(f"{leader} {took:.1f}")
        else:
            print(c.leader(a.topic, a.partition, a.timeout))
    elif a.cmd == "in-sync":
        print(f"{c.wait_topic_in_sync(a.topic, a.node, a.timeout):.1f}")
    elif a.cmd == "controller":
        print(c.quorum_leader())
    elif a.cmd == "metadata":
        print(json.dumps(c.metadata(a.topic), indent=1))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KafkaError as e:
        print(f"kafka.py: {e}", file=sys.stderr)
        sys.exit(1)
