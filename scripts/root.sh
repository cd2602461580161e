#!/usr/bin/env bash
# root.sh - a Debian root of another release, for running the project's build and tests on
# that release from this machine (./scripts/test.sh --platform trixie uses it).
#
#   scripts/root.sh build  CODENAME          build the root unless the cached one is current
#   scripts/root.sh run    CODENAME CMD...   run CMD inside it, in /src (this repository)
#   scripts/root.sh shell  CODENAME          an interactive shell inside it, in /src
#   scripts/root.sh info   CODENAME          the root's directory, stamp and key versions
#   scripts/root.sh remove CODENAME          delete the cached root
#
# As root, on Debian. CODENAME is a Debian release debootstrap knows (trixie, bookworm).
#
# Build: `debootstrap --variant=minbase CODENAME DIR MIRROR`, then inside it a policy-rc.d
# that refuses every service start (exit 101: Debian's mosquitto package would otherwise
# start a broker on port 1883 of this machine's network), this machine's resolv.conf, apt
# sources for CODENAME, CODENAME-updates and CODENAME-security, and the project's packages
# installed by its own scripts/install-deps.sh (MQK_IN_ROOT=CODENAME: the root's own Java,
# no Maven). The root is cached in $MQK_ROOTS_DIR/CODENAME/root (default
# ~/.cache/mosquitto-kafka/roots) with a stamp written last: the recipe, the mirrors and
# install-deps.sh's package list. A root without a stamp (a build that did not finish) or
# with a different one (the package list changed) is deleted and built again.
#
# Run: in private mount and PID namespaces (unshare), so every mount and every process
# started inside ends with the run, whatever happens. The cached root is never written: it
# is the lower layer of an overlay whose upper layer is a temporary directory removed
# afterwards, so each run starts from the same root and runs may go on side by side. Inside:
# proc, sys (read-only), dev (with pts and a private shm), this repository at /src, its
# build-CODENAME/ directory over /src/build (every script that says build/ keeps working,
# and the host's build stays the host's), the Kafka jar cache (~/.cache/mosquitto-kafka, the
# roots in it hidden) at the same place under /root, and the caller's MQK_* variables.
# The network is the host's (tests listen on 127.0.0.1 ephemeral ports only).
#
# Environment:
#   MQK_ROOTS_DIR               where roots are cached (default ~/.cache/mosquitto-kafka/roots)
#   MQK_DEBIAN_MIRROR           Debian mirror (default: the one in /etc/apt/sources*)
#   MQK_DEBIAN_SECURITY_MIRROR  its security archive (default: likewise; "none": without)
#   MQK_ROOT_BUILD_TIMEOUT      bound on a build, seconds (default 1800)
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SELF")/.." && pwd)
# Bump when the recipe below changes in a way that needs new roots.
RECIPE=1
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/mosquitto-kafka
ROOTS=${MQK_ROOTS_DIR:-$CACHE/roots}
ROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { echo "root.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
    sed -n '2,12p' "$SELF" | sed 's/^# \{0,1\}//'
}

