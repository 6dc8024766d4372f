#!/usr/bin/env bash
# lymph.sh ARGS...: lymph 0.15's command line (request, emit, discover, inspect, ...),
# with this folder's .lymph.yml unless -c/--config or LYMPH_CONFIG says otherwise.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bash "$HARNESS/setup.sh"
peer_env
export LYMPH_CONFIG="${LYMPH_CONFIG:-$HARNESS/.lymph.yml}"
exec "$VENV/bin/lymph" "$@"
