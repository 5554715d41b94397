#!/usr/bin/env bash
# The project's full check, as CI runs it (.ci/run):
#
#   ./scripts/test.sh
#
# Stages, in order:
#   deps         scripts/install_deps.sh (returns at once when all is installed)
#   format       scripts/check_format.sh
#   configure    build/: Ninja, RelWithDebInfo, tests + benchmarks + examples +
#                the Python module, compile_commands.json
#   build        cmake --build build
#   tidy         scripts/check_tidy.sh build (src/ only)
#   test         ctest in build/
#   pytest       python/tests with Debian's /usr/bin/python3, against build/python
#                (the hivemind_cpp module and the C++ trainer of build/)
#   asan-config  build-asan/: clang, HIVEMIND_SANITIZE=address,undefined, tests +
#                fuzzers (benchmarks, examples and the libtorch layer off: libtorch
#                is not instrumented)
#   asan-build   cmake --build build-asan
#   asan-test    ctest in build-asan/
#   tsan-config  build-tsan/: clang, HIVEMIND_SANITIZE=thread, tests only
#   tsan-build   the THREADED test binaries (target hivemind_threaded_tests)
#   tsan-test    ctest -L threaded in build-tsan/
#
# A failed configure or build stops the run (nothing after it can work). A failed
# check (format, tidy, a ctest run) is recorded and the run goes on, so one CI log
# shows every problem; the script then exits 1. HIVEMIND_FAIL_FAST=1 stops at the
# first failure instead.
#
# Environment:
#   HIVEMIND_JOBS       parallel compile / tidy / test jobs (default 2)
#   HIVEMIND_FAIL_FAST  1: stop at the first failing stage (default 0)
#   CCACHE_DIR          ccache's directory (default: .cache/ccache in the checkout)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

jobs="${HIVEMIND_JOBS:-2}"
fail_fast="${HIVEMIND_FAIL_FAST:-0}"
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
  echo "test.sh: HIVEMIND_JOBS must be a positive integer, got '$jobs'" >&2
  exit 2
fi

# A stable compiler cache inside the checkout (gitignored), so repeated runs only
# recompile what changed (CMakeLists.txt uses ccache as the compiler launcher).
if command -v ccache >/dev/null 2>&1; then
  export CCACHE_DIR="${CCACHE_DIR:-$root/.cache/ccache}"
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"
  mkdir -p "$CCACHE_DIR"
  ccache --max-size=2G >/dev/null
  ccache --zero-stats >/dev/null
fi

# Sanitizer runtime settings for the build-asan/ tests (and gtest discovery, which
# runs the test binaries at build time). Caller's settings win.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:check_initialization_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# tests/lsan.supp: leaks inside libzmq's own shutdown only (see the file).
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$root/tests/lsan.supp}"
# tests/tsan.supp: races through uninstrumented libzmq only (see the file).
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:suppressions=$root/tests/tsan.supp}"

log_dir="$root/build-logs"
mkdir -p "$log_dir"

t_start=$SECONDS
timings=()
failures=()
summary_build="build: ctest did not run"
summary_asan="build-asan: ctest did not run"
summary_tsan="build-tsan: ctest did not run"

banner() {
  echo
  echo "================================================================================"
  echo "== $*"
  echo "================================================================================"
}

# stage NAME KIND COMMAND...: runs COMMAND with a banner and its elapsed time.
# KIND is "fatal" (stop the run on failure) or "check" (record and go on).
stage() {
  local name="$1" kind="$2" t0=$SECONDS rc=0
  shift 2
  banner "stage $name: $*"
  "$@" || rc=$?
  local dt=$((SECONDS - t0))
  if ((rc == 0)); then
    echo "== stage $name: OK in ${dt}s"
    timings+=("$(printf '%-12s %6ss  OK' "$name" "$dt")")
    return 0
  fi
  echo "== stage $name: FAILED (exit $rc) in ${dt}s"
  timings+=("$(printf '%-12s %6ss  FAILED (exit %s)' "$name" "$dt" "$rc")")
  failures+=("$name")
  if [[ "$kind" == fatal || "$fail_fast" == 1 ]]; then
    finish
  fi
}

