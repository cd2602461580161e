#!/usr/bin/env bash
# Fetches Debian's prometheus package (the Prometheus server and promtool) for the tests,
# without installing it: installing would start a system service. `apt-get download`
# takes the .deb of this platform's release into ~/.cache/mosquitto-kafka/, dpkg-deb -x
# unpacks it there. Idempotent: a second run only prints the directory. Bounded: apt-get
# gets 300 s.
#
#   scripts/fetch-prometheus.sh     # prints the bin directory (prometheus, promtool)
#
# Environment: MQK_CACHE (default ~/.cache/mosquitto-kafka).
set -euo pipefail

cache="${MQK_CACHE:-$HOME/.cache/mosquitto-kafka}"
codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-unknown}")"
dir="$cache/prometheus-$codename"
bin="$dir/root/usr/bin"
if [ -x "$bin/prometheus" ] && [ -x "$bin/promtool" ]; then
    echo "$bin"
    exit 0
fi
mkdir -p "$dir"
tmp="$(mktemp -d "$dir/fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# apt-get download writes into the current directory; as root it drops to _apt, which
# must be able to write there.
chmod 0777 "$tmp"
(cd "$tmp" && timeout 300 apt-get download -q prometheus >&2) ||
    { echo "fetch-prometheus: apt-get download prometheus failed" >&2; exit 1; }
deb="$(ls "$tmp"/prometheus_*.deb)"
rm -rf "$dir/root"
dpkg-deb -x "$deb" "$tmp/root"
mv "$tmp/root" "$dir/root"
[ -x "$bin/prometheus" ] && [ -x "$bin/promtool" ] ||
    { echo "fetch-prometheus: no prometheus/promtool in $deb" >&2; exit 1; }
echo "$bin"
