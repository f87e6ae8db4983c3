"""`mmt-upgrade experiment`: a matrix of upgrade runs (scratch, naive, the ablation ladder), planned from
one YAML file, run resumably (see `runner.py` for where), and evaluated at fixed update intervals.

The experiment directory's layout is `pipeline.rundir.ExperimentDir`; its files' formats, docs/results.md.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import log
from mmt_upgrade.core.growth import GrowthOptions, widened_ffn_dim
from mmt_upgrade.core.languages import directions
from mmt_upgrade.core.paths import cache_dir
from mmt_upgrade.core.vocab import Tokenizer
from mmt_upgrade.fairseq_io.drivers import flags_to_argv, parse_train_argv
from mmt_upgrade.fairseq_io.layout import PreparedData, tokenizer_hash
from mmt_upgrade.pipeline.data.prepare import DataConfig, prepare_data
from mmt_upgrade.pipeline.experiment.spec import ExperimentConfig
from mmt_upgrade.pipeline.records import PLAN, RunResult, TrainDone, format_field, read_record
from mmt_upgrade.pipeline.runconfig import EvalOptions, RunConfig
from mmt_upgrade.pipeline.rundir import ExperimentDir, RunDir
from mmt_upgrade.pipeline.train import fairseq_train_argv, finished_training
from mmt_upgrade.pipeline.upgrade import (
    CHECKPOINT,
    BibleText,
    UpgradeInputs,
    UpgradeOptions,
    upgrade,
)


def upgrade_argv(options: UpgradeOptions) -> list[str]:
    """The `mmt-upgrade upgrade` flags that reproduce `options` (for the printed plan)."""
    return flags_to_argv(options.to_flags())


def grown_model_flags(model_flags: Mapping[str, Any], growth: GrowthOptions) -> dict[str, Any]:
    """The size flags of the old model after `growth` (what `upgrade` writes as `fairseq_model_flags`)."""
    out = dict(model_flags)
    for side in ("encoder", "decoder"):
        out[f"{side}-layers"] = int(model_flags[f"{side}-layers"]) + growth.added_layers(side)
        out[f"{side}-ffn-embed-dim"] = widened_ffn_dim(int(model_flags[f"{side}-ffn-embed-dim"]), growth.widen_ffn)
    return out


class DataLayout(NamedTuple):
    """What a fairseq command needs to know of prepared data; stands in for it before it exists (dry run)."""
    bin_dir: Path
    langs: list[str]
    directions: list[tuple[str, str]]


@dataclass
class RunPlan:
    """Everything a job needs to train and evaluate one run: picklable, paths absolute."""
    name: str
    run_dir: Path
    train_argv: list[str]
    train_data: Path  # prepared data the run trains on
    eval_data: Path  # prepared data with the experiment's test sample
    max_update: int
    eval_every: int  # 0: evaluate checkpoint_best.pt only (the old model), into evals/best
    evaluation: EvalOptions
    result_dir: Path | None = None  # evals/ and result.json (default: run_dir)
    start_checkpoint: Path | None = None  # evaluated as update 0
    start_eval_dir: Path | None = None

    @property
    def train_files(self) -> RunDir:
        """Where the run trains: checkpoints/, train.log, train_done.json."""
        return RunDir(self.run_dir)

    @property
    def out(self) -> RunDir:
        """Where its evaluations and result.json go (the old model's: in the experiment directory)."""
        return RunDir(self.result_dir or self.run_dir)

    def finished(self) -> RunResult | None:
        """The run's result when this exact command trained it to its planned updates, else None."""
        if not self.out.result.exists():
            return None
        result = read_record(RunResult, self.out.result)
        trained = result.trained_updates  # None in results written before it was recorded: recheck them
        if result.argv != self.train_argv or trained is None or trained < self.max_update:
            return None
        return result if finished_training(self.train_files, self.train_argv) is not None else None


@dataclass
class Plan:
    """The resolved experiment: the old model's run, upgrades and the runs, in order."""
    cfg: ExperimentConfig
    root: Path
    old: RunPlan
    old_cfg: RunConfig
    upgrades: dict[str, UpgradeOptions]  # key -> options
    runs: dict[str, RunPlan]
    run_upgrade: dict[str, str]  # run -> upgrade key
    prepared: bool  # data and upgrades exist (else paths in commands are placeholders)

    def record(self) -> dict[str, Any]:
        """plan.json: the config as resolved, and what each run executes."""
        plain = lambda x: json.loads(json.dumps(x, default=str))  # noqa: E731
        return {**format_field(PLAN), "config": plain(asdict(self.cfg)), "old_model": plain(asdict(self.old)),
                "upgrades": {k: upgrade_argv(o) for k, o in self.upgrades.items()},
                "run_upgrade": self.run_upgrade, "runs": {k: plain(asdict(r)) for k, r in self.runs.items()}}

    def describe(self) -> str:
        old = self.old.train_files
        trained = old.done.exists() and read_record(TrainDone, old.done).num_updates >= self.old.max_update
        lines = [f"experiment {self.cfg.name} ({self.cfg.source}) in {self.root}",
                 f"old model: {self.old.run_dir} ({'trained, reused' if trained else 'to train'})",
                 "  fairseq-train " + " ".join(self.old.train_argv)]
        for key, options in self.upgrades.items():
            lines.append(f"upgrade {key}: mmt-upgrade upgrade {old.best} "
                         f"--out {ExperimentDir(self.root).upgrade(key)} --new-langs {','.join(self.cfg.new_langs)} "
                         + " ".join(upgrade_argv(options)))
        for i, (name, run) in enumerate(self.runs.items(), 1):
            done = run.out.result.exists()  # a dry run's commands name placeholders: no argv match
            lines.append(f"[{i}/{len(self.runs)}] {name}{' (finished)' if done else ''}: "
                         f"{run.max_update} updates, evaluated every {run.eval_every}"
                         + (f", upgrade {self.run_upgrade[name]}" if name in self.run_upgrade else ", from scratch"))
            lines.append("  fairseq-train " + " ".join(run.train_argv))
        if not self.prepared:
            lines.append("(DATA: the upgraded data, prepared when the experiment runs)")
        return "\n".join(lines)


def old_eval_tokenizer(old_data: PreparedData, out: Path) -> Path:
    """A tokenizer directory for the old model's own SPM and dictionary, so its test data can be re-cut."""
    if not (out / "tokenizer.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        for name in ("spm.model", "dict.txt"):
            (out / name).write_bytes((old_data.root / name).read_bytes())
        Tokenizer.single(out / "spm.model", [old_data.manifest["pivot"], *old_data.langs]).save()
    return out


def new_data_config(cfg: ExperimentConfig, old: DataConfig, tokenizer: Path | None) -> DataConfig:
    """Old languages as the old model had them; new ones with a fraction of the pairs; the test sample."""
    cap = max(1, round(old.max_train_pairs * cfg.new_pairs_fraction))
    return DataConfig(**{**asdict(old), "langs": old.langs + cfg.new_langs, "heldout_langs": cfg.heldout_langs,
                         "max_train_pairs_per_lang": {**old.max_train_pairs_per_lang, **{x: cap for x in cfg.new_langs}},
                         "max_eval_pairs": cfg.evaluate.max_pairs, "tokenizer": str(tokenizer or "")})


def build_plan(cfg: ExperimentConfig, root: Path, prepare: bool, only: Sequence[str] = ()) -> Plan:
    """Resolve every run's command. With `prepare`, data is built (reused when present), and the upgrades
    too once the old model is trained; until then commands name placeholders (`prepared` is False)."""
    root = Path(root).absolute()
    exp = ExperimentDir(root)
    if prepare:  # every command checked (fairseq's parser) before anything is built
        build_plan(cfg, root, prepare=False, only=only)
    old_cfg = cfg.old
    old_data = prepare_data(old_cfg.data, cache_dir()) if prepare else None
    old_layout = old_data or DataLayout(Path("<OLD_DATA>/bin"), [old_cfg.data.pivot, *old_cfg.data.langs],
                                        directions(old_cfg.data.pivot, old_cfg.data.langs))
    old_dir = RunDir(cfg.old_dir)
    old_eval_data = None
    if prepare:
        tok = old_eval_tokenizer(old_data, exp.old_tokenizer)
        old_eval_cfg = DataConfig(**{**asdict(old_cfg.data), "max_eval_pairs": cfg.evaluate.max_pairs,
                                     "heldout_langs": cfg.heldout_langs, "tokenizer": str(tok)})
        old_eval_data = prepare_data(old_eval_cfg, cache_dir()).root
    e = cfg.evaluate
    old = RunPlan(name="old_model", run_dir=old_dir.root,
                  train_argv=fairseq_train_argv(old_cfg, old_layout, old_dir.checkpoints, old_dir.train_log),
                  train_data=old_data.root if old_data else Path("<OLD_DATA>"),
                  eval_data=old_eval_data or Path("<OLD_EVAL_DATA>"), max_update=int(old_cfg.train.get("max-update", 0)),
                  eval_every=0, evaluation=e.for_runs([]), result_dir=exp.old_model.root)
    runs = cfg.resolved()
    unknown = [x for x in only if x not in runs]
    if unknown:
        raise UserInputError(f"--runs: {', '.join(unknown)} not in {cfg.source} (runs: {', '.join(runs)})")
    selected = [name for name in runs if not only or name in only]
    upgrades: dict[str, UpgradeOptions] = {}
    run_upgrade: dict[str, str] = {}
    for run in (runs[name] for name in selected):
        if run.start == "upgrade":
            options = cfg.upgrade_options(run)  # checked against the languages
            run_upgrade[run.name] = options.key()
            upgrades.setdefault(run_upgrade[run.name], options)
    plans: dict[str, RunPlan] = {}
    layout: PreparedData | DataLayout | None = None
    if prepare and finished_training(old_dir, old.train_argv) is not None:  # never upgrade an unfinished one
        layout = prepare_upgrades(cfg, root, old_cfg, old_data, old_dir.best, upgrades)
    prepared = layout is not None
    layout = layout or DataLayout(Path("<DATA>/bin"), cfg.langs, directions(old_cfg.data.pivot, cfg.langs[1:]))
    model_keys = ("arch", "encoder-layers", "decoder-layers", "encoder-ffn-embed-dim", "decoder-ffn-embed-dim")
    for run in (runs[name] for name in selected):
        flags = {**old_cfg.train, **cfg.train, **run.train}
        growth = None
        if run.start == "upgrade":
            growth = upgrades[run_upgrade[run.name]].growth
            flags["finetune-from-model"] = str(exp.upgrade(run_upgrade[run.name]) / CHECKPOINT)
        elif run.size_of and runs[run.size_of].start == "upgrade":
            growth = cfg.upgrade_options(runs[run.size_of]).growth
        if growth is not None:
            flags |= grown_model_flags({k: flags[k] for k in model_keys if k in flags}, growth)
        if run.distill:
            flags |= {"criterion": "cross_vocab_distillation", "teacher-path": str(old_dir.best),
                      "teacher-spm": str(old_data.spm_model if old_data else "<OLD_DATA>/spm.model"), **run.distill}
        flags |= {"save-interval-updates": e.every, "keep-interval-updates": -1, "no-epoch-checkpoints": True}
        flags.pop("stop-time-hours", None)  # a run's length is its updates: every run the same plan
        run_cfg = RunConfig(name=run.name, data=old_cfg.data, train=flags, source=cfg.source)
        run_dir = exp.run(run.name)
        key = run_upgrade.get(run.name)
        plans[run.name] = RunPlan(
            name=run.name, run_dir=run_dir.root,
            train_argv=fairseq_train_argv(run_cfg, layout, run_dir.checkpoints, run_dir.train_log),
            train_data=Path(getattr(layout, "root", "<DATA>")), eval_data=Path(getattr(layout, "root", "<DATA>")),
            max_update=int(flags["max-update"]), eval_every=e.every, evaluation=e.for_runs(cfg.new_langs),
            start_checkpoint=exp.upgrade(key) / CHECKPOINT if key and e.at_start else None,
            start_eval_dir=exp.upgrade_eval(key) if key and e.at_start else None)
    parse_train_argv(old.train_argv, f"{cfg.source}: old_model {cfg.old_model}: train")
    for name, run_plan in plans.items():
        parse_train_argv(run_plan.train_argv, f"{cfg.source}: run {name}: train")
    return Plan(cfg, root, old, old_cfg, upgrades, plans, run_upgrade, prepared)


def prepare_upgrades(cfg: ExperimentConfig, root: Path, old_cfg: RunConfig, old_data: PreparedData,
                     old_best: Path, upgrades: Mapping[str, UpgradeOptions]) -> PreparedData:
    """Build each distinct upgrade once, then the new data with their (one) tokenizer."""
    bible = BibleText(new_data_config(cfg, old_cfg.data, None))  # the new languages' share of pairs
    tokenizers: dict[str, str] = {}
    for key, options in upgrades.items():
        out = ExperimentDir(root).upgrade(key)
        if not (out / CHECKPOINT).exists():
            log(f"experiment: upgrade {key}: {' '.join(upgrade_argv(options))}")
            upgrade(UpgradeInputs(old_best, list(cfg.new_langs), old_data=old_data, bible=bible), out, options)
        tokenizers[key] = tokenizer_hash(out)
    if not upgrades:  # every run shares the upgraded vocabulary: one upgrade must build it
        raise UserInputError(f"{cfg.source}: no run starts from an upgrade; the experiment needs one for the "
                             "upgraded vocabulary every run shares")
    first = next(iter(upgrades))
    differing = [k for k, h in tokenizers.items() if h != tokenizers[first]]
    if differing:
        raise UserInputError(f"{cfg.source}: upgrades {first} and {differing[0]} built different vocabularies; "
                             "runs are compared on one data-bin, so vocabulary options must be shared "
                             "(set them under the top-level `upgrade:`)")
    return prepare_data(new_data_config(cfg, old_cfg.data, ExperimentDir(root).upgrade(first)), cache_dir())



