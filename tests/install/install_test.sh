#!/usr/bin/env bash
# Install test (CTest test `install`, label `install`).
#
# 1. `cmake --install` the build into a temporary prefix.
# 2. Build the C programs in examples/c against that prefix twice:
#    a. as a CMake project using find_package(pinlab) (examples/c/CMakeLists.txt);
#    b. with plain `cc prog.c $(pkg-config --cflags --libs pinlab)`.
# 3. Run every program; each must exit 0.
#
# Exit status: 0 pass, 1 fail, 77 skipped (sanitizer builds: a plain C program
# cannot link an instrumented static library without the sanitizer runtime).
# Set PINLAB_KEEP_TMP=1 to keep the temporary directory for inspection.
set -euo pipefail

usage() {
  cat >&2 <<'EOF'
usage: install_test.sh --build-dir=DIR [--examples-dir=DIR] [--cmake=CMAKE] [--config=CFG]
                       [--libdir=lib] [--generator=GEN] [--c-compiler=CC]
                       [--cxx-compiler=CXX] [--sanitize=LIST]
EOF
  exit 2
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cmake_bin=cmake
build_dir=""
examples_dir="$here/../../examples/c"
config=""
libdir=lib
generator=""
c_compiler=cc
cxx_compiler=c++
sanitize=""

for arg in "$@"; do
  case "$arg" in
    --cmake=*) cmake_bin="${arg#*=}" ;;
    --build-dir=*) build_dir="${arg#*=}" ;;
    --examples-dir=*) examples_dir="${arg#*=}" ;;
    --config=*) config="${arg#*=}" ;;
    --libdir=*) libdir="${arg#*=}" ;;
    --generator=*) generator="${arg#*=}" ;;
    --c-compiler=*) c_compiler="${arg#*=}" ;;
    --cxx-compiler=*) cxx_compiler="${arg#*=}" ;;
    --sanitize=*) sanitize="${arg#*=}" ;;
    *) echo "install_test: unknown argument: $arg" >&2; usage ;;
  esac
done
[[ -n "$build_dir" ]] || usage

case "${sanitize,,}" in
  "" | off | 0 | no | false | n) ;;
  *)
    echo "install_test: SKIP: sanitizer build (PINLAB_SANITIZE=$sanitize)"
    exit 77
    ;;
esac

shopt -s nullglob
sources=("$examples_dir"/*.c)
shopt -u nullglob
if ((${#sources[@]} == 0)); then
  echo "install_test: FAIL: no C programs in $examples_dir" >&2
  exit 1
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/pinlab-install-test.XXXXXX")"
cleanup() {
  if [[ "${PINLAB_KEEP_TMP:-0}" == 1 ]]; then
    echo "install_test: kept $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

prefix="$tmp/prefix"
if [[ "$libdir" = /* ]]; then
  libpath="$libdir"
else
  libpath="$prefix/$libdir"
fi

failures=0
fail() {
  echo "install_test: FAIL: $*" >&2
  failures=$((failures + 1))
}

# Runs one example program; a program that exits non-zero is a failure.
run_program() {
  local how="$1" exe="$2" rc=0
  echo "install_test: [$how] running $(basename "$exe")"
  LD_LIBRARY_PATH="$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" timeout 120 "$exe" || rc=$?
  if ((rc != 0)); then
    fail "[$how] $(basename "$exe") exited with status $rc"
  fi
}

# ---- 1. install ----------------------------------------------------------------
echo "install_test: installing $build_dir into $prefix"
install_args=(--install "$build_dir" --prefix "$prefix")
[[ -n "$config" ]] && install_args+=(--config "$config")
"$cmake_bin" "${install_args[@]}" >"$tmp/install.log" 2>&1 || {
  cat "$tmp/install.log" >&2
  echo "install_test: FAIL: cmake --install failed" >&2
  exit 1
}

for f in "$prefix/include/pinlab/kapi.h" "$libpath/cmake/pinlab/pinlabConfig.cmake" \
  "$libpath/cmake/pinlab/pinlabConfigVersion.cmake" "$libpath/pkgconfig/pinlab.pc" \
  "$prefix/bin/pinlab"; do
  [[ -e "$f" ]] || fail "not installed: ${f#"$prefix"/}"
done
compgen -G "$libpath/libpinlab.*" >/dev/null || fail "not installed: libpinlab.* in ${libpath#"$prefix"/}"
((failures == 0)) || exit 1

# ---- 2a. CMake consumer: find_package(pinlab) ----------------------------------------
echo "install_test: [cmake] configuring $examples_dir with find_package(pinlab)"
cmake_args=(-S "$examples_dir" -B "$tmp/cmake-build"
  -DCMAKE_PREFIX_PATH="$prefix"
  -DCMAKE_C_COMPILER="$c_compiler"
  -DCMAKE_CXX_COMPILER="$cxx_compiler"
  -DCMAKE_BUILD_TYPE=Debug  # keep assert() live in the example programs
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
[[ -n "$generator" ]] && cmake_args+=(-G "$generator")
if ! "$cmake_bin" "${cmake_args[@]}" >"$tmp/cmake-configure.log" 2>&1; then
  cat "$tmp/cmake-configure.log" >&2
  fail "[cmake] configuring the consumer project failed"
elif found="$(sed -n 's/^pinlab_DIR:PATH=//p' "$tmp/cmake-build/CMakeCache.txt")" &&
  [[ "$(realpath -m "$found")" != "$(realpath -m "$libpath/cmake/pinlab")" ]]; then
  fail "[cmake] find_package(pinlab) found '$found', not the package installed in $prefix"
elif ! "$cmake_bin" --build "$tmp/cmake-build" >"$tmp/cmake-build.log" 2>&1; then
  cat "$tmp/cmake-build.log" >&2
  fail "[cmake] building the consumer project failed"
else
  for src in "${sources[@]}"; do
    exe="$tmp/cmake-build/$(basename "$src" .c)"
    if [[ -x "$exe" ]]; then
      run_program cmake "$exe"
    else
      fail "[cmake] $(basename "$src") was not built (expected $exe)"
    fi
  done
fi

# ---- 2b. pkg-config consumer ------------------------------------------------------
echo "install_test: [pkg-config] building with $c_compiler \$(pkg-config --cflags --libs pinlab)"
if ! command -v pkg-config >/dev/null; then
  fail "[pkg-config] pkg-config is not installed (run scripts/setup.sh)"
else
  export PKG_CONFIG_PATH="$libpath/pkgconfig"
  if ! pc_flags="$(pkg-config --cflags --libs pinlab)"; then
    fail "[pkg-config] pkg-config --cflags --libs pinlab failed"
  else
    echo "install_test: [pkg-config] flags: $pc_flags"
    mkdir -p "$tmp/pc-build"
    for src in "${sources[@]}"; do
      exe="$tmp/pc-build/$(basename "$src" .c)"
      # shellcheck disable=SC2086  # pc_flags is a list of words
      if "$c_compiler" "$src" -o "$exe" $pc_flags >"$exe.log" 2>&1; then
        run_program pkg-config "$exe"
      else
        cat "$exe.log" >&2
        fail "[pkg-config] compiling $(basename "$src") failed"
      fi
    done
  fi
fi

if ((failures > 0)); then
  echo "install_test: FAIL: $failures problem(s)"
  exit 1
fi
echo "install_test: PASS: ${#sources[@]} program(s), each built and run via find_package and via pkg-config"
