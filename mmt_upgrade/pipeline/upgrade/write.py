"""The write stage: the upgraded model directory (checkpoint, dictionaries, tokenizer, `langs.txt`,
upgrade.json), built beside its final place and renamed when complete. It contributes upgrade.json's
`record` and `outputs`."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import sha256_file, write_json_atomic
from mmt_upgrade.core.record import TASK_STATE_KEY, UPGRADE_JSON, NewParameterRecord
from mmt_upgrade.core.vocab import VocabularyUpgrade

CHECKPOINT = "checkpoint.pt"


def check_out_dir(out_dir: Path, checkpoint: Path) -> Path:
    """`--out` as an absolute path: a new directory, never the input's."""
    out_dir = Path(out_dir).absolute()
    if out_dir == Path(checkpoint).absolute().parent:
        raise UserInputError(f"--out {out_dir} is the input checkpoint's directory; choose a new directory")
    if out_dir.exists():
        raise UserInputError(f"--out {out_dir} exists; choose a new directory (nothing is overwritten)")
    return out_dir


def temp_dir(out_dir: Path) -> Path:
    """An empty directory beside `out_dir` to build in."""
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def write_model(state: dict[str, Any], vocab: VocabularyUpgrade, langs: Sequence[str], record: NewParameterRecord,
                tmp: Path) -> dict[str, Any]:
    """The checkpoint and dictionaries into `tmp`; returns upgrade.json's `record`."""
    state.setdefault("task_state", {})[TASK_STATE_KEY] = record.to_dict()
    # Adam moments of the old shapes cannot be resumed; --finetune-from-model starts a new optimizer.
    state.pop("last_optimizer_state", None)
    # Runs from here count their own compute: fairseq carries a fine-tuned checkpoint's training clock
    # (extra_state) into the new run, and the task would count on from its token count.
    if state.get("extra_state"):
        state["extra_state"]["previous_training_time"] = 0.0
    state["task_state"].pop("target_tokens", None)
    torch.save(state, tmp / CHECKPOINT)
    (tmp / "dict.txt").write_text("".join(f"{p} 1\n" for p in vocab.pieces), encoding="utf-8")
    for lang in langs:  # the directory doubles as the DATA argument of fairseq-interactive
        shutil.copyfile(tmp / "dict.txt", tmp / f"dict.{lang}.txt")
    (tmp / "langs.txt").write_text(",".join(langs) + "\n")
    return {"record": record.to_dict()}


def outputs_section(tmp: Path) -> dict[str, Any]:
    """The files written, by hash; the checkpoint by size (it is identified by the input hashes and this file,
    and hashing it again costs seconds)."""
    return {"outputs": {p.name: sha256_file(p) if p.name != CHECKPOINT else f"{p.stat().st_size} bytes"
                        for p in sorted(tmp.iterdir()) if p.is_file()}}


def publish(tmp: Path, report: dict[str, Any], out_dir: Path) -> Path:
    """upgrade.json, then the directory renamed into place; returns the checkpoint."""
    write_json_atomic(tmp / UPGRADE_JSON, report)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out_dir)
    return out_dir / CHECKPOINT
