#!/usr/bin/env bash
# The project's test command: on each platform, installs what is missing, builds, and runs
# every test (cmocka unit tests, exported symbols, the integration tests with a real
# mosquitto, a real Apache Kafka and HAProxy, the package, sanitizers, fuzzing). The
# platforms are this machine ("host") and each other supported Debian release (bookworm,
# trixie) in a root built by debootstrap and cached (scripts/root.sh): on Debian 12
# bookworm, that is the host and then a Debian 13 trixie root.
#
#   ./scripts/test.sh                     # everything, on every platform (as root)
#   ./scripts/test.sh --platform host     # this machine only
#   ./scripts/test.sh --platform trixie   # the Debian 13 root only (host: if it is trixie)
#   ./scripts/test.sh -R forwarding       # extra arguments go to ctest, on each platform
#   MQK_VALGRIND=1 ./scripts/test.sh      # mosquitto under valgrind (slow)
#   MQK_KAFKA=mock ./scripts/test.sh      # the integration tests against mqk-devkafka instead
#                                         # (failover, kafka_outage, stop_under_load stay real)
#
# Exits 0 when every platform passed; else with the first failing platform's ctest code (1
# if only the hygiene check failed), after saying which platforms failed. At the end it
# checks that /var/lib/mosquitto is as it was before the tests (paths, types, modes,
# owners): the tests must keep to their own temporary directories; and that they removed
# those (no new mqk-*, vgdb-pipe-* or mldbm-* in /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=lib/hygiene.sh
. "$ROOT/scripts/lib/hygiene.sh"

# The Debian releases the suite runs on, besides the host: each in a root, unless the host
# is that release. Inside a root (MQK_IN_ROOT), only that root itself.
RELEASES=(bookworm trixie)

host_codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
host_name=$(. /etc/os-release && echo "${PRETTY_NAME:-$host_codename}")

platforms=()
ctest_args=()
while [ $# -gt 0 ]; do
    case $1 in
        --platform) [ $# -ge 2 ] || { echo "test.sh: --platform needs host or a release" >&2; exit 2; }
            IFS=, read -ra more <<<"$2"; platforms+=("${more[@]}"); shift 2 ;;
        --platform=*) IFS=, read -ra more <<<"${1#--platform=}"; platforms+=("${more[@]}"); shift ;;
        *) ctest_args+=("$1"); shift ;;
    esac
done
if [ ${#platforms[@]} -eq 0 ]; then
    platforms=(host)
    if [ -z "${MQK_IN_ROOT:-}" ]; then
        for r in "${RELEASES[@]}"; do
            [ "$r" = "$host_codename" ] || platforms+=("$r")
        done
    fi
fi
for i in "${!platforms[@]}"; do
    p=${platforms[$i]}
    [ "$p" = "$host_codename" ] && platforms[$i]=host
    case " ${RELEASES[*]} host " in
        *" $p "*) ;;
        *) echo "test.sh: unknown platform '$p' (host, ${RELEASES[*]})" >&2; exit 2 ;;
    esac
    if [ -n "${MQK_IN_ROOT:-}" ] && [ "${platforms[$i]}" != host ]; then
        echo "test.sh: inside the $MQK_IN_ROOT root only --platform host runs" >&2
        exit 2
    fi
done

./scripts/install-deps.sh

# Apache Kafka's jars from Maven Central into ~/.cache/mosquitto-kafka (once per machine;
# later runs return at once without the network). Bounded: MQK_KAFKA_FETCH_TIMEOUT (900 s).
# The default release (4.x, or MQK_KAFKA_VERSION), and 3.9.2 for the integration_*_kafka3 tests.
# Here, on the host, for the roots too: their cache is this one, bind-mounted.
export MQK_KAFKA=${MQK_KAFKA:-real}
for version in "" 3.9.2; do
    timeout "$(( ${MQK_KAFKA_FETCH_TIMEOUT:-900} + 30 ))" /usr/bin/python3 tests/kafka/kafka.py \
        fetch ${version:+--version "$version"} >/dev/null
done

# The suite on this machine, in build/: ctest's exit code.
run_here() {
    local jobs=${MQK_JOBS:-2} rc
    cmake -S . -B build
    cmake --build build -j"$jobs"
    # Two at a time: each integration file uses its own broker, Kafka topics and ports. The
    # forwarding test is the heavy one; it is ordered first so it does not end the run alone.
    rc=0
    ctest --test-dir build --output-on-failure -j"$jobs" --timeout 600 "${ctest_args[@]}" || rc=$?
    echo "test.sh: ctest exited with $rc" >&2
    return "$rc"
}

# The suite in the Debian root of release $1 (scripts/root.sh), in build-$1/ (mounted on the
# root's /src/build): the exit code of the test.sh that runs there.
run_root() {
    ./scripts/root.sh run "$1" -- ./scripts/test.sh --platform host "${ctest_args[@]}"
}

label() {
    if [ "$1" != host ]; then
        echo "$1 (a Debian $1 root, scripts/root.sh)"
    elif [ -n "${MQK_IN_ROOT:-}" ]; then
        echo "the $MQK_IN_ROOT root ($host_name)"
    else
        echo "host ($host_name)"
    fi
}

duration() {
    printf '%dm%02ds' $(($1 / 60)) $(($1 % 60))
}

before=$(hygiene_snapshot /var/lib/mosquitto)
tmp_before=$(hygiene_tmp_snapshot)
started=$SECONDS
results=()
failed=()
status=0
for p in "${platforms[@]}"; do
    echo "==== test.sh: $(label "$p"): start" >&2
    t0=$SECONDS
    rc=0
    if [ "$p" = host ]; then run_here || rc=$?; else run_root "$p" || rc=$?; fi
    took=$(duration $((SECONDS - t0)))
    if [ "$rc" -eq 0 ]; then
        results+=("$(label "$p"): passed in $took")
    else
        results+=("$(label "$p"): FAILED (exit $rc) in $took")
        failed+=("${MQK_IN_ROOT:-$p}")
        [ "$status" -ne 0 ] || status=$rc
    fi
    echo "==== test.sh: ${results[-1]}" >&2
done

if ! changes=$(hygiene_check /var/lib/mosquitto "$before"); then
    results+=("hygiene: the tests changed /var/lib/mosquitto:"$'\n'"$changes")
    failed+=(hygiene)
    [ "$status" -ne 0 ] || status=1
fi
if ! changes=$(hygiene_tmp_check "$tmp_before"); then
    results+=("hygiene: the tests left files in /tmp:"$'\n'"$changes")
    failed+=(hygiene)
    [ "$status" -ne 0 ] || status=1
fi

echo "==== test.sh: summary" >&2
printf '  %s\n' "${results[@]}" >&2
if [ ${#platforms[@]} -gt 1 ]; then
    echo "  total $(duration $((SECONDS - started)))" >&2
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "test.sh: FAILED: ${failed[*]}" >&2
fi
exit "$status"