# The first URI of the deb sources in /etc/apt that serve a release (kind "main": a
# suite without a dash) or its security updates (kind "security": a "-security" suite).
# Reads deb822 .sources files and one-line sources.list files.
host_mirror() {
    local kind=$1 f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v kind="$kind" '
            function flush(   n, s, i, u) {
                if (!done && uris != "" && enabled != "no" && types ~ /(^| )deb( |$)/) {
                    n = split(suites, s, " ")
                    for (i = 1; i <= n; i++)
                        if ((kind == "security") == (s[i] ~ /-security$/) &&
                            (kind == "security" || s[i] !~ /-/)) {
                            split(uris, u, " "); print u[1]; done = 1; break
                        }
                }
                uris = suites = types = enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            { key = tolower($1); $1 = "" ; sub(/^ /, "") }
            key == "types:" { types = $0 }
            key == "uris:" { uris = $0 }
            key == "suites:" { suites = $0 }
            key == "enabled:" { enabled = tolower($0) }
            END { flush() }' "$f"
    done | head -n 1
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # deb [options] URI SUITE COMPONENTS...
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk -v kind="$kind" '
            $1 == "deb" && NF >= 3 {
                if ((kind == "security") == ($3 ~ /-security$/) &&
                    (kind == "security" || $3 !~ /-/)) print $2
            }'
    done | head -n 1
}

mirror() {
    local m=${MQK_DEBIAN_MIRROR:-}
    [ -n "$m" ] || m=$(host_mirror main | head -n 1)
    echo "${m:-http://deb.debian.org/debian}"
}

security_mirror() {
    local m=${MQK_DEBIAN_SECURITY_MIRROR:-}
    [ -n "$m" ] || m=$(host_mirror security | head -n 1)
    [ -n "$m" ] || m="$(mirror | sed 's#/debian/*$##')/debian-security"
    echo "$m"
}

# What a current root of $1 was built from: compared with the stamp, line by line.
stamp_text() {
    echo "recipe $RECIPE"
    echo "codename $1"
    echo "mirror $(mirror)"
    echo "security $(security_mirror)"
    echo "packages $(MQK_IN_ROOT=$1 "$REPO/scripts/install-deps.sh" --list | sort | tr '\n' ' ')"
}

is_current() {
    local dir=$ROOTS/$1
    [ -d "$dir/root" ] && [ -f "$dir/stamp" ] && [ "$(cat "$dir/stamp")" = "$(stamp_text "$1")" ]
}

check_codename() {
    [ -n "${1:-}" ] || die "which release? (e.g. trixie)"
    [[ $1 =~ ^[a-z]+$ ]] || die "'$1' is not a Debian release codename"
    [ -f "/usr/share/debootstrap/scripts/$1" ] ||
        die "debootstrap does not know '$1' (is debootstrap installed? scripts/install-deps.sh)"
}

# New mount and PID namespaces: every mount made there and every process started there is
# gone when the command returns (--kill-child: also when this script is killed).
NAMESPACES=(unshare --mount --pid --fork --kill-child --propagation private --)

# The private mounts a root needs, made inside $NAMESPACES: $1 the root's directory.
mount_system() {
    local m=$1
    mount -t proc proc "$m/proc"
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$m/sys"
    mount --rbind /dev "$m/dev" # with /dev/pts
    mount -t tmpfs -o nosuid,nodev,mode=1777 shm "$m/dev/shm" # not the host's
}

# chroot_run DIR WORKDIR CMD...: CMD in WORKDIR of the root mounted at DIR, with a clean
# environment: the caller's MQK_* variables, then MQK_IN_ROOT=<codename> ($IN_CODENAME).
chroot_run() {
    local m=$1 workdir=$2 kv
    shift 2
    local env=(HOME=/root USER=root LOGNAME=root PATH=$ROOT_PATH LANG=C.UTF-8
               "TERM=${TERM:-dumb}" DEBIAN_FRONTEND=noninteractive)
    while IFS= read -r -d '' kv; do
        case $kv in MQK_*) env+=("$kv") ;; esac
    done < <(env -0)
    env+=("MQK_IN_ROOT=$IN_CODENAME")
    chroot "$m" /usr/bin/env -i "${env[@]}" /bin/bash -c 'cd "$0" && exec "$@"' "$workdir" "$@"
}

# ---- build -------------------------------------------------------------------------------

write_config() {
    local codename=$1 new=$2 security
    security=$(security_mirror)
    # No service starts inside the root, ever (invoke-rc.d and deb-systemd-invoke ask this).
    printf '#!/bin/sh\n# scripts/root.sh: no service starts in this root.\nexit 101\n' \
        >"$new/usr/sbin/policy-rc.d"
    chmod 755 "$new/usr/sbin/policy-rc.d"
    cp -L /etc/resolv.conf "$new/etc/resolv.conf"
    rm -f "$new/etc/apt/sources.list"
    {
        echo "# Written by mosquitto-kafka's scripts/root.sh."
        echo "Types: deb"
        echo "URIs: $(mirror)"
        echo "Suites: $codename $codename-updates"
        echo "Components: main"
        echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
        if [ "$security" != none ]; then
            echo
            echo "Types: deb"
            echo "URIs: $security"
            echo "Suites: $codename-security"
            echo "Components: main"
            echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
        fi
    } >"$new/etc/apt/sources.list.d/debian.sources"
    mkdir -p "$new/src"
}

