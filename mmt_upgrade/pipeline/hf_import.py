"""`mmt-upgrade import HF_DIR --out DIR`: a Hugging Face M2M-100/NLLB directory as a fairseq model directory.

DIR holds `checkpoint.pt` (fairseq's `transformer`, pre-norm, shared embeddings, task
`translation_multi_simple_epoch` with the languages, `--encoder-langtok src --decoder-langtok`), `dict.txt` (every
row from id 4 on in the HF model's order: pieces, `__xx__` language tokens, `<mask>`, fillers: M2M-100's fixed
dictionary layout, so the embedding rows are the HF tensors unpermuted), a copy per language (DIR is also a
fairseq DATA argument), `spm.model`, `langs.txt` and `import.json` with the fairseq-train model flags. NLLB's
`eng_Latn` becomes fairseq's `__eng_Latn__`. `ModelFiles.open(DIR)` and `upgrade --dict DIR/dict.txt --spm
DIR/spm.model` read it; `export --to hf` gives the same tensors back. Every input is read and checked first.
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import log
from mmt_upgrade.core.hf_names import fairseq_model_flags, to_fairseq
from mmt_upgrade.core.hf_vocab import code_of_hf_token, fairseq_rows, fairseq_spm_proto
from mmt_upgrade.core.spm_merge import processor, read_proto
from mmt_upgrade.core.symbols import MASK, SymbolLayout
from mmt_upgrade.fairseq_io.checkpoint import read_checkpoint
from mmt_upgrade.fairseq_io.fresh_checkpoint import fresh_checkpoint
from mmt_upgrade.fairseq_io.model_files import CHECKPOINT, DICTIONARY, SPM_MODEL, ModelFiles
from mmt_upgrade.pipeline.export.outdir import building, check_new, require_extra

WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZERS = ("NllbTokenizer", "NllbTokenizerFast", "M2M100Tokenizer")
PIVOTS = ("en", "eng_Latn", "en_XX")
IMPORT_JSON = "import.json"


@dataclass
class HFModel:
    config: dict[str, Any]
    weights: dict[str, torch.Tensor]
    tokens: dict[int, str]  # id -> token, as the tokenizer maps them
    langs: dict[str, int]  # language code -> row
    mask: int | None
    spm: Path


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserInputError(f"{path}: not readable JSON ({e})") from None


def _weights(hf_dir: Path) -> dict[str, torch.Tensor]:
    """The state dict from safetensors or PyTorch files, sharded or not."""
    from safetensors.torch import load_file

    name = next((x for x in WEIGHTS if (hf_dir / x).is_file()), None)
    if name is None:
        raise UserInputError(f"{hf_dir}: no weights ({' or '.join(WEIGHTS)})")
    files = sorted(set(_json(hf_dir / name)["weight_map"].values())) if name.endswith(".json") else [name]
    out: dict[str, torch.Tensor] = {}
    for f in files:
        path = hf_dir / f
        try:
            out.update(load_file(str(path)) if f.endswith(".safetensors") else
                       torch.load(path, map_location="cpu", weights_only=True))
        except Exception as e:  # a truncated or foreign file, in whichever library's words
            raise UserInputError(f"{path}: not readable weights ({type(e).__name__}: {e})") from None
    return out


def _tokenizer(hf_dir: Path) -> tuple[dict[int, str], dict[str, int], int | None, Path]:
    """(id -> token, language code -> row, <mask> row, SentencePiece model) of the directory's tokenizer."""
    from transformers import AutoTokenizer

    cls = _json(hf_dir / "tokenizer_config.json").get("tokenizer_class") if (
        hf_dir / "tokenizer_config.json").is_file() else None
    if cls not in TOKENIZERS:
        raise UserInputError(f"{hf_dir}: tokenizer class {cls!r} (tokenizer_config.json): import reads "
                             f"{', '.join(TOKENIZERS)} with their sentencepiece.bpe.model")
    needed = ["sentencepiece.bpe.model"] + (["vocab.json"] if cls == "M2M100Tokenizer" else [])
    missing = [x for x in needed if not (hf_dir / x).is_file()]
    if missing:
        raise UserInputError(f"{hf_dir}: tokenizer files missing: {', '.join(missing)}")
    try:
        tok = AutoTokenizer.from_pretrained(str(hf_dir), use_fast=False)
    except Exception as e:
        raise UserInputError(f"{hf_dir}: the tokenizer does not load ({type(e).__name__}: {e})") from None
    tokens = {i: t for t, i in tok.get_vocab().items()}
    if cls == "M2M100Tokenizer":
        langs, spm = dict(tok.lang_code_to_id), Path(tok.spm_file)
    else:
        langs = {code_of_hf_token(t): tok.convert_tokens_to_ids(t) for t in tok.additional_special_tokens}
        spm = Path(tok.vocab_file)
    mask = tok.mask_token_id if getattr(tok, "mask_token", None) else None
    return tokens, langs, mask, spm


