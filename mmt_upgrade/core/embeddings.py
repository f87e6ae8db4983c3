"""Initial values of new embedding rows, one function per method (`--init`).

Every function returns only the new rows, `(n_new, d)`, computed from the old matrix `(V_old, d)`;
the caller concatenates, so old rows are never touched. With tied input/output embeddings the
same rows serve as output projection rows: `unk` then gives every new piece exactly `<unk>`'s logit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import sentencepiece as spm
import torch

INIT_METHODS = ("unk", "mean", "normal", "compose", "random")


def init_unk(old: torch.Tensor, n_new: int, unk_id: int) -> torch.Tensor:
    """Copies of the old `<unk>` row (the paper's method)."""
    return old[unk_id].expand(n_new, -1).clone()


def init_mean(old: torch.Tensor, n_new: int) -> torch.Tensor:
    return old.mean(dim=0).expand(n_new, -1).clone()


def init_normal(old: torch.Tensor, n_new: int, generator: torch.Generator, jitter: float = 1e-6) -> torch.Tensor:
    """Samples of a multivariate normal with the old rows' mean and covariance.

    The covariance of `V_old` rows in `d` dimensions may be singular; `jitter * mean variance` on its
    diagonal keeps the Cholesky factor defined without visibly changing the statistics.
    """
    x = old.double()
    mean = x.mean(dim=0)
    cov = torch.cov(x.T)
    cov += torch.eye(cov.shape[0], dtype=cov.dtype) * jitter * cov.diagonal().mean()
    chol = torch.linalg.cholesky(cov)
    z = torch.randn(n_new, old.shape[1], generator=generator, dtype=torch.float64)
    return (mean + z @ chol.T).to(old.dtype)


def init_random(old: torch.Tensor, n_new: int, generator: torch.Generator) -> torch.Tensor:
    """fairseq's own embedding init, N(0, d^-1/2): the naive baseline."""
    d = old.shape[1]
    return (torch.randn(n_new, d, generator=generator, dtype=torch.float32) * d**-0.5).to(old.dtype)


def piece_segmenter(old_spm: Path) -> Callable[[list[str]], list[list[int]]]:
    """Segments piece strings with the OLD model, word boundaries kept as they are.

    The model is loaded without its dummy prefix, so `▁foo` segments as a word start and `foo`
    as a word-internal string (the model's own loading would turn `foo` into `▁foo`).
    """
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(Path(old_spm).read_bytes())
    proto.normalizer_spec.add_dummy_prefix = False
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(proto.SerializeToString())
    return lambda pieces: sp.Encode(list(pieces))


def composition_matrix(
    pieces: Sequence[str], encode: Callable[[list[str]], list[list[int]]], n_old: int, unk_id: int
) -> tuple[torch.Tensor, int]:
    """`(n_new, V_old)` averaging weights (row i averages the old ids of piece i) and the fallback count.

    `encode` segments piece strings with the OLD tokenizer into old row ids (`piece_segmenter`).
    A piece whose old segmentation is only `<unk>` gets weight 1 on `<unk>` (the `unk` fallback).
    """
    rows, cols, vals = [], [], []
    fallbacks = 0
    for i, ids in enumerate(encode(list(pieces))):
        fallbacks += all(t == unk_id for t in ids)
        ids = [t for t in ids if t != unk_id] or [unk_id]
        rows += [i] * len(ids)
        cols += ids
        vals += [1.0 / len(ids)] * len(ids)
    weights = torch.sparse_coo_tensor([rows, cols], vals, (len(pieces), n_old), dtype=torch.float64,
                                      check_invariants=True)
    return weights.coalesce(), fallbacks


def init_compose(old: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Average of the old rows that the old tokenizer segments each new piece into."""
    return torch.sparse.mm(weights.to(torch.float64), old.double()).to(old.dtype)
