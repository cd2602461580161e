"""
paths.py - where the integration tests find what they run, and the environment switches.

Every path to a built or installed program the harness starts is here, in one place:
the plugin, the dev Kafka, mosquitto, HAProxy, the public header, tests/kafka/kafka.py.
Environment: MQK_BUILD_DIR, MQK_SOURCE_DIR, MQK_VALGRIND, MQK_ASAN, MQK_KAFKA (harness.py
says what each does).
"""

import os

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

KAFKA_PY = os.path.join(SOURCE_DIR, "tests", "kafka", "kafka.py")
SANITIZE_DIR = os.path.join(SOURCE_DIR, "tests", "sanitize")
