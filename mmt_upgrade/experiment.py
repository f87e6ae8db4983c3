"""`mmt-upgrade experiment`: a matrix of upgrade runs (scratch, naive, the ablation ladder), planned from
one YAML file, run resumably (see `cluster.py` for where), and evaluated at fixed update intervals.

Layout of an experiment directory:
    plan.json                      the resolved plan (every run's upgrade options and fairseq command)
    upgrades/<key>/                one upgraded model per distinct set of upgrade options (shared by runs)
    runs/<run>/                    checkpoints/, train.log, evals/<update>/results.json, result.json (= done)
    old_model/result.json          the old model on the same test sentences, and its own training cost
    jobs/                          submitit's pickles and job logs; jobs.json maps runs to job ids
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, NamedTuple, Sequence

from .checkpoint import checkpoint_num_updates, read_checkpoint
from .config import RunConfig, load_config, read_config_tree
from .data.prepare import DataConfig, PreparedData, bible_texts, prepare_data, tokenizer_hash
from .errors import UserInputError
from .growth import GrowthOptions, widened_ffn_dim
from .languages import directions, parse_lang_list
from .paths import cache_dir, runs_dir
from .train import fairseq_train_argv, flags_to_argv, run_training
from .upgrade import UpgradeInputs, UpgradeOptions, parse_langtok_init, upgrade
from .utils import log, sha256_text, write_json_atomic
from .vocab import Tokenizer

if TYPE_CHECKING:
    from .cluster import ClusterOptions

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


def upgrade_key(options: UpgradeOptions) -> str:
    return sha256_text(json.dumps(asdict(options), sort_keys=True))[:10]


def upgrade_argv(options: UpgradeOptions) -> list[str]:
    """The `mmt-upgrade upgrade` flags that reproduce `options` (for the printed plan)."""
    flags: dict[str, Any] = {}
    for key, target in UPGRADE_KEYS.items():
        obj, name = (options.growth, target[7:]) if target.startswith("growth.") else (options, target)
        value = getattr(obj, name)
        if key == "langtok-init":
            value = ",".join(f"{k}={v}" for k, v in value.items()) or None
        flags[key] = value
    return flags_to_argv(flags)


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
    eval_every: int  # 0: evaluate checkpoint_best.pt only (the old model)
    split: str
    beam: int
    max_tokens: int
    new_langs: list[str]
    result_dir: Path | None = None  # evals/ and result.json (default: run_dir)
    start_checkpoint: Path | None = None  # evaluated as update 0
    start_eval_dir: Path | None = None

    @property
    def results(self) -> Path:
        return self.result_dir or self.run_dir

    def finished(self) -> dict[str, Any] | None:
        """The run's result when it finished with exactly this command, else None."""
        result_file = self.results / RESULT
        if not result_file.exists():
            return None
        result = json.loads(result_file.read_text())
        return result if result.get("argv") == self.train_argv else None


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
        return {"config": plain(asdict(self.cfg)), "old_model": plain(asdict(self.old)),
                "upgrades": {k: upgrade_argv(o) for k, o in self.upgrades.items()},
                "run_upgrade": self.run_upgrade, "runs": {k: plain(asdict(r)) for k, r in self.runs.items()}}

    def describe(self) -> str:
        lines = [f"experiment {self.cfg.name} ({self.cfg.source}) in {self.root}",
                 f"old model: {self.old.run_dir} ({'trained, reused' if (self.old.run_dir / 'train_done.json').exists() else 'to train'})",
                 "  fairseq-train " + " ".join(self.old.train_argv)]
        for key, options in self.upgrades.items():
            lines.append(f"upgrade {key}: mmt-upgrade upgrade {self.old.run_dir / 'checkpoints' / 'checkpoint_best.pt'} "
                         f"--out {self.root / 'upgrades' / key} --new-langs {','.join(self.cfg.new_langs)} "
                         + " ".join(upgrade_argv(options)))
        for i, (name, run) in enumerate(self.runs.items(), 1):
            done = (run.results / RESULT).exists()  # a dry run's commands name placeholders: no argv match
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
    return DataConfig(**{**asdict(old), "langs": old.langs + cfg.new_langs,
                         "max_train_pairs_per_lang": {**old.max_train_pairs_per_lang, **{x: cap for x in cfg.new_langs}},
                         "max_eval_pairs": cfg.evaluate.max_pairs, "tokenizer": str(tokenizer or "")})


