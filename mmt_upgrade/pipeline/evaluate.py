"""`mmt-upgrade evaluate`: translate every direction's test split and score with sacrebleu.

Two trivial baselines are scored beside the model, so "usable" has a meaning: copying the source,
and always outputting the most frequent training target of the direction.

Who translates is the `backend` (`pipeline/backends.py`): fairseq-generate, or CTranslate2 on an export
cached beside the checkpoint. A run's checkpoint is evaluated on its prepared data (the config's); any
model in its own layout (`--model`, e.g. a downloaded M2M-100 or NLLB checkpoint) on raw text files
(`--test SRC-TGT=SRC_FILE,REF_FILE`), where the most-frequent-target baseline needs `--train-target`.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

from mmt_upgrade.core.errors import UserInputError
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
from mmt_upgrade.fairseq_io.drivers import read_lines
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.fairseq_io.model_files import ModelFiles
from mmt_upgrade.pipeline.backends import (
    TestSet,
    Translator,
    fairseq_settings,
    model_translator,
    prepared_translator,
)
from mmt_upgrade.pipeline.data.prepare import prepare_data
from mmt_upgrade.pipeline.runconfig import EvalOptions, add_config_arguments, load_config, run_dir_of
from mmt_upgrade.pipeline.rundir import EVAL_RESULTS, RunDir

BASELINES = ("copy_source", "most_frequent_target")


def evaluate(checkpoint: Path, data: PreparedData, out_dir: Path, options: EvalOptions,
             directions: Sequence[tuple[str, str]] | None = None) -> dict:
    """Translate, score and write `results.json` (+ hypotheses) into `out_dir`."""
    split = options.split
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

    tests = [TestSet(src, tgt, read_lines(data.raw_file(split, src, tgt, src)),
                     read_lines(data.raw_file(split, src, tgt, tgt)), read_lines(data.raw_file("train", src, tgt, tgt)))
             for src, tgt in (directions or data.directions)]
    translator = prepared_translator(checkpoint, ckpt_sha, data, langs, options)
    scored = _translate_and_score(tests, translator, scorer_for, out_dir / "translations", split, ckpt_sha, options,
                                  data.manifest["pivot"])
    results = {"checkpoint": str(checkpoint), "checkpoint_sha256": ckpt_sha, "data": str(data.root), "split": split,
               "beam": options.beam, "langs": langs, "new_langs": list(options.new_langs), **scored}
    write_json_atomic(out_dir / EVAL_RESULTS, results)
    return results


def evaluate_model(model: ModelFiles, tests: Sequence[TestSet], out_dir: Path, options: EvalOptions) -> dict:
    """`evaluate` for a model in its own layout on raw text: the same results, `tests` in place of `data`."""
    for t in tests:
        for lang in (t.src, t.tgt):
            if lang not in model.langs:
                raise UserInputError(f"--test {t.name}: {lang!r} is not one of the model's languages "
                                     f"({', '.join(model.langs)})")
    ckpt_sha = sha256_file(model.checkpoint)
    scorer = DirectionScorer(load_spm(model.spm), f"{model.spm.name}@{sha256_file(model.spm)[:12]}")
    translator = model_translator(model, ckpt_sha, options)
    pivot = Counter(x for t in tests for x in (t.src, t.tgt)).most_common(1)[0][0]
    scored = _translate_and_score(tests, translator, lambda lang: scorer, out_dir / "translations", "test", ckpt_sha,
                                  options, pivot)
    results = {"checkpoint": str(model.checkpoint), "checkpoint_sha256": ckpt_sha,
               "model": {"dictionary": str(model.dictionary), "spm": str(model.spm)}, "beam": options.beam,
               "langs": model.langs, "new_langs": list(options.new_langs), **scored}
    write_json_atomic(out_dir / EVAL_RESULTS, results)
    return results


def _backend_signature(settings: dict) -> str:
    return "|".join(f"{k}:{v}" for k, v in settings.items())


def _translate_and_score(tests: Sequence[TestSet], translator: Translator, scorer_for: Callable[[str], DirectionScorer],
                         hyp_dir: Path, split: str, ckpt_sha: str, options: EvalOptions, pivot: str) -> dict:
    """Each direction translated (or its saved hypotheses reused when made by the same checkpoint, beam and
    backend) and scored with its baselines; the results' signatures, directions and group means."""
    backend = translator.describe()
    per_direction: dict[str, dict] = {}
    for i, test in enumerate(tests, 1):
        name, refs = test.name, test.refs
        hyp_file = hyp_dir / f"{split}.{name}.{test.tgt}"
        meta_file = hyp_file.with_suffix(hyp_file.suffix + ".json")
        meta = {"checkpoint_sha256": ckpt_sha, "beam": options.beam, "n": len(refs), **backend}
        # hypotheses saved before backends existed are fairseq-generate's under its default --cpu-bf16
        saved = fairseq_settings("auto") | (json.loads(meta_file.read_text()) if meta_file.exists() else {})
        if hyp_file.exists() and "skipped" in saved and {k: saved.get(k) for k in meta} == meta:
            hyps, skipped = read_lines(hyp_file), saved["skipped"]
            log(f"evaluate [{i}/{len(tests)}] {name}: reusing {hyp_file}")
        else:
            log(f"evaluate [{i}/{len(tests)}] {name}: translating {len(test.sources)} sentences (beam {options.beam}, "
                f"{backend['backend']})")
            hyps, skipped = translator.translate(test, options.beam, options.max_tokens)
            if skipped:
                log(f"evaluate {name}: {skipped} sentence(s) too long for the model, scored as empty output")
            write_text_atomic(hyp_file, "".join(h + "\n" for h in hyps))
            write_json_atomic(meta_file, meta | {"skipped": skipped})
        scorer = scorer_for(test.tgt)
        baselines = {"copy_source": scorer.score(test.sources, refs).as_dict()}
        if test.train_targets is not None:
            constant = most_frequent(test.train_targets)
            baselines["most_frequent_target"] = scorer.score([constant] * len(refs), refs).as_dict()
        per_direction[name] = scorer.score(hyps, refs).as_dict() | {"skipped_too_long": skipped,
                                                                     "baselines": baselines}
    groups = direction_groups([(t.src, t.tgt) for t in tests], pivot, options.new_langs)
    spm_signatures = {s.spm_tag: s.signatures()["spbleu"] for s in map(scorer_for, {t.tgt: 0 for t in tests})}
    return {
        "signatures": {**scorer.signatures(), "spbleu": "; ".join(spm_signatures.values()),
                       "backend": _backend_signature(backend)},
        "directions": per_direction,
        "groups": group_means(per_direction, groups),
        "baseline_groups": {
            b: group_means({d: v["baselines"][b] for d, v in per_direction.items() if b in v["baselines"]}, groups)
            for b in BASELINES if any(b in v["baselines"] for v in per_direction.values())
        },
    }


