"""The `runs:` of an experiment config: one `RunSpec` per row as written, resolved through `base:` (the
ablation ladder), and expanded into replicas over seeds.

A run's sections merge over its base's; a `null` value takes an inherited key back out (`upgrade` and
`distill` keys return to their defaults, a `train` flag is not passed: fairseq's default), and
`distill: false` removes the base's distillation altogether, so a leave-one-out run can be written as
`base: full` minus one technique. `seeds` and `ablation` are not inherited: they describe the row itself.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, NamedTuple, Sequence

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.pipeline.data.bible import SPLITS

# upgrade: fine-tune an upgraded old model; scratch: a new model on every language; continue: the old model
# trained further on its own languages, data and vocabulary (the forgetting control).
STARTS = ("upgrade", "scratch", "continue")
RECIPES = ("experiment", "old")  # whose fairseq-train flags: the experiment's `train:` over the old model's, or
# the old model's alone (scratch as the old model was trained: its warm-up, lr, batch and updates)
ABLATIONS = ("step", "leave-one-out", "variant")  # how the report compares a run with its base
RUN_KEYS = ("start", "base", "upgrade", "train", "distill", "size_of", "seeds", "recipe", "split", "every",
            "ablation")


@dataclass
class RunSpec:
    """One row of the matrix; `base` inherits another run's settings (the ablation ladder)."""
    name: str
    start: str = ""  # one of STARTS ("": its base's, else upgrade)
    upgrade: dict[str, Any] = field(default_factory=dict)  # mmt-upgrade upgrade options (flag names)
    train: dict[str, Any] = field(default_factory=dict)  # fairseq-train flags for this run
    distill: dict[str, Any] | None = field(default_factory=dict)  # cross_vocab_distillation flags; {}: none;
    # None: `distill: false`, none even where the base distils
    size_of: str = ""  # scratch: take this run's (grown) architecture
    base: str = ""
    seeds: list[int] = field(default_factory=list)  # replicas, one per fairseq --seed ([]: the experiment's)
    recipe: str = ""  # one of RECIPES ("": its base's, else experiment)
    split: str = ""  # the split its curve is scored on ("": the experiment's; valid: a dev sweep)
    every: int = 0  # updates between evaluated checkpoints (0: its base's, else the experiment's)
    ablation: str = ""  # one of ABLATIONS, for a run with a base ("": step)


class Replica(NamedTuple):
    """One trained model: a run at one seed (`seed` None: the seed of its flags)."""
    name: str  # the run directory: `<run>` or `<run>@s<seed>`
    run: RunSpec
    seed: int | None


def section(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UserInputError(f"{where}: expected a section of keys, got {value!r}")
    return dict(value)


def unknown_keys(keys: Sequence[Any], known: Sequence[str], where: str) -> None:
    bad = [k for k in keys if k not in known]
    if bad:
        raise UserInputError(f"{where}: unknown key {bad[0]!r} (known: {', '.join(known)})")


def parse_seeds(value: Any, where: str) -> list[int]:
    """`seeds: [1, 2]`: distinct positive integers."""
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in values):
        raise UserInputError(f"{where}: seeds must be a list of positive integers, got {value!r}")
    if len(set(values)) != len(values):
        raise UserInputError(f"{where}: seeds repeat a value: {value!r}")
    return list(values)


def parse_run(name: Any, spec: Any, where: str) -> RunSpec:
    if not re.fullmatch(r"[+\w.-]+", str(name)):
        raise UserInputError(f"{where}: run name {name!r} may hold only letters, digits and + _ . -")
    where = f"{where}: run {name}"
    spec = section(spec, where)
    unknown_keys(list(spec), RUN_KEYS, where)
    sections = {k: section(spec.get(k), f"{where}: {k}") for k in ("upgrade", "train")}
    distill = None if "distill" in spec and spec["distill"] in (None, False) else section(spec.get("distill"),
                                                                                          f"{where}: distill")
    every = spec.get("every", 0)
    if not isinstance(every, int) or isinstance(every, bool) or every < 0:
        raise UserInputError(f"{where}: every must be a positive number of updates, got {every!r}")
    text = {k: str(spec.get(k) or "") for k in ("start", "size_of", "base", "recipe", "split", "ablation")}
    for key, allowed in (("start", STARTS), ("recipe", RECIPES), ("split", SPLITS), ("ablation", ABLATIONS)):
        if text[key] and text[key] not in allowed:
            raise UserInputError(f"{where}: {key} must be one of {', '.join(allowed)} (got {text[key]!r})")
    if text["ablation"] and not text["base"]:
        raise UserInputError(f"{where}: ablation {text['ablation']} compares the run with its base; set `base`")
    return RunSpec(name=str(name), distill=distill, seeds=parse_seeds(spec.get("seeds"), f"{where}: seeds"),
                   every=every, **sections, **text)


def _set(values: Mapping[str, Any]) -> dict[str, Any]:
    """Keys given a value (a `null` takes an inherited one back out)."""
    return {k: v for k, v in values.items() if v is not None}


def resolve_runs(runs: Mapping[str, RunSpec], source: str) -> dict[str, RunSpec]:
    """Each run with its `base` chain merged in (the ladder: each step adds to the previous)."""
    out: dict[str, RunSpec] = {}

    def resolve(name: str, seen: tuple[str, ...]) -> RunSpec:
        if name in out:
            return out[name]
        if name in seen:
            raise UserInputError(f"{source}: runs {' -> '.join(seen + (name,))} form a cycle of `base`")
        if name not in runs:
            raise UserInputError(f"{source}: run {seen[-1]} has base {name!r}, which is not a run")
        spec = runs[name]
        parent = resolve(spec.base, seen + (name,)) if spec.base else RunSpec(name="")
        distill = {} if spec.distill is None else _set({**(parent.distill or {}), **spec.distill})
        out[name] = replace(spec, start=spec.start or parent.start or "upgrade",
                            upgrade=_set({**parent.upgrade, **spec.upgrade}), train={**parent.train, **spec.train},
                            distill=distill, size_of=spec.size_of or parent.size_of,
                            recipe=spec.recipe or parent.recipe or "experiment", split=spec.split or parent.split,
                            every=spec.every or parent.every, ablation=spec.ablation or ("step" if spec.base else ""))
        return out[name]

    for name in runs:
        resolve(name, ())
    return {name: out[name] for name in runs}


def replicas(runs: Mapping[str, RunSpec], default_seeds: Sequence[int] = ()) -> dict[str, Replica]:
    """Every trained model: a run with seeds (its own, else the experiment's) is `<run>@s<seed>` per seed."""
    out: dict[str, Replica] = {}
    for run in runs.values():
        seeds = run.seeds or list(default_seeds)
        for seed in seeds or [None]:
            name = f"{run.name}@s{seed}" if seed is not None else run.name
            out[name] = Replica(name, run, seed)
    return out


def group_of(name: str) -> str:
    """The run a replica belongs to (`full@s2` -> `full`)."""
    return re.sub(r"@s\d+$", "", name)
