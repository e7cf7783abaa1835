#!/usr/bin/env bash
# Sets everything up (tools/setup.sh), then runs every check the project has:
#
#   ruff check, ruff format --check, mypy (udrfs/), cargo fmt --check,
#   cargo clippy -D warnings, the native Rust tests, pytest
#
# Every step runs even if an earlier one failed, so one run shows all problems;
# the last line names the failed steps and the exit status is non-zero if any did.
# Arguments are passed to pytest:  bash tools/test.sh -m "not mount" -x
#
# Environment: UDR_VENV (venv path, default <repo>/.venv), UDR_FAIL_FAST=1 (stop
# at the first failed step), UDR_DATA_DIR (sample data cache, default <repo>/data).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${UDR_VENV:-$REPO/.venv}"
NATIVE_MANIFEST="$REPO/native/Cargo.toml"
cd "$REPO" || exit 1

now() { date +%s.%N; }
seconds_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

START="$(now)"
t="$(now)"
if ! bash "$REPO/tools/setup.sh"; then
    echo "test.sh: FAILED at step setup; no check was run"
    exit 1
fi
setup_time="$(seconds_since "$t")"

export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
unset PYTHONHOME CONDA_PREFIX
if ! command -v cargo >/dev/null && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    source "$HOME/.cargo/env"
fi

step_names=(setup)
step_results=(ok)
step_times=("$setup_time")
failed=()

# run_step NAME COMMAND...: runs one check, records its status and time.
run_step() {
    local name="$1"
    shift
    if [[ "${UDR_FAIL_FAST:-}" == 1 ]] && ((${#failed[@]})); then
        step_names+=("$name")
        step_results+=(skipped)
        step_times+=(0.0)
        return 0
    fi
    printf '\n==> %s: %s\n' "$name" "$*"
    local t0 rc=0
    t0="$(now)"
    "$@" || rc=$?
    step_names+=("$name")
    step_times+=("$(seconds_since "$t0")")
    if ((rc == 0)); then
        step_results+=(ok)
    else
        step_results+=("FAIL($rc)")
        failed+=("$name")
    fi
}

run_pytest() {
    local rc=0
    python -m pytest "$@" || rc=$?
    # Exit 5 means no test was collected: a broken selection, not a pass.
    ((rc == 5)) && echo "test.sh: pytest collected no tests"
    return "$rc"
}

run_step ruff-check ruff check .
run_step ruff-format ruff format --check .
run_step mypy mypy
run_step cargo-fmt cargo fmt --manifest-path "$NATIVE_MANIFEST" --check
# Clippy shares the release profile and target dir of the extension build, so it
# reuses what setup compiled.
run_step cargo-clippy cargo clippy --manifest-path "$NATIVE_MANIFEST" --release --all-targets \
    -- -D warnings
# The chunk engine's own tests, without the Python bindings (see native/Cargo.toml).
# They get a target dir of their own: built without the `python` feature in the
# extension's dir, the crate's cdylib would flip features on every run and each
# test run and each setup would rebuild it.
run_step native-tests cargo test --manifest-path "$NATIVE_MANIFEST" --release --no-default-features \
    --target-dir "$REPO/native/target/engine-tests"
run_step pytest run_pytest "$@"

printf '\n==> summary\n'
for i in "${!step_names[@]}"; do
    printf '  %-8s %-14s %7ss\n' "${step_results[$i]}" "${step_names[$i]}" "${step_times[$i]}"
done
total="$(seconds_since "$START")"
if ((${#failed[@]})); then
    echo "test.sh: FAILED: ${failed[*]} (total ${total}s)"
    exit 1
fi
echo "test.sh: every step passed: ${step_names[*]} (total ${total}s)"
