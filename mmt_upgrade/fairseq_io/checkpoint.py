"""Reading fairseq checkpoints with clear errors (missing, corrupt, not a translation model)."""
from __future__ import annotations

import argparse
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.fairseq_cfg import cfg_fields

# fairseq pickles the legacy task arguments as a Namespace (the only non-tensor global it writes).
torch.serialization.add_safe_globals([argparse.Namespace])

# The files fairseq-train writes into --save-dir (fairseq decides these names).
LAST = "checkpoint_last.pt"  # resumed from (`--restore-file`'s default)
BEST = "checkpoint_best.pt"  # lowest validation loss
INTERVAL = "checkpoint_*_{updates}.pt"  # --save-interval-updates: checkpoint_<epoch>_<updates>.pt


def read_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint dict on CPU; a missing, truncated or foreign file is one clear error.

    `mmap` maps tensors from the file instead of reading them (large checkpoints; read-only use).
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise UserInputError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or "model" not in state or "cfg" not in state:
        raise UserInputError(f"{path} is not a fairseq checkpoint (no 'model'/'cfg' entries)")
    return state


def checkpoint_num_updates(path: Path) -> int:
    """Updates a checkpoint was trained for; 0 when it does not exist yet."""
    if not Path(path).exists():
        return 0
    return int(read_checkpoint(path)["optimizer_history"][-1]["num_updates"])


def training_clock(state: dict[str, Any]) -> float:
    """fairseq's training wall time in seconds (`previous_training_time`; evaluation and start-up excluded).

    fairseq carries it over from the checkpoint it starts from (resumed or `--finetune-from-model`), and
    `--stop-time-hours` compares this running total, not the time of the current call."""
    return float((state.get("extra_state") or {}).get("previous_training_time", 0.0))



def checkpoint_task_cfg(state: dict[str, Any]) -> dict[str, Any]:
    task = state["cfg"].get("task") if isinstance(state["cfg"], dict) else None
    if task is None:
        raise UserInputError("checkpoint has no task configuration")
    return cfg_fields(task)


def checkpoint_langs(state: dict[str, Any]) -> list[str]:
    langs = checkpoint_task_cfg(state).get("langs")
    if not langs:
        raise UserInputError("checkpoint's task has no language list (--langs)")
    return langs.split(",") if isinstance(langs, str) else list(langs)


def checkpoint_to_restore(save_dir: str, restore_file: str = LAST,
                          finetune_from_model: str | None = None) -> Path | None:
    """The file fairseq-train will load at start (`checkpoint_utils.load_checkpoint`'s rule), if any."""
    if restore_file == LAST:
        last = Path(save_dir) / restore_file
        if last.exists():
            return last
        return Path(finetune_from_model) if finetune_from_model else None
    path = Path(restore_file)
    return path if path.exists() else None


def read_task_state(path: Path) -> dict[str, Any]:
    """A checkpoint's task state, without reading its tensors (memory-mapped)."""
    return read_checkpoint(path, mmap=True).get("task_state") or {}
