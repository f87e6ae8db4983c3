"""Initial values of new embedding rows, one function per method (`--init`).

Every function returns only the new rows, `(n_new, d)`, computed from the old matrix `(V_old, d)`;
the caller concatenates, so old rows are never touched. With tied input/output embeddings the
same rows serve as output projection rows: `unk` then gives every new piece exactly `<unk>`'s logit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Sequence

import sentencepiece as spm
import torch

INIT_METHODS = ("unk", "mean", "normal", "compose", "random")


def init_unk(old: torch.Tensor, n_new: int, unk_id: int) -> torch.Tensor:
    """Copies of the old `<unk>` row (the paper's method)."""
    return old[unk_id].expand(n_new, -1).clone()


def _row_chunks(old: torch.Tensor, rows: torch.Tensor | None, chunk: int) -> Iterator[torch.Tensor]:
    """`old[rows]` (all rows when None) in float64, `chunk` rows at a time: a 256k x 1024 embedding is never
    gathered or copied whole in float64 (3 GB for NLLB-200's)."""
    idx = torch.arange(old.shape[0]) if rows is None else rows
    for i in range(0, len(idx), chunk):
        yield old[idx[i:i + chunk]].double()


def row_mean(old: torch.Tensor, rows: torch.Tensor | None = None, chunk: int = 16384) -> torch.Tensor:
    """Mean `(d,)` (float64) of `old[rows]` (all rows when None)."""
    total = torch.zeros(old.shape[1], dtype=torch.float64)
    for x in _row_chunks(old, rows, chunk):
        total += x.sum(dim=0)
    return total / (old.shape[0] if rows is None else len(rows))


def row_moments(old: torch.Tensor, rows: torch.Tensor | None = None,
                chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean `(d,)` and unbiased covariance `(d, d)` (float64) of `old[rows]`, in two passes over chunks (the
    covariance of centred rows)."""
    mean = row_mean(old, rows, chunk)
    cov = torch.zeros(old.shape[1], old.shape[1], dtype=torch.float64)
    for x in _row_chunks(old, rows, chunk):
        x -= mean
        cov += x.T @ x
    n = old.shape[0] if rows is None else len(rows)
    return mean, cov / max(n - 1, 1)


def init_mean(old: torch.Tensor, n_new: int, rows: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of the old rows `rows` (all when None)."""
    return row_mean(old, rows).to(old.dtype).expand(n_new, -1).clone()


def init_normal(old: torch.Tensor, n_new: int, generator: torch.Generator, rows: torch.Tensor | None = None,
                jitter: float = 1e-6) -> torch.Tensor:
    """Samples of a multivariate normal with the mean and covariance of the old rows `rows` (all when None).

    The covariance of `V_old` rows in `d` dimensions may be singular; `jitter * mean variance` on its
    diagonal keeps the Cholesky factor defined without visibly changing the statistics.
    """
    mean, cov = row_moments(old, rows)
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