def build_plan(cfg: ExperimentConfig, root: Path, prepare: bool, only: Sequence[str] = ()) -> Plan:
    """Resolve every run's command. With `prepare`, data is built (reused when present), and the upgrades
    too once the old model is trained; until then commands name placeholders (`prepared` is False)."""
    root = Path(root).absolute()
    old_cfg = load_config(cfg.old_model)
    clash = [x for x in cfg.new_langs if x in old_cfg.data.langs or x == old_cfg.data.pivot]
    if clash:
        raise UserInputError(f"{cfg.source}: new_langs {','.join(clash)} are already in the old model "
                             f"({cfg.old_model}: {','.join([old_cfg.data.pivot, *old_cfg.data.langs])})")
    old_data = prepare_data(old_cfg.data, cache_dir()) if prepare else None
    old_layout = old_data or DataLayout(Path("<OLD_DATA>/bin"), [old_cfg.data.pivot, *old_cfg.data.langs],
                                        directions(old_cfg.data.pivot, old_cfg.data.langs))
    old_dir = runs_dir() / old_cfg.name
    old_best = old_dir / "checkpoints" / "checkpoint_best.pt"
    old_eval_data = None
    if prepare:
        tok = old_eval_tokenizer(old_data, root / "old_model" / "tokenizer")
        old_eval_cfg = DataConfig(**{**asdict(old_cfg.data), "max_eval_pairs": cfg.evaluate.max_pairs,
                                     "tokenizer": str(tok)})
        old_eval_data = prepare_data(old_eval_cfg, cache_dir()).root
    e = cfg.evaluate
    old = RunPlan(name="old_model", run_dir=old_dir,
                  train_argv=fairseq_train_argv(old_cfg, old_layout, old_dir / "checkpoints", old_dir / "train.log"),
                  train_data=old_data.root if old_data else Path("<OLD_DATA>"),
                  eval_data=old_eval_data or Path("<OLD_EVAL_DATA>"), max_update=int(old_cfg.train.get("max-update", 0)),
                  eval_every=0, split=e.split, beam=e.beam, max_tokens=e.max_tokens, new_langs=[],
                  result_dir=root / "old_model")
    runs = cfg.resolved()
    unknown = [x for x in only if x not in runs]
    if unknown:
        raise UserInputError(f"--runs: {', '.join(unknown)} not in {cfg.source} (runs: {', '.join(runs)})")
    selected = [name for name in runs if not only or name in only]
    upgrades: dict[str, UpgradeOptions] = {}
    run_upgrade: dict[str, str] = {}
    for run in (runs[name] for name in selected):
        if run.start == "upgrade":
            options = cfg.upgrade_options(run)
            try:
                options.check([old_cfg.data.pivot, *old_cfg.data.langs], cfg.new_langs)
            except UserInputError as e:
                raise UserInputError(f"{cfg.source}: run {run.name}: {e}") from None
            run_upgrade[run.name] = upgrade_key(options)
            upgrades.setdefault(run_upgrade[run.name], options)
    plans: dict[str, RunPlan] = {}
    layout: PreparedData | DataLayout | None = None
    if prepare and old_best.exists():
        layout = prepare_upgrades(cfg, root, old_cfg, old_data, old_best, upgrades)
    prepared = layout is not None
    langs = [old_cfg.data.pivot, *old_cfg.data.langs, *cfg.new_langs]
    layout = layout or DataLayout(Path("<DATA>/bin"), langs, directions(old_cfg.data.pivot, langs[1:]))
    model_keys = ("arch", "encoder-layers", "decoder-layers", "encoder-ffn-embed-dim", "decoder-ffn-embed-dim")
    for run in (runs[name] for name in selected):
        flags = {**old_cfg.train, **cfg.train, **run.train}
        growth = None
        if run.start == "upgrade":
            growth = upgrades[run_upgrade[run.name]].growth
            flags["finetune-from-model"] = str(root / "upgrades" / run_upgrade[run.name] / "checkpoint.pt")
        elif run.size_of and runs[run.size_of].start == "upgrade":
            growth = cfg.upgrade_options(runs[run.size_of]).growth
        if growth is not None:
            flags |= grown_model_flags({k: flags[k] for k in model_keys if k in flags}, growth)
        if run.distill:
            flags |= {"criterion": "cross_vocab_distillation", "teacher-path": str(old_best),
                      "teacher-spm": str(old_data.spm_model if old_data else "<OLD_DATA>/spm.model"), **run.distill}
        flags |= {"save-interval-updates": e.every, "keep-interval-updates": -1, "no-epoch-checkpoints": True}
        flags.pop("stop-time-hours", None)  # a run's length is its updates: every run the same plan
        run_cfg = RunConfig(name=run.name, data=old_cfg.data, train=flags, source=cfg.source)
        run_dir = root / "runs" / run.name
        key = run_upgrade.get(run.name)
        plans[run.name] = RunPlan(
            name=run.name, run_dir=run_dir,
            train_argv=fairseq_train_argv(run_cfg, layout, run_dir / "checkpoints", run_dir / "train.log"),
            train_data=Path(getattr(layout, "root", "<DATA>")), eval_data=Path(getattr(layout, "root", "<DATA>")),
            max_update=int(flags["max-update"]), eval_every=e.every, split=e.split, beam=e.beam,
            max_tokens=e.max_tokens, new_langs=list(cfg.new_langs),
            start_checkpoint=root / "upgrades" / key / "checkpoint.pt" if key and e.at_start else None,
            start_eval_dir=root / "upgrades" / f"{key}.eval" if key and e.at_start else None)
    return Plan(cfg, root, old, old_cfg, upgrades, plans, run_upgrade, prepared)


