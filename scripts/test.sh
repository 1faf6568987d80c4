#!/usr/bin/env bash
# One command on a fresh machine: installs what is missing, then runs every
# test (C++ GoogleTest through CTest, then the Python suite). .ci/run calls it.
source "$(dirname "$0")/common.sh"
ensure_apt g++:g++ libgtest-dev:/usr/include/gtest/gtest.h
ensure_venv
"$VENV/bin/python" -m pip install -q cmake ninja 2>&1 | grep -v '^WARNING: Location' || true
export PATH="$VENV/bin:$PATH"
install_package test

log "C++ tests (GoogleTest via CTest)"
cmake -S "$ROOT" -B "$ROOT/build-tests" -G Ninja -DTRITONSHM_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$ROOT/build-tests"
(cd "$ROOT/build-tests" && ctest --output-on-failure -j2)

log "Python tests (pytest)"
cd "$ROOT"
"$VENV/bin/python" -m pytest -ra "$@"
