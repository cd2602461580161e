#!/usr/bin/env bash
# Installs the Debian packages mosquitto-kafka builds, runs, tests and packages with, on
# Debian 12 bookworm and Debian 13 trixie (the same names on both). Runs apt-get only when
# a package is missing, so a second run costs nothing.
#
#   scripts/install-deps.sh            # as root (or with sudo on the PATH)
#   scripts/install-deps.sh --list     # the packages it wants here, one a line (no install)
#
# Environment:
#   MQK_IN_ROOT=<codename>  set by scripts/root.sh inside a Debian root it built: the root
#                           always gets its own Java (default-jre-headless) and no Maven
#                           (the host fetches Kafka's jars; their cache is bind-mounted in)
#                           nor debootstrap (roots are built from the host).
set -euo pipefail

packages=(
    build-essential cmake pkg-config dpkg-dev file
    mosquitto mosquitto-clients mosquitto-dev libmosquitto-dev
    librdkafka-dev libcjson-dev libcmocka-dev libxxhash-dev libmicrohttpd-dev
    haproxy kcat
    valgrind gnuplot-nox
    # plugin/'s line coverage, which the ctest test sanitize reports (tests/sanitize/run.sh).
    lcov
    # libFuzzer: the default clang's runtime (libclang-rt-14-dev on bookworm, -19- on
    # trixie), through llvm-defaults' metapackage that both releases have.
    clang libclang-rt-dev
    lintian
    # The tests' Prometheus (Debian's prometheus package) is not installed, which would
    # start a service: scripts/fetch-prometheus.sh downloads and unpacks it into the cache.
    python3 python3-pytest python3-paho-mqtt python3-confluent-kafka
    python3-cryptography
)
if [ -n "${MQK_IN_ROOT:-}" ]; then
    packages+=(default-jre-headless)
else
    # scripts/root.sh builds the other platform's root with it (./scripts/test.sh).
    packages+=(debootstrap)
fi

if [ "${1:-}" = --list ]; then
    printf '%s\n' "${packages[@]}"
    exit 0
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The real-Kafka tests (tests/kafka) run Apache Kafka on the machine's Java and fetch it
# once with Maven: any JRE and mvn on the PATH will do, else Debian's.
if [ -z "${MQK_IN_ROOT:-}" ]; then
    command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
    command -v mvn >/dev/null 2>&1 || missing+=(maven)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
# Debian's mosquitto package may start the system service; our tests and demo run their
# own brokers on ephemeral ports and do not need it, but leave it as the admin has it.
