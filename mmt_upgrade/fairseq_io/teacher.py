"""The teacher: the old model, frozen, reading the student's examples through its own vocabulary.

The teacher is read in its own layout (`model_files.ModelFiles`, `core/symbols.py`): a model this project
trained (dictionary in its data-bin), an M2M-100 one (language tokens and fillers inside a fixed dictionary),
an NLLB-200 one (language tokens appended by `--langs`, data-source tags) or mbart-style tokens. Rows are
matched by symbol string, never by SentencePiece id."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from mmt_upgrade.core.distill.align import TeacherExample
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.symbols import SymbolLayout
from mmt_upgrade.core.vocab import Tokenizer
from mmt_upgrade.fairseq_io.checkpoint import (
    checkpoint_langs,
    checkpoint_layout,
    checkpoint_task_cfg,
    read_checkpoint,
)
from mmt_upgrade.fairseq_io.model_files import CHECKPOINT, DICTIONARY, ModelFiles


def _existing(path: str | Path | None, flag: str) -> Path | None:
    if path is not None and not Path(path).is_file():
        raise UserInputError(f"{flag} {path}: no such file")
    return Path(path) if path is not None else None


def teacher_dictionary(model: Path, state: dict[str, Any], lang: str, data_dir: str | Path | None) -> Path:
    """The dictionary fairseq built the teacher's rows from: its `--fixed-dictionary` where that file is here
    (M2M-100), else `--teacher-data`'s (or the checkpoint's data-bin's) `dict.<lang>.txt`, else a model
    directory's `dict.txt`."""
    fixed = checkpoint_layout(state)["fixed_dictionary"]
    if fixed and Path(fixed).is_file():
        return Path(fixed)
    if data_dir is not None:
        path = Path(data_dir) / f"dict.{lang}.txt"
        if not path.is_file():
            raise UserInputError(f"--teacher-data {data_dir} has no dict.{lang}.txt: give the teacher's data-bin "
                                 "directory, or its dictionary file with --teacher-dict FILE")
        return path
    candidates = [model / DICTIONARY] if model.is_dir() else []
    data = checkpoint_task_cfg(state).get("data")
    candidates += [Path(str(data).split(":")[0]) / f"dict.{lang}.txt"] if data else []
    for path in candidates:
        if path.is_file():
            return path
    names = " or ".join(str(p) for p in ([Path(fixed)] if fixed else []) + candidates) or "none named"
    raise UserInputError(f"--teacher-path {model}: its dictionary is not here ({names}); give --teacher-dict FILE "
                         "(or --teacher-data DIR, its data-bin)")


@dataclass
class TeacherVocab:
    """The teacher's rows, languages and SentencePiece model, checked against each other and its checkpoint."""

    files: ModelFiles

    @property
    def path(self) -> Path:
        return self.files.checkpoint

    @property
    def spm_path(self) -> Path:
        return self.files.spm

    @property
    def layout(self) -> SymbolLayout:
        return self.files.layout

    @property
    def langs(self) -> list[str]:
        return self.files.langs

    @property
    def symbols(self) -> list[str]:
        return list(self.files.layout.rows)

    @property
    def style(self) -> str:
        return self.files.layout.style

    @classmethod
    def load(cls, path: Path, spm_path: Path, data_dir: str | Path | None = None, dictionary: str | Path | None = None,
             langs_file: str | Path | None = None) -> "TeacherVocab":
        """`path`: the teacher's checkpoint or model directory. Its dictionary is `dictionary` (--teacher-dict),
        else the one it was trained with (`teacher_dictionary`); its languages `langs_file` (--teacher-langs-file),
        else its config's; everything checked against its embedding's rows."""
        path = Path(path)
        spm = _existing(spm_path, "--teacher-spm")
        dict_file = _existing(dictionary, "--teacher-dict")
        langs_path = _existing(langs_file, "--teacher-langs-file")
        ckpt = path / CHECKPOINT if path.is_dir() else path
        state = read_checkpoint(ckpt, mmap=True)
        task = checkpoint_task_cfg(state)
        if not task.get("decoder_langtok") or task.get("encoder_langtok") != "src":
            raise UserInputError(f"--teacher-path {path}: trained without --encoder-langtok src --decoder-langtok; "
                                 f"cross-vocabulary distillation reads each example's languages from those tokens")
        if dict_file is None:
            dict_file = teacher_dictionary(path, state, checkpoint_langs(state, langs_path)[0], data_dir)
        try:
            files = ModelFiles.open(path, dictionary=dict_file, spm=spm, langs_file=langs_path)
        except UserInputError as e:
            raise UserInputError(f"teacher --teacher-path {path}: {e}") from None
        return cls(files)

    def tokenizer(self) -> Tokenizer:
        return self.files.tokenizer()


class Teacher:
    """The old model, loaded once by fairseq, in eval mode and without gradients. It is not a module
    of the criterion (fairseq would train, save and cast it), so it follows the student itself."""

    def __init__(self, vocab: TeacherVocab):
        self.vocab = vocab
        self.loaded = vocab.files.load()
        for p in self.loaded.model.parameters():
            p.requires_grad_(False)
        self.pad, self.eos = vocab.symbols.index("<pad>"), vocab.symbols.index("</s>")

    def follow(self, like: Tensor) -> None:
        """Same device, and same dtype when the student itself is half precision."""
        dtype = like.dtype if like.dtype in (torch.float16, torch.bfloat16) else torch.float32
        p = next(self.loaded.model.parameters())
        if p.device != like.device or p.dtype != dtype:
            self.loaded.model.to(device=like.device, dtype=dtype)

    @torch.inference_mode()
    def logits(self, examples: Sequence[TeacherExample], device: torch.device) -> tuple[Tensor, Tensor]:
        """`(B, Tt, Vt)` output logits on the teacher's target `(B, Tt)`, teacher-forced. Inference
        tensors (a fifth faster than under no_grad here): clone what meets the student's graph."""
        from mmt_upgrade.fairseq_io.models import collate_pairs

        batch = collate_pairs([torch.from_numpy(e.src) for e in examples], [torch.from_numpy(e.tgt) for e in examples],
                              self.pad, self.eos)
        src_tokens, src_lengths, prev, target = (x.to(device) for x in batch)
        logits, _ = self.loaded.model(src_tokens, src_lengths, prev)
        return logits, target