def prepare_upgrades(cfg: ExperimentConfig, root: Path, old_cfg: RunConfig, old_data: PreparedData,
                     old_best: Path, upgrades: Mapping[str, UpgradeOptions]) -> PreparedData:
    """Build each distinct upgrade once, then the new data with their (one) tokenizer."""
    text_cfg = new_data_config(cfg, old_cfg.data, None)
    texts = None
    dev = old_data.texts("valid")
    tokenizers: dict[str, str] = {}
    for key, options in upgrades.items():
        out = root / "upgrades" / key
        if not (out / "checkpoint.pt").exists():
            if texts is None:
                texts = bible_texts(text_cfg, cache_dir(), "train")
            log(f"experiment: upgrade {key}: {' '.join(upgrade_argv(options))}")
            inputs = UpgradeInputs(old_best, old_data.spm_model, old_data.dictionary, list(cfg.new_langs),
                                   {x: texts[x] for x in text_cfg.langs + [text_cfg.pivot]},
                                   {x: f"bible train split ({text_cfg.key()})" for x in text_cfg.langs + [text_cfg.pivot]},
                                   dev)
            upgrade(inputs, out, options)
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
    return prepare_data(new_data_config(cfg, old_cfg.data, root / "upgrades" / first), cache_dir())


def training_clock(state: Mapping[str, Any]) -> float:
    """fairseq's training wall time (`previous_training_time`; evaluation and start-up excluded)."""
    return float((state.get("extra_state") or {}).get("previous_training_time", 0.0))


def compute_of(checkpoint: Path, clock_start: float = 0.0) -> dict[str, Any]:
    """Training compute a checkpoint carries: updates, target tokens (task state) and training wall time.

    `clock_start`: the clock of the checkpoint the run was fine-tuned from, which fairseq carries over.
    """
    state = read_checkpoint(checkpoint)
    tokens = (state.get("task_state") or {}).get("target_tokens")
    return {"updates": int(state["optimizer_history"][-1]["num_updates"]),
            "target_tokens": int(tokens) if tokens is not None else None,
            "train_wall_s": round(training_clock(state) - clock_start, 1)}


def finetune_clock(argv: Sequence[str]) -> float:
    """The training clock of the run's `--finetune-from-model` checkpoint (0 without one)."""
    if "--finetune-from-model" not in argv:
        return 0.0
    return training_clock(read_checkpoint(Path(argv[argv.index("--finetune-from-model") + 1]), mmap=True))


INNER = re.compile(r"wpb=([\d.]+).*?num_updates=(\d+)")


def tokens_from_log(log_text: str, upto: int) -> int | None:
    """Target tokens estimated from fairseq's interval lines (words per batch x updates in the interval).

    For checkpoints written before the task counted tokens (the cached old model of earlier versions).
    """
    points = sorted({int(u): float(w) for w, u in INNER.findall(log_text)}.items())
    if not points:
        return None
    total, prev = 0.0, 0
    for u, wpb in points:
        if u > upto:
            break
        total += wpb * (u - prev)
        prev = u
    return int(total)


