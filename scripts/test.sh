#!/usr/bin/env bash
# README command 2: set up (once), then the test suite in two lanes: tests/unit (pure logic on synthetic
# inputs, about a minute) first, then tests/integration (real fairseq CLIs, real data, real sacrebleu,
# submitit's local executor and a real single-node SLURM cluster). `-rs` prints the reason of every skip,
# `--durations` the slowest tests (what to trim when CI nears its 30 minutes).
# Extra arguments go to both lanes' pytest (a lane they select nothing from passes).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/bootstrap.sh"
bash "$ROOT/scripts/install_slurm.sh" || echo "[test] SLURM could not be installed: its test will skip and say why" >&2
cd "$ROOT"

lane() {
    local name=$1 rc=0
    shift
    echo "[test] $name lane" >&2
    "$ROOT/.venv/bin/python" -m pytest -q -rs --durations=15 -p no:cacheprovider -m "$name" "tests/$name" "$@" || rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then exit "$rc"; fi  # 5: the arguments selected no test here
}

lane unit "$@"
lane integration "$@"
