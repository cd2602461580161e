#!/usr/bin/env bash
# The project's test command: installs what is missing, builds in build/, runs every test
# (cmocka unit tests, exported symbols, and the integration tests with a real mosquitto,
# mqk-devkafka and HAProxy), and exits with ctest's code.
#
#   ./scripts/test.sh                 # everything (as root: the package test installs the .deb)
#   ./scripts/test.sh -R forwarding   # extra arguments go to ctest
#   MQK_VALGRIND=1 ./scripts/test.sh  # mosquitto under valgrind (slow)
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

jobs=${MQK_JOBS:-2}
cmake -S . -B build
cmake --build build -j"$jobs"

# Two at a time: each integration file uses its own broker, Kafka topics and ports. The
# forwarding test is the heavy one; it is ordered first so it does not end the run alone.
set +e
ctest --test-dir build --output-on-failure -j"$jobs" --timeout 600 "$@"
rc=$?
set -e
echo "test.sh: ctest exited with $rc" >&2
exit $rc
