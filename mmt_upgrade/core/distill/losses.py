"""Distillation losses across vocabularies (docs/methods.md §7), as tensor functions over a batch.

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
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mmt_upgrade.core.distill.batch import BatchAlignment, KDVocab, StudentOutput
from mmt_upgrade.core.distill.logmass import binary_kl, chunk_logprob, log1mexp, subset_log_mass



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
        self.tau = float(self.temperature if temperature is None else temperature)
        self.topk = topk
        self.ratio = ratio

    def teacher_signal(self, t_logits: Tensor, t_target: Tensor, align: BatchAlignment) -> Tensor:
        """From the teacher's output logits `(B, Tt, Vt)` on its target `(B, Tt)` (distilled rows only)."""
        raise NotImplementedError

    def loss(self, student: StudentOutput, align: BatchAlignment, signal: Tensor) -> tuple[Tensor, Tensor]:
        """`(kd_sum, aligned)`: the distillation loss summed over the batch, and how many student target
        tokens it covers (whole batch: `align` and `signal` have a row for every example)."""
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

    def expand(self, signal: Tensor, rows: Tensor, batch: BatchAlignment) -> Tensor:
        """The signal of the distilled rows placed in the whole batch (flat signals already are: the
        other rows have no aligned positions)."""
        if not self.padded:
            return signal
        out = signal.new_full((len(batch.s_len), self.width(batch)), float("nan"))
        out[rows, : signal.shape[1]] = signal
        return out


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
        log_w, ref = subset_log_mass(lprobs, self.vocab.t_word_f, t_target.unsqueeze(-1))
        return chunk_logprob(ref.squeeze(-1), log_w, align.t_chunk, align.word_end)

    def loss(self, student, align, signal):
        log_w, _ = subset_log_mass(student.lprobs, self.vocab.s_word_f)
        s_chunk = chunk_logprob(-student.nll, log_w, align.s_chunk, align.word_end)
        use = align.chunk_ok
        kl = binary_kl(signal.masked_fill(~use, -1.0) / self.tau, s_chunk.masked_fill(~use, -1.0) / self.tau)
        return (kl * use).sum().float(), align.positions(use)[0].sum()


class _PositionMethod(KDMethod):
    """Methods applied at single aligned positions: one piece on each side of a chunk."""

    needs_topk = True

    def chunks(self, align: BatchAlignment) -> Tensor:
        return align.one_to_one & align.chunk_ok

    def lengths(self, align):
        return align.positions(self.chunks(align))[0].sum(1)

    def teacher_log_probs(self, t_logits: Tensor, align: BatchAlignment) -> Tensor:
        """`(N, Vt)` the teacher's log-probs at τ at its aligned positions."""
        t_mask = align.positions(self.chunks(align))[1]
        return F.log_softmax(t_logits[t_mask].float() / self.tau, dim=-1)


class SharedKL(_PositionMethod):
    """KL between the distributions restricted to the shared pieces, renormalised on both sides, at
    chunks where both sides emit the same piece; the teacher's top-k plus one bucket for the rest."""

    name, weight, temperature = "shared", 0.5, 1.0

    def chunks(self, align):
        return align.same_piece & align.chunk_ok

    def teacher_signal(self, t_logits, t_target, align):
        """`(N, 2k)`: the teacher's top-k shared log-probs at τ (renormalised over the shared pieces),
        then their indices into the shared list."""
        lp = self.teacher_log_probs(t_logits, align)
        log_z, _ = subset_log_mass(lp, self.vocab.t_shared_f)
        k = min(self.topk or len(self.vocab.t_shared), len(self.vocab.t_shared))
        vals, ids = lp.masked_fill(self.vocab.t_shared_f == 0, float("-inf")).topk(k, dim=-1)
        return torch.cat([vals - log_z.unsqueeze(-1), self.vocab.t_to_shared[ids].to(vals.dtype)], dim=1)

    def loss(self, student, align, signal):
        s_mask = align.positions(self.chunks(align))[0]
        k = signal.shape[1] // 2
        t_lp = signal[:, :k]
        lp = student.log_probs(self.tau)
        ids = torch.zeros(*lp.shape[:-1], k, dtype=torch.long, device=lp.device)
        ids[s_mask] = self.vocab.s_shared[signal[:, k:].long()]
        log_z, at = subset_log_mass(lp, self.vocab.s_shared_f, ids)
        s_lp = (at - log_z.unsqueeze(-1))[s_mask]  # (N, k) renormalised over the shared pieces
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
        lp = self.teacher_log_probs(t_logits, align)
        return lp.topk(min(self.topk or lp.shape[1], lp.shape[1]), dim=-1).values.exp()

    def loss(self, student, align, signal):
        s_mask = align.positions(self.chunks(align))[0]
        lp = student.log_probs(self.tau)
        k = signal.shape[1]
        s_top = lp.topk(min(k, lp.shape[-1]), dim=-1).values[s_mask].exp()  # (N, k)
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

    def loss(self, student, align, signal):
        mapped = ~torch.isnan(signal)
        n = int(mapped.sum())
        if n == 0:
            return student.ce.new_zeros(()), mapped.sum()
        excess = (student.nll.detach() - signal)[mapped]
        keep = torch.zeros_like(excess)
        keep[excess.topk(max(1, math.ceil(self.ratio * n))).indices] = 1.0 / self.ratio
        return ((keep - 1.0) * student.ce[mapped]).sum(), mapped.sum()


KD_METHODS: dict[str, type[KDMethod]] = {m.name: m for m in (ALM, SharedKL, ULD, Lexical)}
