"""An experiment's result files as the report sees them: every finished replica with its role (its run,
seed, start, base, ablation, split), the old model, and the kept hypotheses and references of the finals."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.pipeline.records import PLAN, CurvePoint, RunResult, check_format, read_json, read_record
from mmt_upgrade.pipeline.rundir import ExperimentDir

OLD = "old_model"


def group_of(name: str) -> str:
    """The run a replica belongs to (`full@s2` -> `full`)."""
    return re.sub(r"@s\d+$", "", name)


@dataclass(frozen=True)
class Replica:
    """One finished model of the experiment and where its files are."""
    name: str
    group: str  # the run of the config
    seed: int | None
    start: str  # upgrade, scratch, continue, or old_model
    base: str  # the run's base ("" for none)
    ablation: str  # step, leave-one-out, variant ("" without a base)
    split: str  # what its curve is scored on
    result: RunResult
    result_dir: Path  # paths in its result are relative to this

    @property
    def final(self) -> CurvePoint:
        return self.result.final_scored

    def translations(self, direction: str) -> Path | None:
        p = self.final
        return self.result_dir / p.eval_dir / "translations" / f"{p.split}.{direction}.{direction.split('-')[1]}" \
            if p.eval_dir and p.split else None

    def references(self, direction: str) -> Path | None:
        p = self.final
        return self.result_dir / p.references / f"{direction}.{direction.split('-')[1]}" if p.references else None


@dataclass(frozen=True)
class Experiment:
    plan: Mapping[str, Any]
    old: Replica
    replicas: dict[str, Replica]  # in plan order; aliases (the same command as another run) included
    missing: list[str]

    @property
    def config(self) -> Mapping[str, Any]:
        return self.plan["config"]

    @property
    def eval_split(self) -> str:
        return self.config["evaluate"].get("split", "test")

    def groups(self) -> dict[str, list[Replica]]:
        out: dict[str, list[Replica]] = {}
        for r in self.replicas.values():
            out.setdefault(r.group, []).append(r)
        return out

    def first(self, start: str) -> str | None:
        """The first run that starts this way (`scratch`, `continue`) and is scored on the test split."""
        return next((g for g, rs in self.groups().items() if rs[0].start == start and rs[0].split == self.eval_split),
                    None)


def load_experiment(root: Path, *more: Path) -> Experiment:
    """plan.json, the old model's result and each run's, in plan order (unfinished runs left out). `more`:
    other directories of the same experiment (report archives of earlier sittings) whose runs `root` lacks;
    they must hold the same plan and the same old model, down to its final's scores in every direction."""
    exp = _load_one(Path(root))
    replicas = dict(exp.replicas)
    for other in map(Path, more):
        o = _load_one(other)
        diff = sorted(k for k in {*o.config, *exp.config} - {"source"} if o.config.get(k) != exp.config.get(k))
        if diff:  # `source`: where the config file was read, not what it says
            raise UserInputError(f"{other}: another experiment's results (plan.json's config differs from "
                                 f"{root}'s in {', '.join(diff)})")
        mine, theirs = exp.old.final.directions, o.old.final.directions
        changed = [d for d in sorted({*mine, *theirs}) if mine.get(d) != theirs.get(d)]
        if changed:
            d = changed[0]
            raise UserInputError(f"{other}: its old model scores differently from {root}'s ({d}: {theirs.get(d)} "
                                 f"against {mine.get(d)}): runs upgraded from two old models are not comparable")
        replicas.update({n: r for n, r in o.replicas.items() if n not in replicas})
    if not replicas:
        raise UserInputError(f"{root}: no run has finished yet (no runs/*/result.json)")
    runs = list(exp.config["runs"])
    order = sorted(replicas, key=lambda n: (runs.index(replicas[n].group) if replicas[n].group in runs else len(runs),
                                            replicas[n].seed or 0))
    return Experiment(exp.plan, exp.old, {n: replicas[n] for n in order},
                      [n for n in exp.missing if n not in replicas])


def _load_one(root: Path) -> Experiment:
    exp = ExperimentDir(Path(root))
    if not exp.plan.exists():
        raise UserInputError(f"{root} is not an experiment directory (no plan.json); run `mmt-upgrade experiment`")
    plan = read_json(exp.plan)
    check_format(plan, PLAN, 1, exp.plan)
    old_file = exp.old_model.result
    if not old_file.exists():
        raise UserInputError(f"{old_file} is missing: the old model has not been evaluated yet")
    cfg = plan["config"]
    split = cfg["evaluate"].get("split", "test")
    specs = cfg["runs"]

    def replica(name: str, run_dir: str, entry: Mapping[str, Any]) -> Replica | None:
        path = exp.run(run_dir).result
        if not path.exists():
            return None
        group = entry.get("group") or group_of(name)
        spec = specs.get(group, {})
        base, start = spec.get("base") or "", entry.get("start") or spec.get("start") or "upgrade"
        return Replica(name, group, entry.get("seed"), start, base,
                       spec.get("ablation") or ("step" if base else ""),
                       (entry.get("evaluation") or {}).get("split", split), read_record(RunResult, path), path.parent)

    replicas: dict[str, Replica] = {}
    missing = []
    aliases = plan.get("aliases") or {}
    for name, entry in plan["runs"].items():
        r = replica(name, name, entry)
        replicas.update({name: r} if r else {})
        missing += [] if r else [name]
    for name, target in aliases.items():
        r = replica(name, target, {**plan["runs"].get(target, {}), "group": group_of(name),
                                   "seed": plan["runs"].get(target, {}).get("seed")})
        replicas.update({name: r} if r else {})
    old = Replica(OLD, OLD, None, OLD, "", "", split, read_record(RunResult, old_file), old_file.parent)
    return Experiment(plan, old, replicas, missing)
