#!/usr/bin/env bash
# The test command: installs what is missing, then runs the tests.
#   bash scripts/test.sh           every test (.ci/run runs this on a fresh clone)
#   bash scripts/test.sh --quick   the inner loop: stages 1, 2 and 4 without the
#                                  portable build, e2e or slow tests
# Extra arguments go to the pytest of stage 4 (e.g. -k pool, -m e2e).
# Stages (docs/development.md says what each one proves):
#   1. style, types and docs: ruff (lint, format), clang-format, mypy on the
#      package, the docs site built with warnings as errors (mkdocs --strict)
#   2. C++ tests (GoogleTest via CTest) in the editable install's build; and
#      the copy engine's tests again as non-x86 machines build it (TRITONSHM_NO_SIMD)
#   3. one clang build with AddressSanitizer + UndefinedBehaviorSanitizer: the
#      C++ tests, then libFuzzer on the BYTES and BF16 decoders, bounded in time
#   4. the Python suite (pytest on parallel workers: API, processes, a full or
#      shrunk /dev/shm, the SIGBUS guard, properties, CLI, C++ package, real
#      Triton end to end)
#   5. the Python suite again against an ASan + UBSan build of the extension
#   6. a smoke run of the benchmark suite (keeps it working; judges no speed), and
#      a short soak of the pool (a minute: threads, growth, an unregister-all and a
#      server restart; fails on a wrong result, a failure or a leftover); it
#      mostly waits, so it runs alongside stage 7
#   7. the wheels (scripts/python_matrix.sh): one per CPython 3.9-3.14 this
#      machine has, built once, repaired to a manylinux tag and checked,
#      installed without a compiler into a clean venv with that version's
#      newest numpy (numpy 2), the suite against each; the abi3 wheel too
# The time of each stage is printed at the end.
source "$(dirname "$0")/common.sh"
QUICK=0
if [ "${1:-}" = "--quick" ]; then
  QUICK=1
  shift
fi
FUZZ_SECONDS="${TRITONSHM_FUZZ_SECONDS:-20}"
# Parallel pytest workers: one per core for the suites that compute; the
# end-to-end tests mostly wait for servers to start and stop, so stage 4 runs
# more (each worker starts its own server).
WORKERS="${TRITONSHM_TEST_WORKERS:-$(nproc)}"
E2E_WORKERS="${TRITONSHM_E2E_WORKERS:-4}"
# Our targets (library, extension, tests) build with warnings as errors here (CMakeLists.txt reads it).
export TRITONSHM_WERROR=ON

# --- the time of each stage, printed at the end (also when a stage fails):
# wall seconds, and the CPU seconds (user + system) of the processes it ran
# and waited for; CPU above wall means it used more than one core.
STAGES=()
stage_name=""
stage_start=0
stage_cpu=0
run_start=$SECONDS
times_file="$(mktemp)"
cpu_seconds() {  # sets CPU: of the finished children of this shell (`times`, run here, not in a subshell)
  times >"$times_file"
  CPU=$(tail -1 "$times_file" | awk '{ for (i = 1; i <= 2; i++) { split($i, t, "m"); s += t[1] * 60 + t[2] } printf "%d", s }')
}
stage() {
  end_stage
  stage_name="$1"
  stage_start=$SECONDS
  cpu_seconds
  stage_cpu=$CPU
  log "$1"
}
end_stage() {
  [ -n "$stage_name" ] || return 0
  cpu_seconds
  STAGES+=("$(printf '%6d s %8d s  %s' $((SECONDS - stage_start)) $((CPU - stage_cpu)) "$stage_name")")
  stage_name=""
}
report() {
  local status=$?
  local failed="${FAILED_IN:-$stage_name}"
  end_stage
  log "time per stage ($([ "$QUICK" = 1 ] && echo quick || echo full); load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "  wall      CPU  stage"
  printf '%s\n' "${STAGES[@]}"
  cpu_seconds
  printf '%6d s %8d s  total\n' $((SECONDS - run_start)) "$CPU"
  [ "$status" -ne 0 ] && echo "FAILED in: $failed"
  exit "$status"
}
trap report EXIT

stage "set-up: system packages, .venv, the editable install"
apt_needs=(g++:g++ libgtest-dev:/usr/include/gtest/gtest.h clang-format:clang-format util-linux:unshare
  util-linux:setpriv)