def read_hf_dir(hf_dir: Path) -> HFModel:
    """An HF M2M-100/NLLB directory, every part checked: another architecture, missing tokenizer files or
    weights are one error each."""
    hf_dir = Path(hf_dir)
    if not (hf_dir / "config.json").is_file():
        raise UserInputError(f"{hf_dir}: no config.json (not a Hugging Face model directory)")
    raw = _json(hf_dir / "config.json")
    fairseq_model_flags(raw)  # model_type m2m_100 and what fairseq can hold, before reading anything big
    from transformers import M2M100Config

    config = M2M100Config.from_dict(raw).to_dict()  # the class defaults where the file is silent
    tokens, langs, mask, spm = _tokenizer(hf_dir)
    if not langs:
        raise UserInputError(f"{hf_dir}: the tokenizer has no language codes")
    weights = _weights(hf_dir)
    return HFModel(config, weights, tokens, langs, mask, spm)


def convert(hf: HFModel, out: Path) -> tuple[dict[str, Any], list[str], SymbolLayout, Any]:
    """The fairseq checkpoint (config pointing at `out`), rows, layout and SentencePiece proto."""
    vocab = int(hf.config["vocab_size"])
    beyond = {t: i for i, t in hf.tokens.items() if i >= vocab} | {f"__{x}__": i for x, i in hf.langs.items() if i >= vocab}
    if beyond:
        raise UserInputError(f"tokenizer ids beyond the model's vocab_size {vocab}: {dict(list(beyond.items())[:5])}")
    rows = fairseq_rows(hf.tokens, hf.langs, vocab, hf.mask)
    langs = sorted(hf.langs, key=hf.langs.get)
    layout = SymbolLayout(tuple(rows[4:]), tuple(langs))
    if list(layout.rows) != rows:
        raise AssertionError("the dictionary does not give back the HF rows")
    names = {hf.tokens[r] for r in [*hf.langs.values(), *([hf.mask] if hf.mask is not None else [])] if r in hf.tokens}
    proto = fairseq_spm_proto(read_proto(hf.spm), rows, names | {MASK}, layout.is_piece)
    processor(proto)  # SentencePiece accepts it
    tensors = to_fairseq(hf.weights)
    if tensors["encoder.embed_tokens.weight"].shape[0] != vocab:
        raise UserInputError(f"the embedding has {tensors['encoder.embed_tokens.weight'].shape[0]} rows, "
                             f"config.json vocab_size {vocab}")
    pivot = next((x for x in PIVOTS if x in langs), langs[0])
    pairs = [f"{a}-{b}" for x in langs if x != pivot for a, b in ((x, pivot), (pivot, x))] or [f"{pivot}-{pivot}"]
    argv = [str(out), "--task", "translation_multi_simple_epoch", *fairseq_model_flags(hf.config),
            "--langs", ",".join(langs), "--lang-pairs", ",".join(pairs), "--encoder-langtok", "src",
            "--decoder-langtok", "--lang-tok-style", "multilingual", "--fixed-dictionary", str(out / DICTIONARY),
            "--bpe", "sentencepiece", "--sentencepiece-model", str(out / SPM_MODEL),
            "--optimizer", "adam", "--criterion", "label_smoothed_cross_entropy"]
    state = fresh_checkpoint(tensors, argv)
    state["task_state"]["model_langs"] = langs
    return state, rows, layout, proto


def import_hf(hf_dir: Path, out: Path) -> dict[str, Any]:
    """Write the fairseq model directory `out`; returns import.json's content."""
    require_extra("hf", "transformers", "safetensors")
    out = check_new(out, "--out")
    hf = read_hf_dir(hf_dir)
    state, rows, layout, proto = convert(hf, out)
    with building(out, "--out") as tmp:
        torch.save(state, tmp / CHECKPOINT)
        (tmp / DICTIONARY).write_text("".join(f"{s} 1\n" for s in rows[4:]), encoding="utf-8")
        for lang in layout.langs:
            os.link(tmp / DICTIONARY, tmp / f"dict.{lang}.txt")
        (tmp / SPM_MODEL).write_bytes(proto.SerializeToString())
        (tmp / "langs.txt").write_text(",".join(layout.langs) + "\n", encoding="utf-8")
        model = ModelFiles.open(tmp)  # what the rest of the toolkit reads, and fairseq loads it strictly
        model.load(read_checkpoint(tmp / CHECKPOINT, mmap=True))
        report = {"format": 1, "from": str(Path(hf_dir).absolute()), "langs": list(layout.langs),
                  "layout": layout.describe(), "fairseq_model_flags": fairseq_model_flags(hf.config)}
        (tmp / IMPORT_JSON).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("hf_dir", metavar="HF_DIR", help="a Hugging Face M2M-100/NLLB model directory "
                        "(config.json, weights, NllbTokenizer or M2M100Tokenizer files)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the fairseq model directory to write (new)")


def run(args: argparse.Namespace) -> int:
    report = import_hf(Path(args.hf_dir), Path(args.out))
    log(f"imported {args.hf_dir} -> {args.out}: {report['layout']['rows']} rows, {len(report['langs'])} languages; "
        f"fine-tune with fairseq-train ... {' '.join(report['fairseq_model_flags'])}")
    return 0