def format_table(results: dict) -> str:
    """The per-direction table printed after evaluation (chrF++ of the baselines beside the model's)."""
    def chrf(scores: dict | None) -> str:
        return f"{scores['chrfpp']:.2f}" if scores else "-"

    head = f"{'direction':<10} {'BLEU':>6} {'chrF++':>7} {'spBLEU':>7} | {'copy chrF++':>11} {'const chrF++':>12}"
    lines = [head, "-" * len(head)]
    for name, s in results["directions"].items():
        b = s["baselines"]
        lines.append(f"{name:<10} {s['bleu']:>6.2f} {s['chrfpp']:>7.2f} {s['spbleu']:>7.2f} | "
                     f"{chrf(b.get('copy_source')):>11} {chrf(b.get('most_frequent_target')):>12}")
    lines.append("-" * len(head))
    for group, s in results["groups"].items():
        copy, const = (chrf(results["baseline_groups"].get(b, {}).get(group)) for b in BASELINES)
        lines.append(f"{'mean ' + group:<10} {s['bleu']:>6.2f} {s['chrfpp']:>7.2f} {s['spbleu']:>7.2f} | "
                     f"{copy:>11} {const:>12}")
    lines.append("")
    lines += [f"{k}: {v}" for k, v in results["signatures"].items()]
    return "\n".join(lines)


def _read_test_file(path: Path, flag: str) -> list[str]:
    if not Path(path).is_file():
        raise UserInputError(f"{flag}: no such file {path}")
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserInputError(f"{flag}: {path} is not UTF-8 text") from None


def _direction_spec(spec: str, flag: str, files: int) -> tuple[str, str, list[str]]:
    """`SRC-TGT=FILE[,FILE]`: the direction and its `files` file names."""
    pair, eq, rest = spec.partition("=")
    src, dash, tgt = pair.partition("-")
    names = rest.split(",") if eq else []
    if not (src and dash and tgt and len(names) == files and all(names)):
        form = "SRC_FILE,REF_FILE" if files == 2 else "FILE"
        raise UserInputError(f"{flag} {spec!r}: expected SRC-TGT={form}")
    return src, tgt, names


