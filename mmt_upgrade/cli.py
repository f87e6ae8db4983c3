"""The `mmt-upgrade` command: one subcommand per pipeline stage."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import UserInputError
from .paths import cache_dir, runs_dir


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
    from .config import load_config
    from .data.prepare import prepare_data

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
    from .config import load_config
    from .data.prepare import prepare_data
    from .train import train

    cfg = load_config(args.config, args.overrides)
    data = prepare_data(cfg.data, cache_dir())
    print(train(cfg, data, _run_dir(args, cfg.name)))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .config import load_config
    from .data.prepare import PreparedData, prepare_data
    from .evaluate import evaluate, format_table

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

    from .config import load_config
    from .data.prepare import prepare_data
    from .evaluate import evaluate, format_table
    from .train import train
    from .utils import log, write_json_atomic

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
