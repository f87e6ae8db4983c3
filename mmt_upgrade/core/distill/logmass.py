"""Tensor primitives of the chunk-level losses: log-mass of a subset of the vocabulary (one dense pass,
custom backward), chunk log-likelihoods, and the binary KL in log space."""
from __future__ import annotations

import math

import torch
from torch import Tensor


def log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x < 0, stable at both ends (Mächler 2012)."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


class _SubsetLogMass(torch.autograd.Function):
    """`log Σ_{v∈subset} exp(lp_v)` and `lp` at `ids`, with one dense pass for the gradient of both
    (a masked logsumexp plus a gather would allocate and fill two more `(B, T, V)` tensors)."""

    @staticmethod
    def forward(ctx, lp: Tensor, subset: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
        p = lp.exp()  # kept for the backward pass, which turns it into the gradient in place
        with torch.autocast(lp.device.type, enabled=False):  # the mass in fp32, not a bf16 matmul
            mass = (p @ subset).clamp_min(1e-30)
        ctx.save_for_backward(p, subset, mass, ids)
        return mass.log(), lp.gather(-1, ids)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_log_mass: Tensor, g_at: Tensor):
        p, subset, mass, ids = ctx.saved_tensors
        grad = p.mul_(subset).mul_((g_log_mass / mass).unsqueeze(-1))
        if ids.shape[-1]:
            grad.scatter_add_(-1, ids, g_at)
        return grad, None, None


def subset_log_mass(lp: Tensor, subset: Tensor, ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """lp `(..., V)` log-probabilities, subset `(V,)` 0/1, ids `(..., k)`: `(log mass (...), lp at ids (..., k))`."""
    if ids is None:
        ids = torch.zeros(*lp.shape[:-1], 0, dtype=torch.long, device=lp.device)
    return _SubsetLogMass.apply(lp, subset, ids)


def chunk_logprob(ref: Tensor, log_w: Tensor, chunk: Tensor, word_end: Tensor) -> Tensor:
    """`(B, C)` log-likelihood of every chunk on one model's own path, debiased where a word ends with
    the chunk by the log-mass of W at the next position (ALM's "append space").

    ref `(B, T)`: log-prob of each target piece; log_w `(B, T)`: log-mass of W at each position;
    chunk `(B, T)` (-1: none); word_end `(B, C)`.
    """
    b, t = ref.shape
    c = word_end.shape[1]
    slot = torch.where(chunk >= 0, chunk, c)  # column c collects the positions in no chunk
    path = ref.new_zeros(b, c + 1).scatter_add(1, slot, ref.masked_fill(chunk < 0, 0.0))[:, :c]
    pos = torch.arange(t, device=chunk.device).expand(b, t)
    last = torch.full((b, c + 1), -1, dtype=torch.long, device=chunk.device).scatter_reduce(
        1, slot, pos, "amax", include_self=True)[:, :c]
    nxt = (last + 1).clamp(0, t - 1)
    return path + torch.where(word_end, log_w.gather(1, nxt), torch.zeros_like(path))


def binary_kl(log_a: Tensor, log_b: Tensor) -> Tensor:
    """KL(Bernoulli(a) || Bernoulli(b)) from log a, log b <= 0, in fp64. ALM's binarised cross-entropy
    minus the teacher's entropy: the same gradient, and zero when the student matches the teacher."""
    log_a, log_b = log_a.double().clamp(max=-1e-12), log_b.double().clamp(max=-1e-12)
    return log_a.exp() * (log_a - log_b) + (-torch.expm1(log_a)) * (log1mexp(log_a) - log1mexp(log_b))
