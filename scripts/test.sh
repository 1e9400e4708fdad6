#!/usr/bin/env bash
# Configures, builds and tests pinlab with the CMake presets (CMakePresets.json):
#   release  RelWithDebInfo: every test
#   asan     Debug + AddressSanitizer + UndefinedBehaviorSanitizer: every test
#   tsan     Debug + ThreadSanitizer: builds pinlab_unit only and runs the
#            tests labelled `tsan` (gtest suites named *Concurrent or *Tsan)
#   fuzz     clang 14 + libFuzzer: builds only the scenario parser fuzz
#            target and runs it for 10 s (PINLAB_FUZZ_SECONDS)
# Every preset runs even if an earlier one failed; the exit status is non-zero
# if any configure, build or test step failed.
#
# usage: scripts/test.sh [PRESET...]      (default: release asan tsan fuzz)
# environment: PINLAB_JOBS (default 2) parallel compile and test jobs.
# ccache is used when installed (it is not required).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

jobs="${PINLAB_JOBS:-2}"
presets=("$@")
((${#presets[@]} > 0)) || presets=(release asan tsan fuzz)

if command -v ccache >/dev/null 2>&1; then
  # Read by CMake when it first configures a build directory.
  export CMAKE_C_COMPILER_LAUNCHER="${CMAKE_C_COMPILER_LAUNCHER:-ccache}"
  export CMAKE_CXX_COMPILER_LAUNCHER="${CMAKE_CXX_COMPILER_LAUNCHER:-ccache}"
fi

failed_steps=()   # "preset: step"
summaries=()      # one line per preset
total_passed=0
total_failed=0
total_skipped=0
start=$SECONDS

run_preset() {
  local p="$1" t0=$SECONDS
  echo
  echo "======== [$p] configure"
  if ! cmake --preset "$p"; then
    failed_steps+=("$p: configure")
    summaries+=("$p: configure FAILED")
    total_failed=$((total_failed + 1))
    return
  fi
  echo
  echo "======== [$p] build (-j$jobs)"
  if ! cmake --build --preset "$p" -j "$jobs"; then
    failed_steps+=("$p: build")
    summaries+=("$p: build FAILED")
    total_failed=$((total_failed + 1))
    return
  fi
  echo
  echo "======== [$p] test"
  local log="build/$p/pinlab-ctest.log" rc=0
  ctest --preset "$p" -j "$jobs" 2>&1 | tee "$log" || rc=$?

  local line total=0 failed=0 skipped=0
  line="$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)"
  if [[ -n "$line" ]]; then
    failed="$(sed -E 's/.* ([0-9]+) tests? failed out of.*/\1/' <<<"$line")"
    total="$(sed -E 's/.*failed out of ([0-9]+).*/\1/' <<<"$line")"
    skipped="$(grep -cE '^[[:space:]]*[0-9]+ - .*\((Skipped|Disabled)\)$' "$log" || true)"
    total_passed=$((total_passed + total - failed - skipped))
    total_failed=$((total_failed + failed))
    total_skipped=$((total_skipped + skipped))
    local note=""
    ((skipped == 0)) || note=" ($skipped skipped)"
    summaries+=("$p: $line$note [$((SECONDS - t0))s]")
  elif ((rc == 0)); then
    summaries+=("$p: no tests matched the preset's filter (tsan runs only tests labelled 'tsan') [$((SECONDS - t0))s]")
  else
    summaries+=("$p: ctest printed no summary (exit status $rc)")
  fi
  if ((rc != 0)); then
    failed_steps+=("$p: test")
    # ctest failed without a failing test (e.g. none found): still a failure.
    ((failed > 0)) || total_failed=$((total_failed + 1))
  fi
}

for p in "${presets[@]}"; do
  run_preset "$p"
done

echo
echo "======== summary ($((SECONDS - start))s)"
for s in "${summaries[@]}"; do
  echo "$s"
done
if ((${#failed_steps[@]} > 0)); then
  for s in "${failed_steps[@]}"; do
    echo "FAILED: $s"
  done
fi
# A failed configure or build step counts as one failure here.
echo "total: $total_passed passed, $total_failed failed, $total_skipped skipped"
((${#failed_steps[@]} == 0))
