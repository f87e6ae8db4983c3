"""A fairseq multilingual checkpoint through CTranslate2's own fairseq converter (`FairseqConverter`), set up so
that fairseq builds the model exactly as `ModelFiles` describes it: this project's plugins as its user dir (so
`--task upgrade_translation` and NLLB's data-source tags load), the dictionary as `dict.<lang>.txt` copies and
as the fixed dictionary, the language list where the config names a file. What the converter cannot be told
(a task that cannot build the data-source tags, a language order given by `--langs-file` against the config's)
goes into a corrected copy of the config, in a temporary checkpoint."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from mmt_upgrade.core.decoding import CT2_PAD
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.paths import PLUGIN_DIR
from mmt_upgrade.fairseq_io.checkpoint import read_checkpoint
from mmt_upgrade.fairseq_io.model_files import ModelFiles

TAGS_TASK = "upgrade_translation"  # the task that builds NLLB's data-source tags with fairseq main
UNSUPPORTED = "not supported by CTranslate2"  # what its ConfigurationChecker's ValueError says


def converter_args(state: dict[str, Any], checkpoint: Path) -> argparse.Namespace:
    """The config the converter reads (`args`, else `cfg["model"]`): fairseq's flat Namespace."""
    args = state.get("args") or (state.get("cfg") or {}).get("model")
    if not isinstance(args, argparse.Namespace) or not getattr(args, "arch", None):
        raise UserInputError(f"{checkpoint}: CTranslate2's fairseq converter needs the model config as fairseq's "
                             "argparse Namespace with an --arch (this checkpoint's is not)")
    return args


def model_limits(state: dict[str, Any], checkpoint: Path) -> dict[str, int]:
    """The model's position limits (what fairseq-generate skips and stops at)."""
    args = converter_args(state, checkpoint)
    return {k: int(getattr(args, k, 1024) or 1024) for k in ("max_source_positions", "max_target_positions")}


def _config_fixes(args: argparse.Namespace, model: ModelFiles) -> dict[str, Any]:
    """The config values that must change for fairseq to build `model`'s rows (empty: use the file as it is)."""
    fixes: dict[str, Any] = {}
    if model.layout.data_source_tags and args.task != TAGS_TASK:
        fixes["task"] = TAGS_TASK
        fixes["add_data_source_prefix_tags"] = True
    langs = getattr(args, "langs", None)
    if langs and (langs.split(",") if isinstance(langs, str) else list(langs)) != model.langs:
        fixes["langs"] = model.langs
    return fixes


def _reasons(error: ValueError) -> str:
    lines = [x.strip(" -") for x in str(error).splitlines() if x.strip().startswith("-")]
    return "; ".join(lines) or str(error).splitlines()[0]


def convert_to_ct2(model: ModelFiles, out: Path, quantization: str) -> dict[str, Any]:
    """CTranslate2's converter writes `out` (replaced if it exists: the caller's build directory); returns the
    model's position limits. A model CTranslate2 cannot express is one UserInputError with its reasons."""
    from ctranslate2.converters import FairseqConverter

    state = read_checkpoint(model.checkpoint, mmap=True)
    args = converter_args(state, model.checkpoint)
    limits = model_limits(state, model.checkpoint)
    fixes = _config_fixes(args, model)
    with tempfile.TemporaryDirectory(prefix="mmt-ct2-") as tmp:
        data = Path(tmp)
        for lang in model.langs:
            shutil.copyfile(model.dictionary, data / f"dict.{lang}.txt")
        if getattr(args, "lang_dict", None) and "langs" not in fixes:  # the converter looks for it in data_dir
            (data / os.path.basename(args.lang_dict)).write_text("".join(x + "\n" for x in model.langs))
        path = model.checkpoint
        if fixes:
            path = data / "checkpoint.pt"
            fixed = argparse.Namespace(**{**vars(args), **fixes, **({"lang_dict": None} if "langs" in fixes else {})})
            torch.save({"args": fixed, "model": state["model"]}, path)
        del state
        converter = FairseqConverter(str(path), str(data), fixed_dictionary=str(model.dictionary),
                                     user_dir=str(PLUGIN_DIR))
        try:
            converter.convert(str(out), quantization=quantization, force=True)
        except ValueError as e:
            if UNSUPPORTED not in str(e):
                raise
            raise UserInputError(f"CTranslate2 cannot convert {model.checkpoint}: {_reasons(e)}") from None
    check_vocabulary(Path(out), model)
    return {**limits, "config_fixes": sorted(fixes)}


def check_vocabulary(out: Path, model: ModelFiles) -> None:
    """The converted model's vocabulary is fairseq's row order of `model` (`<pad>` renamed by CTranslate2)."""
    files = [out / "shared_vocabulary.json"] if (out / "shared_vocabulary.json").exists() else [
        out / "source_vocabulary.json", out / "target_vocabulary.json"]
    expected = [CT2_PAD if s == "<pad>" else s for s in model.layout.rows]
    for f in files:
        if json.loads(f.read_text(encoding="utf-8")) != expected:
            raise AssertionError(f"CTranslate2's {f.name} is not fairseq's symbol order of {model.checkpoint}")
