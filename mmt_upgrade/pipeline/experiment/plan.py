"""`mmt-upgrade experiment`: a matrix of upgrade runs (scratch, continue, naive, the ablation ladder and
leave-one-out, each at one or more seeds), planned from one YAML file, run resumably (see `runner.py` for
where), and evaluated at fixed update intervals, each run's final also on the final test set.

The experiment directory's layout is `pipeline.rundir.ExperimentDir`; its files' formats, docs/results.md.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.languages import directions
from mmt_upgrade.core.paths import cache_dir
from mmt_upgrade.fairseq_io.drivers import parse_train_argv
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.pipeline.data.prepare import prepare_data
from mmt_upgrade.pipeline.experiment.prepare import (
    DataLayout,
    grown_model_flags,
    old_eval_config,
    old_eval_tokenizer,
    prepare_upgrades,
    upgrade_argv,
)
from mmt_upgrade.pipeline.experiment.runs import group_of
from mmt_upgrade.pipeline.experiment.spec import ExperimentConfig
from mmt_upgrade.pipeline.records import PLAN, RunResult, TrainDone, format_field, read_record
from mmt_upgrade.pipeline.runconfig import EvalOptions, RunConfig
from mmt_upgrade.pipeline.rundir import ExperimentDir, RunDir
from mmt_upgrade.pipeline.train import fairseq_train_argv, finished_training
from mmt_upgrade.pipeline.upgrade import CHECKPOINT, UpgradeOptions

__all__ = ["Plan", "RunPlan", "build_plan", "upgrade_argv"]


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
    final_data: Path | None = None  # prepared data with the final test set; None: the curve's last point is final
    final_evaluation: EvalOptions | None = None
    references: Path | None = None  # where the final test set's references are kept (beside its translations)
    group: str = ""  # the run of the config this replica trains (`full` for `full@s2`)
    seed: int | None = None  # its fairseq --seed (None: the flags' own)
    start: str = ""  # upgrade, scratch or continue

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
    aliases: dict[str, str] = field(default_factory=dict)  # a run whose command is another's: reported from it

    def record(self) -> dict[str, Any]:
        """plan.json: the config as resolved, and what each run executes."""
        plain = lambda x: json.loads(json.dumps(x, default=str))  # noqa: E731
        return {**format_field(PLAN), "config": plain(asdict(self.cfg)), "old_model": plain(asdict(self.old)),
                "upgrades": {k: upgrade_argv(o) for k, o in self.upgrades.items()},
                "run_upgrade": self.run_upgrade, "runs": {k: plain(asdict(r)) for k, r in self.runs.items()},
                "aliases": self.aliases}

    def selected(self, only: Sequence[str] = ()) -> list[RunPlan]:
        """The runs one call executes: all, or those `--runs` names (a run whose command is another's, e.g.
        `-distill`, executes that one)."""
        names = [self.aliases.get(n, n) for n in _select(self.cfg, only)]
        return [self.runs[n] for n in dict.fromkeys(names)]

    def describe(self, only: Sequence[str] = ()) -> str:
        old = self.old.train_files
        trained = old.done.exists() and read_record(TrainDone, old.done).num_updates >= self.old.max_update
        lines = [f"experiment {self.cfg.name} ({self.cfg.source}) in {self.root}",
                 f"old model: {self.old.run_dir} ({'trained, reused' if trained else 'to train'})",
                 "  fairseq-train " + " ".join(self.old.train_argv)]
        for key, options in self.upgrades.items():
            lines.append(f"upgrade {key}: mmt-upgrade upgrade {old.best} "
                         f"--out {ExperimentDir(self.root).upgrade(key)} --new-langs {','.join(self.cfg.new_langs)} "
                         + " ".join(upgrade_argv(options)))
        runs = self.selected(only)
        for i, run in enumerate(runs, 1):
            name = run.name
            done = run.out.result.exists()  # a dry run's commands name placeholders: no argv match
            start = (f", upgrade {self.run_upgrade[name]}" if name in self.run_upgrade else
                     ", continuing the old model" if run.start == "continue" else ", from scratch")
            final = run.final_evaluation
            lines.append(f"[{i}/{len(runs)}] {name}{' (finished)' if done else ''}: "
                         f"{run.max_update} updates, evaluated every {run.eval_every}" + start
                         + (f" (on {run.evaluation.split})" if run.evaluation.split != self.cfg.evaluate.split else "")
                         + (f"; final: {final.split}, {self.cfg.evaluate.final_pairs or 'all'} sentences per "
                            f"direction, beam {final.beam}" if final else ""))
            lines.append("  fairseq-train " + " ".join(run.train_argv))
        for name, target in self.aliases.items():
            lines.append(f"{name}: the same command as {target}; not trained again, reported from its result")
        if not self.prepared:
            lines.append("(DATA: the upgraded data, prepared when the experiment runs)")
        return "\n".join(lines)



def _select(cfg: ExperimentConfig, only: Sequence[str]) -> list[str]:
    """The replicas `--runs` names: by replica (`full@s2`) or by run (`full`: all its seeds)."""
    reps = cfg.replicas()
    unknown = [x for x in only if x not in reps and x not in cfg.runs]
    if unknown:
        raise UserInputError(f"--runs: {', '.join(unknown)} not in {cfg.source} (runs: {', '.join(cfg.runs)})")
    return [name for name in reps if not only or name in only or group_of(name) in only]


def build_plan(cfg: ExperimentConfig, root: Path, prepare: bool) -> Plan:
    """Resolve every run's command. With `prepare`, data is built (reused when present), and the upgrades
    too once the old model is trained; until then commands name placeholders (`prepared` is False). Every run
    of the config is planned (plan.json, which the report reads, lists them all); `Plan.selected` picks
    those one call executes."""
    root = Path(root).absolute()
    exp = ExperimentDir(root)
    if prepare:  # every command checked (fairseq's parser) before anything is built
        build_plan(cfg, root, prepare=False)
    old_cfg, e = cfg.old, cfg.evaluate
    old_langs = [old_cfg.data.pivot, *old_cfg.data.langs]
    old_data = prepare_data(old_cfg.data, cache_dir()) if prepare else None
    old_layout = old_data or DataLayout(Path("<OLD_DATA>/bin"), old_langs, directions(old_cfg.data.pivot,
                                                                                    old_cfg.data.langs))
    old_dir = RunDir(cfg.old_dir)
    old_eval = old_final = None
    if prepare:
        tok = old_eval_tokenizer(old_data, exp.old_tokenizer)
        old_eval = prepare_data(old_eval_config(cfg, tok, e.max_pairs), cache_dir())
        old_final = old_eval if e.final_pairs == e.max_pairs else prepare_data(old_eval_config(cfg, tok, e.final_pairs),
                                                                                cache_dir())
    old_eval_layout = old_eval or DataLayout(Path("<OLD_EVAL_DATA>/bin"), old_langs, old_layout.directions)
    finals = e.separate_final
    old = RunPlan(name="old_model", run_dir=old_dir.root,
                  train_argv=fairseq_train_argv(old_cfg, old_layout, old_dir.checkpoints, old_dir.train_log),
                  train_data=old_data.root if old_data else Path("<OLD_DATA>"),
                  eval_data=old_eval.root if old_eval else Path("<OLD_EVAL_DATA>"),
                  max_update=int(old_cfg.train.get("max-update", 0)), eval_every=0, evaluation=e.for_runs([]),
                  result_dir=exp.old_model.root,
                  final_data=(old_final.root if old_final else Path("<OLD_FINAL_DATA>")) if finals else None,
                  final_evaluation=e.for_finals([]) if finals else None,
                  references=exp.references(e.split, e.final_pairs), group="old_model")
    runs = cfg.resolved()
    reps = cfg.replicas()
    upgrades: dict[str, UpgradeOptions] = {}
    run_upgrade: dict[str, str] = {}
    for rep in reps.values():
        if rep.run.start == "upgrade":
            options = cfg.upgrade_options(rep.run)  # checked against the languages
            run_upgrade[rep.name] = options.key()
            upgrades.setdefault(run_upgrade[rep.name], options)
    plans: dict[str, RunPlan] = {}
    aliases: dict[str, str] = {}
    seen: dict[str, str] = {}
    layout: PreparedData | DataLayout | None = None
    final_layout: PreparedData | None = None
    if prepare and finished_training(old_dir, old.train_argv) is not None:  # never upgrade an unfinished one
        layout, final_layout = prepare_upgrades(cfg, root, old_data, old_dir.best, upgrades)
    prepared = layout is not None
    layout = layout or DataLayout(Path("<DATA>/bin"), cfg.langs, directions(old_cfg.data.pivot, cfg.langs[1:]))
    model_keys = ("arch", "encoder-layers", "decoder-layers", "encoder-ffn-embed-dim", "decoder-ffn-embed-dim")
    for rep in reps.values():
        run = rep.run
        flags = cfg.train_flags(run)
        if rep.seed is not None:
            flags["seed"] = rep.seed
        growth = None
        if run.start == "upgrade":
            growth = upgrades[run_upgrade[rep.name]].growth
            flags["finetune-from-model"] = str(exp.upgrade(run_upgrade[rep.name]) / CHECKPOINT)
        elif run.start == "continue":  # the old model, its fresh optimizer like the upgrades'
            flags["finetune-from-model"] = str(old_dir.best)
        elif run.size_of and runs[run.size_of].start == "upgrade":
            growth = cfg.upgrade_options(runs[run.size_of]).growth
        if growth is not None:
            flags |= grown_model_flags({k: flags[k] for k in model_keys if k in flags}, growth)
        if run.distill:
            flags |= {"criterion": "cross_vocab_distillation", "teacher-path": str(old_dir.best),
                      "teacher-spm": str(old_data.spm_model if old_data else "<OLD_DATA>/spm.model"), **run.distill}
        every = run.every or e.every
        flags |= {"save-interval-updates": every, "keep-interval-updates": -1, "no-epoch-checkpoints": True}
        flags.pop("stop-time-hours", None)  # a run's length is its updates: every run the same plan
        split = run.split or e.split
        cont = run.start == "continue"
        data = old_eval_layout if cont else layout
        final = finals and split == e.split  # a run scored on another split (the dev sweep) keeps its curve only
        final_data = (old_final if cont else final_layout) if final else None
        key = json.dumps([run.start, run_upgrade.get(rep.name), flags, split, every], sort_keys=True, default=str)
        if key in seen:
            aliases[rep.name] = seen[key]
            continue
        seen[key] = rep.name
        run_cfg = RunConfig(name=rep.name, data=old_cfg.data, train=flags, source=cfg.source)
        run_dir = exp.run(rep.name)
        upgrade_key = run_upgrade.get(rep.name)
        start_dir = (exp.upgrade_eval(upgrade_key, split if split != e.split else "") if upgrade_key else
                     exp.old_model.evals / ("best" if split == e.split else f"best-{split}") if cont else None)
        start_ckpt = exp.upgrade(upgrade_key) / CHECKPOINT if upgrade_key else old_dir.best if cont else None
        new_langs = [] if cont else cfg.new_langs
        plans[rep.name] = RunPlan(
            name=rep.name, run_dir=run_dir.root,
            train_argv=fairseq_train_argv(run_cfg, data, run_dir.checkpoints, run_dir.train_log),
            train_data=Path(getattr(data, "root", "<OLD_EVAL_DATA>" if cont else "<DATA>")),
            eval_data=Path(getattr(data, "root", "<OLD_EVAL_DATA>" if cont else "<DATA>")),
            max_update=int(flags["max-update"]), eval_every=every, evaluation=e.for_runs(new_langs, split),
            start_checkpoint=start_ckpt if e.at_start else None, start_eval_dir=start_dir if e.at_start else None,
            final_data=Path(getattr(final_data, "root", "<FINAL_DATA>")) if final else None,
            final_evaluation=e.for_finals(new_langs) if final else None,
            references=exp.references(split, e.final_pairs if final else e.max_pairs), group=run.name,
            seed=rep.seed, start=run.start)
    parse_train_argv(old.train_argv, f"{cfg.source}: old_model {cfg.old_model}: train")
    for name, run_plan in plans.items():
        parse_train_argv(run_plan.train_argv, f"{cfg.source}: run {name}: train")
    return Plan(cfg, root, old, old_cfg, upgrades, plans, run_upgrade, prepared, aliases)
