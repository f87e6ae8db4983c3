"""Binarize SentencePiece-encoded pairs through fairseq's own preprocessing code."""
from __future__ import annotations

import logging
from pathlib import Path

from mmt_upgrade.core.errors import UserInputError


def binarize_pair(spm_dir: Path, bin_dir: Path, src: str, tgt: str, dict_path: Path, splits: list[str]) -> None:
    """Run `fairseq_cli.preprocess` for one language pair into the shared data-bin."""
    from fairseq import options
    from fairseq_cli import preprocess

    args = [
        "--source-lang", src, "--target-lang", tgt,
        "--destdir", str(bin_dir),
        "--srcdict", str(dict_path), "--tgtdict", str(dict_path),
        "--workers", "1", "--dataset-impl", "mmap",
    ]
    for split, flag in (("train", "--trainpref"), ("valid", "--validpref"), ("test", "--testpref")):
        if split in splits:
            args += [flag, str(spm_dir / f"{split}.{src}-{tgt}")]
    parsed = options.get_preprocessing_parser().parse_args(args)
    level = logging.getLogger().level
    try:
        preprocess.main(parsed)
    finally:
        logging.getLogger().setLevel(level)


def check_data_bin(bin_dir: Path, langs: list[str]) -> None:
    """A data-bin must hold one dictionary per language (fairseq loads `dict.{lang}.txt`)."""
    bin_dir = Path(bin_dir)
    if not bin_dir.is_dir():
        raise UserInputError(f"data-bin not found: {bin_dir}")
    for lang in langs:
        if not (bin_dir / f"dict.{lang}.txt").exists():
            raise UserInputError(f"data-bin {bin_dir} has no dictionary for {lang!r} (dict.{lang}.txt missing)")
