#!/usr/bin/env bash
# The project's test command: installs what is missing, builds in build/, fetches Apache
# Kafka once per machine, runs every test (cmocka unit tests, exported symbols, and the
# integration tests with a real mosquitto, a real Apache Kafka and HAProxy), and exits
# with ctest's code.
#
#   ./scripts/test.sh                 # everything (as root: the package test installs the .deb)
#   ./scripts/test.sh -R forwarding   # extra arguments go to ctest
#   MQK_VALGRIND=1 ./scripts/test.sh  # mosquitto under valgrind (slow)
#   MQK_KAFKA=mock ./scripts/test.sh  # the integration tests against mqk-devkafka instead
#                                     # (failover, kafka_outage, stop_under_load stay real)
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

jobs=${MQK_JOBS:-2}
cmake -S . -B build
cmake --build build -j"$jobs"

# Apache Kafka's jars from Maven Central into ~/.cache/mosquitto-kafka (once per machine;
# later runs return at once without the network). Bounded: MQK_KAFKA_FETCH_TIMEOUT (900 s).
# The default release (4.x, or MQK_KAFKA_VERSION), and 3.9.2 for the integration_*_kafka3 tests.
export MQK_KAFKA=${MQK_KAFKA:-real}
for version in "" 3.9.2; do
    timeout "$(( ${MQK_KAFKA_FETCH_TIMEOUT:-900} + 30 ))" /usr/bin/python3 tests/kafka/kafka.py \
        fetch ${version:+--version "$version"} >/dev/null
done

# Two at a time: each integration file uses its own broker, Kafka topics and ports. The
# forwarding test is the heavy one; it is ordered first so it does not end the run alone.
set +e
ctest --test-dir build --output-on-failure -j"$jobs" --timeout 600 "$@"
rc=$?
set -e
echo "test.sh: ctest exited with $rc" >&2
exit $rc
