"""fairseq-train and fairseq-generate run in this process through their Python entry points (the same
calls run under submitit), and the flags every command of this project shares."""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.paths import PLUGIN_DIR
from mmt_upgrade.fairseq_io.layout import PreparedData


def flags_to_argv(flags: Mapping[str, Any]) -> list[str]:
    """`{"max-update": 10, "share-all-embeddings": True}` -> `["--max-update", "10", "--share-all-embeddings"]`."""
    argv: list[str] = []
    for key, value in flags.items():
        if value is None or value is False:
            continue
        argv.append(f"--{key}")
        if value is not True:
            argv.append(",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value))
    return argv


def task_argv(data: PreparedData, langs: Sequence[str] | None = None) -> list[str]:
    """The task flags shared by training and generation."""
    return [
        str(data.bin_dir),
        "--user-dir", str(PLUGIN_DIR),
        "--task", "upgrade_translation",
        "--langs", ",".join(langs or data.langs),
        "--encoder-langtok", "src",
        "--decoder-langtok",
    ]


def _all_loggers() -> list[tuple[str, logging.Logger]]:
    named = [(n, lg) for n, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)]
    return [("", logging.getLogger())] + named


def parse_train_argv(argv: Sequence[str], where: str = "fairseq-train") -> argparse.Namespace:
    """fairseq-train's arguments parsed by fairseq's own parser (plugins included); a flag it does not know or
    a value it refuses is one UserInputError naming `where` and the flag, not fairseq's usage text."""
    from fairseq import options

    def refuse(message: str) -> None:
        unknown = message.partition("unrecognized arguments:")[2].split()
        flags = [x for x in unknown if x.startswith("--")]
        raise UserInputError(f"{where}: fairseq-train does not know {', '.join(flags)}" if flags
                             else f"{where}: fairseq-train: {message}")

    parser = options.get_training_parser()
    parser.error = refuse  # type: ignore[method-assign]  (argparse would print the usage and exit)
    return options.parse_args_and_arch(parser, input_args=list(argv))


def run_fairseq_train(argv: Sequence[str]) -> None:
    """fairseq-train in this process: parse as the CLI does, then `call_main`."""
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.distributed import utils as distributed_utils
    from fairseq_cli import train as fairseq_train

    cfg = convert_namespace_to_omegaconf(parse_train_argv(argv))
    before = {name: list(lg.handlers) for name, lg in _all_loggers()}
    try:
        distributed_utils.call_main(cfg, fairseq_train.main)
    finally:
        # fairseq adds a --log-file FileHandler to its loggers on every call (and every epoch); a second
        # run in this process would otherwise also write into the first run's log.
        for name, lg in _all_loggers():
            for handler in [h for h in lg.handlers if h not in before.get(name, [])]:
                lg.removeHandler(handler)
                handler.close()


def parse_generate_output(path: Path, n: int) -> tuple[list[str], int]:
    """Detokenized hypotheses (`D-<id>` lines) of fairseq-generate, in dataset order.

    A sentence longer than the model's positions is skipped by fairseq; it is scored as an empty
    hypothesis (never dropped, which would flatter the model); the count of those is returned too.
    """
    hyps: dict[int, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("D-"):
            head, _score, *text = line.split("\t")
            hyps[int(head[2:])] = text[0] if text else ""
    return [hyps.get(i, "") for i in range(n)], n - len(hyps)


def generate_direction(
    checkpoint: Path, data: PreparedData, langs: Sequence[str], src: str, tgt: str, split: str,
    beam: int, max_tokens: int, extra: Sequence[str] = (),
) -> tuple[list[str], int]:
    """Run fairseq-generate in this process for one direction: detokenized hypotheses, number skipped."""
    from fairseq import options
    from fairseq_cli import generate

    n = len(read_lines(data.raw_file(split, src, tgt, tgt)))
    with tempfile.TemporaryDirectory(prefix="mmt-generate-") as tmp:
        argv = task_argv(data, langs) + [
            "--lang-pairs", f"{src}-{tgt}", "--source-lang", src, "--target-lang", tgt,
            "--path", str(checkpoint), "--gen-subset", split,
            "--beam", str(beam), "--max-tokens", str(max_tokens),
            "--post-process", "sentencepiece", "--results-path", tmp,
            "--skip-invalid-size-inputs-valid-test", "--required-batch-size-multiple", "1",
            "--num-workers", "0", "--cpu", *extra,
        ]
        parser = options.get_generation_parser()
        args = options.parse_args_and_arch(parser, input_args=argv)
        generate.main(args)
        return parse_generate_output(Path(tmp) / f"generate-{split}.txt", n)


def read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise UserInputError(f"missing data file {path}")
    return path.read_text(encoding="utf-8").splitlines()
