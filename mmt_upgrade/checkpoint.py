"""Reading fairseq checkpoints with clear errors (missing, corrupt, not a translation model)."""
from __future__ import annotations

import argparse
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import UserInputError

# fairseq pickles the legacy task arguments as a Namespace (the only non-tensor global it writes).
torch.serialization.add_safe_globals([argparse.Namespace])


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict on CPU; a missing, truncated or foreign file is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
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


def checkpoint_task_cfg(state: dict[str, Any]) -> dict[str, Any]:
    task = state["cfg"].get("task") if isinstance(state["cfg"], dict) else None
    if task is None:
        raise UserInputError("checkpoint has no task configuration")
    return task if isinstance(task, dict) else vars(task)


def checkpoint_langs(state: dict[str, Any]) -> list[str]:
    langs = checkpoint_task_cfg(state).get("langs")
    if not langs:
        raise UserInputError("checkpoint's task has no language list (--langs)")
    return langs.split(",") if isinstance(langs, str) else list(langs)
