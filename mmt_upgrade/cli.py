"""The `mmt-upgrade` command: one subcommand per pipeline stage. Each stage module exposes
`add_arguments(parser)` and `run(args) -> int`; only the chosen one is imported (most import torch)."""
from __future__ import annotations

import argparse
import importlib
import sys

from mmt_upgrade.core.errors import UserInputError

# (command, stage module, help)
COMMANDS = (
    ("data", "mmt_upgrade.pipeline.data.command",
     "fetch the Bible corpus, build pairs, SentencePiece and a fairseq data-bin"),
    ("train", "mmt_upgrade.pipeline.train", "train the model of a config with fairseq-train (resumes)"),
    ("evaluate", "mmt_upgrade.pipeline.evaluate", "translate the test split and score with sacrebleu"),
    ("upgrade", "mmt_upgrade.pipeline.upgrade.command", "extend a trained model's vocabulary and language list"),
    ("verify", "mmt_upgrade.pipeline.verify", "check an upgraded model against the old one on old-language dev data"),
    ("distill-cache", "mmt_upgrade.pipeline.distill_cache",
     "run the teacher once over the training data for --criterion cross_vocab_distillation --teacher-cache DIR"),
    ("experiment", "mmt_upgrade.pipeline.experiment.command",
     "plan, run (or resume) and report a matrix of upgrade runs"),
    ("report", "mmt_upgrade.pipeline.report", "report.md, report.json and plots of an experiment directory"),
    ("pipeline", "mmt_upgrade.pipeline.pipeline", "data -> train -> evaluate on a config (the main job)"),
    ("import", "mmt_upgrade.pipeline.hf_import",
     "a Hugging Face M2M-100/NLLB model directory as a fairseq model directory (checkpoint, dict, spm, langs)"),
    ("export", "mmt_upgrade.pipeline.export.command",
     "a fairseq model as a Hugging Face (--to hf) or CTranslate2 (--to ct2) model directory"),
    ("plugin-dir", "mmt_upgrade.pipeline.plugin_dir",
     "print the directory of the fairseq plugins, for fairseq-train --user-dir"),
)


def build_parser(commands: tuple[str, ...] | None = None) -> argparse.ArgumentParser:
    """The parser, with the flags of `commands` (default: all; `main` builds only the chosen one's)."""
    parser = argparse.ArgumentParser(prog="mmt-upgrade", description="Upgrade a trained multilingual fairseq "
                                     "model with new languages: one subcommand per stage.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module, help in COMMANDS:
        p = sub.add_parser(name, help=help, description=help)
        if commands is None or name in commands:
            stage = importlib.import_module(module)
            stage.add_arguments(p)
            p.set_defaults(run=stage.run)
    return parser


# Flags whose value may start with '-': run names such as the leave-one-out `-init` (argparse reads
# `--runs -init,-grow` as two flags).
DASH_VALUES = ("--runs",)


def attach_dash_values(argv: list[str]) -> list[str]:
    """`--runs -init,-grow` -> `--runs=-init,-grow` (a value starting with `--` stays a flag)."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in DASH_VALUES and i + 1 < len(argv) and argv[i + 1][:1] == "-" and argv[i + 1][:2] != "--":
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    argv = attach_dash_values(sys.argv[1:] if argv is None else list(argv))
    chosen = tuple(x for x in argv[:1] if not x.startswith("-"))
    args = build_parser(chosen).parse_args(argv)
    try:
        return args.run(args)
    except UserInputError as e:
        print(f"mmt-upgrade {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
