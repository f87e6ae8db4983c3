"""New-row initializers have the statistics they promise; `compose` averages the old segmentation."""
from __future__ import annotations

import torch

from mmt_upgrade.core.embeddings import (
    composition_matrix,
    init_compose,
    init_mean,
    init_normal,
    init_random,
    init_unk,
    piece_segmenter,
    row_moments,
)


def _old(v: int = 400, d: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(d, d, generator=g)
    return torch.randn(v, d, generator=g) @ mix + torch.arange(d, dtype=torch.float32)


def test_unk_and_mean_rows():
    old = _old()
    assert torch.equal(init_unk(old, 5, unk_id=3), old[3].repeat(5, 1))
    assert torch.allclose(init_mean(old, 2), old.mean(0).repeat(2, 1))


def test_row_moments_in_chunks_are_torch_mean_and_cov_of_the_rows():
    old = _old()
    rows = torch.tensor([5, 1, 7, 2, 9, 11, 3])
    mean, cov = row_moments(old, rows, chunk=3)
    assert torch.allclose(mean, old[rows].double().mean(0), rtol=0, atol=1e-12)
    assert torch.allclose(cov, torch.cov(old[rows].double().T), rtol=0, atol=1e-10)
    assert torch.allclose(init_mean(old, 2, rows), old[rows].mean(0).repeat(2, 1))


def test_normal_rows_follow_the_old_mean_and_covariance():
    old = _old()
    new = init_normal(old, 20000, torch.Generator().manual_seed(1))
    assert torch.allclose(new.mean(0), old.mean(0), atol=0.1)
    rel = (torch.cov(new.T) - torch.cov(old.T)).abs().max() / torch.cov(old.T).abs().max()
    assert rel < 0.05


def test_random_rows_use_fairseqs_scale():
    new = init_random(_old(d=64), 5000, torch.Generator().manual_seed(2))
    assert abs(new.std().item() - 64**-0.5) < 0.005 and abs(new.mean().item()) < 0.005


def test_compose_averages_the_old_segmentation(old_spm, sp):
    """A Latin word (word start), a word-internal piece and an Arabic word the model never saw."""
    old = _old(v=sp.GetPieceSize())
    pieces = ["\u2581Gesira", "lûma", "\u0645\u0631"]  # Arabic: byte pieces, never <unk> with byte fallback
    weights, fallbacks = composition_matrix(pieces, piece_segmenter(old_spm), old.shape[0], unk_id=3)
    new = init_compose(old, weights)
    assert fallbacks == 0
    internal = piece_segmenter(old_spm)(["lûma"])[0]
    assert "".join(sp.IdToPiece(i) for i in internal) == "lûma"  # no word start added
    arabic = sp.Encode("\u0645\u0631", out_type=str)
    assert all(p.startswith("<0x") for p in arabic[1:])
    for i, ids in enumerate([sp.Encode("Gesira"), internal, sp.PieceToId(arabic[1:])]):
        assert len(ids) > 1, pieces[i]  # an average of several rows, not a copy of one
        assert torch.allclose(new[i], old[ids].mean(0), atol=1e-6), pieces[i]


def test_compose_segments_word_internal_pieces_without_a_word_start(old_spm, sp):
    word_start, internal = piece_segmenter(old_spm)(["\u2581gesi", "gesi"])
    assert sp.IdToPiece(word_start[0]).startswith("\u2581")
    assert not any(sp.IdToPiece(i).startswith("\u2581") for i in internal)


def test_compose_falls_back_to_unk_when_only_unk():
    old = _old(v=10)
    weights, fallbacks = composition_matrix(["x", "ab"], lambda xs: [[3], [5, 3, 7]], 10, unk_id=3)
    new = init_compose(old, weights)
    assert fallbacks == 1 and torch.allclose(new[0], old[3]) and torch.allclose(new[1], (old[5] + old[7]) / 2)