[ "$QUICK" = 0 ] && apt_needs+=(clang:clang++ ccache:ccache)
ensure_apt "${apt_needs[@]}"
# libFuzzer's runtime comes with clang's compiler-rt package of the same version.
if [ "$QUICK" = 0 ] && ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  clang_major="$(clang++ --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -1)"
  ensure_apt "libclang-rt-${clang_major}-dev:/nonexistent-probe"
fi
ensure_venv
use_ccache
install_package test,docs
# The import rebuilds the extension if a C++ file changed since the last one;
# the processes the tests start then skip that check (scikit-build-core's
# guard variable), which would cost each of them a `cmake --build`.
"$VENV/bin/python" -c "import tritonshm._core"
export SKBUILD_EDITABLE_SKIP="$DEV_BUILD"

stage "1. style, types and docs (ruff, clang-format, mypy, mkdocs --strict)"
cd "$ROOT"
"$VENV/bin/python" -m ruff check .
"$VENV/bin/python" -m ruff format --check .
git ls-files -co --exclude-standard '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror
"$VENV/bin/python" -m mypy
"$VENV/bin/python" -m mkdocs build --strict --quiet --site-dir "$ROOT/build/docs-site"

stage "2. C++ tests (GoogleTest via CTest)"
# The tests build in the editable install's build: its core library is the one
# the extension links, compiled once for both.
if ! grep -q '^TRITONSHM_BUILD_TESTS:BOOL=ON' "$DEV_BUILD/CMakeCache.txt"; then
  cmake -S "$ROOT" -B "$DEV_BUILD" -DTRITONSHM_BUILD_TESTS=ON >/dev/null
fi
cmake --build "$DEV_BUILD" --target tritonshm_tests
ctest --test-dir "$DEV_BUILD" --output-on-failure -j2 >"$DEV_BUILD/ctest.log" || { cat "$DEV_BUILD/ctest.log"; exit 1; }
tail -3 "$DEV_BUILD/ctest.log"
if [ "$QUICK" = 0 ]; then
  # The copy engine as non-x86 machines build it (memcpy only), on this
  # machine. Only stream_copy.cpp differs: ccache serves the rest.
  cmake -S "$ROOT" -B "$ROOT/build/portable" -G Ninja -DTRITONSHM_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_FLAGS=-DTRITONSHM_NO_SIMD >/dev/null
  cmake --build "$ROOT/build/portable" --target tritonshm_tests
  "$ROOT/build/portable/tests/cpp/tritonshm_tests" --gtest_filter='CopyEngine.*:Region.Shrink*' --gtest_brief=1
fi

if [ "$QUICK" = 0 ]; then
  stage "3. C++ under AddressSanitizer + UndefinedBehaviorSanitizer (clang): the tests, then libFuzzer ${FUZZ_SECONDS}s per decoder"
  # One build serves both: the C++ tests and the fuzzers, -O1 as ASan advises.
  CXX=clang++ cmake -S "$ROOT" -B "$ROOT/build/sanitize" -G Ninja -DTRITONSHM_BUILD_TESTS=ON \
    -DTRITONSHM_BUILD_FUZZERS=ON -DTRITONSHM_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" >/dev/null
  cmake --build "$ROOT/build/sanitize"
  ASAN_OPTIONS=detect_leaks=1 ctest --test-dir "$ROOT/build/sanitize" --output-on-failure -j2 \
    >"$ROOT/build/sanitize/ctest.log" || { cat "$ROOT/build/sanitize/ctest.log"; exit 1; }
  tail -3 "$ROOT/build/sanitize/ctest.log"
  # The two decoders fuzz at once, one core each; new inputs go to a scratch
  # folder (the kept corpus is only read).
  fuzz() {
    local found
    found="$(mktemp -d)"
    "$ROOT/build/sanitize/tests/fuzz/fuzz_${1}_decoder" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 \
      "$found" "$ROOT/tests/fuzz/corpus/$1" >"$ROOT/build/sanitize/fuzz_$1.log" 2>&1
    local status=$?
    rm -rf "$found"
    return "$status"
  }
  fuzz bytes & bytes_pid=$!
  fuzz bf16 & bf16_pid=$!
  for decoder in bytes bf16; do
    pid_var="${decoder}_pid"
    status=0
    wait "${!pid_var}" || status=$?
    echo "$decoder: $(grep -E '^(stat::number_of_executed_units|Done|==.*ERROR)' "$ROOT/build/sanitize/fuzz_$decoder.log" | tr '\n' ' ')"
    [ "$status" -eq 0 ] || { tail -40 "$ROOT/build/sanitize/fuzz_$decoder.log"; echo "fuzzer for $decoder failed"; exit 1; }
  done
fi

