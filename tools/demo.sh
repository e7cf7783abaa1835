#!/usr/bin/env bash
# Sets everything up (tools/setup.sh), then runs the main job, tools/demo.py: mount a
# local store holding real NYC data, read it, write a new version, commit.
# Arguments are passed to demo.py. Environment: UDR_VENV (venv path, default .venv).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${UDR_VENV:-$REPO/.venv}"

if [[ ! -f "$REPO/tools/demo.py" ]]; then
    echo "demo.sh: tools/demo.py does not exist yet, so there is no demo to run." >&2
    echo "demo.sh: run 'bash tools/test.sh' to set up and test what exists." >&2
    exit 1
fi

bash "$REPO/tools/setup.sh"
cd "$REPO"
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
exec python "$REPO/tools/demo.py" "$@"
