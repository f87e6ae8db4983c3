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
from pathlib import Path
from typing import Mapping, Sequence

import torch

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import sha256_file, write_json_atomic
from mmt_upgrade.core.languages import parse_lang_list
from mmt_upgrade.core.record import UPGRADE_JSON
from mmt_upgrade.core.vocab import Tokenizer, lang_token
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.fairseq_io.models import (
    LoadedModel,
    collate_pairs,
    greedy,
    load_model,
    teacher_forced_logits,
)

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
    src_lt, tgt_lt = m.index[lang_token(src_lang)], m.index[lang_token(tgt_lang)]
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


def verify(old_checkpoint: Path, old_data: PreparedData, new_dir: Path, langs: Sequence[str] | None = None,
           sentences: int = 100) -> dict:
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
    check_old_data(old_data, report, report_path)
    old_langs = report["langs"]["old"]
    langs = old_langs if langs is None else langs
    bad = [x for x in langs if x not in old_langs]
    if bad:
        raise UserInputError(f"--langs: {', '.join(bad)} not an old language of the model ({','.join(old_langs)})")
    extend = report["vocab_mode"] != "retrain"  # old text keeps its pieces: compare token by token
    tolerance = promise(report)
    old = load_model(old_checkpoint, old_data.bin_dir, Tokenizer.single(old_data.spm_model, old_langs))
    new = load_model(new_dir / "checkpoint.pt", new_dir, Tokenizer.load(new_dir))
    results = {}
    for src, tgt in old_data.directions:
        if src not in langs and tgt not in langs:
            continue
        src_lines = old_data.raw_file("valid", src, tgt, src).read_text(encoding="utf-8").splitlines()[:sentences]
        tgt_lines = old_data.raw_file("valid", src, tgt, tgt).read_text(encoding="utf-8").splitlines()[:sentences]
        results[f"{src}-{tgt}"] = verify_direction(old, new, src, tgt, src_lines, tgt_lines, extend)
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
    parser.add_argument("--old-data", required=True, help="the old model's prepared data directory")
    parser.add_argument("--langs", help="old languages to check (default: all)")
    parser.add_argument("--sentences", type=int, default=100, help="dev sentences per direction (default: 100)")
    parser.add_argument("--json", help="also write the figures to this JSON file")


def run(args: argparse.Namespace) -> int:
    """`mmt-upgrade verify`: exit 1 when a promise is broken."""
    new_dir = Path(args.new)
    new_dir = new_dir.parent if new_dir.is_file() else new_dir
    langs = parse_lang_list(args.langs, "--langs") if args.langs else None
    result = verify(Path(args.old), PreparedData.open(Path(args.old_data)), new_dir, langs, args.sentences)
    print(format_verify(result))
    if args.json:
        write_json_atomic(Path(args.json), result)
    return 0 if result["ok"] else 1
