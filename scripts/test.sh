#!/usr/bin/env bash
# README command 2: set up (once), then the test suite (real fairseq CLIs, real data, real sacrebleu,
# submitit's local executor and a real single-node SLURM cluster).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/bootstrap.sh"
bash "$ROOT/scripts/install_slurm.sh" || echo "[test] SLURM could not be installed: its test will skip and say why" >&2
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
