#!/usr/bin/env bash
# Builds the libFuzzer harnesses in their own build directory (clang, ASan, UBSan) and
# runs each for a bounded time on a copy of its seed corpus, so that the source tree
# stays as it is. Exits non-zero on any crash, sanitizer report, leak, timeout or
# failed check; the input that caused it is kept in <build-dir>/crashes/.
# ctest's "fuzz" test runs it (tests/CMakeLists.txt); by hand:
#
#   tests/fuzz/run.sh [build-dir [seconds-per-target [clang]]]
#   tests/fuzz/run.sh /tmp/fuzz 60
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$src/build-fuzz}
seconds=${2:-15}
cc=${3:-clang}
targets=(options route template envelope journal)
jobs=${MQK_JOBS:-2}

cmake -S "$src" -B "$dir" -DMQK_FUZZ=ON -DMQK_BUILD_TESTS=OFF -DCMAKE_C_COMPILER="$cc" \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo >"$dir.configure.log" 2>&1 ||
	{ cat "$dir.configure.log"; exit 1; }
cmake --build "$dir" --target fuzz -j"$jobs" >"$dir.build.log" 2>&1 ||
	{ tail -n 100 "$dir.build.log"; exit 1; }

work="$dir/run"
rm -rf "$work"
mkdir -p "$work/crashes"
failed=0
for t in "${targets[@]}"; do
	mkdir -p "$work/corpus/$t"
	cp "$src/tests/fuzz/corpus/$t/"* "$work/corpus/$t/"
	log="$work/fuzz_$t.log"
	set +e
	# -timeout: one input taking 10 s is a hang; the outer timeout bounds the whole run.
	timeout $((seconds + 60)) "$dir/tests/fuzz/fuzz_$t" -max_total_time="$seconds" \
		-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$work/crashes/$t-" "$work/corpus/$t" >"$log" 2>&1
	rc=$?
	set -e
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	if [ "$rc" -ne 0 ] || grep -qE 'ERROR: (Address|Leak|Undefined)|runtime error:' "$log"; then
		failed=$((failed + 1))
		echo "fuzz_$t: FAILED (exit $rc) after ${runs:-?} inputs; its log ends:"
		tail -n 60 "$log"
		ls -l "$work/crashes/" | sed 's/^/  /'
	else
		corpus=$(find "$work/corpus/$t" -type f | wc -l)
		echo "fuzz_$t: ${runs:-?} inputs in ${seconds} s, no crash (corpus $corpus inputs)"
	fi
done
echo "fuzz: $((${#targets[@]} - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
