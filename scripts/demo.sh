#!/usr/bin/env bash
# One command on a fresh machine: builds tritonshm into .venv and runs the demo.
# Arguments go to `tritonshm demo` (e.g. --url localhost:8000 --protocol grpc).
source "$(dirname "$0")/common.sh"
ensure_apt g++:g++
ensure_venv
use_ccache
install_package
log "tritonshm demo $*"
exec "$VENV/bin/tritonshm" demo "$@"
