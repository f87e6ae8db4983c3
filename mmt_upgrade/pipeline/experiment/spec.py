"""An experiment config (YAML): the old model, the new languages, shared flags, evaluation settings and the
runs, with `base:` inheritance (the ablation ladder); checked when read."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from mmt_upgrade.core.config_files import read_config_tree
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.growth import GrowthOptions
from mmt_upgrade.core.languages import parse_lang_list
from mmt_upgrade.pipeline.upgrade import (
    UpgradeOptions,
    parse_langtok_init,
)

RESULT = "result.json"


STARTS = ("upgrade", "scratch")


# `mmt-upgrade upgrade` options a run may set, and the UpgradeOptions / GrowthOptions field of each.
UPGRADE_KEYS = {
    "vocab-mode": "vocab_mode", "new-spm-size": "new_spm_size", "spm-size": "spm_size", "init": "init",
    "langtok-init": "langtok_init", "seed": "seed", "add-encoder-layers": "growth.add_encoder_layers",
    "add-decoder-layers": "growth.add_decoder_layers", "widen-ffn": "growth.widen_ffn",
    "grow-init": "growth.init", "grow-position": "growth.position", "grow-noise": "growth.noise",
}


# fairseq flags the experiment owns for every run (from the plan, not from a config).
OWNED_TRAIN_FLAGS = ("finetune-from-model", "criterion", "teacher-path", "teacher-spm", "save-interval-updates",
                     "keep-interval-updates", "no-epoch-checkpoints")


@dataclass
class EvalSettings:
    every: int = 100  # updates between evaluated checkpoints
    split: str = "test"
    max_pairs: int = 200  # sentences per direction (a seeded sample, the same for every run and the old model)
    beam: int = 2
    max_tokens: int = 6000
    at_start: bool = True  # also evaluate each upgraded checkpoint before training (update 0)


@dataclass
class RunSpec:
    """One row of the matrix; `base` inherits another run's settings (the ablation ladder)."""
    name: str
    start: str = ""  # upgrade (the default): fine-tune an upgraded old model; scratch: a new model
    upgrade: dict[str, Any] = field(default_factory=dict)  # mmt-upgrade upgrade options (flag names)
    train: dict[str, Any] = field(default_factory=dict)  # fairseq-train flags for this run
    distill: dict[str, Any] = field(default_factory=dict)  # cross_vocab_distillation flags; {} = none
    size_of: str = ""  # scratch: take this run's (grown) architecture
    base: str = ""


