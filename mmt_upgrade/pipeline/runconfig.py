"""Run configurations (YAML): the data plan, fairseq-train flags and evaluation settings, checked when read;
and the arguments every command that reads one shares."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from mmt_upgrade.core.config_files import read_config_tree
from mmt_upgrade.core.decoding import BACKENDS, CT2_QUANTIZATIONS
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.lr_scaling import LrScaleOptions
from mmt_upgrade.core.options import OptionGroup, option
from mmt_upgrade.core.paths import runs_dir
from mmt_upgrade.core.precision import CPU_BF16_CHOICES, PrecisionOptions
from mmt_upgrade.core.sampling import SamplingOptions
from mmt_upgrade.fairseq_io.distiller import DistillOptions
from mmt_upgrade.pipeline.data.bible import SPLITS
from mmt_upgrade.pipeline.data.prepare import DataConfig

SECTIONS = ("name", "data", "train", "evaluate")


@dataclass
class EvalOptions(OptionGroup):
    """How a checkpoint is evaluated: a run config's `evaluate:` section and `mmt-upgrade evaluate`'s flags
    (an experiment's section adds when to evaluate)."""

    beam: int = option(5, "beam size")
    max_tokens: int = option(6000, "generation batch size in tokens")
    split: str = option("test", "the split translated and scored", choices=SPLITS)
    new_langs: list[str] = option([], "languages reported as the \"new\" group")
    backend: str = option("fairseq", "who translates: fairseq (fairseq-generate) or ct2 (CTranslate2, faster on CPU: "
                          "an export cached beside the checkpoint; needs mmt-upgrade[ct2])", choices=BACKENDS)
    ct2_quantization: str = option("int8", "ct2 backend: the export's weight type", choices=CT2_QUANTIZATIONS)
    ct2_threads: int = option(0, "ct2 backend: CPU threads of each worker (0: CTranslate2's default)")
    ct2_workers: int = option(1, "ct2 backend: batches translated at once (CTranslate2's inter_threads); on a small "
                              "model 2 workers of 1 thread beat 1 of 2 threads")
    ct2_batch_size: int = option(0, "ct2 backend: sentences per batch (0: batches of max_tokens source tokens); "
                                 "with several workers, small batches keep them all busy")
    cpu_bf16: str = option("auto", "fairseq backend: fairseq-generate's --cpu-bf16 (auto: bf16 autocast where the "
                           "CPU has native bf16; never: float32, what ct2 float32 reproduces)", choices=CPU_BF16_CHOICES)

    def check(self) -> None:
        if self.beam < 1 or self.max_tokens < 1:
            raise UserInputError(f"beam ({self.beam}) and max_tokens ({self.max_tokens}) must be positive")
        if self.ct2_threads < 0 or self.ct2_batch_size < 0:
            raise UserInputError(f"ct2_threads ({self.ct2_threads}) and ct2_batch_size ({self.ct2_batch_size}) "
                                 "must not be negative")
        if self.ct2_workers < 1:
            raise UserInputError(f"ct2_workers ({self.ct2_workers}) must be at least 1")


@dataclass
class RunConfig:
    name: str
    data: DataConfig
    # fairseq-train flags without the leading dashes; `true` is a bare flag, `false`/null omit it.
    train: dict[str, Any]
    evaluate: EvalOptions = field(default_factory=EvalOptions)
    source: str = ""

    @property
    def model_langs(self) -> list[str]:
        return [self.data.pivot, *self.data.langs]


def check_plugin_flags(train: Mapping[str, Any], langs: Sequence[str], where: str) -> None:
    """The values of the plugins' flags among fairseq-train flags (`where`: the section, for the message);
    whether fairseq knows every flag is checked by parsing the planned command (`drivers.parse_train_argv`)."""
    for group in (LrScaleOptions, PrecisionOptions):
        group.from_mapping(group.pick(train), where)
    if train.get("criterion") == "cross_vocab_distillation":
        DistillOptions.from_mapping(DistillOptions.pick(train), where)
    sampling = SamplingOptions.from_mapping(SamplingOptions.pick(train), where)
    try:
        sampling.check_langs(langs)
    except UserInputError as e:
        raise UserInputError(f"{where}: {e}") from None


def load_config(name_or_path: str, overrides: Sequence[str] = (), data: Mapping[str, Any] | None = None) -> RunConfig:
    """Read a run config; `overrides` are `section.key=value` strings (value parsed as YAML), `data` keys
    over its `data:` section (an experiment's)."""
    path, tree = read_config_tree(name_or_path, overrides)
    unknown = [k for k in tree if k not in SECTIONS]
    if unknown:
        raise UserInputError(f"{path}: unknown section {unknown[0]!r} (known: {', '.join(SECTIONS)})")
    data_section = tree.get("data") or {}
    if not isinstance(data_section, Mapping) or not isinstance(tree.get("train") or {}, Mapping):
        raise UserInputError(f"{path}: `data` and `train` must be sections of keys")
    cfg = RunConfig(
        name=str(tree.get("name", path.stem)),
        data=DataConfig.from_mapping({**data_section, **(data or {})}, f"{path}: data"),
        train=dict(tree.get("train") or {}),
        evaluate=EvalOptions.from_mapping(tree.get("evaluate"), f"{path}: evaluate"),
        source=str(path),
    )
    check_plugin_flags(cfg.train, cfg.model_langs, f"{path}: train")
    return cfg


def add_config_arguments(parser: argparse.ArgumentParser, run_dir: bool = True) -> None:
    """The config file, `--set` overrides and (`run_dir`) the run directory."""
    parser.add_argument("config", nargs="?", default="old_model",
                        help="YAML config file, or the name of one in configs/ (default: old_model)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value, e.g. --set train.max-update=100 (repeatable)")
    if run_dir:
        parser.add_argument("--run-dir", help="run directory (default: runs/<config name>)")


def run_dir_of(args: argparse.Namespace, cfg: RunConfig) -> Path:
    return Path(args.run_dir) if args.run_dir else runs_dir() / cfg.name
