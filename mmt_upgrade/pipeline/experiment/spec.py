"""An experiment config (YAML): the old model, the new languages, shared flags, evaluation settings and the
runs, with `base:` inheritance (the ablation ladder); checked completely when read, every section through
the option group that owns it, so a typo fails before anything is prepared or trained."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from mmt_upgrade.core.config_files import read_config_tree
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.languages import parse_lang_list
from mmt_upgrade.core.options import option
from mmt_upgrade.core.paths import runs_dir
from mmt_upgrade.fairseq_io.distiller import DistillOptions, distill_langs
from mmt_upgrade.pipeline.data.prepare import DataConfig
from mmt_upgrade.pipeline.runconfig import EvalOptions, RunConfig, check_plugin_flags, load_config
from mmt_upgrade.pipeline.upgrade.options import UpgradeOptions

STARTS = ("upgrade", "scratch")
TOP_KEYS = ("name", "old_model", "new_langs", "runs", "new_pairs_fraction", "data", "upgrade", "train", "evaluate")
RUN_KEYS = ("start", "base", "upgrade", "train", "distill", "size_of")
# fairseq flags the experiment owns for every run (from the plan, not from a config).
OWNED_TRAIN_FLAGS = ("finetune-from-model", "criterion", "teacher-path", "teacher-spm", "save-interval-updates",
                     "keep-interval-updates", "no-epoch-checkpoints")


@dataclass
class ExperimentEvalOptions(EvalOptions):
    """An experiment's `evaluate:` section: how every run is evaluated, and when."""

    every: int = option(100, "updates between evaluated checkpoints")
    max_pairs: int = option(200, "sentences per direction (a seeded sample, the same for every run and the old model)")
    at_start: bool = option(True, "also evaluate each upgraded checkpoint before training (update 0)")

    def check(self) -> None:
        super().check()
        if self.every <= 0:
            raise UserInputError("every must be a positive number of updates")
        if self.max_pairs < 0:
            raise UserInputError(f"max_pairs must not be negative (got {self.max_pairs})")
        if self.new_langs:
            raise UserInputError("new_langs: the experiment's top-level new_langs are the new group; remove it")

    def for_runs(self, new_langs: Sequence[str]) -> EvalOptions:
        """What evaluating one checkpoint of the experiment needs."""
        return EvalOptions(beam=self.beam, max_tokens=self.max_tokens, split=self.split, new_langs=list(new_langs))


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


