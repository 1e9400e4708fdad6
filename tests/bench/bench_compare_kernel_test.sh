#!/bin/sh
# pinlab bench --compare-kernel on a tiny buffer: either the host's door
# (io_uring register/unregister for -L; an O_DIRECT read for -a) answered and
# a model/kernel ratio is printed, or the host refused it: SKIP (77).
set -u
PINLAB=$1
DOOR=$2
out=$(mktemp); trap 'rm -f "$out"' EXIT
case $DOOR in
longterm) args="-L -m 2 -n -1 -r 2" ;;
direct_io) args="-a -m 2 -n -1 -r 2" ;;
*) echo "unknown door $DOOR"; exit 1 ;;
esac
# shellcheck disable=SC2086
"$PINLAB" bench --no-progress $args --compare-kernel >"$out" 2>&1 || { cat "$out"; echo "FAIL: exit $?"; exit 1; }
cat "$out"
if grep -q '^kernel .*: skipped: ' "$out"; then
	echo "SKIP: the host refused the door"
	exit 77
fi
grep -Eq '^KERNEL .*: Time: get:[0-9]+ put:[0-9]+ us$' "$out" || { echo "FAIL: no KERNEL Time line"; exit 1; }
grep -Eq '^model/kernel: [0-9.]+$' "$out" || { echo "FAIL: no ratio"; exit 1; }
echo "ok"
