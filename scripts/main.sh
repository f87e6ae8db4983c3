#!/usr/bin/env bash
# README command 1: set up (once), then the upgrade story at demo size on the real Bible data:
# old model (es,fr,de,ru<->en; trained once, then reused) -> upgraded to it,ar<->en two ways (`naive`, and
# `full` = every technique) -> trained -> evaluated every 150 updates -> report.md + plots.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/bootstrap.sh"
exec "$ROOT/.venv/bin/mmt-upgrade" experiment bible_upgrade --runs naive,full "$@"
