"""The teacher: the old model, frozen, reading the student's examples through its own vocabulary."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from mmt_upgrade.core.distill.align import TeacherExample
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.spm import load_spm
from mmt_upgrade.core.vocab import (
    Tokenizer,
    check_spm_matches_dictionary,
    model_symbols,
    read_dictionary,
)
from mmt_upgrade.fairseq_io.checkpoint import (
    checkpoint_langs,
    checkpoint_task_cfg,
    read_checkpoint,
)


@dataclass
class TeacherVocab:
    """The teacher's symbols, languages and SentencePiece model, checked against each other."""

    path: Path
    spm_path: Path
    data_dir: Path  # the data-bin fairseq loads the teacher's dictionary from
    langs: list[str]
    symbols: list[str]

    @classmethod
    def load(cls, path: Path, spm_path: Path, data_dir: Path | None = None) -> "TeacherVocab":
        """Languages from the checkpoint; its dictionary from the data directory it was trained on
        (`data_dir` overrides the one the checkpoint names)."""
        path, spm_path = Path(path), Path(spm_path)
        state = read_checkpoint(path, mmap=True)
        task = checkpoint_task_cfg(state)
        langs = checkpoint_langs(state)
        if not task.get("decoder_langtok") or task.get("encoder_langtok") != "src":
            raise UserInputError(f"--teacher-path {path}: trained without --encoder-langtok src --decoder-langtok; "
                                 f"cross-vocabulary distillation reads each example's languages from those tokens")
        data_dir = Path(data_dir or task["data"])
        dict_path = data_dir / f"dict.{langs[0]}.txt"
        if not dict_path.is_file():
            raise UserInputError(f"--teacher-path {path}: its dictionary {dict_path} is missing; pass "
                                 f"--teacher-data DIR (the teacher's data-bin directory)")
        pieces = read_dictionary(dict_path)
        symbols = model_symbols(pieces, langs)
        rows = state["model"]["decoder.embed_tokens.weight"].shape[0]
        if rows != len(symbols):
            raise UserInputError(f"--teacher-path {path} has {rows} embedding rows but its dictionary {dict_path} "
                                 f"with {len(langs)} language tokens gives {len(symbols)}: they do not belong together")
        if not spm_path.is_file():
            raise UserInputError(f"--teacher-spm {spm_path} not found")
        check_spm_matches_dictionary(load_spm(spm_path), spm_path, pieces, dict_path)
        return cls(path, spm_path, data_dir, langs, symbols)

    def tokenizer(self) -> Tokenizer:
        return Tokenizer.single(self.spm_path, self.langs)


class Teacher:
    """The old model, loaded once by fairseq, in eval mode and without gradients. It is not a module
    of the criterion (fairseq would train, save and cast it), so it follows the student itself."""

    def __init__(self, vocab: TeacherVocab):
        from mmt_upgrade.fairseq_io.models import load_model

        self.vocab = vocab
        self.loaded = load_model(vocab.path, vocab.data_dir, vocab.tokenizer())
        if self.loaded.symbols != vocab.symbols:
            raise UserInputError(f"--teacher-path {vocab.path}: fairseq loaded it with other symbols than its "
                                 f"dictionary and language list give (is --teacher-data its data-bin?)")
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
