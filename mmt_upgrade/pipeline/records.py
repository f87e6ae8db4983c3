"""Typed records of the JSON files a run leaves (train_done.json, point.json, result.json), each with a
`format` field "<kind>/<version>"; docs/results.md describes every field and version.

Files written before these formats had a version (no `format` field) read as version 1.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence, TypeVar

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import write_json_atomic

# Kinds of the plain JSON files (version 1; fields in docs/results.md): plan.json, report.json, jobs.json.
PLAN, REPORT, JOBS = "plan", "report", "jobs"
TASK_STATE = "task state"  # target tokens counted by the task during training
TRAIN_LOG = "train.log"  # estimated from fairseq's log lines (checkpoints older than the task's count)


def check_format(data: Any, kind: str, version: int, source: object) -> int:
    """The version of a record of `kind` (1 when the file predates the `format` field); an unknown one is an
    error naming the file."""
    source = source or f"a {kind} record"
    if not isinstance(data, Mapping):
        raise UserInputError(f"{source}: not a {kind} record (a JSON object is expected)")
    fmt = data.get("format", f"{kind}/1")
    known = [f"{kind}/{v}" for v in range(1, version + 1)]
    if fmt not in known:
        raise UserInputError(f"{source}: unknown format {fmt!r}; this mmt-upgrade reads {', '.join(known)} "
                             "(see docs/results.md)")
    return int(fmt.rsplit("/", 1)[1])


def format_field(kind: str, version: int = 1) -> dict[str, str]:
    return {"format": f"{kind}/{version}"}


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise UserInputError(f"{path}: not valid JSON ({e})") from None


def max_update_of(argv: Sequence[str]) -> int:
    """The planned length of a fairseq-train command (`--max-update`; 0: no limit)."""
    argv = list(argv)
    return int(argv[argv.index("--max-update") + 1]) if "--max-update" in argv else 0


@dataclass(frozen=True)
class Scores:
    chrfpp: float
    bleu: float

    @classmethod
    def of(cls, figures: Mapping[str, Any]) -> "Scores":
        return cls(chrfpp=float(figures["chrfpp"]), bleu=float(figures["bleu"]))

    def to_json(self) -> dict[str, float]:
        return {"chrfpp": self.chrfpp, "bleu": self.bleu}


@dataclass(frozen=True)
class TrainDone:
    """train_done.json: the command that trained the run to its planned updates."""
    KIND: ClassVar[str] = "train-done"
    VERSION: ClassVar[int] = 2
    argv: list[str]
    num_updates: int  # checkpoint_last.pt's updates
    checkpoint_best_sha256: str

    @property
    def planned_updates(self) -> int:
        return max_update_of(self.argv)

    @property
    def finished(self) -> bool:
        """Reached its plan (version 1 files were also written for runs a time guard stopped early)."""
        return self.num_updates >= self.planned_updates

    def to_json(self) -> dict[str, Any]:
        return {**format_field(self.KIND, self.VERSION), "num_updates": self.num_updates,
                "planned_updates": self.planned_updates, "checkpoint_best_sha256": self.checkpoint_best_sha256,
                "argv": self.argv}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: object = "") -> "TrainDone":
        check_format(data, cls.KIND, cls.VERSION, source)
        return cls(argv=list(data["argv"]), num_updates=int(data["num_updates"]),
                   checkpoint_best_sha256=str(data["checkpoint_best_sha256"]))


@dataclass(frozen=True)
class CurvePoint:
    """One evaluated checkpoint: the compute spent to reach it and its scores per group and direction."""
    KIND: ClassVar[str] = "curve-point"
    VERSION: ClassVar[int] = 2
    updates: int
    target_tokens: int | None  # None: unknown (an old checkpoint without a train.log)
    train_wall_s: float  # the run's own training time (a fine-tuned run's starts at 0)
    groups: dict[str, Scores]  # all, old, new (new/old when the run has new languages)
    directions: dict[str, Scores]  # "src-tgt"
    target_tokens_from: str = TASK_STATE
    split: str = ""  # what was scored ("" in version 1 files)
    beam: int = 0
    sentences: int = 0  # per direction (the largest)
    baselines: dict[str, dict[str, Scores]] = field(default_factory=dict)  # copy_source, most_frequent_target
    eval_dir: str = ""  # evaluate's output (results.json, translations/), relative to the file holding the point
    references: str = ""  # the references of its sentences (finals), relative likewise

    def chrfpp(self, group: str) -> float:
        return self.groups[group].chrfpp

    @property
    def compute(self) -> dict[str, Any]:
        return {"updates": self.updates, "target_tokens": self.target_tokens, "train_wall_s": self.train_wall_s}

    @classmethod
    def scored(cls, updates: int, target_tokens: int | None, train_wall_s: float, results: Mapping[str, Any],
               target_tokens_from: str = TASK_STATE) -> "CurvePoint":
        """A point from the compute and an evaluation's results.json (chrF++ and BLEU are kept)."""
        scores = lambda m: {k: Scores.of(v) for k, v in m.items()}  # noqa: E731
        return cls(updates=updates, target_tokens=target_tokens, train_wall_s=train_wall_s,
                   groups=scores(results["groups"]), directions=scores(results["directions"]),
                   target_tokens_from=target_tokens_from, split=str(results.get("split", "")),
                   beam=int(results.get("beam", 0)),
                   sentences=max((int(d.get("n", 0)) for d in results["directions"].values()), default=0),
                   baselines={b: scores(g) for b, g in (results.get("baseline_groups") or {}).items()})

    def to_json(self) -> dict[str, Any]:
        return {**format_field(self.KIND, self.VERSION), "updates": self.updates,
                "target_tokens": self.target_tokens, "target_tokens_from": self.target_tokens_from,
                "train_wall_s": self.train_wall_s, "split": self.split, "beam": self.beam,
                "sentences": self.sentences, "eval_dir": self.eval_dir, "references": self.references,
                "groups": {g: s.to_json() for g, s in self.groups.items()},
                "directions": {d: s.to_json() for d, s in self.directions.items()},
                "baselines": {b: {g: s.to_json() for g, s in v.items()} for b, v in self.baselines.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: object = "") -> "CurvePoint":
        check_format(data, cls.KIND, cls.VERSION, source)
        tokens = data.get("target_tokens")
        scores = lambda m: {k: Scores.of(v) for k, v in m.items()}  # noqa: E731
        return cls(updates=int(data["updates"]), target_tokens=int(tokens) if tokens is not None else None,
                   train_wall_s=float(data["train_wall_s"]), groups=scores(data["groups"]),
                   directions=scores(data["directions"]),
                   target_tokens_from=str(data.get("target_tokens_from", TASK_STATE)),
                   split=str(data.get("split", "")), beam=int(data.get("beam", 0)),
                   sentences=int(data.get("sentences", 0)),
                   baselines={b: scores(g) for b, g in (data.get("baselines") or {}).items()},
                   eval_dir=str(data.get("eval_dir", "")), references=str(data.get("references", "")))


@dataclass(frozen=True)
class RunResult:
    """result.json: a run's curve, written once every planned point is evaluated (the run is then done).

    `trained_updates` is what its training reached; for the old model the one point is checkpoint_best.pt,
    which may be earlier than that. `final_point` is the final checkpoint scored on the experiment's final
    test set (the whole split, its own beam) when that differs from the curve's sample."""
    KIND: ClassVar[str] = "run-result"
    VERSION: ClassVar[int] = 3
    name: str
    argv: list[str]  # the fairseq-train command
    planned_updates: int  # its --max-update (0: no limit)
    trained_updates: int | None  # None in version 1 files
    curve: list[CurvePoint]
    final_point: CurvePoint | None = None  # None: the curve's last point is the final
    train_stats: list[dict[str, float]] = field(default_factory=list)  # fairseq's interval lines (loss, kd_loss..)

    @property
    def final(self) -> CurvePoint:
        """The last point of the curve (the curve's sample and decoding)."""
        return max(self.curve, key=lambda p: p.updates)

    @property
    def final_scored(self) -> CurvePoint:
        """The final checkpoint on the final test set (the curve's last point when there is no separate one)."""
        return self.final_point or self.final

    def to_json(self) -> dict[str, Any]:
        return {**format_field(self.KIND, self.VERSION), "name": self.name, "argv": self.argv,
                "planned_updates": self.planned_updates, "trained_updates": self.trained_updates,
                "curve": [p.to_json() for p in self.curve],
                "final_point": self.final_point.to_json() if self.final_point else None,
                "train_stats": self.train_stats}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: object = "") -> "RunResult":
        version = check_format(data, cls.KIND, cls.VERSION, source)
        argv = list(data["argv"])
        final = data.get("final_point")
        return cls(name=str(data["name"]), argv=argv,
                   planned_updates=int(data["planned_updates"]) if version > 1 else max_update_of(argv),
                   trained_updates=int(data["trained_updates"]) if version > 1 else None,
                   curve=[CurvePoint.from_json(p, f"{source}: curve") for p in data["curve"]],
                   final_point=CurvePoint.from_json(final, f"{source}: final_point") if final else None,
                   train_stats=[{k: float(v) for k, v in x.items()} for x in data.get("train_stats") or []])


Record = TypeVar("Record", TrainDone, CurvePoint, RunResult)


def read_record(cls: type[Record], path: Path) -> Record:
    """`cls.from_json` of a JSON file, errors naming the file."""
    return cls.from_json(read_json(path), path)


def write_record(path: Path, record: TrainDone | CurvePoint | RunResult) -> None:
    write_json_atomic(path, record.to_json())