def interval_checkpoint(save_dir: Path, updates: int) -> Path | None:
    found = sorted(save_dir.glob(f"checkpoint_*_{updates}.pt"))
    if found:
        return found[-1]
    last = save_dir / "checkpoint_last.pt"
    if checkpoint_num_updates(last) == updates:
        return last
    return None


def summarize(results: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of one evaluation a curve keeps: chrF++ and BLEU per direction and group."""
    pick = lambda s: {"chrfpp": s["chrfpp"], "bleu": s["bleu"]}  # noqa: E731
    return {"groups": {g: pick(s) for g, s in results["groups"].items()},
            "directions": {d: pick(s) for d, s in results["directions"].items()}}


def execute_run(plan: RunPlan) -> dict[str, Any]:
    """Train (resuming), evaluate every interval checkpoint, write `result.json`; skip when already done."""
    from .evaluate import evaluate

    done = plan.finished()
    if done is not None:
        log(f"experiment: {plan.name} is finished; skipping")
        return done
    train_data, eval_data = PreparedData.open(plan.train_data), PreparedData.open(plan.eval_data)
    save_dir = plan.run_dir / "checkpoints"
    best = run_training(plan.train_argv, train_data, plan.run_dir)
    curve = []
    clock_start = finetune_clock(plan.train_argv)
    if plan.start_checkpoint is not None:
        log(f"experiment: {plan.name}: evaluating the upgraded start (update 0)")
        res = evaluate(plan.start_checkpoint, eval_data, plan.start_eval_dir, plan.split, plan.beam,
                       plan.max_tokens, plan.new_langs)
        curve.append({"updates": 0, "target_tokens": 0, "train_wall_s": 0.0, **summarize(res)})
    points = range(plan.eval_every, plan.max_update + 1, plan.eval_every) if plan.eval_every else [None]
    for updates in points:
        out = plan.results / "evals" / (f"{updates:07d}" if updates is not None else "best")
        if (out / "point.json").exists():
            curve.append(json.loads((out / "point.json").read_text()))
            continue
        checkpoint = interval_checkpoint(save_dir, updates) if updates is not None else best
        if checkpoint is None:
            raise RuntimeError(f"{plan.name}: no checkpoint at update {updates} in {save_dir}")
        compute = compute_of(checkpoint, clock_start)
        if compute["target_tokens"] is None and (plan.run_dir / "train.log").exists():
            compute |= {"target_tokens": tokens_from_log((plan.run_dir / "train.log").read_text(), compute["updates"]),
                        "target_tokens_from": "train.log"}
        log(f"experiment: {plan.name}: evaluating update {compute['updates']}")
        res = evaluate(checkpoint, eval_data, out, plan.split, plan.beam, plan.max_tokens, plan.new_langs)
        point = {**compute, **summarize(res)}
        write_json_atomic(out / "point.json", point)
        curve.append(point)
        if checkpoint.name not in ("checkpoint_last.pt", "checkpoint_best.pt"):
            checkpoint.unlink()  # evaluated; the run resumes from checkpoint_last.pt
    result = {"name": plan.name, "argv": plan.train_argv, "curve": curve}
    write_json_atomic(plan.results / RESULT, result)
    return result



@contextlib.contextmanager
def experiment_lock(root: Path) -> Iterator[None]:
    """One experiment process per directory: a second one would train the same runs twice."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserInputError(f"{root} is in use by another `mmt-upgrade experiment`; wait for it or stop it") from None
        yield


def run_experiment(cfg: ExperimentConfig, root: Path, cluster: "ClusterOptions", dry_run: bool = False,
                   only: Sequence[str] = ()) -> Path:
    """Old model (trained once, reused) -> upgrades and data -> runs -> report; returns the report."""
    from .cluster import Runner
    from .report import write_report

    root = Path(root).absolute()
    if dry_run:
        print(build_plan(cfg, root, prepare=False, only=only).describe())
        return root
    with experiment_lock(root):
        runner = Runner(cluster, root / "jobs")
        plan = build_plan(cfg, root, prepare=True, only=only)
        log(f"experiment {cfg.name}: the old model ({plan.old.run_dir}), trained once and reused")
        runner.run([plan.old])
        if not plan.prepared:  # the upgrades needed the trained old model
            plan = build_plan(cfg, root, prepare=True, only=only)
        write_json_atomic(root / "plan.json", plan.record())
        log(f"experiment {cfg.name}: {len(plan.runs)} runs")
        runner.run(list(plan.runs.values()))
        return write_report(root)
