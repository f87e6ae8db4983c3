"""`mmt-upgrade distill-cache`: run the teacher once over the training data, for
`--criterion cross_vocab_distillation --teacher-cache DIR` (the distillation flags are DistillOptions')."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmt_upgrade.core.vocab import model_symbols, read_dictionary
from mmt_upgrade.fairseq_io.distiller import Distiller, DistillOptions, student_tokenizer
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.fairseq_io.teacher_cache import build_cache


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="the student's prepared data directory")
    parser.add_argument("--out", required=True, help="the cache directory (an interrupted build resumes there)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--shard-size", type=int, default=2000, help="examples per shard file")
    parser.add_argument("--max-tokens", type=int, default=6000, help="teacher batch size in target tokens")
    DistillOptions.add_arguments(parser, skip=("teacher_cache", "kd_weight", "lexical_ratio"))


def run(args: argparse.Namespace) -> int:
    data = PreparedData.open(Path(args.data))
    opts = DistillOptions.from_namespace(args)
    symbols = model_symbols(read_dictionary(data.dictionary), data.langs)
    distiller = Distiller(opts, symbols, data.langs, student_tokenizer(data.bin_dir, opts.student_tokenizer, data.langs))
    counts = build_cache(distiller, data.bin_dir, Path(args.out), data.directions, args.split, args.shard_size,
                         args.max_tokens)
    print(json.dumps(counts))
    return 0
