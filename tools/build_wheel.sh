#!/usr/bin/env bash
# Builds the installable wheel of udrfs: the Python package and the native extension in
# one manylinux wheel, release mode, for the interpreter of $UDR_VENV.
#
#   bash tools/build_wheel.sh [OUTDIR]     # default OUTDIR: dist/
#
# The wheel needs no Rust toolchain where it is installed (docs/usage.md, "Installing").
# It builds in native/target, the directory setup.sh's builds use, so after setup only
# packaging is left to do. Prints the wheel's path on its last line.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${UDR_VENV:-$REPO/.venv}"
OUT="${1:-$REPO/dist}"

if ! command -v cargo >/dev/null && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    source "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || {
    echo "build_wheel: cargo not found: install the Rust toolchain (rustup) first" >&2
    exit 1
}
[[ -x "$VENV/bin/maturin" ]] || {
    echo "build_wheel: $VENV/bin/maturin not found: run bash tools/setup.sh first" >&2
    exit 1
}

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$REPO"
# maturin checks the extension's glibc symbols and tags the wheel with the oldest
# manylinux policy it meets (auditwheel's rules).
log="$(mktemp -t udr-wheel.XXXXXX.log)"
if ! "$VENV/bin/maturin" build --release --interpreter "$VENV/bin/python" \
    --target-dir "$REPO/native/target" --out "$OUT" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    exit 1
fi
wheel="$(sed -n 's/.*Built wheel for CPython [^ ]* to //p' "$log" | tail -n 1)"
rm -f "$log"
[[ -f "$wheel" ]] || {
    echo "build_wheel: maturin reported no wheel" >&2
    exit 1
}
echo "$wheel"
