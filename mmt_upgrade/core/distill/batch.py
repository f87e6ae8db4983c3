"""The batch-level inputs of the distillation losses: the padded alignment of a batch, the two vocabularies'
shared pieces, and the student's outputs.

Shapes: B examples, Ts/Tt student/teacher target positions, Vs/Vt vocabularies, C chunks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mmt_upgrade.core.distill.align import TargetAlignment

WORD_START = "\u2581"


@dataclass(frozen=True)
class BatchAlignment:
    """`TargetAlignment`s of a batch, padded: chunk ids -1 and masks False past each example and on the
    rows of examples that are not distilled (None)."""

    s_chunk: Tensor  # (B, Ts) long
    t_chunk: Tensor  # (B, Tt) long
    chunk_ok: Tensor  # (B, C) bool
    word_end: Tensor  # (B, C) bool
    same_piece: Tensor  # (B, C) bool
    one_to_one: Tensor  # (B, C) bool
    s_lo: Tensor  # (B, Ts) long
    s_hi: Tensor  # (B, Ts) long
    n_chunks: Tensor  # (B,) long
    s_len: Tensor  # (B,) long: student target length (language token, pieces, </s>)

    @classmethod
    def collate(cls, aligns: Sequence[TargetAlignment | None], s_len: int, t_len: int) -> "BatchAlignment":
        b, c = len(aligns), max((a.n_chunks for a in aligns if a is not None), default=1)
        arrays = {name: np.full((b, n), fill, dtype=type(fill))
                  for name, n, fill in (("s_chunk", s_len, -1), ("t_chunk", t_len, -1), ("chunk_ok", c, False),
                                        ("word_end", c, False), ("same_piece", c, False), ("one_to_one", c, False),
                                        ("s_lo", s_len, 0), ("s_hi", s_len, 0))}
        for i, a in enumerate(aligns):
            if a is not None:
                for name, arr in arrays.items():
                    row = getattr(a, name)
                    arr[i, : len(row)] = row
        return cls(**{name: torch.from_numpy(arr) for name, arr in arrays.items()},
                   n_chunks=torch.tensor([a.n_chunks if a is not None else 0 for a in aligns]),
                   s_len=torch.tensor([len(a.s_chunk) if a is not None else 0 for a in aligns]))

    def to(self, device: torch.device) -> "BatchAlignment":
        return BatchAlignment(**{k: v.to(device) for k, v in vars(self).items()})

    def subset(self, rows: Tensor) -> "BatchAlignment":
        """The rows of the distilled examples (what the teacher sees)."""
        return BatchAlignment(**{k: v[rows] for k, v in vars(self).items()})

    def positions(self, chunks: Tensor) -> tuple[Tensor, Tensor]:
        """Student and teacher positions `(B, Ts)`, `(B, Tt)` bool whose chunk is selected by `chunks` (B, C)."""
        def pick(chunk: Tensor) -> Tensor:
            return (chunk >= 0) & chunks.gather(1, chunk.clamp(min=0))
        return pick(self.s_chunk), pick(self.t_chunk)


@dataclass(frozen=True)
class KDVocab:
    """What the losses need to know about the two vocabularies, as index and mask tensors."""

    s_shared: Tensor  # (K,) student ids of the pieces both vocabularies have
    t_shared: Tensor  # (K,) teacher ids of the same pieces, in the same order
    t_to_shared: Tensor  # (Vt,) long: position in the shared list, -1 for teacher-only symbols
    s_shared_f: Tensor  # (Vs,) float 0/1
    t_shared_f: Tensor  # (Vt,) float 0/1
    s_word_f: Tensor  # (Vs,) float 0/1: W, pieces that start a word, and </s>
    t_word_f: Tensor  # (Vt,) float 0/1

    @classmethod
    def from_symbols(cls, student: Sequence[str], teacher: Sequence[str], exclude: set[str]) -> "KDVocab":
        """`exclude`: symbols that are not text (`<s> <pad> <unk>`, language tokens)."""
        t_index = {s: i for i, s in enumerate(teacher) if s not in exclude}
        pairs = [(i, t_index[s]) for i, s in enumerate(student) if s in t_index]
        s_ids = torch.tensor([i for i, _ in pairs], dtype=torch.long)
        t_ids = torch.tensor([j for _, j in pairs], dtype=torch.long)
        t_to_shared = torch.full((len(teacher),), -1, dtype=torch.long)
        t_to_shared[t_ids] = torch.arange(len(pairs))

        def indicator(ids: Tensor, n: int) -> Tensor:
            return torch.zeros(n).index_fill_(0, ids, 1.0)

        def word(symbols: Sequence[str]) -> Tensor:
            return torch.tensor([float(s.startswith(WORD_START) or s == "</s>") for s in symbols])
        return cls(s_ids, t_ids, t_to_shared, indicator(s_ids, len(student)), indicator(t_ids, len(teacher)),
                   word(student), word(teacher))

    def to(self, device: torch.device) -> "KDVocab":
        return KDVocab(**{k: v.to(device) for k, v in vars(self).items()})


@dataclass(frozen=True)
class StudentOutput:
    """The student's side of a batch, as the criterion computed it."""

    logits: Tensor  # (B, Ts, Vs) output logits (any dtype)
    lprobs: Tensor  # (B, Ts, Vs) fp32 log-probs
    nll: Tensor  # (B, Ts) -log p of each target piece (0 on padding), with gradient
    ce: Tensor  # (B, Ts) label-smoothed per-token loss

    def log_probs(self, tau: float) -> Tensor:
        """log-softmax at temperature `tau` (the criterion's own at 1)."""
        return self.lprobs if tau == 1.0 else F.log_softmax(self.logits.float() / tau, dim=-1)
