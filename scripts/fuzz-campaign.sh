#!/usr/bin/env bash
# A fuzz campaign, outside CI: runs every libFuzzer harness of tests/fuzz to a number of
# executions (10^7 by default), one target at a time with one worker (the machine's cores
# are shared), and writes what each did (executions, seconds, libFuzzer's coverage figures
# cov: and ft:, corpus size, findings) to docs/results/fuzz.md. Each target runs on a copy
# of its seed corpus (tests/fuzz/corpus/<target>/), so the tree stays as it is; an input
# that crashes is kept in <build-dir>/campaign/crashes/ and named in the report.
#
#   scripts/fuzz-campaign.sh [build-dir [runs [report]]]
#   nice -n 10 scripts/fuzz-campaign.sh build/fuzz-campaign 10000000   # ~40 minutes
#   scripts/fuzz-campaign.sh /tmp/f 100000 /tmp/fuzz.md             # a quick try
#
# Environment: MQK_FUZZ_TARGETS="options route" runs only those; MQK_FUZZ_MAX_LEN=<bytes>
# sets libFuzzer's -max_len for every target (default: 1024 for fuzz_envelope, which slows
# to ~4,400 executions/s on 4 KiB inputs; libFuzzer's own, 4096 here, for the others, the
# journal's seeds being segment files up to 5 KiB); CC (default clang).
# Exits non-zero when a target found anything (crash, leak, sanitizer report, timeout).
# tests/fuzz/README.md says how to reproduce a finding and add it to the corpus.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$src/build/fuzz-campaign}
runs=${2:-10000000}
report=${3:-$src/docs/results/fuzz.md}
cc=${CC:-clang}
read -r -a targets <<<"${MQK_FUZZ_TARGETS:-options route template envelope journal}"

mkdir -p "$dir"
cmake -S "$src" -B "$dir" -DMQK_FUZZ=ON -DMQK_BUILD_TESTS=OFF -DCMAKE_C_COMPILER="$cc" \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo >"$dir/campaign-configure.log" 2>&1 ||
	{ cat "$dir/campaign-configure.log"; exit 1; }
cmake --build "$dir" --target fuzz -j"${MQK_JOBS:-2}" >"$dir/campaign-build.log" 2>&1 ||
	{ tail -n 100 "$dir/campaign-build.log"; exit 1; }

work="$dir/campaign"
rm -rf "$work"
mkdir -p "$work/crashes"
started=$(date -u '+%Y-%m-%d %H:%M UTC')
rows=()
failed=0
for t in "${targets[@]}"; do
	mkdir -p "$work/corpus/$t"
	cp "$src/tests/fuzz/corpus/$t/"* "$work/corpus/$t/"
	seeds=$(find "$work/corpus/$t" -type f | wc -l)
	log="$work/fuzz_$t.log"
	extra=()
	max_len=${MQK_FUZZ_MAX_LEN:-$([ "$t" = envelope ] && echo 1024 || true)}
	[ -n "$max_len" ] && extra+=(-max_len="$max_len")
	t0=$SECONDS
	set +e
	# -timeout: one input taking 10 s is a hang. One process, one worker: libFuzzer's
	# default (an explicit -jobs=1 would fork a child that logs to ./fuzz-0.log).
	"$dir/tests/fuzz/fuzz_$t" -runs="$runs" -timeout=10 ${extra[@]+"${extra[@]}"} \
		-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/crashes/$t-" \
		"$work/corpus/$t" >"$log" 2>&1
	rc=$?
	set -e
	secs=$((SECONDS - t0))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	# The last status line (#N DONE/pulse/NEW ... cov: C ft: F corp: K/...).
	last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
	cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
	ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
	corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
	found=$(ls "$work/crashes" | grep "^$t-" || true)
	if [ "$rc" -ne 0 ] || [ -n "$found" ] ||
		grep -qE 'ERROR: (Address|Leak|Undefined)|runtime error:' "$log"; then
		failed=$((failed + 1))
		what=$(grep -m1 -E 'ERROR: |runtime error:|deadly signal|ALARM' "$log" |
			sed 's/^==[0-9]*==//; s/|/\\|/g' || true)
		finding="exit $rc: ${what:-see log}; input: ${found:-none kept}"
		echo "fuzz_$t: FOUND something after ${execs:-?} executions ($finding)" >&2
		tail -n 40 "$log" >&2
	else
		finding="none"
	fi
	echo "fuzz_$t: ${execs:-?} executions in $secs s, cov ${cov:-?} ft ${ft:-?}," \
		"corpus $seeds -> ${corp:-?}, findings: $finding" >&2
	rows+=("| \`fuzz_$t\`${max_len:+ (-max_len=$max_len)} | ${execs:-?} | $secs | $((${execs:-0} / (secs > 0 ? secs : 1))) | ${cov:-?} | ${ft:-?} | $seeds | ${corp:-?} | $finding |")
done

{
	echo "# Fuzz campaign"
	echo
	echo "Written by \`scripts/fuzz-campaign.sh\` (outside CI; the ctest test \`fuzz\` runs each"
	echo "harness 15 s). Each libFuzzer harness of \`tests/fuzz/\` (what they check:"
	echo "\`tests/fuzz/README.md\`) ran to $runs executions, one target at a time, one worker,"
	echo "ASan and UBSan on, from a copy of its seed corpus in \`tests/fuzz/corpus/<target>/\`."
	echo
	echo "- Date: $started (finished $(date -u '+%H:%M UTC'))"
	echo "- Platform: $(. /etc/os-release && echo "$PRETTY_NAME"), $(uname -m)," \
		"$(nproc) cores shared, $("$cc" --version | head -n 1)," \
		"librdkafka $(pkg-config --modversion rdkafka), mosquitto $(pkg-config --modversion libmosquitto)"
	echo "- Commit: $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)"
	echo "- Command: \`nice -n 10 scripts/fuzz-campaign.sh ${dir#"$src"/} $runs\`, which runs"
	echo "  for each target \`fuzz_<target> -runs=$runs -timeout=10 [-max_len=...]"
	echo "  -rss_limit_mb=2048 -print_final_stats=1 <copy of corpus/<target>>\`"
	echo
	echo "cov: is libFuzzer's count of code edges (blocks) reached, ft: its count of features"
	echo "(edges with hit-count buckets, comparisons), both at the end of the run; corpus is the"
	echo "seed count and the inputs (and bytes) libFuzzer kept."
	echo
	echo "| target | executions | seconds | execs/s | cov | ft | seeds | corpus at end | findings |"
	echo "|---|---|---|---|---|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
	echo
	if [ "$failed" -eq 0 ]; then
		echo "No crash, leak, sanitizer report, timeout or failed check in any target."
	else
		echo "$failed target(s) found something: the inputs were kept in"
		echo "\`${dir#"$src"/}/campaign/crashes/\`; see the findings column."
	fi
} >"$report"
echo "fuzz campaign: report in $report; $failed target(s) with findings" >&2
[ "$failed" -eq 0 ]
