"""Reading fairseq checkpoints with clear errors (missing, corrupt, not a translation model)."""
from __future__ import annotations

import argparse
import ctypes
import mmap
import pickle
import zipfile
from pathlib import Path
from typing import Any, Iterable

import torch

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.fairseq_cfg import cfg_fields
from mmt_upgrade.core.files import read_text_lines
from mmt_upgrade.core.options import comma_list
from mmt_upgrade.core.symbols import LANGTOK_STYLES, parse_lang_codes

# fairseq pickles the legacy task arguments as a Namespace (the only non-tensor global it writes).
torch.serialization.add_safe_globals([argparse.Namespace])

# The files fairseq-train writes into --save-dir (fairseq decides these names).
LAST = "checkpoint_last.pt"  # resumed from (`--restore-file`'s default)
BEST = "checkpoint_best.pt"  # lowest validation loss
INTERVAL = "checkpoint_*_{updates}.pt"  # --save-interval-updates: checkpoint_<epoch>_<updates>.pt
MADV_DONTNEED, MADV_POPULATE_READ = 4, 22  # <sys/mman.h> on Linux


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
    if not isinstance(state, dict) or "model" not in state or (state.get("cfg") is None and state.get("args") is None):
        raise UserInputError(f"{path} is not a fairseq checkpoint (no 'model' and 'cfg' or 'args' entries)")
    return state


def _file_pages(tensors: Iterable[torch.Tensor]) -> list[tuple[int, int]]:
    """The whole pages of each tensor that lies inside a private mapping of a file (`read_checkpoint(mmap=True)`);
    none off Linux."""
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        return []
    files = []
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[1][3] == "p" and Path(fields[5]).is_file():
            files.append(tuple(int(x, 16) for x in fields[0].split("-")))
    page, out = mmap.PAGESIZE, []
    for t in tensors:
        start = t.data_ptr()
        end = start + t.numel() * t.element_size()
        first, last = -(-start // page) * page, end // page * page
        if last > first and any(lo <= start and end <= hi for lo, hi in files):
            out.append((first, last))
    return out


def _madvise(ranges: list[tuple[int, int]], advice: int) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(ranges) and all(libc.madvise(ctypes.c_void_p(a), ctypes.c_size_t(b - a), advice) == 0
                                for a, b in ranges)


def release_mapped(tensor: torch.Tensor) -> bool:
    """Drop a memory-mapped tensor from this process's memory when it is no longer needed (NLLB-200's old
    embedding, 1 GB, once its rows are copied): its whole pages leave the resident set, the file is untouched and
    a later read maps them in again. Only pages inside a private mapping of a file are released (in ordinary
    memory that would zero them). Returns whether it did."""
    return _madvise(_file_pages([tensor]), MADV_DONTNEED)


def populate_mapped(tensors: Iterable[torch.Tensor]) -> bool:
    """Map the memory-mapped tensors' pages in one call per tensor before they are all read (`torch.save` of an
    upgraded checkpoint): page by page, the faults cost more than the writing (a 1.8 GB checkpoint: 5.6 s against
    2.3 s). A no-op where the kernel lacks MADV_POPULATE_READ (Linux < 5.14): the pages then fault in as read."""
    return _madvise(_file_pages(tensors), MADV_POPULATE_READ)


def checkpoint_num_updates(path: Path) -> int:
    """Updates a checkpoint was trained for; 0 when it does not exist yet."""
    if not Path(path).exists():
        return 0
    return int(read_checkpoint(path)["optimizer_history"][-1]["num_updates"])


def training_clock(state: dict[str, Any]) -> float:
    """fairseq's training wall time in seconds (`previous_training_time`: the wall time since the trainer
    started or loaded its checkpoint, summed over calls; its own validation included, process start-up excluded).

    fairseq carries it over from the checkpoint it starts from (resumed or `--finetune-from-model`), and
    `--stop-time-hours` compares this running total, not the time of the current call."""
    return float((state.get("extra_state") or {}).get("previous_training_time", 0.0))



def config_sections(state: dict[str, Any], *names: str) -> list[Any]:
    """The config sections a checkpoint carries: `cfg[name]` for each name (current fairseq) and the legacy
    `args` Namespace (checkpoints written before fairseq's dataclass configs, such as the published M2M-100
    files, hold only that; fairseq converts it on load). Edits must reach every one of them."""
    cfg = state.get("cfg") if isinstance(state.get("cfg"), dict) else {}
    sections = [cfg.get(name) for name in names]
    return [s for s in sections + [state.get("args")] if s is not None]


def checkpoint_task_cfg(state: dict[str, Any]) -> dict[str, Any]:
    """The task settings: `cfg["task"]`, else the legacy `args` Namespace."""
    sections = config_sections(state, "task")
    if not sections:
        raise UserInputError("checkpoint has no task configuration")
    return cfg_fields(sections[0])


def checkpoint_model_cfg(state: dict[str, Any]) -> Any:
    """The model settings section (`cfg["model"]`, else the legacy `args`), as stored (edited in place)."""
    sections = config_sections(state, "model")
    if not sections:
        raise UserInputError("checkpoint has no model configuration")
    return sections[0]


def read_langs_file(path: Path, flag: str) -> list[str]:
    """A language list file: one code per line (fairseq's `--lang-dict`) or a comma list."""
    lines = read_text_lines(path, flag)
    return parse_lang_codes([x for line in lines for x in comma_list(line)], f"{flag} {path}")


def checkpoint_langs(state: dict[str, Any], langs_file: Path | None = None) -> list[str]:
    """The model's `--langs` order: `langs_file` if given, else the task's `langs` (a list or a comma string)
    or the file its `lang_dict` names."""
    if langs_file is not None:
        return read_langs_file(langs_file, "--langs-file")
    task = checkpoint_task_cfg(state)
    langs = task.get("langs")
    if langs:
        return parse_lang_codes(langs.split(",") if isinstance(langs, str) else list(langs), "checkpoint --langs")
    if task.get("lang_dict"):
        if not Path(task["lang_dict"]).is_file():
            raise UserInputError(f"checkpoint's language list is the file {task['lang_dict']}, which is not "
                                 "here: give --langs-file")
        return read_langs_file(Path(task["lang_dict"]), "checkpoint --lang-dict")
    raise UserInputError("checkpoint's task has no language list (--langs): give --langs-file")


def checkpoint_layout(state: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide the embedding's rows (token style, fixed dictionary, data-source tags) and the
    SentencePiece model the config names."""
    task = checkpoint_task_cfg(state)
    style = task.get("lang_tok_style") or "multilingual"
    if style not in LANGTOK_STYLES:
        raise UserInputError(f"checkpoint's --lang-tok-style {style!r} is unknown (fairseq has "
                             f"{', '.join(LANGTOK_STYLES)})")
    bpe = config_sections(state, "bpe")
    return {"style": style, "fixed_dictionary": task.get("fixed_dictionary"),
            "data_source_tags": bool(task.get("add_data_source_prefix_tags", False)),
            "sentencepiece_model": cfg_fields(bpe[0]).get("sentencepiece_model") if bpe else None}


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