# Recreates BUILD_DIR when its cache was made with another generator or compiler,
# which CMake cannot switch in place.
reset_if_mismatch() {
  local dir="$1" generator="$2" cxx="$3" cache="$1/CMakeCache.txt"
  [[ -f "$cache" ]] || return 0
  local have_gen have_cxx
  have_gen="$(sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$cache")"
  have_cxx="$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$cache")"
  if [[ "$have_gen" != "$generator" ]] ||
     { [[ -n "$cxx" ]] && [[ "$(basename "$have_cxx")" != "$cxx" ]]; }; then
    echo "test.sh: $dir was configured with '$have_gen' / '$have_cxx'; recreating it"
    rm -rf "$dir"
  fi
}

configure_main() {
  reset_if_mismatch build Ninja ""
  cmake -S . -B build -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
    -DHIVEMIND_BUILD_TESTS=ON \
    -DHIVEMIND_BUILD_BENCHMARKS=ON \
    -DHIVEMIND_BUILD_EXAMPLES=ON \
    -DHIVEMIND_BUILD_PYTHON=ON \
    -DHIVEMIND_BUILD_FUZZERS=OFF \
    -DHIVEMIND_SANITIZE=
}

# The Python bindings' tests: the package in build/python (extension and .py files),
# Debian's interpreter (the one with python3-torch), no cache files in the checkout.
run_pytest() {
  PYTHONPATH="$root/build/python${PYTHONPATH:+:$PYTHONPATH}" \
    HIVEMIND_BUILD_DIR="$root/build" \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider python/tests
}

# configure_clang DIR SANITIZERS FUZZERS: a clang build with sanitizers, tests only
# (plus the fuzz targets when FUZZERS is ON).
configure_clang() {
  local dir="$1" sanitize="$2" fuzzers="$3"
  reset_if_mismatch "$dir" Ninja clang++
  CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja \
    -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
    -DHIVEMIND_SANITIZE="$sanitize" \
    -DHIVEMIND_BUILD_TESTS=ON \
    -DHIVEMIND_BUILD_FUZZERS="$fuzzers" \
    -DHIVEMIND_BUILD_BENCHMARKS=OFF \
    -DHIVEMIND_BUILD_EXAMPLES=OFF \
    -DHIVEMIND_WITH_TORCH=OFF
}

# The multi-threaded layers under ThreadSanitizer: the test binaries marked THREADED
# in tests/ (ctest label "threaded"); the single-threaded codec and wire tests are
# left to the other two builds.
build_tsan() {
  cmake --build build-tsan -j"$jobs" --target hivemind_threaded_tests
}

# run_ctest DIR [CTEST ARGS...]: ctest with its output kept in build-logs/ for the
# final summary.
run_ctest() {
  local dir="$1" log="$log_dir/ctest-$1.log" rc=0
  shift
  ctest --test-dir "$dir" --output-on-failure -j"$jobs" "$@" 2>&1 | tee "$log" || rc=$?
  return "$rc"
}

# ctest_summary DIR: "DIR: N tests passed, M failed (of T)" from its ctest log.
ctest_summary() {
  local dir="$1" log="$log_dir/ctest-$1.log" line total failed
  line="$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" \
            2>/dev/null | tail -n1 || true)"
  if [[ -z "$line" ]]; then
    if grep -q 'No tests were found' "$log" 2>/dev/null; then
      echo "$dir: 0 tests passed, 0 failed (no tests found)"
    else
      echo "$dir: ctest gave no summary (see $log)"
    fi
    return
  fi
  failed="$(sed -E 's/.* ([0-9]+) tests? failed out of.*/\1/' <<<"$line")"
  total="$(sed -E 's/.*failed out of ([0-9]+).*/\1/' <<<"$line")"
  echo "$dir: $((total - failed)) tests passed, $failed failed (of $total)"
  # The names of the failed tests, as ctest lists them.
  sed -n '/^The following tests FAILED:/,/^Errors while running CTest/p' "$log" |
    grep -v '^Errors while running CTest' || true
  failure_reasons "$dir"
}