def _section(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UserInputError(f"{where}: expected a section of keys, got {value!r}")
    return dict(value)


def _unknown(keys: Sequence[Any], known: Sequence[str], where: str) -> None:
    bad = [k for k in keys if k not in known]
    if bad:
        raise UserInputError(f"{where}: unknown key {bad[0]!r} (known: {', '.join(known)})")


def _run_spec(name: Any, spec: Any, where: str) -> RunSpec:
    if not re.fullmatch(r"[+\w.-]+", str(name)):
        raise UserInputError(f"{where}: run name {name!r} may hold only letters, digits and + _ . -")
    where = f"{where}: run {name}"
    spec = _section(spec, where)
    _unknown(list(spec), RUN_KEYS, where)
    sections = {k: _section(spec.get(k), f"{where}: {k}") for k in ("upgrade", "train", "distill")}
    return RunSpec(name=str(name), start=str(spec.get("start") or ""), size_of=str(spec.get("size_of") or ""),
                   base=str(spec.get("base") or ""), **sections)


@dataclass
class ExperimentConfig:
    name: str
    old_model: str  # the old model's run config (trained once into runs/<its name>, reused)
    new_langs: list[str]
    runs: dict[str, RunSpec]
    old: RunConfig  # the old model's config, the experiment's `data:` keys over its own
    old_run: str  # its run directory's name: the config's name, keyed by its data when `data:` changes it
    new_pairs_fraction: float = 0.25  # new languages' train pairs relative to the old languages' cap
    data: dict[str, Any] = field(default_factory=dict)  # data keys over the old model's (`--set data.langs=..`)
    upgrade: dict[str, Any] = field(default_factory=dict)  # upgrade options shared by every upgraded run
    train: dict[str, Any] = field(default_factory=dict)  # fairseq-train flags over the old model's, every run
    evaluate: ExperimentEvalOptions = field(default_factory=ExperimentEvalOptions)
    source: str = ""

    @classmethod
    def load(cls, name_or_path: str, overrides: Sequence[str] = ()) -> "ExperimentConfig":
        path, tree = read_config_tree(name_or_path, overrides)
        where = str(path)
        if "runs" not in tree or "old_model" not in tree:
            raise UserInputError(f"{where}: an experiment config needs `old_model` and `runs` "
                                 f"(is it a run config? use `mmt-upgrade pipeline` for those)")
        _unknown(list(tree), TOP_KEYS, where)
        runs = {str(name): _run_spec(name, spec, where) for name, spec in _section(tree["runs"], f"{where}: runs").items()}
        data = _section(tree.get("data"), f"{where}: data")
        _unknown([k for k in data if k not in DataConfig.pick(data)], list(DataConfig.schema()), f"{where}: data")
        try:
            old = load_config(str(tree["old_model"]), data=data)
            shipped = old if not data else load_config(str(tree["old_model"]))
        except UserInputError as e:
            raise UserInputError(f"{where}: old_model: {e}") from None
        try:
            fraction = float(tree.get("new_pairs_fraction", 0.25))
        except (TypeError, ValueError):
            raise UserInputError(f"{where}: new_pairs_fraction: expected a number") from None
        cfg = cls(name=str(tree.get("name", path.stem)), old_model=str(tree["old_model"]),
                  new_langs=parse_lang_list(tree.get("new_langs") or [], f"{where}: new_langs"), runs=runs, old=old,
                  old_run=old.name if old.data == shipped.data else f"{old.name}-{old.data.key()}",
                  new_pairs_fraction=fraction, data=data, upgrade=_section(tree.get("upgrade"), f"{where}: upgrade"),
                  train=_section(tree.get("train"), f"{where}: train"),
                  evaluate=ExperimentEvalOptions.from_mapping(tree.get("evaluate"), f"{where}: evaluate"), source=where)
        cfg.check()
        return cfg

    @property
    def old_langs(self) -> list[str]:
        return self.old.model_langs

    @property
    def langs(self) -> list[str]:
        """Every language of the upgraded models: the pivot, the old languages, then the new ones."""
        return self.old_langs + self.new_langs

    @property
    def old_dir(self) -> Path:
        return runs_dir() / self.old_run

    @property
    def heldout_langs(self) -> list[str]:
        """The languages whose shared verses make the test sample every run and the old model are scored on:
        the experiment's `data.heldout_langs`, else every language of the experiment."""
        return list(self.old.data.heldout_langs) if "heldout_langs" in DataConfig.pick(self.data) else self.langs

    def check(self) -> None:
        where = self.source
        if not self.runs:
            raise UserInputError(f"{where}: `runs` is empty")
        if not self.new_langs:
            raise UserInputError(f"{where}: `new_langs` is empty: nothing to upgrade to")
        clash = [x for x in self.new_langs if x in self.old_langs]
        if clash:
            raise UserInputError(f"{where}: new_langs {','.join(clash)} are already in the old model "
                                 f"({self.old_model}: {','.join(self.old_langs)})")
        if not 0 < self.new_pairs_fraction <= 1:
            raise UserInputError(f"{where}: new_pairs_fraction must be in (0, 1], got {self.new_pairs_fraction}")
        UpgradeOptions.from_mapping(self.upgrade, f"{where}: upgrade")
        for run in self.resolved().values():
            self.check_run(run)
        if "max-update" not in self.train and any("max-update" not in r.train for r in self.resolved().values()):
            raise UserInputError(f"{where}: set train.max-update (the length of the runs)")

    def check_run(self, run: RunSpec) -> None:
        """Every section of one (resolved) run, through the option group that owns it."""
        where = f"{self.source}: run {run.name}"
        if run.start not in STARTS:
            raise UserInputError(f"{where}: start must be one of {', '.join(STARTS)}")
        if run.start == "scratch" and (run.upgrade or run.distill):
            raise UserInputError(f"{where} starts from scratch: it has no upgrade or distillation (the teacher "
                                 "would be the model it replaces)")
        if run.size_of and run.size_of not in self.runs:
            raise UserInputError(f"{where}: size_of names an unknown run {run.size_of!r}")
        if run.start == "upgrade":
            self.upgrade_options(run)
        for section, flags in (("train", {**self.train, **run.train}), ("distill", run.distill)):
            owned = [k for k in flags if k in OWNED_TRAIN_FLAGS]
            if owned:
                raise UserInputError(f"{where}: {section}: {owned[0]} is set by the experiment itself; remove it")
        check_plugin_flags({**self.old.train, **self.train, **run.train}, self.langs, f"{where}: train")
        if run.distill:
            opts = DistillOptions.from_mapping(run.distill, f"{where}: distill", teacher_path=str(self.old_dir),
                                               teacher_spm="spm.model")
            try:
                distill_langs(opts, self.old_langs, self.langs)
            except UserInputError as e:
                raise UserInputError(f"{where}: distill: {e}") from None

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
        """The run's `mmt-upgrade upgrade` options (experiment-wide ones first), checked against the languages."""
        where = f"{self.source}: run {run.name}: upgrade"
        options = UpgradeOptions.from_mapping({**self.upgrade, **run.upgrade}, where)
        try:
            options.check_langs(self.old_langs, self.new_langs)
        except UserInputError as e:
            raise UserInputError(f"{where}: {e}") from None
        return options
