#!/bin/sh
# Regenerates the model-vs-kernel table of docs/PERFORMANCE.md:
#   tests/bench/perf_table.sh BUILD/tools/pinlab [SIZES_MIB...] > table.md
# (REPEATS, BACKINGS="4k thp hugetlb" and CMDS="-u -a -L" narrow it down.)
# Each row is one `pinlab bench --compare-kernel --format json` run; the
# rows are printed as they finish (Markdown), one run at a time. Per size,
# backing and command: -j 1, -j 2 (gup_test's threads: same start), and
# -j 2 --stagger (each thread starts at its half); "x -j1" is the row's
# pages/s over the -j 1 row's.
set -u
PINLAB=$1; shift
SIZES=${*:-64}
REPEATS=${REPEATS:-5}
echo "| size | backing | cmd | threads | model get ns/pg | model put ns/pg | model ns/pg | model Mpages/s | x -j1 | huge | kernel door | kernel ns/pg | model/kernel |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for m in $SIZES; do
	for backing in ${BACKINGS:-4k thp hugetlb}; do
		case $backing in 4k) b="-T" ;; thp) b="-t" ;; hugetlb) b="-H" ;; esac
		for cmd in ${CMDS:--u -a -L}; do
			base=""
			for j in "1" "2" "2 --stagger"; do
				# shellcheck disable=SC2086
				row=$("$PINLAB" bench --no-progress $cmd $b -m "$m" -n -1 -r "$REPEATS" -j $j --compare-kernel --format json |
				python3 -c '
import json, sys
d = json.load(sys.stdin)
m = d["model"]; k = d.get("kernel", {})
kn = "%.1f" % k["ns_per_page"] if "ns_per_page" in k else "skipped"
ratio = "%.2f" % d["ratio"] if "ratio" in d else "-"
base = float(sys.argv[3]) if sys.argv[3] else m["pages_per_sec"]
print("%f@@| %d MiB | %s | %s | %s | %.1f | %.1f | %.1f | %.2f | %.2f | %d%% | %s | %s | %s |" % (
    m["pages_per_sec"], d["size"] >> 20, sys.argv[1], d["command"], sys.argv[2], m["get_ns_per_page"],
    m["put_ns_per_page"], m["ns_per_page"], m["pages_per_sec"] / 1e6, m["pages_per_sec"] / base,
    100 * d["model_huge_pages"] // (d["size"] // 4096), k.get("door", "-"), kn, ratio))
' "$backing" "-j $j" "$base")
				[ -z "$base" ] && base=${row%%@@*}
				echo "${row#*@@}"
			done
		done
	done
done