# failure_reasons DIR: for each test that failed in DIR's last ctest run, the lines
# of its output that say why (gtest failures, a script's FAILED list) and its last
# lines, so the end of a CI log tells the cause without the whole log.
failure_reasons() {
  local dir="$1" name
  local all="$dir/Testing/Temporary/LastTest.log" log="$log_dir/ctest-$1.log"
  [[ -f "$all" ]] || return 0
  # ctest's list: "<tab>292 - Suite.Name (Failed)".
  sed -n '/^The following tests FAILED:/,/^Errors while running CTest/p' "$log" |
    sed -n -E 's/^[[:space:]]*[0-9]+ - (.*) \([^)]*\)$/\1/p' |
  while IFS= read -r name; do
    echo "--- why $name failed:"
    awk -v name="$name" '
      index($0, "Testing: " name) && length($0) == index($0, "Testing: " name) + 8 + length(name) { on = 1; next }
      on && index($0, "\"" name "\" end time") == 1 { exit }
      on { print }' "$all" >"$log_dir/failed-test.txt"
    { grep -E -A8 'Failure$|FAILED|Failed|Timeout|\*\*\*|error' "$log_dir/failed-test.txt" |
        head -n 60
      echo "    [last lines]"
      grep -v -E '^(Test time|<end of output>|-+$|Test (Failed|Passed))' \
        "$log_dir/failed-test.txt" | tail -n 25
    } | sed 's/^/    /'
  done
}

finish() {
  [[ -f "$log_dir/ctest-build.log" ]] && summary_build="$(ctest_summary build)"
  [[ -f "$log_dir/ctest-build-asan.log" ]] && summary_asan="$(ctest_summary build-asan)"
  [[ -f "$log_dir/ctest-build-tsan.log" ]] && summary_tsan="$(ctest_summary build-tsan)"
  banner "summary"
  printf '%s\n' "${timings[@]}"
  printf '%-12s %6ss\n' "total" "$((SECONDS - t_start))"
  echo
  echo "$summary_build"
  echo "$summary_asan"
  echo "$summary_tsan"
  if command -v ccache >/dev/null 2>&1; then
    echo
    local stats
    stats="$(ccache --show-stats 2>/dev/null | sed -n '/^Cacheable calls/,/^Local storage/p' |
               grep -v '^Local storage' || true)"
    if [[ -n "$stats" ]]; then
      echo "ccache ($CCACHE_DIR), this run:"
      echo "$stats" | sed 's/^/  /'
    else
      echo "ccache ($CCACHE_DIR), this run: no compiler calls"
    fi
  fi
  echo
  if ((${#failures[@]})); then
    echo "test.sh: FAILED stages: ${failures[*]}"
    exit 1
  fi
  echo "test.sh: all stages passed"
  exit 0
}

# Logs of the previous run would mislead the summary.
rm -f "$log_dir"/ctest-*.log

stage deps        fatal ./scripts/install_deps.sh
stage format      check ./scripts/check_format.sh
stage configure   fatal configure_main
stage build       fatal cmake --build build -j"$jobs"
stage tidy        check ./scripts/check_tidy.sh build
stage test        check run_ctest build
stage pytest      check run_pytest
stage asan-config fatal configure_clang build-asan address,undefined ON
stage asan-build  fatal cmake --build build-asan -j"$jobs"
stage asan-test   check run_ctest build-asan
stage tsan-config fatal configure_clang build-tsan thread OFF
stage tsan-build  fatal build_tsan
stage tsan-test   check run_ctest build-tsan -L threaded
finish
