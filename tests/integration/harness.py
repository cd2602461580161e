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

This module only gathers the names of the modules beside it, one concern each, so that a
test (or a bench/ script) imports `harness` and finds everything:
  paths.py           where the programs are (plugin, mqk-devkafka, mosquitto, haproxy,
                     the public header, tests/kafka/kafka.py) and the environment switches
  procs.py           HarnessError, bounded waits, free ports, temporary directories,
                     Process and Tool, cpu_seconds
  header.py          HDR, ENV, SYS_PREFIX: the names include/mosquitto_kafka.h defines
  kafka_backends.py  RealKafka, DevKafka, ExternalKafka, start_kafka, topic_partitions
  brokers.py         Mosquitto (valgrind, sanitizers), HAProxy, journal dirs, passwd files,
                     the WebSockets probe
  mqtt_clients.py    Client, v5 properties, SysCounters, heap_current, Load
  records.py         Record, read_topic(s), and the sequence analysis every check of lost,
                     duplicate and reordered numbers uses (sequence_analysis, one_sequence,
                     sequence_report, format_report)

Rules every helper keeps:
- only processes the harness started are signalled, by their pid;
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

import confluent_kafka as ck
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from paths import (ASAN, BUILD_DIR, DEVKAFKA, HAPROXY, KAFKA_MODE, KAFKA_PY, MOSQUITTO,
                   PLUGIN, PUBLIC_HEADER, SANITIZE_DIR, SLOW, SOURCE_DIR, VALGRIND)
from procs import (ALL, CLK_TCK, HarnessError, Process, Tool, cpu_seconds, free_port,
                   kafka_module, make_tempdir, port_accepts, require_file, unique, wait_for)
from header import _MACROS, ENV, HDR, SYS_PREFIX, read_header_macros
from kafka_backends import (KAFKAS, MOCK_PARTITIONS, DevKafka, ExternalKafka, RealKafka,
                            admin_create_topics, start_kafka, topic_partitions)
from brokers import (MOSQUITTO_VERSION, SANITIZER_REPORTS, WS_HANDSHAKE, HAProxy, Mosquitto,
                     built_plugin, make_journal_dir, mosquitto_version, passwd_file,
                     sanitizer_env, sanitizer_report, websockets_probe, websockets_supported,
                     with_journal_dir)
from mqtt_clients import (V5, V311, Client, Load, SysCounters, heap_current, v5_properties,
                          wait_published)
from records import (Record, Sequence, b64, decode_json, format_report, load_value,
                     one_sequence, read_topic, read_topics, sequence_analysis, sequence_report)

__all__ = [
    "ck", "mqtt", "PacketTypes", "Properties",
    # paths.py
    "ASAN", "BUILD_DIR", "DEVKAFKA", "HAPROXY", "KAFKA_MODE", "KAFKA_PY", "MOSQUITTO",
    "PLUGIN", "PUBLIC_HEADER", "SANITIZE_DIR", "SLOW", "SOURCE_DIR", "VALGRIND",
    # procs.py
    "ALL", "CLK_TCK", "HarnessError", "Process", "Tool", "cpu_seconds", "free_port",
    "kafka_module", "make_tempdir", "port_accepts", "require_file", "unique", "wait_for",
    # header.py
    "_MACROS", "ENV", "HDR", "SYS_PREFIX", "read_header_macros",
    # kafka_backends.py
    "KAFKAS", "MOCK_PARTITIONS", "DevKafka", "ExternalKafka", "RealKafka",
    "admin_create_topics", "start_kafka", "topic_partitions",
    # brokers.py
    "MOSQUITTO_VERSION", "SANITIZER_REPORTS", "WS_HANDSHAKE", "HAProxy", "Mosquitto",
    "built_plugin", "make_journal_dir", "mosquitto_version", "passwd_file", "sanitizer_env",
    "sanitizer_report", "websockets_probe", "websockets_supported", "with_journal_dir",
    # mqtt_clients.py
    "V5", "V311", "Client", "Load", "SysCounters", "heap_current", "v5_properties",
    "wait_published",
    # records.py
    "Record", "Sequence", "b64", "decode_json", "format_report", "load_value", "one_sequence",
    "read_topic", "read_topics", "sequence_analysis", "sequence_report",
]
