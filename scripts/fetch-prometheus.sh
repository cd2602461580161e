#!/usr/bin/env bash
# Fetches Debian's prometheus package (the Prometheus server and promtool: in the package
# itself on Debian 12, in its own promtool package on Debian 13) for the tests,
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
pkgs=(prometheus)
if apt-cache show promtool >/dev/null 2>&1; then
    pkgs+=(promtool)
fi
(cd "$tmp" && timeout 300 apt-get download -q "${pkgs[@]}" >&2) ||
    { echo "fetch-prometheus: apt-get download ${pkgs[*]} failed" >&2; exit 1; }
rm -rf "$dir/root"
for deb in "$tmp"/*.deb; do
    dpkg-deb -x "$deb" "$tmp/root"
done
mv "$tmp/root" "$dir/root"
[ -x "$bin/prometheus" ] && [ -x "$bin/promtool" ] ||
    { echo "fetch-prometheus: no prometheus/promtool in ${pkgs[*]}" >&2; exit 1; }
echo "$bin"
