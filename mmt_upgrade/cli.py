"""The `mmt-upgrade` command: one subcommand per pipeline stage."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.paths import cache_dir, runs_dir


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", default="old_model",
                   help="YAML config file, or the name of one in configs/ (default: old_model)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set train.max-update=100 (repeatable)")


def _run_dir(args: argparse.Namespace, name: str) -> Path:
    return Path(args.run_dir) if args.run_dir else runs_dir() / name


def _lang_cap(item: str) -> tuple[str, int]:
    lang, _, cap = item.partition("=")
    if not cap.strip().isdigit():
        raise UserInputError(f"--max-train-pairs-per-lang: expected LANG=N, got {item!r}")
    return lang.strip(), int(cap)


def cmd_data(args: argparse.Namespace) -> int:
    from mmt_upgrade.pipeline.data.prepare import prepare_data
    from mmt_upgrade.pipeline.runconfig import load_config

    overrides = list(args.overrides)
    if args.langs:
        overrides.append(f"data.langs=[{args.langs}]")
    if args.max_train_pairs is not None:
        overrides.append(f"data.max_train_pairs={args.max_train_pairs}")
    if args.max_train_pairs_per_lang:
        caps = dict(_lang_cap(item) for item in args.max_train_pairs_per_lang.split(","))
        overrides.append(f"data.max_train_pairs_per_lang={json.dumps(caps)}")
    if args.vocab_size is not None:
        overrides.append(f"data.vocab_size={args.vocab_size}")
    cfg = load_config(args.config, overrides)
    data = prepare_data(cfg.data, cache_dir(), Path(args.out) if args.out else None)
    for pair, counts in data.manifest["pairs"].items():
        print(f"{pair}: " + " ".join(f"{s}={n}" for s, n in counts.items()))
    print(data.root)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mmt_upgrade.pipeline.data.prepare import prepare_data
    from mmt_upgrade.pipeline.runconfig import load_config
    from mmt_upgrade.pipeline.train import train

    cfg = load_config(args.config, args.overrides)
    data = prepare_data(cfg.data, cache_dir())
    print(train(cfg, data, _run_dir(args, cfg.name)))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mmt_upgrade.fairseq_io.layout import PreparedData
    from mmt_upgrade.pipeline.data.prepare import prepare_data
    from mmt_upgrade.pipeline.evaluate import evaluate, format_table
    from mmt_upgrade.pipeline.runconfig import load_config

    cfg = load_config(args.config, args.overrides)
    run_dir = _run_dir(args, cfg.name)
    data = PreparedData.open(Path(args.data)) if args.data else prepare_data(cfg.data, cache_dir())
    checkpoint = Path(args.checkpoint) if args.checkpoint else run_dir / "checkpoints" / "checkpoint_best.pt"
    e = cfg.evaluate
    results = evaluate(checkpoint, data, run_dir / "eval", e.split, args.beam or e.beam, e.max_tokens, e.new_langs)
    print(format_table(results))
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    """data -> train -> evaluate, each stage reusing what an earlier run finished."""
    import time

    from mmt_upgrade.core.files import log, write_json_atomic
    from mmt_upgrade.pipeline.data.prepare import prepare_data
    from mmt_upgrade.pipeline.evaluate import evaluate, format_table
    from mmt_upgrade.pipeline.runconfig import load_config
    from mmt_upgrade.pipeline.train import train

    cfg = load_config(args.config, args.overrides)
    run_dir = _run_dir(args, cfg.name)
    timings: dict[str, float] = {}
    start = time.monotonic()
    log(f"pipeline [1/3] data ({cfg.source})")
    data = prepare_data(cfg.data, cache_dir())
    timings["data_s"] = round(time.monotonic() - start, 1)
    log(f"pipeline [2/3] train -> {run_dir}")
    checkpoint = train(cfg, data, run_dir)
    timings["train_s"] = round(time.monotonic() - start - timings["data_s"], 1)
    log("pipeline [3/3] evaluate")
    e = cfg.evaluate
    results = evaluate(checkpoint, data, run_dir / "eval", e.split, e.beam, e.max_tokens, e.new_langs)
    timings["evaluate_s"] = round(time.monotonic() - start - timings["data_s"] - timings["train_s"], 1)
    write_json_atomic(run_dir / "timings.json", timings)
    print(format_table(results))
    print(f"\nresults: {run_dir / 'eval' / 'results.json'}  (stage wall times: {timings})")
    return 0


def _lang_files(items: list[str], flag: str) -> dict[str, tuple[list[str], str]]:
    """`LANG=FILE` items -> {lang: (lines, file)}; a missing file is an error naming it."""
    out = {}
    for item in items:
        lang, sep, path = item.partition("=")
        if not sep or not lang.strip() or not path.strip():
            raise UserInputError(f"{flag}: expected LANG=FILE, got {item!r}")
        file = Path(path.strip())
        if not file.is_file():
            raise UserInputError(f"{flag} {lang}: file not found: {file}")
        lines = [x for x in file.read_text(encoding="utf-8").splitlines() if x.strip()]
        if not lines:
            raise UserInputError(f"{flag} {lang}: {file} holds no text")
        out[lang.strip()] = (lines, str(file.absolute()))
    return out


def cmd_upgrade(args: argparse.Namespace) -> int:
    from mmt_upgrade.core.growth import GrowthOptions
    from mmt_upgrade.core.languages import parse_lang_list
    from mmt_upgrade.fairseq_io.checkpoint import checkpoint_langs, read_checkpoint
    from mmt_upgrade.fairseq_io.layout import PreparedData
    from mmt_upgrade.pipeline.data.prepare import DataConfig, bible_texts
    from mmt_upgrade.pipeline.upgrade import (
        UpgradeInputs,
        UpgradeOptions,
        check_new_langs,
        parse_langtok_init,
        upgrade,
    )

    old_data = PreparedData.open(Path(args.old_data)) if args.old_data else None
    spm = Path(args.spm) if args.spm else (old_data.spm_model if old_data else None)
    dictionary = Path(args.dict) if args.dict else (old_data.dictionary if old_data else None)
    if spm is None or dictionary is None:
        raise UserInputError("give --old-data (the old model's prepared data) or both --spm and --dict")
    new_langs = parse_lang_list(args.new_langs, "--new-langs") if args.new_langs.strip() else []
    old_langs = checkpoint_langs(read_checkpoint(Path(args.checkpoint), mmap=True))
    check_new_langs(new_langs, old_langs, Path(args.checkpoint))
    growth = GrowthOptions(add_encoder_layers=args.add_encoder_layers, add_decoder_layers=args.add_decoder_layers,
                           widen_ffn=args.widen_ffn, init=args.grow_init, position=args.grow_position,
                           noise=args.grow_noise, seed=args.seed)
    options = UpgradeOptions(vocab_mode=args.vocab_mode, new_spm_size=args.new_spm_size, spm_size=args.spm_size,
                             init=args.init, langtok_init=parse_langtok_init(args.langtok_init), seed=args.seed,
                             growth=growth)
    options.check(old_langs, new_langs)
    given = _lang_files(args.text, "--text")
    needed = new_langs + (old_langs if args.vocab_mode == "retrain" else [])
    texts = {lang: lines for lang, (lines, _) in given.items()}
    sources = {lang: file for lang, (_, file) in given.items()}
    missing = [x for x in needed if x not in texts]
    if missing and old_data is not None:
        cfg = DataConfig(**{**old_data.manifest["config"], "langs": [x for x in old_data.manifest["langs"] + new_langs]})
        bible = bible_texts(cfg, cache_dir(), "train")
        for lang in missing:
            texts[lang], sources[lang] = bible[lang], f"bible train split ({cfg.key()})"
    dev = old_data.texts("valid") if old_data else {}
    dev.update({lang: lines for lang, (lines, _) in _lang_files(args.dev_text, "--dev-text").items()})
    inputs = UpgradeInputs(Path(args.checkpoint), spm, dictionary, new_langs, texts, sources, dev)
    checkpoint = upgrade(inputs, Path(args.out), options)
    report = json.loads((checkpoint.parent / "upgrade.json").read_text())
    v = report["vocab"]
    changed = sum(x["changed"] for x in report["segmentation_change"].values())
    print(f"{report['vocab_mode']}: {v['kept']} old pieces kept, {v['added']} added, {v['shared']} shared; "
          f"old-language dev sentences segmented differently: {changed}")
    if report["growth"]:
        print("grown model: " + " ".join(f"--{k} {x}" for k, x in report["fairseq_model_flags"].items()))
    print(checkpoint)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from mmt_upgrade.core.files import write_json_atomic
    from mmt_upgrade.core.languages import parse_lang_list
    from mmt_upgrade.fairseq_io.layout import PreparedData
    from mmt_upgrade.pipeline.verify import format_verify, verify

    old_data = PreparedData.open(Path(args.old_data))
    new_dir = Path(args.new)
    new_dir = new_dir.parent if new_dir.is_file() else new_dir
    langs = parse_lang_list(args.langs, "--langs") if args.langs else old_data.manifest["langs"]
    result = verify(Path(args.old), old_data, new_dir, langs, args.sentences)
    print(format_verify(result))
    if args.json:
        write_json_atomic(Path(args.json), result)
    return 0 if result["ok"] else 1


def cmd_distill_cache(args: argparse.Namespace) -> int:
    from mmt_upgrade.core.vocab import model_symbols, read_dictionary
    from mmt_upgrade.fairseq_io.distiller import (
        Distiller,
        DistillOptions,
        student_tokenizer,
    )
    from mmt_upgrade.fairseq_io.layout import PreparedData
    from mmt_upgrade.fairseq_io.teacher_cache import build_cache

    data = PreparedData.open(Path(args.data))
    opts = DistillOptions.from_namespace(args)
    symbols = model_symbols(read_dictionary(data.dictionary), data.langs)
    distiller = Distiller(opts, symbols, data.langs, student_tokenizer(data.bin_dir, opts.student_tokenizer))
    counts = build_cache(distiller, data.bin_dir, Path(args.out), data.directions, args.split, args.shard_size,
                         args.max_tokens)
    print(json.dumps(counts))
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from mmt_upgrade.pipeline.experiment.run import run_experiment
    from mmt_upgrade.pipeline.experiment.spec import ExperimentConfig
    from mmt_upgrade.pipeline.experiment.runner import ClusterOptions

    cfg = ExperimentConfig.load(args.config, args.overrides)
    cluster = ClusterOptions(cluster=args.cluster, partition=args.partition, account=args.account, qos=args.qos,
                             timeout_min=args.timeout_min, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                             cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb, poll_s=args.poll_seconds)
    cluster.check()
    out = Path(args.out) if args.out else runs_dir() / "experiments" / cfg.name
    only = parse_run_names(args.runs) if args.runs else []
    report = run_experiment(cfg, out, cluster, dry_run=args.dry_run, only=only)
    if not args.dry_run:
        print(report.read_text())
        print(report)
    return 0


def parse_run_names(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names:
        raise UserInputError("--runs: give run names, e.g. --runs naive,full")
    return names


def cmd_report(args: argparse.Namespace) -> int:
    from mmt_upgrade.pipeline.report import write_report

    report = write_report(Path(args.run_dir), Path(args.out) if args.out else None)
    print(report.read_text())
    print(report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmt-upgrade", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="fetch the Bible corpus, build pairs, SentencePiece and a fairseq data-bin")
    _add_config(p)
    p.add_argument("--langs", help="comma list of non-English languages (overrides data.langs)")
    p.add_argument("--max-train-pairs", type=int, help="cap on train pairs per language pair")
    p.add_argument("--max-train-pairs-per-lang", metavar="LANG=N,...",
                   help="per-language caps overriding --max-train-pairs, e.g. it=2500,ar=2500")
    p.add_argument("--vocab-size", type=int, help="SentencePiece vocabulary size")
    p.add_argument("--out", help="output directory (default: a cache directory keyed by the configuration)")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train the model of a config with fairseq-train (resumes)")
    _add_config(p)
    p.add_argument("--run-dir", help="run directory (default: runs/<config name>)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="translate the test split and score with sacrebleu")
    _add_config(p)
    p.add_argument("--run-dir", help="run directory (default: runs/<config name>)")
    p.add_argument("--checkpoint", help="checkpoint (default: <run-dir>/checkpoints/checkpoint_best.pt)")
    p.add_argument("--data", help="prepared data directory (default: the config's)")
    p.add_argument("--beam", type=int, help="beam size (default: the config's, 5)")
    p.set_defaults(func=cmd_evaluate)

    from mmt_upgrade.core.embeddings import INIT_METHODS
    from mmt_upgrade.core.growth import GROW_INITS, GROW_POSITIONS
    from mmt_upgrade.core.vocab import VOCAB_MODES

    p = sub.add_parser("upgrade", help="extend a trained model's vocabulary and language list")
    p.add_argument("checkpoint", help="the old fairseq checkpoint (read only)")
    p.add_argument("--out", required=True, help="new directory for the upgraded model (must not exist)")
    p.add_argument("--old-data", help="the old model's prepared data directory (SPM, dictionary, dev text)")
    p.add_argument("--spm", help="the old SentencePiece model (default: --old-data's)")
    p.add_argument("--dict", help="the old fairseq dict.txt (default: --old-data's)")
    p.add_argument("--new-langs", default="it,ar",
                   help="languages to add, appended in this order (default: it,ar; '' for growth alone)")
    p.add_argument("--text", action="append", default=[], metavar="LANG=FILE",
                   help="training text of a language, one sentence per line (repeatable; default: the Bible "
                        "train split under --old-data's split rules)")
    p.add_argument("--dev-text", action="append", default=[], metavar="LANG=FILE",
                   help="old-language dev text for the segmentation-change measurement (default: --old-data's)")
    p.add_argument("--vocab-mode", default="extend", choices=VOCAB_MODES,
                   help="extend: keep every old piece and segmentation, add new pieces; retrain: one new joint SPM")
    p.add_argument("--new-spm-size", type=int, default=4000,
                   help="extend: size of the SPM learnt on the new languages (its pieces the old vocabulary lacks "
                        "are added)")
    p.add_argument("--spm-size", type=int, default=0, help="retrain: joint SPM size (default: old + --new-spm-size)")
    p.add_argument("--init", default="unk", choices=INIT_METHODS, help="initialization of new piece rows")
    p.add_argument("--langtok-init", default="", metavar="NEW=OLD|NEW=mean,...",
                   help="new language tokens: copy a related old language's token (it=es) or the mean (default)")
    p.add_argument("--add-encoder-layers", type=int, default=0, metavar="N", help="grow the encoder by N layers")
    p.add_argument("--add-decoder-layers", type=int, default=0, metavar="N", help="grow the decoder by N layers")
    p.add_argument("--widen-ffn", type=float, default=1.0, metavar="FACTOR",
                   help="multiply every FFN's width (encoder and decoder) by FACTOR >= 1")
    p.add_argument("--grow-init", default="paper", choices=GROW_INITS,
                   help="paper: new layers = average of the stack, FFN = old + noisy copy (changes the function); "
                        "preserve: identity layers and Net2WiderNet (the old function at step 0)")
    p.add_argument("--grow-position", default="top", choices=GROW_POSITIONS,
                   help="new layers on top of the stack, or spread between old ones")
    p.add_argument("--grow-noise", type=float, default=0.01,
                   help="std of the widening noise relative to each tensor's std (preserve: zero-sum across copies)")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_upgrade)

    p = sub.add_parser("verify", help="check an upgraded model against the old one on old-language dev data")
    p.add_argument("old", help="the old checkpoint")
    p.add_argument("new", help="the upgraded directory (or its checkpoint.pt)")
    p.add_argument("--old-data", required=True, help="the old model's prepared data directory")
    p.add_argument("--langs", help="old languages to check (default: all)")
    p.add_argument("--sentences", type=int, default=100, help="dev sentences per direction (default: 100)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.set_defaults(func=cmd_verify)

    from mmt_upgrade.fairseq_io.distiller import DistillOptions

    p = sub.add_parser("distill-cache", help="run the teacher once over the training data for "
                                             "--criterion cross_vocab_distillation --teacher-cache DIR")
    p.add_argument("--data", required=True, help="the student's prepared data directory")
    p.add_argument("--out", required=True, help="the cache directory (an interrupted build resumes there)")
    p.add_argument("--split", default="train")
    p.add_argument("--shard-size", type=int, default=2000, help="examples per shard file")
    p.add_argument("--max-tokens", type=int, default=6000, help="teacher batch size in target tokens")
    DistillOptions.add_arguments(p, skip=("teacher_cache", "kd_weight", "lexical_ratio"))
    p.set_defaults(func=cmd_distill_cache)

    p = sub.add_parser("experiment", help="plan, run (or resume) and report a matrix of upgrade runs")
    p.add_argument("config", nargs="?", default="bible_upgrade",
                   help="experiment YAML, or the name of one in configs/ (default: bible_upgrade)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUBKEY=VALUE",
                   help="override one value, e.g. --set train.max-update=200 --set runs.full.distill.kd-method=shared")
    p.add_argument("--out", help="experiment directory (default: runs/experiments/<name>)")
    p.add_argument("--runs", help="run only these runs of the config (comma list), e.g. naive,full")
    p.add_argument("--dry-run", action="store_true", help="print the plan and every run's fairseq command; run nothing")
    p.add_argument("--cluster", default="local", help="local (submitit's local executor, runs one after another) "
                                                      "or slurm (submitit on SLURM, runs at once)")
    p.add_argument("--partition", default="", help="SLURM partition")
    p.add_argument("--account", default="", help="SLURM account")
    p.add_argument("--qos", default="", help="SLURM QOS")
    p.add_argument("--timeout-min", type=int, default=24 * 60,
                   help="job time limit; a run that hits it is requeued and resumes from its last checkpoint")
    p.add_argument("--nodes", type=int, default=1, help="nodes per run (fairseq distributed training)")
    p.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node (one task per GPU)")
    p.add_argument("--cpus-per-task", type=int, default=2)
    p.add_argument("--mem-gb", type=float, default=0.0, help="memory per node (default: the partition's)")
    p.add_argument("--poll-seconds", type=float, default=10.0, help="how often progress is checked")
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("report", help="report.md, report.json and plots of an experiment directory")
    p.add_argument("run_dir", help="the experiment directory (runs/experiments/<name>)")
    p.add_argument("--out", help="where to write them (default: the experiment directory)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("pipeline", help="data -> train -> evaluate on a config (the main job)")
    _add_config(p)
    p.add_argument("--run-dir", help="run directory (default: runs/<config name>)")
    p.set_defaults(func=cmd_pipeline)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserInputError as e:
        print(f"mmt-upgrade {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
