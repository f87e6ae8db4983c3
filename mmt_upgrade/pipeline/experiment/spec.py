"""An experiment config (YAML): the old model, the new languages, shared flags, evaluation settings and the
runs, with `base:` inheritance (the ablation ladder); checked completely when read, every section through
the option group that owns it, so a typo fails before anything is prepared or trained."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

from mmt_upgrade.core.config_files import read_config_tree
from mmt_upgrade.core.decoding import BACKENDS
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.languages import parse_lang_list
from mmt_upgrade.core.options import option
from mmt_upgrade.core.paths import runs_dir
from mmt_upgrade.fairseq_io.distiller import DistillOptions, distill_langs
from mmt_upgrade.pipeline.data.prepare import DataConfig
from mmt_upgrade.pipeline.runconfig import EvalOptions, RunConfig, check_plugin_flags, load_config
from mmt_upgrade.pipeline.experiment.runs import (
    Replica,
    RunSpec,
    parse_run,
    parse_seeds,
    replicas,
    resolve_runs,
    section,
    unknown_keys,
)
from mmt_upgrade.pipeline.upgrade.options import UpgradeOptions

TOP_KEYS = ("name", "old_model", "new_langs", "runs", "new_pairs_fraction", "data", "upgrade", "train", "evaluate",
            "seeds")
# fairseq flags the experiment owns for every run (from the plan, not from a config).
OWNED_TRAIN_FLAGS = ("finetune-from-model", "criterion", "teacher-path", "teacher-spm", "save-interval-updates",
                     "keep-interval-updates", "no-epoch-checkpoints")


@dataclass
class ExperimentEvalOptions(EvalOptions):
    """An experiment's `evaluate:` section: how every run is evaluated, and when. Curve points are scored on a
    fixed sample (`max_pairs`, `beam`); each run's final checkpoint may also be scored on a larger final
    test set (`final_max_pairs`, `final_beam`), with every hypothesis kept for significance tests."""

    every: int = option(100, "updates between evaluated checkpoints")
    max_pairs: int = option(200, "sentences per direction (a seeded sample, the same for every run and the old model)")
    at_start: bool = option(True, "also evaluate each upgraded checkpoint before training (update 0)")
    final_max_pairs: int = option(-1, "sentences per direction for the final checkpoints (0: the whole split; "
                                      "-1: the curve's sample)")
    final_beam: int = option(0, "beam for the final checkpoints (0: the curve's)")
    final_backend: str = option("", "who translates the final checkpoints ('': the curve's backend); ct2 with "
                                "float32 weights gives fairseq's scores within 0.1 chrF++ at 3-4x its speed "
                                "(BENCHMARKS.md), and the ct2_* settings apply", choices=("", *BACKENDS))

    def check(self) -> None:
        super().check()
        if self.every <= 0:
            raise UserInputError("every must be a positive number of updates")
        if self.max_pairs < 0 or self.final_max_pairs < -1 or self.final_beam < 0:
            raise UserInputError(f"max_pairs ({self.max_pairs}), final_max_pairs ({self.final_max_pairs}) and "
                                 f"final_beam ({self.final_beam}) must not be negative (final_max_pairs -1: "
                                 "the curve's sample)")
        if self.new_langs:
            raise UserInputError("new_langs: the experiment's top-level new_langs are the new group; remove it")

    @property
    def final_pairs(self) -> int:
        return self.max_pairs if self.final_max_pairs == -1 else self.final_max_pairs

    @property
    def separate_final(self) -> bool:
        """Whether finals are scored apart from the curve (another sample or beam)."""
        return ((self.final_pairs, self.final_beam or self.beam, self.final_backend or self.backend)
                != (self.max_pairs, self.beam, self.backend))

    def for_runs(self, new_langs: Sequence[str], split: str = "", beam: int = 0, backend: str = "") -> EvalOptions:
        """What evaluating one curve checkpoint of the experiment needs (every EvalOptions setting kept)."""
        shared = {f.name: getattr(self, f.name) for f in fields(EvalOptions)}
        return EvalOptions(**{**shared, "beam": beam or self.beam, "split": split or self.split,
                              "backend": backend or self.backend, "new_langs": list(new_langs)})

    def for_finals(self, new_langs: Sequence[str]) -> EvalOptions:
        return self.for_runs(new_langs, beam=self.final_beam, backend=self.final_backend)


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
    seeds: list[int] = field(default_factory=list)  # replicas of every run without its own `seeds`

    @classmethod
    def load(cls, name_or_path: str, overrides: Sequence[str] = ()) -> "ExperimentConfig":
        path, tree = read_config_tree(name_or_path, overrides)
        where = str(path)
        if "runs" not in tree or "old_model" not in tree:
            raise UserInputError(f"{where}: an experiment config needs `old_model` and `runs` "
                                 f"(is it a run config? use `mmt-upgrade pipeline` for those)")
        unknown_keys(list(tree), TOP_KEYS, where)
        runs = {str(name): parse_run(name, spec, where) for name, spec in section(tree["runs"], f"{where}: runs").items()}
        data = section(tree.get("data"), f"{where}: data")
        unknown_keys([k for k in data if k not in DataConfig.pick(data)], list(DataConfig.schema()), f"{where}: data")
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
                  new_pairs_fraction=fraction, data=data, upgrade=section(tree.get("upgrade"), f"{where}: upgrade"),
                  train=section(tree.get("train"), f"{where}: train"),
                  evaluate=ExperimentEvalOptions.from_mapping(tree.get("evaluate"), f"{where}: evaluate"), source=where,
                  seeds=parse_seeds(tree.get("seeds"), f"{where}: seeds"))
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
        if "max-update" not in self.train and any("max-update" not in r.train and r.recipe != "old"
                                                  for r in self.resolved().values()):
            raise UserInputError(f"{where}: set train.max-update (the length of the runs)")

    def train_flags(self, run: RunSpec) -> dict[str, Any]:
        """The run's fairseq-train flags before the plan adds its own: the old model's, the experiment's
        (unless the run keeps the old model's recipe), the run's; a `null` flag is not passed."""
        shared = {} if run.recipe == "old" else self.train
        return {**self.old.train, **shared, **run.train}

    def check_run(self, run: RunSpec) -> None:
        """Every section of one (resolved) run, through the option group that owns it."""
        where = f"{self.source}: run {run.name}"
        if run.start in ("scratch", "continue") and (run.upgrade or run.distill):
            raise UserInputError(f"{where} starts from {run.start}: it has no upgrade or distillation (the teacher "
                                 "would be the model it replaces)")
        if run.size_of and (run.size_of not in self.runs or run.start == "continue"):
            raise UserInputError(f"{where}: size_of names an unknown run {run.size_of!r}" if run.start != "continue"
                                 else f"{where}: a continue run keeps the old model's size; remove size_of")
        if run.start == "upgrade":
            self.upgrade_options(run)
        for name, flags in (("train", {**self.train, **run.train}), ("distill", run.distill)):
            owned = [k for k in flags if k in OWNED_TRAIN_FLAGS]
            if owned:
                raise UserInputError(f"{where}: {name}: {owned[0]} is set by the experiment itself; remove it")
        flags = {k: v for k, v in self.train_flags(run).items() if v is not None}
        check_plugin_flags(flags, self.old_langs if run.start == "continue" else self.langs, f"{where}: train")
        if run.distill:
            opts = DistillOptions.from_mapping(run.distill, f"{where}: distill", teacher_path=str(self.old_dir),
                                               teacher_spm="spm.model")
            try:
                distill_langs(opts, self.old_langs, self.langs)
            except UserInputError as e:
                raise UserInputError(f"{where}: distill: {e}") from None

    def resolved(self) -> dict[str, RunSpec]:
        """Each run with its `base` chain merged in (the ladder: each step adds to the previous)."""
        return resolve_runs(self.runs, self.source)

    def replicas(self) -> dict[str, Replica]:
        """Every model the experiment trains: each run once per seed (`<run>@s<seed>`), else once."""
        return replicas(self.resolved(), self.seeds)

    def upgrade_options(self, run: RunSpec) -> UpgradeOptions:
        """The run's `mmt-upgrade upgrade` options (experiment-wide ones first), checked against the languages."""
        where = f"{self.source}: run {run.name}: upgrade"
        options = UpgradeOptions.from_mapping({k: v for k, v in {**self.upgrade, **run.upgrade}.items()
                                               if v is not None}, where)
        try:
            options.check_langs(self.old_langs, self.new_langs)
        except UserInputError as e:
            raise UserInputError(f"{where}: {e}") from None
        return options
