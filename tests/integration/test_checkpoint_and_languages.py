"""Prepared data is never overwritten by another configuration (checks without data: tests/unit)."""
from __future__ import annotations

import pytest

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.paths import cache_dir
from mmt_upgrade.pipeline.data.prepare import prepare_data
from mmt_upgrade.pipeline.runconfig import load_config


def test_prepared_data_is_never_overwritten(tiny_data, tmp_path):
    before = {p: p.read_bytes() for p in tiny_data.root.rglob("*.json")}
    other = load_config("tiny", ["data.vocab_size=900"]).data
    with pytest.raises(UserInputError, match="another configuration"):
        prepare_data(other, cache_dir(), tiny_data.root)
    assert {p: p.read_bytes() for p in tiny_data.root.rglob("*.json")} == before
    half = tmp_path / "half"
    half.mkdir()
    (half / "keep.txt").write_text("mine")
    with pytest.raises(UserInputError, match="not a finished data directory"):
        prepare_data(other, cache_dir(), half)
    assert (half / "keep.txt").read_text() == "mine"
