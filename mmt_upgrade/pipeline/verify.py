"""`mmt-upgrade verify`: does the upgraded model still compute the old model's function?

Both models are loaded by fairseq itself and run on the same old-language dev pairs, in fairseq's
multilingual format (source `__src__ x </s>`, decoder input `</s> __tgt__ y`). Where old text keeps
its pieces (`extend`, `keep`), the new pieces and language tokens are masked out of the softmax and:
- without growth, log-probabilities must equal the old model's (max |Δ| <= 1e-5);
- with `preserve` growth, within 1e-4 (post-norm layers re-normalize: LayerNorm's epsilon);
and greedy translations must be identical. `paper` growth and `retrain` promise nothing: their
figures show users the size of the change.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import read_text_lines, sha256_file, write_json_atomic
from mmt_upgrade.core.languages import parse_lang_list
from mmt_upgrade.core.record import UPGRADE_JSON
from mmt_upgrade.core.symbols import SymbolLayout, read_dictionary_file
from mmt_upgrade.core.vocab import Tokenizer
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.fairseq_io.models import (
    LoadedModel,
    collate_pairs,
    greedy,
    load_model,
    load_model_in_layout,
    teacher_forced_logits,
)
from mmt_upgrade.fairseq_io.checkpoint import checkpoint_langs, checkpoint_layout, read_checkpoint
from mmt_upgrade.pipeline.upgrade.inputs import parse_lang_files

LOGPROB_TOLERANCE = 1e-5
GROWTH_LOGPROB_TOLERANCE = 1e-4


def promise(report: Mapping) -> float | None:
    """The max |Δ log-prob| an upgrade promises (None: it promises nothing)."""
    if report["vocab_mode"] == "retrain":
        return None
    growth = report.get("growth")
    if growth is None:
        return LOGPROB_TOLERANCE
    return GROWTH_LOGPROB_TOLERANCE if growth["init"] == "preserve" else None


def _batch(m: LoadedModel, src_lang: str, tgt_lang: str, src: list[list[str]], tgt: list[list[str]] | None):
    pad, eos = m.index["<pad>"], m.index["</s>"]
    src_lt, tgt_lt = m.langtok(src_lang), m.langtok(tgt_lang)
    srcs = [torch.tensor([src_lt] + m.ids(p) + [eos]) for p in src]
    tgts = None if tgt is None else [torch.tensor([tgt_lt] + m.ids(p) + [eos]) for p in tgt]
    return collate_pairs(srcs, tgts, pad, eos)


def verify_direction(old: LoadedModel, new: LoadedModel, src_lang: str, tgt_lang: str, src_lines: list[str],
                     tgt_lines: list[str], extend: bool, batch_size: int = 16) -> dict:
    """Figures for one direction; old symbols are found in the new model by string."""
    keep = torch.tensor([new.index[s] for s in old.symbols]) if extend else None
    banned = None
    if extend:
        mask = torch.ones(len(new.symbols), dtype=torch.bool)
        mask[keep] = False
        banned = mask.nonzero().flatten()
    max_diff, new_mass, n_tokens, same, agree_text = 0.0, 0.0, 0, 0, 0
    for i in range(0, len(src_lines), batch_size):
        src, tgt = src_lines[i: i + batch_size], tgt_lines[i: i + batch_size]
        o = _batch(old, src_lang, tgt_lang, old.tokenizer.encode(src_lang, src), old.tokenizer.encode(tgt_lang, tgt))
        n = _batch(new, src_lang, tgt_lang, new.tokenizer.encode(src_lang, src), new.tokenizer.encode(tgt_lang, tgt))
        max_len = int(o[1].max()) * 2 + 10
        hyp_old = greedy(old, o[0], o[1], tgt_lang, max_len)
        hyp_new = greedy(new, n[0], n[1], tgt_lang, max_len, banned)
        same += sum(a == b for a, b in zip(hyp_old, hyp_new))
        text_old = old.tokenizer.decode(tgt_lang, hyp_old)
        text_new = new.tokenizer.decode(tgt_lang, hyp_new)
        agree_text += sum(a == b for a, b in zip(text_old, text_new))
        if not extend:
            continue
        lp_old = teacher_forced_logits(old, *o[:3]).log_softmax(-1)
        logits_new = teacher_forced_logits(new, *n[:3])
        lp_new = logits_new[..., keep].log_softmax(-1)
        valid = o[3] != old.index["<pad>"]
        max_diff = max(max_diff, float((lp_old - lp_new).abs()[valid].max()))
        full = logits_new.log_softmax(-1)
        new_mass += float(full[..., banned].logsumexp(-1).exp()[valid].sum())
        n_tokens += int(valid.sum())
    out = {"sentences": len(src_lines), "greedy_identical": same, "greedy_text_identical": agree_text}
    if extend:
        out |= {"max_abs_logprob_diff": max_diff, "new_symbol_mass_mean": new_mass / max(n_tokens, 1),
                "target_tokens": n_tokens}
    return out


def check_old_data(old_data: PreparedData, report: Mapping, report_path: Path) -> None:
    """`--old-data` must be the old model's: its languages, SentencePiece model and dictionary."""
    old_langs = report["langs"]["old"]
    if old_data.langs != old_langs:
        raise UserInputError(f"--old-data {old_data.root}: its languages ({','.join(old_data.langs)}) are not the "
                             f"old model's ({','.join(old_langs)}); give the old model's prepared data")
    for key, path in (("spm", old_data.spm_model), ("dict", old_data.dictionary)):
        if sha256_file(path) != report["inputs"][key]["sha256"]:
            raise UserInputError(f"--old-data {old_data.root}: {path} is not the {key} the model was upgraded "
                                 f"from ({report_path} inputs.{key}); give the old model's prepared data")


