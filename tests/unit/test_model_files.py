"""`ModelFiles`: a model read in its own layout from a directory, a checkpoint and flags, checked whole."""
from __future__ import annotations

import pytest

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.fairseq_io.model_files import ModelFiles

from .test_layout_checkpoints import LAYOUTS, NEW, OPTIONS, build, fairseq_symbols, inputs, upgrade


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_an_upgraded_directory_alone_gives_fairseqs_rows(layout, old_spm, texts, tmp_path):
    b = build(layout, old_spm, texts, tmp_path / "old")
    upgrade(inputs(b, spm=old_spm), tmp_path / "up", OPTIONS)
    m = ModelFiles.open(tmp_path / "up")
    assert m.checkpoint == tmp_path / "up" / "checkpoint.pt" and m.spm == tmp_path / "up" / "spm.model"
    assert m.langs == [*b["codes"], NEW] and m.fixed_dictionary == b["in_file"]
    assert list(m.layout.rows) == fairseq_symbols(tmp_path / "up" / "dict.txt", m.langs, b["style"], b["tags"])
    flags = m.task_flags(b["codes"][0], NEW)
    assert ("--fixed-dictionary" in flags) == b["in_file"] and ("--add-data-source-prefix-tags" in flags) == b["tags"]


def test_the_input_checkpoint_with_flags_and_its_errors(old_spm, texts, tmp_path):
    b = build("nllb", old_spm, texts, tmp_path / "old")
    m = ModelFiles.open(b["ckpt"], dictionary=b["dict"], spm=old_spm)
    assert m.langs == list(b["codes"]) and m.dictionary == b["dict"]
    with pytest.raises(UserInputError, match="no SentencePiece model found: give --spm FILE"):
        ModelFiles.open(b["ckpt"], dictionary=b["dict"])
    with pytest.raises(UserInputError, match="--dict /nowhere.txt: no such file"):
        ModelFiles.open(b["ckpt"], dictionary="/nowhere.txt", spm=old_spm)
    short = tmp_path / "short.txt"
    short.write_text("".join(b["dict"].read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(UserInputError, match=f"dictionary {short} .* they do not belong together"):
        ModelFiles.open(b["ckpt"], dictionary=short, spm=old_spm)
    with pytest.raises(UserInputError, match="no such model directory or checkpoint"):
        ModelFiles.open(tmp_path / "missing")
