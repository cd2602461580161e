#!/usr/bin/env bash
# The ctest test "sanitize": builds the project with ASan+UBSan (MQK_SANITIZE=ON) in a
# build directory of its own, runs the cmocka unit tests there, then integration tests
# with mosquitto loading that plugin (MQK_ASAN=1: the ASan runtime preloaded, any
# sanitizer report in mosquitto's log fails the test; tests/integration/harness.py).
# Exits non-zero on any failure or report.
#
#   tests/sanitize/run.sh <source dir> <build dir> [test_x.py ...]
#
# Without test files it runs the set CI runs (SANITIZE_TESTS below, about 3 minutes on 2
# cores after a ~30 s build).
set -uo pipefail

src=$(cd "$1" && pwd)
build=$2
shift 2
python=${MQK_PYTHON:-/usr/bin/python3}
jobs=${MQK_JOBS:-2}

# The integration files run in one pytest session: one Kafka for all of them.
# Inbound routes and redistribute mode: the tests that go through their C code (inbound.c,
# inbound_publish.c, redistribute.c: forwarding, holding, dead letters), ~50 s.
SANITIZE_TESTS=(test_forwarding.py test_commands.py test_payloads.py test_filtering.py
                test_shutdown.py test_bad_config.py test_haproxy.py
                test_inbound.py::test_payloads_qos_and_retain test_inbound.py::test_placeholders
                test_inbound.py::test_invalid_topics_skipped_and_counted
                test_inbound.py::test_2000_records_4_partitions_in_order
                test_redistribute.py::test_a_spread_over_three_brokers
                test_redistribute.py::test_c_device_nowhere)
[ $# -gt 0 ] && SANITIZE_TESTS=("$@")

log() { echo "sanitize: $*" >&2; }

started=$SECONDS
cmake -S "$src" -B "$build" -DMQK_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null ||
    exit 1
cmake --build "$build" -j"$jobs" >"$build/build.log" 2>&1 || {
    tail -50 "$build/build.log"
    log "the MQK_SANITIZE=ON build failed"
    exit 1
}
log "built in $((SECONDS - started)) s"

# Unit tests and tools are sanitized executables: the runtime is linked in. Leaks count
# (detect_leaks is the default on x86_64; said here to be explicit).
export ASAN_OPTIONS=detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
rc=0
t=$SECONDS
ctest --test-dir "$build" -R '^unit_' -j"$jobs" --output-on-failure --timeout 300 || rc=1
log "unit tests: $([ $rc -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - t)) s"

t=$SECONDS
(cd "$src/tests/integration" &&
    MQK_ASAN=1 MQK_BUILD_DIR=$(cd "$build" && pwd) MQK_SOURCE_DIR=$src \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    "$python" -m pytest -q -p no:cacheprovider -rA "${SANITIZE_TESTS[@]}")
irc=$?
[ $irc -eq 0 ] || rc=1
log "integration tests (${SANITIZE_TESTS[*]}): $([ $irc -eq 0 ] && echo passed || echo FAILED)" \
    "in $((SECONDS - t)) s; $((SECONDS - started)) s in all"
exit $rc
