#!/usr/bin/env bash
# Create .venv with torch 2.13.0 (CPU), fairseq-fixed 0.12.3.1 and this package (editable).
# Idempotent: a stamp keyed on the install inputs makes a second run return at once.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MMT_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3.11}
TORCH_VERSION=2.13.0
FAIRSEQ_VERSION=0.12.3.1
KEY=$(cat "$ROOT/requirements.txt" "$ROOT/setup.py" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
STAMP="$VENV/.bootstrap-$KEY"
if [ -f "$STAMP" ]; then exit 0; fi
log() { echo "[bootstrap] $*" >&2; }
command -v "$PY" >/dev/null || { echo "bootstrap: $PY not found (Python 3.11 is required)" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || { log "creating virtualenv $VENV"; "$PY" -m venv "$VENV"; }
pip_install() {  # quiet, minus the notes about this machine's local index folders
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}
log "installing torch==$TORCH_VERSION (CPU) and build requirements"
pip_install "torch==$TORCH_VERSION" numpy==2.4.6 cython setuptools wheel
log "installing fairseq's real dependencies and ours (requirements.txt)"
pip_install -r "$ROOT/requirements.txt"
if ! "$VENV/bin/python" -c "import importlib.metadata as m; assert m.version('fairseq-fixed') == '$FAIRSEQ_VERSION'" 2>/dev/null; then
  log "building fairseq-fixed==$FAIRSEQ_VERSION (no deps, no build isolation; a few minutes)"
  pip_install --no-deps --no-build-isolation "fairseq-fixed==$FAIRSEQ_VERSION"
fi
log "installing mmt-upgrade (editable) with its extras [hf,ct2] (transformers, safetensors, ctranslate2)"
pip_install --no-build-isolation -e "$ROOT[hf,ct2]" "torch==$TORCH_VERSION"
"$VENV/bin/python" -c "import torch, fairseq, sentencepiece, sacrebleu, submitit, transformers, safetensors, ctranslate2" \
  || { echo "bootstrap: import check failed in $VENV" >&2; exit 1; }
rm -f "$VENV"/.bootstrap-*
touch "$STAMP"
log "ready: $VENV"
