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

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import log, sha256_text
from mmt_upgrade.core.growth import GrowthOptions, widened_ffn_dim
from mmt_upgrade.core.languages import directions
from mmt_upgrade.core.paths import cache_dir, runs_dir
from mmt_upgrade.core.vocab import Tokenizer
from mmt_upgrade.fairseq_io.drivers import flags_to_argv
from mmt_upgrade.fairseq_io.layout import PreparedData, tokenizer_hash
from mmt_upgrade.pipeline.data.prepare import DataConfig, bible_texts, prepare_data
from mmt_upgrade.pipeline.experiment.spec import RESULT, UPGRADE_KEYS, ExperimentConfig
from mmt_upgrade.pipeline.runconfig import RunConfig, load_config
from mmt_upgrade.pipeline.train import fairseq_train_argv
from mmt_upgrade.pipeline.upgrade import (
    UpgradeInputs,
    UpgradeOptions,
    upgrade,
)


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



