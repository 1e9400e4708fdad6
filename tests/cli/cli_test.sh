#!/usr/bin/env bash
# The pinlab CLI: the main job passes, and bad input exits 2 with a message
# that names the problem.
set -euo pipefail
pinlab="$1"
fail=0
expect() {  # expect RC PATTERN[&&PATTERN...] -- ARGS...: every pattern must match
  local want_rc="$1" patterns="$2"; shift 3
  local out rc=0 pattern ok=1
  out="$("$pinlab" "$@" 2>&1)" || rc=$?
  while IFS= read -r pattern; do
    grep -qE -- "$pattern" <<<"$out" || ok=0
  done <<<"${patterns//&&/$'\n'}"
  pattern="$patterns"
  if [[ "$rc" != "$want_rc" ]] || ((ok == 0)); then
    echo "FAIL: pinlab $* -> exit $rc (want $want_rc), output must match /$pattern/:"
    echo "$out" | tail -5
    fail=1
  else
    echo "ok: pinlab $* -> exit $rc"
  fi
}
expect 0 '^[0-9]+ passed, 0 failed$' -- demo
expect 0 'invariants: all hold' -- demo
expect 0 'era=v5.10' -- --config "era=v5.10 thp=never" demo
# No subcommand: the main job, the whole built-in corpus, all passing (one run).
expect 0 '^[0-9]+ passed, 0 failed, [0-9]+ skipped, 0 errors$&&examples/seeds/&&examples/selftests/' --
expect 2 "unknown configuration key 'bogus'" -- --config "bogus=1"
expect 2 "unknown era 'v9.9'" -- --config "era=v9.9"
expect 2 'not expected: frobnicate' -- frobnicate
expect 0 'arch.pte_special' -- config-keys
# pinlab conform: bad input is refused, located, before the host is touched.
expect 2 'nonexistent.pin: no such file or directory' -- conform /nonexistent.pin
expect 2 '--fs xfs: expected TYPE=DIR' -- conform --fs xfs
expect 2 'is not a directory' -- conform --fs xfs=/nonexistent
expect 2 "unknown configuration key 'bogus'" -- conform --config bogus=1
expect 2 'random: Value 0 not in range' -- conform --random 0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
printf 'task A\nfork A B\n' >"$tmp/bad.pin"
expect 2 'bad.pin:2:8: expected' -- conform "$tmp/bad.pin"
# The man page comes from the same definitions as --help: every subcommand
# --help lists has a section, and every option of `run` is described.
expect 0 '^\.TH PINLAB 1' -- --man
subs="$("$pinlab" --help | sed -n '/^Subcommands:/,$p' | awk 'NR > 1 && NF {print $1}')"
[[ -n "$subs" ]] || { echo "FAIL: no subcommands in --help"; fail=1; }
for sub in $subs; do
  expect 0 "^[.]SS \"${sub//-/[\\]-}\"" -- --man  # troff writes '-' as '\-'
done
for opt in format config era; do
  expect 0 "[\\]-[\\]-$opt" -- --man
done
exit "$fail"
