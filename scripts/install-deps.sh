#!/usr/bin/env bash
# Installs the Debian bookworm packages mosquitto-kafka builds, runs and tests with.
# Runs apt-get only when a package is missing, so a second run costs nothing.
#
#   scripts/install-deps.sh            # as root (or with sudo on the PATH)
set -euo pipefail

packages=(
    build-essential cmake pkg-config dpkg-dev file
    mosquitto mosquitto-clients mosquitto-dev libmosquitto-dev
    librdkafka-dev libcjson-dev libcmocka-dev libxxhash-dev
    haproxy kcat
    valgrind gnuplot-nox
    clang libclang-rt-14-dev
    python3 python3-pytest python3-paho-mqtt python3-confluent-kafka
    python3-cryptography
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The real-Kafka tests (tests/kafka) run Apache Kafka on the machine's Java and fetch it
# once with Maven: any JRE and mvn on the PATH will do, else Debian's.
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
# Debian's mosquitto package may start the system service; our tests and demo run their
# own brokers on ephemeral ports and do not need it, but leave it as the admin has it.
