"""Distillation losses across vocabularies (methods.md §3), as tensor functions over a batch.

Every method is split in two, so that the teacher can run online or be precomputed once:
- `teacher_signal(...)`: what the method needs from the teacher, computed from its log-probs;
- `loss(...)`: the student's loss against that signal.
The signal of a batch splits into per-example arrays (`split`) and back (`collate`): the cache stores
exactly what the online teacher would give, so both paths compute the same loss.

Shapes: B examples, Ts/Tt student/teacher target positions, Vs/Vt vocabularies, C chunks, N aligned
positions of the batch (flattened in (example, position) order), k stored top-k entries.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .align import TargetAlignment

WORD_START = "\u2581"


def log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x < 0, stable at both ends (Mächler 2012)."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


@dataclass(frozen=True)
class BatchAlignment:
    """`TargetAlignment`s of a batch, padded: chunk ids -1 and masks False past each example."""

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
    def collate(cls, aligns: Sequence[TargetAlignment], s_len: int, t_len: int) -> "BatchAlignment":
        b, c = len(aligns), max(a.n_chunks for a in aligns)
        arrays = {name: np.full((b, n), fill, dtype=type(fill))
                  for name, n, fill in (("s_chunk", s_len, -1), ("t_chunk", t_len, -1), ("chunk_ok", c, False),
                                        ("word_end", c, False), ("same_piece", c, False), ("one_to_one", c, False),
                                        ("s_lo", s_len, 0), ("s_hi", s_len, 0))}
        for i, a in enumerate(aligns):
            for name, arr in arrays.items():
                row = getattr(a, name)
                arr[i, : len(row)] = row
        return cls(**{name: torch.from_numpy(arr) for name, arr in arrays.items()},
                   n_chunks=torch.tensor([a.n_chunks for a in aligns]), s_len=torch.tensor([len(a.s_chunk) for a in aligns]))

    def to(self, device: torch.device) -> "BatchAlignment":
        return BatchAlignment(**{k: v.to(device) for k, v in vars(self).items()})

    def positions(self, chunks: Tensor) -> tuple[Tensor, Tensor]:
        """Student and teacher positions `(B, Ts)`, `(B, Tt)` bool whose chunk is selected by `chunks` (B, C)."""
        def pick(chunk: Tensor) -> Tensor:
            return (chunk >= 0) & chunks.gather(1, chunk.clamp(min=0))
        return pick(self.s_chunk), pick(self.t_chunk)

    def tokens_in(self, chunks: Tensor) -> Tensor:
        """How many student target tokens lie in the selected chunks."""
        return self.positions(chunks)[0].sum()


@dataclass(frozen=True)
class KDVocab:
    """What the losses need to know about the two vocabularies, as index tensors."""

    s_shared: Tensor  # (K,) student ids of the pieces both vocabularies have
    t_shared: Tensor  # (K,) teacher ids of the same pieces, in the same order
    s_word: Tensor  # (Vs,) bool: W, pieces that start a word, and </s>
    t_word: Tensor  # (Vt,) bool

    @classmethod
    def from_symbols(cls, student: Sequence[str], teacher: Sequence[str], exclude: set[str]) -> "KDVocab":
        """`exclude`: symbols that are not text (`<s> <pad> <unk>`, language tokens)."""
        t_index = {s: i for i, s in enumerate(teacher) if s not in exclude}
        pairs = [(i, t_index[s]) for i, s in enumerate(student) if s in t_index]
        s_ids, t_ids = zip(*pairs) if pairs else ((), ())

        def word(symbols: Sequence[str]) -> Tensor:
            return torch.tensor([s.startswith(WORD_START) or s == "</s>" for s in symbols])
        return cls(torch.tensor(s_ids, dtype=torch.long), torch.tensor(t_ids, dtype=torch.long),
                   word(student), word(teacher))

    def to(self, device: torch.device) -> "KDVocab":
        return KDVocab(**{k: v.to(device) for k, v in vars(self).items()})


def chunk_logprob(lprobs: Tensor, target: Tensor, chunk: Tensor, word_end: Tensor, word: Tensor) -> Tensor:
    """`(B, C)` log-likelihood of every chunk on one model's own path, debiased where a word ends with
    the chunk by the log-mass of W at the next position (ALM's "append space").

    lprobs `(B, T, V)` fp32, target `(B, T)`, chunk `(B, T)` (-1: none), word_end `(B, C)`, word `(V,)`.
    """
    b, t, _ = lprobs.shape
    c = word_end.shape[1]
    slot = torch.where(chunk >= 0, chunk, c)  # column c collects the positions in no chunk
    ref = lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1).masked_fill(chunk < 0, 0.0)
    path = ref.new_zeros(b, c + 1).scatter_add(1, slot, ref)[:, :c]
    pos = torch.arange(t, device=chunk.device).expand(b, t)
    last = torch.full((b, c + 1), -1, dtype=torch.long, device=chunk.device).scatter_reduce(
        1, slot, pos, "amax", include_self=True)[:, :c]
    nxt = (last + 1).clamp(0, t - 1)
    log_w = torch.logsumexp(lprobs.masked_fill(~word, float("-inf")), dim=-1)  # (B, T)
    return path + torch.where(word_end, log_w.gather(1, nxt), torch.zeros_like(path))


def binary_kl(log_a: Tensor, log_b: Tensor) -> Tensor:
    """KL(Bernoulli(a) || Bernoulli(b)) from log a, log b <= 0, in fp64. ALM's binarised cross-entropy
    minus the teacher's entropy: the same gradient, and zero when the student matches the teacher."""
    log_a, log_b = log_a.double().clamp(max=-1e-12), log_b.double().clamp(max=-1e-12)
    return log_a.exp() * (log_a - log_b) + (-torch.expm1(log_a)) * (log1mexp(log_a) - log1mexp(log_b))


class KDMethod:
    """One distillation method. `weight`, `temperature` default to the method's paper values.

    A signal is either padded per example, `(B, W)` with NaN past each example's length (`padded`),
    or flat over the batch's aligned positions, `(N, ...)`.
    """

    name: str
    weight: float
    temperature: float
    padded = False
    needs_topk = False

    def __init__(self, vocab: KDVocab, temperature: float | None = None, topk: int = 16, ratio: float = 0.4):
        self.vocab = vocab
        self.tau = self.temperature if temperature is None else temperature
        self.topk = topk
        self.ratio = ratio

    def teacher_signal(self, t_logits: Tensor, t_target: Tensor, align: BatchAlignment) -> Tensor:
        """From the teacher's output logits `(B, Tt, Vt)` on its target `(B, Tt)`."""
        raise NotImplementedError

    def loss(self, s_logits: Tensor, s_lprobs: Tensor, s_target: Tensor, ce_tok: Tensor, align: BatchAlignment,
             signal: Tensor) -> tuple[Tensor, Tensor]:
        """`(kd_sum, aligned)`: the distillation loss summed over the batch, and how many student target
        tokens it covers. s_logits/s_lprobs `(B, Ts, Vs)`, ce_tok `(B, Ts)` per-token CE."""
        raise NotImplementedError

    def lengths(self, align: BatchAlignment) -> Tensor:
        """`(B,)` how much of the signal belongs to each example."""
        raise NotImplementedError

    def width(self, align: BatchAlignment) -> int:
        """The padded signal's width (padded methods)."""
        raise NotImplementedError

    def split(self, signal: Tensor, align: BatchAlignment) -> list[np.ndarray]:
        """One array per example: what a cache stores."""
        lengths = self.lengths(align).tolist()
        if self.padded:
            return [signal[i, :n].cpu().numpy() for i, n in enumerate(lengths)]
        return [x.cpu().numpy() for x in torch.split(signal, lengths)]

    def collate(self, parts: Sequence[np.ndarray], align: BatchAlignment) -> Tensor:
        """The batch signal from per-example arrays (`split`'s inverse)."""
        if self.padded:
            out = torch.full((len(parts), self.width(align)), float("nan"))
            for i, part in enumerate(parts):
                out[i, : len(part)] = torch.from_numpy(part)
            return out
        return torch.from_numpy(np.concatenate(parts))


class ALM(KDMethod):
    """Approximate likelihood matching: binarised chunk likelihoods at temperature τ = 100."""

    name, weight, temperature = "alm", 0.5, 100.0
    padded = True

    def lengths(self, align):
        return align.n_chunks

    def width(self, align):
        return align.chunk_ok.shape[1]

    def teacher_signal(self, t_logits, t_target, align):
        """`(B, C)` the teacher's debiased chunk log-likelihoods."""
        lprobs = F.log_softmax(t_logits.float(), dim=-1)
        return chunk_logprob(lprobs, t_target, align.t_chunk, align.word_end, self.vocab.t_word)

    def loss(self, s_logits, s_lprobs, s_target, ce_tok, align, signal):
        s_chunk = chunk_logprob(s_lprobs, s_target, align.s_chunk, align.word_end, self.vocab.s_word)
        use = align.chunk_ok
        kl = binary_kl(signal.masked_fill(~use, -1.0) / self.tau, s_chunk.masked_fill(~use, -1.0) / self.tau)
        return (kl * use).sum().float(), align.tokens_in(use)


class _PositionMethod(KDMethod):
    """Methods applied at single aligned positions: one piece on each side of a chunk."""

    needs_topk = True

    def chunks(self, align: BatchAlignment) -> Tensor:
        return align.one_to_one & align.chunk_ok

    def lengths(self, align):
        return align.positions(self.chunks(align))[0].sum(1)

    def select(self, logits: Tensor, mask: Tensor) -> Tensor:
        """`(N, V)` fp32 rows of `logits` `(B, T, V)` at the selected positions `(B, T)`."""
        return logits[mask].float()


class SharedKL(_PositionMethod):
    """KL between the distributions restricted to the shared pieces, renormalised on both sides, at
    chunks where both sides emit the same piece; the teacher's top-k plus one bucket for the rest."""

    name, weight, temperature = "shared", 0.5, 1.0

    def chunks(self, align):
        return align.same_piece & align.chunk_ok

    def teacher_signal(self, t_logits, t_target, align):
        """`(N, 2k)`: the teacher's top-k shared log-probs at τ, then their indices into the shared list."""
        t_mask = align.positions(self.chunks(align))[1]
        lp = F.log_softmax(self.select(t_logits, t_mask)[:, self.vocab.t_shared] / self.tau, dim=-1)
        k = min(self.topk or lp.shape[1], lp.shape[1])
        vals, idx = lp.topk(k, dim=-1)
        return torch.cat([vals, idx.to(vals.dtype)], dim=1)

    def loss(self, s_logits, s_lprobs, s_target, ce_tok, align, signal):
        chunks = self.chunks(align)
        s_mask = align.positions(chunks)[0]
        k = signal.shape[1] // 2
        t_lp, idx = signal[:, :k], signal[:, k:].long()
        s_lp = F.log_softmax(self.select(s_logits, s_mask)[:, self.vocab.s_shared] / self.tau, dim=-1).gather(1, idx)
        kl = (t_lp.exp() * (t_lp - s_lp)).sum(-1)
        if k < len(self.vocab.s_shared):  # the rest of the shared mass, one bucket on each side
            t_tail = log1mexp(torch.logsumexp(t_lp, -1).clamp(max=-1e-7))
            s_tail = log1mexp(torch.logsumexp(s_lp, -1).clamp(max=-1e-7))
            kl = kl + t_tail.exp() * (t_tail - s_tail)
        return self.tau ** 2 * kl.sum(), s_mask.sum()


class ULD(_PositionMethod):
    """Universal logit distillation: L1 between sorted probabilities (the closed-form W1 under a
    uniform cost) at 1:1 chunks; the top-k ranks plus one bucket for the rest."""

    name, weight, temperature = "uld", 1.5, 1.0

    def teacher_signal(self, t_logits, t_target, align):
        """`(N, k)` the teacher's k largest probabilities at τ, sorted."""
        t_mask = align.positions(self.chunks(align))[1]
        p = F.softmax(self.select(t_logits, t_mask) / self.tau, dim=-1)
        return p.topk(min(self.topk or p.shape[1], p.shape[1]), dim=-1).values

    def loss(self, s_logits, s_lprobs, s_target, ce_tok, align, signal):
        s_mask = align.positions(self.chunks(align))[0]
        p = F.softmax(self.select(s_logits, s_mask) / self.tau, dim=-1)
        k = signal.shape[1]
        s_top = p.topk(min(k, p.shape[1]), dim=-1).values
        width = max(k, s_top.shape[1])
        t_top, s_top = F.pad(signal, (0, width - k)), F.pad(s_top, (0, width - s_top.shape[1]))
        dist = (s_top - t_top).abs().sum(-1) + ((1 - s_top.sum(-1)) - (1 - t_top.sum(-1))).abs()
        return dist.sum(), s_mask.sum()


class Lexical(KDMethod):
    """VocAgnoLM-style token selection: the student's cross-entropy is kept on the `ratio` of aligned
    tokens where it exceeds the teacher's loss on the overlapping teacher pieces most (scaled by
    1/ratio), and dropped elsewhere; unaligned tokens keep plain cross-entropy. The "distillation
    loss" is that reweighting's change of the cross-entropy; `--kd-weight` interpolates towards it."""

    name, weight, temperature = "lexical", 1.0, 1.0
    padded = True

    def lengths(self, align):
        return align.s_len

    def width(self, align):
        return align.s_chunk.shape[1]

    def teacher_signal(self, t_logits, t_target, align):
        """`(B, Ts)`: for every student position the largest teacher NLL among the teacher pieces
        overlapping it (NaN: none, or a chunk with `<unk>`)."""
        lprobs = F.log_softmax(t_logits.float(), dim=-1)
        nll = -lprobs.gather(-1, t_target.unsqueeze(-1)).squeeze(-1)  # (B, Tt)
        b, ts = align.s_lo.shape
        width = int((align.s_hi - align.s_lo).max().clamp(min=1))
        idx = align.s_lo.unsqueeze(-1) + torch.arange(width, device=nll.device)  # (B, Ts, R)
        valid = idx < align.s_hi.unsqueeze(-1)
        worst = nll.gather(1, idx.clamp(max=nll.shape[1] - 1).view(b, -1)).view(b, ts, width)
        worst = worst.masked_fill(~valid, float("-inf")).amax(-1)
        mapped = align.positions(align.chunk_ok)[0] & valid.any(-1)
        return worst.masked_fill(~mapped, float("nan"))

    def loss(self, s_logits, s_lprobs, s_target, ce_tok, align, signal):
        mapped = ~torch.isnan(signal)
        n = int(mapped.sum())
        if n == 0:
            return ce_tok.new_zeros(()), mapped.sum()
        s_nll = -s_lprobs.gather(-1, s_target.unsqueeze(-1)).squeeze(-1)
        excess = (s_nll.detach() - signal)[mapped]
        keep = torch.zeros_like(excess)
        keep[excess.topk(max(1, math.ceil(self.ratio * n))).indices] = 1.0 / self.ratio
        return ((keep - 1.0) * ce_tok[mapped]).sum(), mapped.sum()


KD_METHODS: dict[str, type[KDMethod]] = {m.name: m for m in (ALM, SharedKL, ULD, Lexical)}
