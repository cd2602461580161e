"""
test_example_consumer.py - examples/consumer (mqk-example-consumer), the example reader of
include/mosquitto_kafka.h, on a real Kafka and a real mosquitto with the plugin.

Four messages are published once under raw/ and once under json/ (QoS 0, 1, 2 and 1: text,
a payload outside printable ASCII and UTF-8, an empty one), one at a time, each route to a
topic of one partition. The consumer reads each topic (-n 4; -j for the envelope) and must
print, in publish order, one line per record: the client id, the MQTT topic, the QoS and the
payload (\\xNN escapes; base64:... for a JSON envelope's payload_base64), and exit 0. Without
-b/-t it prints its usage and exits 1.
"""

import base64
import os
import subprocess

import pytest

import harness

CONSUMER = os.path.join(harness.BUILD_DIR, "examples", "consumer", "mqk-example-consumer")
P = harness.unique("exc")
CLIENT = harness.unique("exc-dev")

# (topic under raw/ or json/, payload, qos, printed raw, printed from the envelope)
MESSAGES = [
    ("sensors/a/temp", b"21.5", 0, "21.5", "21.5"),
    ("sensors/b/text", b"hello world", 1, "hello world", "hello world"),
    ("sensors/a/bytes", b"\x00\xffz\\", 2, "\\x00\\xffz\\x5c",
     "base64:" + base64.b64encode(b"\x00\xffz\\").decode()),
    ("sensors/c/empty", b"", 1, "", ""),
]


@pytest.fixture(scope="module")
def published(kafka, start_module_broker):
    kafka.create_topics([f"{P}-raw", f"{P}-json"], partitions=1)
    broker = start_module_broker([
        ("bootstrap_servers", kafka.bootstrap),
        ("broker_id", "itest-exc"),
        ("route_raw", f"raw/# -> {P}-raw"),
        ("route_json", f"json/# -> {P}-json format=json"),
        ("stats_interval", "0"),
    ], name="mosquitto-exc")
    c = harness.Client(broker.port, CLIENT, harness.V5)
    for prefix in ("raw", "json"):
        for topic, payload, qos, _, _ in MESSAGES:
            c.publish_wait(f"{prefix}/{topic}", payload, qos=qos)
    c.close()


@pytest.mark.parametrize("fmt", ["raw", "json"])
def test_prints_each_record(kafka, published, fmt):
    harness.require_file(CONSUMER, "mqk-example-consumer", executable=True)
    argv = [CONSUMER, "-b", kafka.bootstrap, "-t", f"{P}-{fmt}", "-g", harness.unique("exc-g"),
            "-n", str(len(MESSAGES))] + (["-j"] if fmt == "json" else [])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    print(out.stdout, out.stderr)
    assert out.returncode == 0, (out.returncode, out.stderr)
    expected = [f"{CLIENT}\t{fmt}/{topic}\t{qos}\t{raw if fmt == 'raw' else env}"
                for topic, _, qos, raw, env in MESSAGES]
    lines = out.stdout.split("\n")
    assert lines[-1] == "", "the output must end with a newline"
    assert lines[:-1] == expected, f"{len(expected)} lines expected, got {len(lines) - 1}"


def test_usage():
    harness.require_file(CONSUMER, "mqk-example-consumer", executable=True)
    out = subprocess.run([CONSUMER], capture_output=True, text=True, timeout=10)
    assert out.returncode == 1 and out.stderr.startswith("usage: ") and out.stdout == ""
