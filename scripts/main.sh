#!/usr/bin/env bash
# README command 1: set up (once), then data -> old model -> evaluation on the default config.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/bootstrap.sh"
exec "$ROOT/.venv/bin/mmt-upgrade" pipeline "${@:-old_model}"
