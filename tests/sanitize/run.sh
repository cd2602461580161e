#!/usr/bin/env bash
# The ctest test "sanitize": builds the project with ASan+UBSan (MQK_SANITIZE=ON) in a
# build directory of its own, runs the cmocka unit tests there, then integration tests
# with mosquitto loading that plugin (MQK_ASAN=1: the ASan runtime preloaded, any
# sanitizer report in mosquitto's log fails the test; tests/integration/harness.py).
# Exits non-zero on any failure or report.
#
# The build also has gcc's --coverage (MQK_COVERAGE=ON): at the end lcov reads the counters
# the unit tests and the sanitized mosquitto left, prints plugin/'s line coverage and fails
# when it is below the floor in tests/sanitize/coverage_floor; with test files given, it
# only reports (MQK_COVERAGE_FLOOR sets the floor either way). Needs lcov.
#
#   tests/sanitize/run.sh <source dir> <build dir> [test_x.py ...]
#
# Without test files it runs the set CI runs (SANITIZE_TESTS below, about 6 minutes on 2
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
# For coverage (the floor): the HTTP listener and /healthz, the command counters, reloads
# under load, topic creation (metrics.c, plugin.c's reload, producer.c's Admin API), ~100 s.
SANITIZE_TESTS=(test_forwarding.py test_commands.py test_payloads.py test_filtering.py
                test_shutdown.py test_bad_config.py test_haproxy.py
                test_inbound.py::test_payloads_qos_and_retain test_inbound.py::test_placeholders
                test_inbound.py::test_invalid_topics_skipped_and_counted
                test_inbound.py::test_2000_records_4_partitions_in_order
                test_redistribute.py::test_a_spread_over_three_brokers
                test_redistribute.py::test_c_device_nowhere
                test_metrics.py::test_healthz_turns_503_when_kafka_stops_and_200_when_back
                test_metrics.py::test_command_counters_and_consumer_lag
                test_reload.py::test_reload_under_load test_topics.py::test_create_topics)
given_tests=$#
[ $# -gt 0 ] && SANITIZE_TESTS=("$@")

log() { echo "sanitize: $*" >&2; }

started=$SECONDS
command -v lcov >/dev/null || { log "lcov is missing (scripts/install-deps.sh installs it)"; exit 1; }
cmake -S "$src" -B "$build" -DMQK_SANITIZE=ON -DMQK_COVERAGE=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
cmake --build "$build" -j"$jobs" >"$build/build.log" 2>&1 || {
    tail -50 "$build/build.log"
    log "the MQK_SANITIZE=ON build failed"
    exit 1
}
log "built in $((SECONDS - started)) s"

# Coverage counters: the unit tests (this user) write theirs beside the objects; mosquitto
# drops to user mosquitto when started as root, so the processes the integration tests
# start write under GCOV_PREFIX, a directory anyone may write to (umask 000 there, so that
# whoever makes a directory first does not lock the others out). It is made in /tmp, not in
# the build tree: a clone in a mode-0700 directory (mktemp -d) would keep user mosquitto out
# of anything below it, and the processes' counters would be silently missing.
build=$(cd "$build" && pwd)
find "$build" -name '*.gcda' -delete
rm -rf "$build/coverage"
mkdir -p "$build/coverage"
gcov_prefix=$(mktemp -d /tmp/mqk-gcov.XXXXXX)
trap 'rm -rf "$gcov_prefix"' EXIT
chmod 1777 "$gcov_prefix"

# Unit tests and tools are sanitized executables: the runtime is linked in. Leaks count
# (detect_leaks is the default on x86_64; said here to be explicit).
export ASAN_OPTIONS=detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
rc=0
t=$SECONDS
ctest --test-dir "$build" -R '^unit_' -j"$jobs" --output-on-failure --timeout 300 || rc=1
log "unit tests: $([ $rc -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - t)) s"

t=$SECONDS
(cd "$src/tests/integration" && umask 000 &&
    GCOV_PREFIX=$gcov_prefix MQK_ASAN=1 MQK_BUILD_DIR=$(cd "$build" && pwd) MQK_SOURCE_DIR=$src \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    "$python" -m pytest -q -p no:cacheprovider -rA "${SANITIZE_TESTS[@]}")
irc=$?
[ $irc -eq 0 ] || rc=1
log "integration tests (${SANITIZE_TESTS[*]}): $([ $irc -eq 0 ] && echo passed || echo FAILED)" \
    "in $((SECONDS - t)) s"

# plugin/'s line coverage: the unit tests' counters and the processes' (their .gcda files
# under GCOV_PREFIX, given the .gcno files beside them), added, cut down to plugin/.
t=$SECONDS
cov=$build/coverage
(cd "$build" && find . -name '*.gcno' -path '*plugin*') | while read -r f; do
    [ -d "$gcov_prefix$build/$(dirname "$f")" ] && cp "$build/$f" "$gcov_prefix$build/$f"
done
lcov_q() { lcov --quiet "$@" >>"$cov/lcov.log" 2>&1; }
infos=()
lcov_q --capture --directory "$build/plugin" --output-file "$cov/unit.info" &&
    infos+=(--add-tracefile "$cov/unit.info")
if [ -d "$gcov_prefix$build/plugin" ]; then
    lcov_q --capture --directory "$gcov_prefix$build/plugin" --output-file "$cov/processes.info" &&
        infos+=(--add-tracefile "$cov/processes.info")
else
    log "no coverage counters from the integration tests' mosquitto under $gcov_prefix" \
        "(could user mosquitto write there?): the figure would be the unit tests' alone"
    [ "$given_tests" -gt 0 ] || rc=1
fi
if [ ${#infos[@]} -gt 0 ] && lcov_q "${infos[@]}" --output-file "$cov/all.info" &&
    lcov_q --extract "$cov/all.info" "$src/plugin/*" --output-file "$cov/plugin.info"; then
    read -r hit total < <(awk -F: '/^LH:/ {h += $2} /^LF:/ {f += $2} END {print h, f}' \
        "$cov/plugin.info")
    pct=$(awk -v h="$hit" -v f="$total" 'BEGIN {printf "%.1f", f ? 100 * h / f : 0}')
    # The floor is the whole set's: a run of some files only reports its figure.
    floor=$(cat "$src/tests/sanitize/coverage_floor")
    [ "$given_tests" -gt 0 ] && floor=0
    floor=${MQK_COVERAGE_FLOOR:-$floor}
    echo "plugin/ line coverage: $pct% ($hit/$total lines); floor $floor%" >&2
    log "per file: lcov --list $cov/plugin.info; HTML: genhtml -o $cov/html $cov/plugin.info"
    if awk -v p="$pct" -v f="$floor" 'BEGIN {exit !(p < f)}'; then
        log "plugin/ line coverage $pct% is below the floor of $floor%" \
            "(tests/sanitize/coverage_floor)"
        rc=1
    fi
else
    tail -20 "$cov/lcov.log" >&2
    log "lcov failed: no coverage figure"
    rc=1
fi
log "coverage in $((SECONDS - t)) s; $((SECONDS - started)) s in all"
exit $rc