@dataclass
class OldModelFiles:
    """The old model's files for `verify` without prepared data: any layout (M2M-100, NLLB-200, ours)."""
    dictionary: Path
    spm: Path
    dev_texts: dict[str, list[str]]  # old-language dev text; lines of two languages need not be parallel
    langs_file: Path | None = None


def _check_input(path: Path, key: str, flag: str, report: Mapping, report_path: Path) -> None:
    if sha256_file(path) != report["inputs"][key]["sha256"]:
        raise UserInputError(f"{flag} {path} is not the {key} the model was upgraded from ({report_path} "
                             f"inputs.{key})")


def _load_from_files(old_checkpoint: Path, files: OldModelFiles, new_dir: Path, report: Mapping,
                     report_path: Path) -> tuple[LoadedModel, LoadedModel, dict[tuple[str, str], tuple[list, list]]]:
    """Both models loaded in their layouts, and the directions to run: the old model's pairs between languages
    with dev text (each language to itself where there are none)."""
    _check_input(files.dictionary, "dict", "--dict", report, report_path)
    _check_input(files.spm, "spm", "--spm", report, report_path)
    state = read_checkpoint(old_checkpoint, mmap=True)
    settings, old_langs = checkpoint_layout(state), checkpoint_langs(state, files.langs_file)
    symbols, _ = read_dictionary_file(files.dictionary)
    layout = SymbolLayout(symbols, old_langs, settings["style"], settings["data_source_tags"])
    old = load_model_in_layout(old_checkpoint, layout, files.dictionary, layout.langs_in_file,
                               Tokenizer.single(files.spm, old_langs))
    new_symbols, _ = read_dictionary_file(new_dir / "dict.txt")
    new_layout = SymbolLayout(new_symbols, report["langs"]["model"], settings["style"], settings["data_source_tags"])
    new = load_model_in_layout(new_dir / "checkpoint.pt", new_layout, new_dir / "dict.txt", layout.langs_in_file,
                               Tokenizer.load(new_dir))
    dev = files.dev_texts
    pairs = [tuple(p.split("-")) for p in report["lang_pairs"]]
    pairs = [(a, b) for a, b in pairs if a in dev and b in dev] or [(x, x) for x in dev]
    return old, new, {(a, b): (dev[a], dev[b]) for a, b in pairs}