@dataclass
class ExperimentConfig:
    name: str
    old_model: str  # the old model's run config (trained once into runs/<its name>, reused)
    new_langs: list[str]
    runs: dict[str, RunSpec]
    new_pairs_fraction: float = 0.25  # new languages' train pairs relative to the old languages' cap
    upgrade: dict[str, Any] = field(default_factory=dict)  # upgrade options shared by every upgraded run
    train: dict[str, Any] = field(default_factory=dict)  # fairseq-train flags over the old model's, every run
    evaluate: EvalSettings = field(default_factory=EvalSettings)
    source: str = ""

    @classmethod
    def load(cls, name_or_path: str, overrides: Sequence[str] = ()) -> "ExperimentConfig":
        path, tree = read_config_tree(name_or_path, overrides)
        where = str(path)
        if "runs" not in tree or "old_model" not in tree:
            raise UserInputError(f"{where}: an experiment config needs `old_model` and `runs` "
                                 f"(is it a run config? use `mmt-upgrade pipeline` for those)")
        known = {"name", "old_model", "new_langs", "runs", "new_pairs_fraction", "upgrade", "train", "evaluate"}
        unknown = set(tree) - known
        if unknown:
            raise UserInputError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        runs = {}
        for name, spec in (tree["runs"] or {}).items():
            if not re.fullmatch(r"[+\w.-]+", str(name)):
                raise UserInputError(f"{where}: run name {name!r} may hold only letters, digits and + _ . -")
            try:
                runs[str(name)] = RunSpec(name=str(name), **(spec or {}))
            except TypeError as e:
                raise UserInputError(f"{where}: run {name}: {e}") from None
        try:
            cfg = cls(name=str(tree.get("name", path.stem)), old_model=str(tree["old_model"]),
                      new_langs=parse_lang_list(tree.get("new_langs") or [], f"{where}: new_langs"), runs=runs,
                      new_pairs_fraction=float(tree.get("new_pairs_fraction", 0.25)),
                      upgrade=dict(tree.get("upgrade") or {}), train=dict(tree.get("train") or {}),
                      evaluate=EvalSettings(**(tree.get("evaluate") or {})), source=where)
        except TypeError as e:
            raise UserInputError(f"{where}: {e}") from None
        cfg.check()
        return cfg

    def check(self) -> None:
        where = self.source
        if not self.runs:
            raise UserInputError(f"{where}: `runs` is empty")
        if not self.new_langs:
            raise UserInputError(f"{where}: `new_langs` is empty: nothing to upgrade to")
        if not 0 < self.new_pairs_fraction <= 1:
            raise UserInputError(f"{where}: new_pairs_fraction must be in (0, 1], got {self.new_pairs_fraction}")
        if self.evaluate.every <= 0:
            raise UserInputError(f"{where}: evaluate.every must be a positive number of updates")
        for flag in OWNED_TRAIN_FLAGS:
            if flag in self.train or any(flag in r.train for r in self.runs.values()):
                raise UserInputError(f"{where}: train.{flag} is set by the experiment itself; remove it")
        for run in self.resolved().values():
            if run.start not in STARTS:
                raise UserInputError(f"{where}: run {run.name}: start must be one of {', '.join(STARTS)}")
            if run.start == "scratch" and (run.upgrade or run.distill):
                raise UserInputError(f"{where}: run {run.name} starts from scratch: it has no upgrade or "
                                     "distillation (the teacher would be the model it replaces)")
            if run.size_of and run.size_of not in self.runs:
                raise UserInputError(f"{where}: run {run.name}: size_of names an unknown run {run.size_of!r}")
            if run.start == "upgrade":
                self.upgrade_options(run)
        if "max-update" not in self.train and any("max-update" not in r.train for r in self.resolved().values()):
            raise UserInputError(f"{where}: set train.max-update (the length of the runs)")

    def resolved(self) -> dict[str, RunSpec]:
        """Each run with its `base` chain merged in (the ladder: each step adds to the previous)."""
        out: dict[str, RunSpec] = {}

        def resolve(name: str, seen: tuple[str, ...]) -> RunSpec:
            if name in out:
                return out[name]
            if name in seen:
                raise UserInputError(f"{self.source}: runs {' -> '.join(seen + (name,))} form a cycle of `base`")
            if name not in self.runs:
                raise UserInputError(f"{self.source}: run {seen[-1]} has base {name!r}, which is not a run")
            spec = self.runs[name]
            if spec.base:
                parent = resolve(spec.base, seen + (name,))
                spec = RunSpec(name=name, start=spec.start or parent.start,
                               upgrade={**parent.upgrade, **spec.upgrade}, train={**parent.train, **spec.train},
                               distill={**parent.distill, **spec.distill}, size_of=spec.size_of or parent.size_of)
            spec.start = spec.start or "upgrade"
            out[name] = spec
            return spec

        for name in self.runs:
            resolve(name, ())
        return {name: out[name] for name in self.runs}

    def upgrade_options(self, run: RunSpec) -> UpgradeOptions:
        """The run's `mmt-upgrade upgrade` options (experiment-wide ones first) as UpgradeOptions."""
        values = {**self.upgrade, **run.upgrade}
        options, growth = UpgradeOptions(), GrowthOptions()
        for key, value in values.items():
            if key not in UPGRADE_KEYS:
                raise UserInputError(f"{self.source}: run {run.name}: unknown upgrade option {key!r} "
                                     f"(known: {', '.join(UPGRADE_KEYS)})")
            target, name = (growth, UPGRADE_KEYS[key][7:]) if UPGRADE_KEYS[key].startswith("growth.") \
                else (options, UPGRADE_KEYS[key])
            setattr(target, name, parse_langtok_init(value) if key == "langtok-init" else value)
        options.growth = growth
        return options
