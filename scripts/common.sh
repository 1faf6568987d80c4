# Shared by scripts/demo.sh and scripts/test.sh: everything a fresh machine
# needs, installed only when missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TRITONSHM_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
# The editable install's CMake build: the extension the venv imports, and the
# C++ tests of scripts/test.sh (one plain build of the core serves both).
DEV_BUILD="$ROOT/build/dev"

log() { printf '\n== %s\n' "$*"; }

# Debian packages, installed with apt-get when a command or file is missing.
ensure_apt() {
  local missing=() pkg probe spec
  for spec in "$@"; do
    pkg="${spec%%:*}"
    probe="${spec#*:}"
    if [ ! -e "$probe" ] && ! command -v "$probe" >/dev/null 2>&1; then missing+=("$pkg"); fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

quiet_pip() { grep -v '^WARNING: Location' || true; }

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | quiet_pip
  fi
  export PATH="$VENV/bin:$PATH"  # cmake, ninja and the tools of the extras come from the venv
}

# Compiles go through ccache when it is installed: the same core is compiled
# for the extension, the wheel of every Python version and the C++ package
# test, and ccache compiles it once. CCACHE_BASEDIR makes paths inside the
# checkout relative, so builds in other folders (and other clones) share it.
use_ccache() {
  command -v ccache >/dev/null 2>&1 || return 0
  export CMAKE_CXX_COMPILER_LAUNCHER=ccache CMAKE_C_COMPILER_LAUNCHER=ccache
  export CCACHE_BASEDIR="$ROOT" CCACHE_NOHASHDIR=1
  # One name for the compiler: ccache keeps c++ and g++ apart although they are
  # the same program (scikit-build-core's builds call it g++).
  export CXX="${CXX:-g++}"
}

# The package, installed editable into the venv from this checkout, with the
# given extras (comma-separated). Python files are imported from
# python/tritonshm/; the extension is built in $DEV_BUILD and rebuilt by
# `import tritonshm` whenever a C++ file changed (scikit-build-core's
# editable.rebuild), so nothing is reinstalled after a change. Done once: a
# stamp of pyproject.toml and the extras tells whether the install is current
# (an install with more extras serves a call that asks for fewer).
install_package() {
  local extras="${1:-}" stamp="$VENV/.tritonshm-editable" project have extra
  project="$(sha256sum "$ROOT/pyproject.toml" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
  if [ -f "$stamp" ] && [ -f "$DEV_BUILD/CMakeCache.txt" ] && read -r have <"$stamp" \
    && [ "${have%% *}" = "$project" ]; then
    local missing=0
    for extra in ${extras//,/ }; do [[ " ${have#* } " == *" $extra "* ]] || missing=1; done
    [ "$missing" = 0 ] && return 0
  fi
  log "installing tritonshm${extras:+[$extras]} editable (the extension builds in ${DEV_BUILD#"$ROOT"/})"
  # --no-build-isolation: the build uses the venv's scikit-build-core, nanobind
  # and numpy, which are still there when an import rebuilds the extension.
  "$VENV/bin/python" -m pip install -q scikit-build-core nanobind numpy cmake ninja 2>&1 | quiet_pip
  # The dependencies first, as pip resolves them with the extras (an extra may
  # pin numpy): the extension must build against the numpy it will run with.
  local report="$VENV/.tritonshm-resolved.json"
  "$VENV/bin/python" -m pip install -q --dry-run --ignore-installed --report "$report" --no-build-isolation \
    -e "$ROOT${extras:+[$extras]}" 2>&1 | quiet_pip
  "$VENV/bin/python" -c 'import json, sys
for item in json.load(open(sys.argv[1]))["install"]:
    if item["metadata"]["name"] != "tritonshm":
        print(item["metadata"]["name"] + "==" + item["metadata"]["version"])' "$report" >"$report.txt"
  "$VENV/bin/python" -m pip install -q -r "$report.txt" 2>&1 | quiet_pip
  # Warnings are errors in this build, as in every build of scripts/test.sh.
  "$VENV/bin/python" -m pip install -q --no-build-isolation --no-deps -e "$ROOT${extras:+[$extras]}" \
    -C editable.rebuild=true -C editable.verbose=false -C build-dir="$DEV_BUILD" \
    -C cmake.define.TRITONSHM_WERROR=ON 2>&1 | quiet_pip
  "$VENV/bin/python" -c "import tritonshm._core" # fail here, clearly, if the build did not install
  echo "$project ${extras//,/ }" >"$stamp"
}
