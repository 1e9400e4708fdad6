#!/bin/sh
# pinlab bench --compare-kernel on a tiny buffer: either the host's door
# (io_uring register/unregister for -a and -L by default; an O_DIRECT read
# with --kernel-door odirect) answered and
# a model/kernel ratio is printed, or the host refused it: SKIP (77).
set -u
PINLAB=$1
DOOR=$2
out=$(mktemp); trap 'rm -f "$out"' EXIT
case $DOOR in
longterm) args="-L -m 2 -n -1 -r 2"; want="io_uring register/unregister" ;;
pin_fast) args="-a -m 2 -n -1 -r 2"; want="io_uring register/unregister" ;;
direct_io) args="-a -m 2 -n -1 -r 2 --kernel-door odirect"; want="O_DIRECT read" ;;
*) echo "unknown door $DOOR"; exit 1 ;;
esac
# shellcheck disable=SC2086
"$PINLAB" bench --no-progress $args --compare-kernel >"$out" 2>&1 || { cat "$out"; echo "FAIL: exit $?"; exit 1; }
cat "$out"
if grep -q '^kernel .*: skipped: ' "$out"; then
	echo "SKIP: the host refused the door"
	exit 77
fi
grep -Eq "^KERNEL $want: Time: get:[0-9]+ put:[0-9]+ us\$" "$out" || { echo "FAIL: no KERNEL $want Time line"; exit 1; }
grep -Eq '^model/kernel: [0-9.]+$' "$out" || { echo "FAIL: no ratio"; exit 1; }
echo "ok"
