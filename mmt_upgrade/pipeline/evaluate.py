"""`mmt-upgrade evaluate`: translate every direction's test split with fairseq-generate, score with sacrebleu.

Two trivial baselines are scored beside the model, so "usable" has a meaning: copying the source,
and always outputting the most frequent training target of the direction.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from mmt_upgrade.core.files import (
    log,
    sha256_file,
    write_json_atomic,
    write_text_atomic,
)
from mmt_upgrade.core.languages import check_extends
from mmt_upgrade.core.paths import cache_dir
from mmt_upgrade.core.scoring import (
    DirectionScorer,
    direction_groups,
    group_means,
    most_frequent,
)
from mmt_upgrade.core.spm import load_spm
from mmt_upgrade.fairseq_io.binarize import check_data_bin
from mmt_upgrade.fairseq_io.checkpoint import checkpoint_langs, read_checkpoint
from mmt_upgrade.fairseq_io.drivers import generate_direction, read_lines
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.pipeline.data.prepare import prepare_data
from mmt_upgrade.pipeline.runconfig import EvalOptions, add_config_arguments, load_config, run_dir_of
from mmt_upgrade.pipeline.rundir import EVAL_RESULTS, RunDir


def evaluate(checkpoint: Path, data: PreparedData, out_dir: Path, options: EvalOptions,
             directions: Sequence[tuple[str, str]] | None = None) -> dict:
    """Translate, score and write `results.json` (+ hypotheses) into `out_dir`."""
    split, beam, new_langs = options.split, options.beam, options.new_langs
    state = read_checkpoint(checkpoint)
    langs = checkpoint_langs(state)
    check_data_bin(data.bin_dir, langs)
    check_extends(data.langs, langs, f"evaluating {checkpoint} on {data.root}")
    del state
    ckpt_sha = sha256_file(checkpoint)
    tokenizer = data.tokenizer
    scorers: dict[str, DirectionScorer] = {}

    def scorer_for(lang: str) -> DirectionScorer:
        """spBLEU over the pieces of the target language's own SentencePiece model."""
        path = tokenizer.model_path(lang)
        if path.name not in scorers:
            scorers[path.name] = DirectionScorer(load_spm(path), f"{path.name}@{data.manifest['hashes'][path.name][:12]}")
        return scorers[path.name]

    directions = list(directions or data.directions)
    pivot = data.manifest["pivot"]
    hyp_dir = out_dir / "translations"
    per_direction: dict[str, dict] = {}
    for i, (src, tgt) in enumerate(directions, 1):
        name = f"{src}-{tgt}"
        sources = read_lines(data.raw_file(split, src, tgt, src))
        refs = read_lines(data.raw_file(split, src, tgt, tgt))
        hyp_file = hyp_dir / f"{split}.{name}.{tgt}"
        meta_file = hyp_file.with_suffix(hyp_file.suffix + ".json")
        meta = {"checkpoint_sha256": ckpt_sha, "beam": beam, "n": len(refs)}
        saved = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        if hyp_file.exists() and "skipped" in saved and {k: saved.get(k) for k in meta} == meta:
            hyps, skipped = read_lines(hyp_file), saved["skipped"]
            log(f"evaluate [{i}/{len(directions)}] {name}: reusing {hyp_file}")
        else:
            log(f"evaluate [{i}/{len(directions)}] {name}: translating {len(sources)} sentences (beam {beam})")
            hyps, skipped = generate_direction(checkpoint, data, langs, src, tgt, split, beam, options.max_tokens)
            if skipped:
                log(f"evaluate {name}: {skipped} sentence(s) too long for the model, scored as empty output")
            write_text_atomic(hyp_file, "".join(h + "\n" for h in hyps))
            write_json_atomic(meta_file, meta | {"skipped": skipped})
        scorer = scorer_for(tgt)
        train_targets = read_lines(data.raw_file("train", src, tgt, tgt))
        constant = most_frequent(train_targets)
        per_direction[name] = scorer.score(hyps, refs).as_dict() | {
            "skipped_too_long": skipped,
            "baselines": {
                "copy_source": scorer.score(sources, refs).as_dict(),
                "most_frequent_target": scorer.score([constant] * len(refs), refs).as_dict(),
            }
        }
    groups = direction_groups(directions, pivot, new_langs)
    results = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": ckpt_sha,
        "data": str(data.root),
        "split": split,
        "beam": beam,
        "langs": langs,
        "new_langs": list(new_langs),
        "signatures": {**scorer.signatures(),
                       "spbleu": "; ".join(x.signatures()["spbleu"] for x in scorers.values())},
        "directions": per_direction,
        "groups": group_means(per_direction, groups),
        "baseline_groups": {
            b: group_means({d: v["baselines"][b] for d, v in per_direction.items()}, groups)
            for b in ("copy_source", "most_frequent_target")
        },
    }
    write_json_atomic(out_dir / EVAL_RESULTS, results)
    return results


def format_table(results: dict) -> str:
    """The per-direction table printed after evaluation (chrF++ of the baselines beside the model's)."""
    head = f"{'direction':<10} {'BLEU':>6} {'chrF++':>7} {'spBLEU':>7} | {'copy chrF++':>11} {'const chrF++':>12}"
    lines = [head, "-" * len(head)]
    for name, s in results["directions"].items():
        b = s["baselines"]
        lines.append(
            f"{name:<10} {s['bleu']:>6.2f} {s['chrfpp']:>7.2f} {s['spbleu']:>7.2f} | "
            f"{b['copy_source']['chrfpp']:>11.2f} {b['most_frequent_target']['chrfpp']:>12.2f}"
        )
    lines.append("-" * len(head))
    for group, s in results["groups"].items():
        copy = results["baseline_groups"]["copy_source"][group]["chrfpp"]
        const = results["baseline_groups"]["most_frequent_target"][group]["chrfpp"]
        lines.append(
            f"{'mean ' + group:<10} {s['bleu']:>6.2f} {s['chrfpp']:>7.2f} {s['spbleu']:>7.2f} | {copy:>11.2f} {const:>12.2f}"
        )
    lines.append("")
    lines += [f"{k}: {v}" for k, v in results["signatures"].items()]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`mmt-upgrade evaluate`: the run config, and EvalOptions' flags over its `evaluate:` section."""
    add_config_arguments(parser)
    parser.add_argument("--checkpoint", help="checkpoint (default: <run-dir>/checkpoints/checkpoint_best.pt)")
    parser.add_argument("--data", help="prepared data directory (default: the config's)")
    EvalOptions.add_arguments(parser.add_argument_group("evaluation (over the config's evaluate: section)"),
                              overrides=True)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    options = EvalOptions.from_mapping({**asdict(cfg.evaluate), **EvalOptions.given(args)}, "evaluate flags")
    run_dir = RunDir(run_dir_of(args, cfg))
    data = PreparedData.open(Path(args.data)) if args.data else prepare_data(cfg.data, cache_dir())
    results = evaluate(Path(args.checkpoint) if args.checkpoint else run_dir.best, data, run_dir.eval, options)
    print(format_table(results))
    return 0
