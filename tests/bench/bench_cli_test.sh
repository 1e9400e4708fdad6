#!/bin/sh
# pinlab bench speaks gup_test: one "<CMD>: Time: get:<us> put:<us> us" line
# per repeat and thread (tools/testing/selftests/mm/gup_test.c gup_thread),
# then its own ns-per-page summary; exit 0 when every pin was dma-pinned,
# the invariants hold and every pin was released; 2 on a bad command line.
set -u
PINLAB=$1
fail() { echo "FAIL: $*"; exit 1; }
out=$(mktemp); trap 'rm -f "$out"' EXIT

# run EXPECTED-CMD ARGS...: runs pinlab bench ARGS, checks exit 0 and the lines.
run() {
	want=$1; shift
	"$PINLAB" bench --no-progress "$@" >"$out" 2>&1 || { cat "$out"; fail "pinlab bench $* exited $?"; }
	grep -Eq "^$want: Time: get:[0-9]+ put:[0-9]+ us\$" "$out" || { cat "$out"; fail "no $want line for: $*"; }
	grep -Eq '^model: ns per 4 KiB page: get [0-9.]+ put [0-9.]+ total [0-9.]+' "$out" ||
		{ cat "$out"; fail "no ns/page line for: $*"; }
}

# The default command is GUP_FAST_BENCHMARK (gup_test's `cmd`).
run GUP_FAST_BENCHMARK -m 1 -r 1
run PIN_FAST_BENCHMARK -a -m 1 -r 1 -n -1
run PIN_LONGTERM_BENCHMARK -L -m 2 -r 1 -n 64
run PIN_FAST_BENCHMARK -a -m 2 -H -n -1
run PIN_FAST_BENCHMARK -a -m 1 -f ext4 -S -W
run GUP_FAST_BENCHMARK -u -m 4 -t -n -1

# -r 3 -j 2: one line per repeat per thread.
"$PINLAB" bench --no-progress -a -m 1 -r 3 -j 2 >"$out" 2>&1 || fail "-r 3 -j 2 exited $?"
n=$(grep -c '^PIN_FAST_BENCHMARK: Time:' "$out")
[ "$n" -eq 6 ] || { cat "$out"; fail "-r 3 -j 2 printed $n Time lines, want 6"; }

# --stagger: each thread starts at its share of the range and wraps around;
# every thread still walks (and reports) the whole size.
"$PINLAB" bench --no-progress -a -m 1 -n 100 -r 1 -j 2 --stagger --format json >"$out" 2>&1 || fail "--stagger exited $?"
if command -v python3 >/dev/null 2>&1; then
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["runs"])==2 and all(r["size"]==1<<20 and r["pages"]==256 for r in d["runs"]), d' "$out" ||
		{ cat "$out"; fail "--stagger did not walk the whole range in each thread"; }
fi

# -L on pages in ZONE_MOVABLE: the first repeat migrates them, and its cost
# is reported apart from the later repeats'.
"$PINLAB" bench --no-progress -L -T -m 2 -n -1 -r 2 --config movable=3G >"$out" 2>&1 || fail "-L movable exited $?"
grep -Eq '^model: longterm: repeat 1 \(migrate \+ re-pin, 512 pages migrated\) get [0-9.]+ ns/pg; repeats 2..2 get [0-9.]+ ns/pg; ratio [0-9.]+$' "$out" ||
	{ cat "$out"; fail "-L movable: no longterm line naming 512 migrated pages"; }

# The basic tests print "done" (gup_test prints no timing for them).
"$PINLAB" bench --no-progress -b -m 1 >"$out" 2>&1 || fail "-b exited $?"
grep -q '^PIN_BASIC_TEST: done$' "$out" || { cat "$out"; fail "-b: no done line"; }
"$PINLAB" bench --no-progress -c -p -m 1 0 5 >"$out" 2>&1 || fail "-c exited $?"
grep -q '^---- page #5,' "$out" || { cat "$out"; fail "-c: page 5 not dumped"; }

# -F adds FOLL_* flags as gup_test's strtol does. FOLL_DUMP (0x4) is outside
# the fast path's flag set (gup_fast_fallback: WARN and -EINVAL), so the first
# call fails, the loop stops, and the run reports a truncated size of 0 and
# still exits 0, as the ioctl does.
"$PINLAB" bench --no-progress -a -m 1 -F 0x4 >"$out" 2>&1 || fail "-F 0x4 exited $?"
grep -q 'truncated (size: 0)' "$out" || { cat "$out"; fail "-F 0x4 (FOLL_DUMP) on the fast path was not refused"; }

# --format json is one JSON document with the runs.
"$PINLAB" bench --no-progress -a -m 1 -r 2 --format json >"$out" 2>&1 || fail "json exited $?"
if command -v python3 >/dev/null 2>&1; then
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["command"]=="PIN_FAST_BENCHMARK" and len(d["runs"])==2 and d["model"]["ns_per_page"]>0, d' "$out" ||
		{ cat "$out"; fail "json document"; }
else
	grep -q '"command": "PIN_FAST_BENCHMARK"' "$out" || fail "json"
fi

# Bad command lines exit 2.
"$PINLAB" bench -a -L -m 1 >/dev/null 2>&1; [ $? -eq 2 ] || fail "-a -L did not exit 2"
"$PINLAB" bench -m 0 >/dev/null 2>&1; [ $? -eq 2 ] || fail "-m 0 did not exit 2"
"$PINLAB" bench -m 1 -f nosuchfs >/dev/null 2>&1; [ $? -eq 2 ] || fail "-f nosuchfs did not exit 2"
"$PINLAB" bench -m 1 -F zz >/dev/null 2>&1; [ $? -eq 2 ] || fail "-F zz did not exit 2"
echo "bench_cli: ok"
