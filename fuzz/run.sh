#!/bin/sh
# fuzz/run.sh — build the libFuzzer targets with clang and run each for a bounded time.
#
#   fuzz/run.sh [BUILD_DIR]            (default /tmp/iam-fuzz-build)
#
# Environment:
#   FUZZ_SECONDS     seconds per target (default 30); 0 only replays the seed corpus
#   FUZZ_WORK_DIR    where corpus copies, logs and crash reproducers go
#                    (default: a fresh mktemp directory under ${TMPDIR:-/tmp})
#   FUZZ_JOBS        parallel build jobs (default: nproc)
#   FUZZ_CMAKE_ARGS  extra arguments for the cmake configure step
#
# The corpus in fuzz/corpus/ is copied first: libFuzzer adds its discoveries to the copy,
# never to the repository. Exits nonzero if the build fails or any target finds a crash,
# leak, sanitizer report or timeout; reproducers are left in $FUZZ_WORK_DIR/artifacts-*/.
set -eu

SRC=$(CDPATH="" cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-/tmp/iam-fuzz-build}
SECONDS_EACH=${FUZZ_SECONDS:-30}
JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
WORK=${FUZZ_WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/iam-fuzz-run.XXXXXX")}

case "$SECONDS_EACH" in
    ''|*[!0-9]*) echo "run.sh: FUZZ_SECONDS must be a whole number of seconds" >&2; exit 2 ;;
esac
case "$WORK" in
    "$SRC"|"$SRC"/*) echo "run.sh: FUZZ_WORK_DIR must be outside the repository" >&2; exit 2 ;;
esac

mkdir -p "$BUILD"
BUILD=$(cd "$BUILD" && pwd)   # the fuzzers run from the work dir: keep the path absolute

echo "== configure + build ($BUILD)"
# shellcheck disable=SC2086
CC=clang cmake -S "$SRC" -B "$BUILD" -DIAM_FUZZ=ON -DIAM_BUILD_TESTS=OFF -DIAM_BUILD_BENCH=OFF \
    ${FUZZ_CMAKE_ARGS:-}
cmake --build "$BUILD" -j"$JOBS" --target fuzz_token fuzz_jwks fuzz_claims

# Sanitizer findings must end the run as crashes, with stacks.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1:check_initialization_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

mkdir -p "$WORK"
status=0
for target in token jwks claims; do
    corpus="$WORK/corpus-$target"
    artifacts="$WORK/artifacts-$target"
    log="$WORK/fuzz_$target.log"
    rm -rf "$corpus"
    mkdir -p "$corpus" "$artifacts"
    cp -R "$SRC/fuzz/corpus/$target/." "$corpus/"
    if [ "$SECONDS_EACH" -eq 0 ]; then
        limit="-runs=0"   # replay the seeds once, no mutation
    else
        limit="-max_total_time=$SECONDS_EACH"
    fi
    echo "== fuzz_$target: ${SECONDS_EACH}s, corpus copy $corpus"
    set +e
    (cd "$WORK" && "$BUILD/fuzz/fuzz_$target" \
        -max_len=9000 "$limit" -timeout=25 -rss_limit_mb=2048 \
        -dict="$SRC/fuzz/jose.dict" -artifact_prefix="$artifacts/" -print_final_stats=1 \
        "$corpus") >"$log" 2>&1
    rc=$?
    set -e
    grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+[[:space:]]+DONE)' "$log" || true
    found=$(find "$artifacts" -type f | head -1)
    if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
        echo "!! fuzz_$target FAILED (exit $rc); log: $log" >&2
        for f in "$artifacts"/*; do
            [ -e "$f" ] && echo "!! reproducer: $f  (rerun: $BUILD/fuzz/fuzz_$target $f)" >&2
        done
        grep -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY:' "$log" | head -20 >&2 || true
        status=1
    else
        echo "   ok; corpus now $(find "$corpus" -type f | wc -l) inputs; log: $log"
    fi
done

# a work dir the caller chose is the caller's to keep or remove (scripts/test.sh removes it
# when every target passed); one made here is kept for the logs and corpora
[ -n "${FUZZ_WORK_DIR:-}" ] || echo "== work dir: $WORK"
exit "$status"