def read_tests(test_specs: Sequence[str], train_specs: Sequence[str] = ()) -> list[TestSet]:
    """`--test SRC-TGT=SRC_FILE,REF_FILE` (aligned lines) and `--train-target SRC-TGT=FILE`, checked."""
    train = {}
    for spec in train_specs:
        src, tgt, (file,) = _direction_spec(spec, "--train-target", 1)
        train[f"{src}-{tgt}"] = _read_test_file(Path(file), f"--train-target {src}-{tgt}")
    tests = []
    for spec in test_specs:
        src, tgt, (src_file, ref_file) = _direction_spec(spec, "--test", 2)
        flag = f"--test {src}-{tgt}"
        sources, refs = _read_test_file(Path(src_file), flag), _read_test_file(Path(ref_file), flag)
        if len(sources) != len(refs) or not refs:
            raise UserInputError(f"{flag}: {len(sources)} source lines and {len(refs)} reference lines "
                                 "(expected the same number, at least one)")
        tests.append(TestSet(src, tgt, sources, refs, train.pop(f"{src}-{tgt}", None)))
    if len({t.name for t in tests}) != len(tests):
        raise UserInputError("--test: a direction is given twice")
    if train:
        raise UserInputError(f"--train-target {next(iter(train))}: no --test for this direction")
    return tests


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`mmt-upgrade evaluate`: the run config, and EvalOptions' flags over its `evaluate:` section; or `--model`
    with raw `--test` files."""
    add_config_arguments(parser)
    parser.add_argument("--checkpoint", help="checkpoint (default: <run-dir>/checkpoints/checkpoint_best.pt; with "
                        "--model: another checkpoint read with the model directory's vocabulary)")
    parser.add_argument("--data", help="prepared data directory (default: the config's)")
    raw = parser.add_argument_group("a model in its own layout on raw text (no config, run directory or data)")
    raw.add_argument("--model", metavar="DIR_OR_CKPT", help="a model directory (checkpoint.pt, dict.txt, spm.model) "
                     "or a checkpoint file (a downloaded M2M-100 / NLLB-200 one)")
    raw.add_argument("--dict", metavar="FILE", help="the model's dictionary (default: DIR/dict.txt or its config's)")
    raw.add_argument("--spm", metavar="FILE", help="its SentencePiece model (default: DIR/spm.model or its config's)")
    raw.add_argument("--langs-file", metavar="FILE", help="its --langs order (default: its config)")
    raw.add_argument("--test", action="append", default=[], metavar="SRC-TGT=SRC_FILE,REF_FILE",
                     help="one direction's aligned source and reference lines (repeatable)")
    raw.add_argument("--train-target", action="append", default=[], metavar="SRC-TGT=FILE",
                     help="training targets of a direction, for the most-frequent-target baseline (without it "
                     "that baseline is left out)")
    raw.add_argument("--out", metavar="DIR", help="where results.json and translations/ go")
    EvalOptions.add_arguments(parser.add_argument_group("evaluation (over the config's evaluate: section)"),
                              overrides=True)


def run(args: argparse.Namespace) -> int:
    if args.model:
        if not args.test or not args.out:
            raise UserInputError("--model needs --test SRC-TGT=SRC_FILE,REF_FILE (one or more) and --out DIR")
        options = EvalOptions.from_mapping(EvalOptions.given(args), "evaluate flags")
        tests = read_tests(args.test, args.train_target)
        model = ModelFiles.open(Path(args.model), dictionary=args.dict and Path(args.dict),
                                spm=args.spm and Path(args.spm), langs_file=args.langs_file and Path(args.langs_file),
                                checkpoint=args.checkpoint and Path(args.checkpoint))
        results = evaluate_model(model, tests, Path(args.out), options)
    else:
        if args.test or args.out or args.train_target:
            raise UserInputError("--test, --train-target and --out go with --model (a config run writes into its "
                                 "run directory)")
        cfg = load_config(args.config, args.overrides)
        options = EvalOptions.from_mapping({**asdict(cfg.evaluate), **EvalOptions.given(args)}, "evaluate flags")
        run_dir = RunDir(run_dir_of(args, cfg))
        data = PreparedData.open(Path(args.data)) if args.data else prepare_data(cfg.data, cache_dir())
        results = evaluate(Path(args.checkpoint) if args.checkpoint else run_dir.best, data, run_dir.eval, options)
    print(format_table(results))
    return 0