cd "$ROOT"
if [ "$QUICK" = 1 ]; then
  stage "4. Python tests (pytest, $WORKERS workers; no e2e, no slow)"
  "$VENV/bin/python" -m pytest -q -ra -n "$WORKERS" -m "not e2e and not slow" "$@"
  exit 0
fi

stage "4. Python tests (pytest, $E2E_WORKERS workers)"
# The slow end-to-end tests come first (conftest.py) and --maxschedchunk 1
# hands out tests one by one as workers free up, so those spread over the
# workers instead of queueing on one; the C++ package is built once for all of
# them (conftest.build_once).
"$VENV/bin/python" -m pytest -ra -n "$E2E_WORKERS" --maxschedchunk 1 --durations=15 "$@"

stage "5. Python tests against an ASan + UBSan build of the extension"
asan_site="$ROOT/build/asan-site"
rm -rf "$asan_site"
"$VENV/bin/python" -m pip install -q --no-deps --target "$asan_site" \
  -C cmake.define.TRITONSHM_SANITIZE=address,undefined -C build-dir="$ROOT/build/asan" "$ROOT" 2>&1 | quiet_pip
# Without this, a failed build would leave the suite to import the plain one.
ls "$asan_site"/tritonshm/_core*.so >/dev/null || { echo "the ASan + UBSan build of the extension failed"; exit 1; }
# ASan must be loaded first, and libstdc++ with it so that its __cxa_throw
# interceptor finds the real one (python itself does not link libstdc++).
# The editable install's finder yields to PYTHONPATH under SKBUILD_EDITABLE_SKIP;
# this says so, or stops the stage before it tests the plain build.
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" ASAN_OPTIONS=detect_leaks=0 \
  PYTHONPATH="$asan_site" "$VENV/bin/python" -c "import sys, tritonshm._core as c; print('testing', c.__file__); \
sys.exit(not c.__file__.startswith('$asan_site/'))"
echo "deselected here: test_reference_dies_of_sigbus_where_we_raise (ASan's own SIGBUS handler changes how the reference dies)"
echo "deselected here: test_cpp_package.py (builds C++ with the system toolchain, not the Python extension), e2e (stage 4 ran it)"
echo "deselected here: test_typing.py (a sanitizer build carries no stubs: the stub generator cannot import it; stages 4 and 7 check typing)"
echo "deselected here: the two info tests under a capped address space (RLIMIT_AS: ASan cannot reserve its shadow memory there; stages 4 and 7 run them)"
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \
ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 PYTHONPATH="$asan_site" \
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider -n "$WORKERS" tests/python -m "not e2e" \
  --ignore=tests/python/test_cpp_package.py --ignore=tests/python/test_typing.py \
  --deselect tests/python/test_full_dev_shm.py::test_reference_dies_of_sigbus_where_we_raise \
  --deselect tests/python/test_cli_hostile.py::test_info_reads_only_what_it_shows_of_a_region_four_times_its_memory \
  --deselect tests/python/test_cli_hostile.py::test_info_as_json_writes_every_value_a_piece_at_a_time

# Stage 6 mostly waits (for its server, and the soak's minute): it runs in
# the background alongside stage 7, which computes; its output and time follow
# stage 7's.
end_stage
bench_name="6. benchmark smoke run (tiny sizes; not a measurement) and a one-minute soak of the pool (alongside 7)"
log "$bench_name: started, its output follows stage 7's"
bench_log="$ROOT/build/bench.log"
bench_start=$SECONDS
(
  "$VENV/bin/python" -m benchmarks --smoke --out "$ROOT/build/bench-smoke"
  "$VENV/bin/python" -m benchmarks --smoke --only soak --out "$ROOT/build/bench-soak"
) >"$bench_log" 2>&1 &
bench_pid=$!

stage "7. the wheels: one per CPython this machine has, each tested in a clean venv (scripts/python_matrix.sh)"
matrix_status=0
bash "$ROOT/scripts/python_matrix.sh" || matrix_status=$?
end_stage

log "$bench_name"
cpu_seconds
bench_cpu=$CPU
bench_status=0
wait "$bench_pid" || bench_status=$?
cpu_seconds
cat "$bench_log"
STAGES+=("$(printf '%6d s %8d s  %s' $((SECONDS - bench_start)) $((CPU - bench_cpu)) "$bench_name")")
[ "$bench_status" -eq 0 ] || { FAILED_IN="$bench_name"; exit "$bench_status"; }
[ "$matrix_status" -eq 0 ] || { FAILED_IN="7. the wheels"; exit "$matrix_status"; }
