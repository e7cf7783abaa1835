#!/usr/bin/env bash
# Installs everything UDR-FS needs to build, test and run, on a fresh Debian machine
# or an existing one. Safe to re-run: each step checks before it acts, so a re-run
# costs a few seconds plus whatever Rust code changed.
#
#   1. Debian packages for FUSE (apt-get, only when missing; sudo when not root)
#   2. a virtualenv ($UDR_VENV, default <repo>/.venv)
#   3. Python dependencies with the dev and bench extras (only when pyproject.toml
#      or the interpreter changed since the last successful run)
#   4. the native extension udrfs._native, built in release mode by maturin and
#      installed in place (cargo rebuilds only what changed under native/)
#
# Environment: UDR_VENV (venv path), UDR_PYTHON (interpreter for a new venv,
# default python3). Noisy output goes to $UDR_VENV/setup-logs/ and is shown on
# failure (in full when CI is set).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${UDR_VENV:-$REPO/.venv}"
PYTHON="${UDR_PYTHON:-python3}"
APT_PACKAGES=(fuse3 libfuse3-dev pkg-config rsync rclone)
MIN_PYTHON="3.11"

say() { printf 'setup: %s\n' "$*"; }
fail() {
    printf 'setup: FAILED: %s\n' "$*" >&2
    exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# Runs a noisy command with its output in a log; shows the log if it fails.
logged() {
    local log="$1"
    shift
    local rc=0
    "$@" >"$log" 2>&1 </dev/null || rc=$?
    ((rc == 0)) && return 0
    if [[ -n "${CI:-}" ]]; then
        cat "$log" >&2
    else
        tail -n 80 "$log" >&2
        printf 'setup: (last 80 lines shown; full log: %s)\n' "$log" >&2
    fi
    return "$rc"
}

START="$(now)"

# --- 1. Debian packages ------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    sudo_cmd=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || fail "not root and no sudo: install ${missing[*]} by hand"
        # Without a terminal sudo cannot ask for a password: fail instead of hanging.
        if [[ -t 0 ]]; then sudo_cmd=(sudo); else sudo_cmd=(sudo -n); fi
    fi
    apt_log="$(mktemp -t udr-apt.XXXXXX.log)"
    # Wait for a dpkg lock held by another apt run instead of failing at once.
    apt_opts=(-q -o DPkg::Lock::Timeout=300)
    logged "$apt_log" "${sudo_cmd[@]}" apt-get "${apt_opts[@]}" update ||
        fail "apt-get update (log: $apt_log)"
    logged "$apt_log" "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get "${apt_opts[@]}" install -y "${missing[@]}" ||
        fail "apt-get install ${missing[*]} (log: $apt_log)"
    rm -f "$apt_log"
else
    say "Debian packages present: ${APT_PACKAGES[*]}"
fi

# --- Rust toolchain ------------------------------------------------------------
if ! command -v cargo >/dev/null && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    source "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || fail "cargo not found: install the Rust toolchain (rustup) first"

# --- 2. virtualenv -------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
    [[ -e "$VENV" ]] && fail "$VENV exists but has no bin/python: remove it and re-run"
    command -v "$PYTHON" >/dev/null || fail "$PYTHON not found (set UDR_PYTHON)"
    "$PYTHON" -c "import sys; sys.exit(sys.version_info < (${MIN_PYTHON/./, }))" ||
        fail "$PYTHON is older than Python $MIN_PYTHON (set UDR_PYTHON)"
    say "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV" || fail "python -m venv $VENV"
fi
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
unset PYTHONHOME CONDA_PREFIX
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off PIP_NO_INPUT=1
LOGS="$VENV/setup-logs"
mkdir -p "$LOGS"

# One setup at a time per venv: two test runs started together must not both pip.
exec 9>"$VENV/.setup.lock"
flock 9

# --- 3. Python dependencies ------------------------------------------------------
# The stamp names everything that decides what pip installs; when it is unchanged
# the dependencies are already in place and only the native build runs.
stamp_file="$VENV/.udrfs-deps-stamp"
stamp="$(
    {
        cat "$REPO/pyproject.toml" "${BASH_SOURCE[0]}"
        printf '%s\n' "$REPO" "$VENV"
        "$VENV/bin/python" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
)"
deps_current=false
if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" ]] &&
    "$VENV/bin/python" -c 'import importlib.metadata as m; m.distribution("udrfs")' 2>/dev/null; then
    deps_current=true
fi

cd "$REPO"
# maturin rewrites the extension file in place, which can crash a process that has
# it loaded (a running mount, a test run). Put a copy under the same name first:
# such a process keeps the old file to itself, and the package stays importable
# while the build runs, or if it fails.
for so in "$REPO"/udrfs/_native*.so; do
    [[ -e "$so" ]] || continue
    cp -p "$so" "$so.tmp" && mv -f "$so.tmp" "$so"
done

if ! $deps_current; then
    t="$(now)"
    say "installing Python dependencies (dev, bench extras) into $VENV"
    rm -f "$stamp_file"
    # The maturin version range the build backend declares in pyproject.toml.
    MATURIN_SPEC="$(
        "$VENV/bin/python" - "$REPO/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    requires = tomllib.load(f)["build-system"]["requires"]
print(next(r for r in requires if r.replace(" ", "").startswith("maturin")))
EOF
    )"
    logged "$LOGS/pip.log" "$VENV/bin/python" -m pip install "$MATURIN_SPEC" ||
        fail "pip install $MATURIN_SPEC (log: $LOGS/pip.log)"
    # A full `maturin develop` installs the dependencies and extras with pip, builds
    # the extension and installs the package in editable form.
    logged "$LOGS/develop.log" maturin develop --release --extras dev,bench ||
        fail "maturin develop --release --extras dev,bench (log: $LOGS/develop.log)"
    say "dependencies installed, native extension built ($(elapsed "$t"))"
else
    t="$(now)"
    say "Python dependencies up to date; building native extension (release)"
    # Dependencies are in place: only (re)build the extension into udrfs/.
    logged "$LOGS/develop.log" maturin develop --release --skip-install ||
        fail "maturin develop --release --skip-install (log: $LOGS/develop.log)"
    say "native extension up to date ($(elapsed "$t"))"
fi

# --- 4. check the result ---------------------------------------------------------
# Load the extension file itself, not the udrfs package, so that a half-written
# package does not hide whether the build worked.
"$VENV/bin/python" - "$REPO" <<'EOF' || fail "udrfs._native does not load (see above)"
import importlib.machinery, importlib.util, pathlib, sys
suffixes = importlib.machinery.EXTENSION_SUFFIXES
candidates = [p for s in suffixes for p in (pathlib.Path(sys.argv[1]) / "udrfs").glob("_native" + s)]
if not candidates:
    sys.exit("setup: no udrfs/_native extension file was built")
spec = importlib.util.spec_from_file_location("udrfs._native", candidates[0])
assert spec is not None and spec.loader is not None
spec.loader.exec_module(importlib.util.module_from_spec(spec))
EOF
$deps_current || printf '%s\n' "$stamp" >"$stamp_file"

say "ready: $VENV ($(elapsed "$START")); activate with: source $VENV/bin/activate"
