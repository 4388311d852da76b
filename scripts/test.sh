#!/usr/bin/env bash
# Builds and runs every test: a normal build, an AddressSanitizer +
# UndefinedBehaviorSanitizer build and a ThreadSanitizer build, each running the whole
# CTest suite, then each libFuzzer target for a short, bounded time under the sanitizers.
#
#   ./scripts/test.sh                 everything (installs missing Debian packages first)
#   FUZZ_SECONDS=0 ./scripts/test.sh  skip the fuzzers
#   JOBS=4 ./scripts/test.sh          parallel build/test jobs (default: nproc)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
jobs="${JOBS:-$(nproc)}"
fuzz_seconds="${FUZZ_SECONDS:-20}"

if [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null 2>&1; then
  ./scripts/install-deps.sh
fi

run_suite() { # name, build dir, extra cmake args...
  local name="$1" dir="$2"
  shift 2
  echo "== [$name] configure and build in $dir"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j "$jobs"
  echo "== [$name] ctest"
  (cd "$dir" && ctest --output-on-failure -j "$jobs")
}

mkdir -p build
run_suite normal build/normal
ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  run_suite "asan+ubsan" build/asan -DIAM_SANITIZE=ON -DIAM_BUILD_BENCH=OFF
# The ThreadSanitizer build uses clang, so every commit is also compiled by a second
# compiler with -Werror (gcc accepts some GNU extensions silently that clang refuses).
CC=clang TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" \
  run_suite "tsan (clang)" build/tsan -DIAM_TSAN=ON -DIAM_BUILD_BENCH=OFF

if [ "$fuzz_seconds" != "0" ]; then
  echo "== [fuzz] each target for ${fuzz_seconds}s (clang, libFuzzer, ASan+UBSan)"
  fuzz_work="$(mktemp -d)"
  if ! FUZZ_SECONDS="$fuzz_seconds" FUZZ_WORK_DIR="$fuzz_work" ./fuzz/run.sh build/fuzz; then
    if ls "$fuzz_work"/artifacts-*/* >/dev/null 2>&1; then
      echo "== FAIL: fuzzing found inputs; reproducers kept in $fuzz_work"
    else
      rm -rf "$fuzz_work"
      echo "== FAIL: the fuzz stage did not build or run (see above)"
    fi
    exit 1
  fi
  rm -rf "$fuzz_work"
fi
[ "$fuzz_seconds" != "0" ] && fuzzed=", fuzz ${fuzz_seconds}s per target" || fuzzed=""
echo "== PASS: every stage (normal, asan+ubsan, tsan with clang$fuzzed)"