# Inside $NAMESPACES: the project's packages, installed into the new root $2.
_install() {
    local codename=$1 new=$2
    mount_system "$new"
    mount --bind -o ro "$REPO" "$new/src"
    IN_CODENAME=$codename
    chroot_run "$new" / apt-get update -q
    chroot_run "$new" /src ./scripts/install-deps.sh
    chroot_run "$new" / apt-get clean
}

build_locked() {
    local codename=$1 dir=$ROOTS/$1 t0 t1 t2 new
    is_current "$codename" && return 0
    new=$dir/root.new
    say "building the Debian $codename root in $dir/root (log: $dir/build.log)"
    t0=$SECONDS
    if [ -e "$dir/root" ] || [ -e "$new" ]; then
        rm -rf --one-file-system "$dir/root" "$new" "$dir/stamp"
        say "removed the stale root in $((SECONDS - t0)) s"
    fi
    mkdir -p "$dir"
    : >"$dir/build.log"
    t0=$SECONDS
    timeout "${MQK_ROOT_BUILD_TIMEOUT:-1800}" debootstrap --variant=minbase "$codename" "$new" \
        "$(mirror)" >>"$dir/build.log" 2>&1 ||
        { tail -n 20 "$dir/build.log" >&2; die "debootstrap failed: see $dir/build.log"; }
    t1=$SECONDS
    write_config "$codename" "$new"
    timeout "${MQK_ROOT_BUILD_TIMEOUT:-1800}" "${NAMESPACES[@]}" \
        "$SELF" _install "$codename" "$new" >>"$dir/build.log" 2>&1 ||
        { tail -n 20 "$dir/build.log" >&2; die "installing the packages failed: see $dir/build.log"; }
    t2=$SECONDS
    mv "$new" "$dir/root"
    stamp_text "$codename" >"$dir/stamp.tmp"
    mv "$dir/stamp.tmp" "$dir/stamp" # last: a root with a stamp is complete
    say "built the $codename root in $((t2 - t0)) s (debootstrap $((t1 - t0)) s, packages" \
        "$((t2 - t1)) s), $(du -sh --one-file-system "$dir/root" | cut -f1)"
    echo "built in $((t2 - t0)) s (debootstrap $((t1 - t0)) s, packages $((t2 - t1)) s)" \
        >>"$dir/build.log"
}

# Opens the lock of root $1 on file descriptor 9 (kept by everything started after).
open_lock() {
    mkdir -p "$ROOTS"
    exec 9>"$ROOTS/$1.lock"
}

# build CODENAME: the cached root, current (built or rebuilt under the exclusive lock).
build() {
    check_codename "$1"
    [ "$(id -u)" -eq 0 ] || die "building a root needs root (debootstrap, chroot)"
    open_lock "$1"
    flock -w "${MQK_ROOT_BUILD_TIMEOUT:-1800}" 9 || die "timed out waiting for $ROOTS/$1.lock"
    build_locked "$1"
    flock -u 9
}

# Builds root $1 if needed and holds it (shared lock on fd 9) for the caller's run.
hold() {
    local i
    for i in 1 2 3; do
        build "$1"
        flock -s -w "${MQK_ROOT_BUILD_TIMEOUT:-1800}" 9 || die "timed out waiting for $ROOTS/$1.lock"
        is_current "$1" && return 0
        flock -u 9 # rebuilt by another checkout with another package list meanwhile: again
    done
    die "the $1 root keeps changing under this run (another checkout with other packages?)"
}

