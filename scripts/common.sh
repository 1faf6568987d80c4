# Shared by scripts/demo.sh and scripts/test.sh: everything a fresh machine
# needs, installed only when missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TRITONSHM_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

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

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
}

# Installs the package (and the given extras) into the venv from this checkout.
install_package() {
  local extras="${1:-}"
  log "building and installing tritonshm${extras:+[$extras]}"
  "$VENV/bin/python" -m pip install -q "$ROOT${extras:+[$extras]}" 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -c "import tritonshm._core" # fail here, clearly, if the build did not install
}
