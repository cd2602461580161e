# hygiene.sh - did a run leave a directory of the system as it found it?
#
#   . "$ROOT/scripts/lib/hygiene.sh"
#   before=$(hygiene_snapshot /var/lib/mosquitto)
#   ... run the tests ...
#   hygiene_check /var/lib/mosquitto "$before" || echo "the tests changed it" >&2
#
# A snapshot lists every path under the directory with its type, permissions, owner and
# group: not sizes nor times, which the system's own mosquitto may change (its persistence
# file) without anyone's tests being to blame. Sourced by bash scripts.

# hygiene_snapshot DIR: one line per path under DIR (DIR included), sorted:
# "<path>\t<ls-style mode> <owner>:<group>"; "absent" when DIR does not exist.
hygiene_snapshot() {
    if [ -e "$1" ] || [ -L "$1" ]; then
        find "$1" -printf '%p\t%M %u:%g\n' 2>/dev/null | LC_ALL=C sort
    else
        echo "absent"
    fi
}

# hygiene_tmp_snapshot: the names in /tmp that a test run makes (its mqk-* directories,
# valgrind's vgdb-pipe-* FIFOs, lintian's mldbm-* files), sorted. They must all be gone when
# the run ends; other names in /tmp are not this project's.
hygiene_tmp_snapshot() {
    find /tmp -mindepth 1 -maxdepth 1 \( -name 'mqk-*' -o -name 'vgdb-pipe-*' -o \
        -name 'mldbm-*' \) -printf '%p\n' 2>/dev/null | LC_ALL=C sort
}

# hygiene_tmp_check SNAPSHOT: prints "  left    PATH" for each such name made since SNAPSHOT;
# returns 1 when there is any.
hygiene_tmp_check() {
    local left
    left=$(LC_ALL=C comm -13 <(printf '%s\n' "$1") <(hygiene_tmp_snapshot) | sed '/^$/d')
    [ -z "$left" ] && return 0
    printf '  left    %s\n' $left
    return 1
}

# hygiene_check DIR SNAPSHOT: prints "  added|removed|changed PATH ..." for each difference
# between SNAPSHOT and DIR now; returns 1 when there is any.
hygiene_check() {
    local now
    now=$(hygiene_snapshot "$1")
    [ "$now" = "$2" ] && return 0
    LC_ALL=C join -t $'\t' -a 1 -a 2 -e '-' -o 0,1.2,2.2 <(printf '%s\n' "$2") \
        <(printf '%s\n' "$now") | awk -F '\t' '
            $2 == $3 { next }
            $1 == "absent" { next }
            $2 == "-" { printf "  added   %s (%s)\n", $1, $3; next }
            $3 == "-" { printf "  removed %s (was %s)\n", $1, $2; next }
            { printf "  changed %s: %s -> %s\n", $1, $2, $3 }'
    return 1
}