def verify(old_checkpoint: Path, old_data: PreparedData | OldModelFiles, new_dir: Path,
           langs: Sequence[str] | None = None, sentences: int = 100) -> dict:
    """Run every old direction involving `langs` (default: all); `ok` is False when a promise is broken."""
    new_dir = Path(new_dir)
    report_path = new_dir / UPGRADE_JSON
    if not report_path.is_file():
        raise UserInputError(f"{new_dir} is not an upgraded model directory ({UPGRADE_JSON} missing)")
    report = json.loads(report_path.read_text())
    recorded = report["inputs"]["checkpoint"]["sha256"]
    if sha256_file(old_checkpoint) != recorded:
        raise UserInputError(f"{new_dir} was not upgraded from {old_checkpoint} (its sha256 differs from the one "
                             f"in {report_path})")
    old_langs = report["langs"]["old"]
    langs = old_langs if langs is None else langs
    bad = [x for x in langs if x not in old_langs]
    if bad:
        raise UserInputError(f"--langs: {', '.join(bad)} not an old language of the model ({','.join(old_langs)})")
    extend = report["vocab_mode"] != "retrain"  # old text keeps its pieces: compare token by token
    tolerance = promise(report)
    if isinstance(old_data, OldModelFiles):
        old, new, texts = _load_from_files(old_checkpoint, old_data, new_dir, report, report_path)
    else:
        check_old_data(old_data, report, report_path)
        old = load_model(old_checkpoint, old_data.bin_dir, Tokenizer.single(old_data.spm_model, old_langs))
        new = load_model(new_dir / "checkpoint.pt", new_dir, Tokenizer.load(new_dir))
        texts = {(src, tgt): tuple(old_data.raw_file("valid", src, tgt, x).read_text(encoding="utf-8").splitlines()
                                   for x in (src, tgt)) for src, tgt in old_data.directions}
    results = {}
    for (src, tgt), (src_lines, tgt_lines) in texts.items():
        if src not in langs and tgt not in langs:
            continue
        n = min(sentences, len(src_lines), len(tgt_lines))
        results[f"{src}-{tgt}"] = verify_direction(old, new, src, tgt, list(src_lines[:n]), list(tgt_lines[:n]),
                                                   extend)
    if not results:
        raise UserInputError(f"no dev text for {', '.join(langs)}: give --dev-text LANG=FILE")
    out = {"vocab_mode": report["vocab_mode"], "growth": (report.get("growth") or {}).get("init"),
           "tolerance": tolerance, "directions": results,
           "greedy_identical": sum(r["greedy_identical"] for r in results.values()),
           "sentences": sum(r["sentences"] for r in results.values())}
    if extend:
        out["max_abs_logprob_diff"] = max(r["max_abs_logprob_diff"] for r in results.values())
    out["ok"] = tolerance is None or (out["max_abs_logprob_diff"] <= tolerance
                                      and out["greedy_identical"] == out["sentences"])
    return out


def format_verify(result: dict) -> str:
    lines = [f"{'direction':10} {'sent':>5} {'greedy=':>8} {'max|dlogp|':>11} {'new mass':>9}"]
    for name, r in result["directions"].items():
        diff = f"{r['max_abs_logprob_diff']:.2e}" if "max_abs_logprob_diff" in r else "-"
        mass = f"{r['new_symbol_mass_mean']:.2e}" if "new_symbol_mass_mean" in r else "-"
        lines.append(f"{name:10} {r['sentences']:5d} {r['greedy_identical']:8d} {diff:>11} {mass:>9}")
    figures = f"greedy identical {result['greedy_identical']}/{result['sentences']}"
    if "max_abs_logprob_diff" in result:
        figures = f"max |dlogp| {result['max_abs_logprob_diff']:.2e}, " + figures
    if result["tolerance"] is not None:
        verdict = "OK" if result["ok"] else "BROKEN"
        lines.append(f"{verdict}: {figures} (promise: max |dlogp| <= {result['tolerance']:g}, all greedy identical)")
    elif result["vocab_mode"] == "retrain":
        lines.append(f"retrain mode: segmentations changed, so no function is promised; {figures}")
    else:
        lines.append(f"{result['growth']} growth changes the function by design (no promise): {figures}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", help="the old checkpoint")
    parser.add_argument("new", help="the upgraded directory (or its checkpoint.pt)")
    parser.add_argument("--old-data", help="the old model's prepared data directory (this project's models), or:")
    parser.add_argument("--dict", help="the old model's dictionary file (any layout)")
    parser.add_argument("--spm", help="the old SentencePiece model")
    parser.add_argument("--langs-file", metavar="FILE", help="the old model's --langs order (default: its config)")
    parser.add_argument("--dev-text", action="append", default=[], metavar="LANG=FILE",
                        help="old-language dev text, one sentence per line (repeatable)")
    parser.add_argument("--langs", help="old languages to check (default: all)")
    parser.add_argument("--sentences", type=int, default=100, help="dev sentences per direction (default: 100)")
    parser.add_argument("--json", help="also write the figures to this JSON file")


def _old_model(args: argparse.Namespace) -> PreparedData | OldModelFiles:
    if args.old_data:
        return PreparedData.open(Path(args.old_data))
    if not (args.dict and args.spm and args.dev_text):
        raise UserInputError("give --old-data, or --dict, --spm and --dev-text LANG=FILE (the old model's files)")
    dev = {lang: read_text_lines(file, f"--dev-text {lang}")
           for lang, file in parse_lang_files(args.dev_text, "--dev-text").items()}
    return OldModelFiles(Path(args.dict), Path(args.spm), dev, Path(args.langs_file) if args.langs_file else None)


def run(args: argparse.Namespace) -> int:
    """`mmt-upgrade verify`: exit 1 when a promise is broken."""
    new_dir = Path(args.new)
    new_dir = new_dir.parent if new_dir.is_file() else new_dir
    langs = parse_lang_list(args.langs, "--langs") if args.langs else None
    result = verify(Path(args.old), _old_model(args), new_dir, langs, args.sentences)
    print(format_verify(result))
    if args.json:
        write_json_atomic(Path(args.json), result)
    return 0 if result["ok"] else 1