# ---- run ---------------------------------------------------------------------------------

# Inside $NAMESPACES (PID 1 there): the overlay, the mounts, then the command.
_inside() {
    local codename=$1 run=$2
    shift 2
    local lower=$ROOTS/$codename/root m=$run/merged
    mkdir -p "$run/upper" "$run/work" "$m"
    if ! mount -t overlay overlay -o "lowerdir=$lower,upperdir=$run/upper,workdir=$run/work" \
        "$m" 2>/dev/null; then
        # $run's file system cannot be an overlay's upper layer (it is itself an overlay,
        # in a container): keep the run's writes in memory instead.
        mount -t tmpfs -o mode=755 upper "$run/upper"
        mkdir -p "$run/upper/u" "$run/upper/w"
        mount -t overlay overlay -o "lowerdir=$lower,upperdir=$run/upper/u,workdir=$run/upper/w" \
            "$m"
    fi
    mount_system "$m"
    mkdir -p "$m/src" "$REPO/build" "$REPO/build-$codename"
    mount --bind "$REPO" "$m/src"
    mount --bind "$REPO/build-$codename" "$m/src/build"
    mkdir -p "$CACHE" "$m/root/.cache/mosquitto-kafka"
    mount --bind "$CACHE" "$m/root/.cache/mosquitto-kafka"
    case $ROOTS in
        "$CACHE"/*) mount -t tmpfs -o ro,size=16k roots "$m/root/.cache/mosquitto-kafka/${ROOTS#"$CACHE"/}" ;;
    esac
    if [ -n "${MQK_KAFKA_CACHE:-}" ]; then
        mkdir -p "$MQK_KAFKA_CACHE" "$m$MQK_KAFKA_CACHE"
        mount --bind "$MQK_KAFKA_CACHE" "$m$MQK_KAFKA_CACHE"
    fi
    cp -L /etc/resolv.conf "$m/etc/resolv.conf"

    IN_CODENAME=$codename
    chroot_run "$m" /src "$@"
}

# run CODENAME CMD...: CMD in /src inside the root; returns CMD's status.
run() {
    local codename=$1 rc run
    shift
    [ $# -gt 0 ] || die "run $codename: what command?"
    hold "$codename"
    run=$(mktemp -d "${TMPDIR:-/tmp}/mqk-root-$codename.XXXXXX")
    rc=0
    "${NAMESPACES[@]}" "$SELF" _inside "$codename" "$run" "$@" || rc=$?
    rm -rf --one-file-system "$run"
    return "$rc"
}

info() {
    local codename=$1 dir=$ROOTS/$1
    echo "root: $dir/root"
    if is_current "$codename"; then echo "state: current"; else echo "state: missing or stale"; fi
    [ -f "$dir/stamp" ] && sed 's/^/stamp: /' "$dir/stamp"
    [ -f "$dir/build.log" ] && grep '^built in' "$dir/build.log" | tail -n 1 | sed 's/^/build: /'
    if [ -d "$dir/root" ]; then
        echo "os: $(. "$dir/root/etc/os-release" && echo "$PRETTY_NAME")"
        chroot "$dir/root" dpkg-query -W -f='package: ${Package} ${Version}\n' \
            mosquitto librdkafka1 2>/dev/null || true
    fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
    build) build "${1:-}"; echo "$ROOTS/$1/root" ;;
    run)
        check_codename "${1:-}"
        codename=$1
        shift
        [ "${1:-}" = -- ] && shift
        run "$codename" "$@"
        ;;
    shell) check_codename "${1:-}"; run "$1" /bin/bash -l ;;
    info) check_codename "${1:-}"; info "$1" ;;
    remove)
        check_codename "${1:-}"
        open_lock "$1"
        flock -w 600 9 || die "timed out waiting for $ROOTS/$1.lock"
        rm -rf --one-file-system "${ROOTS:?}/$1"
        say "removed $ROOTS/$1"
        ;;
    _install) _install "$@" ;;
    _inside) _inside "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 1 ;;
esac
