"""What an experiment's runs train and are scored on: the old model's test sets cut with its own tokenizer,
the upgrades (one per distinct option set) and the upgraded data, each prepared once and reused."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import log
from mmt_upgrade.core.growth import GrowthOptions, widened_ffn_dim
from mmt_upgrade.core.paths import cache_dir
from mmt_upgrade.core.vocab import Tokenizer
from mmt_upgrade.fairseq_io.drivers import flags_to_argv
from mmt_upgrade.fairseq_io.layout import PreparedData, tokenizer_hash
from mmt_upgrade.pipeline.data.prepare import DataConfig, prepare_data
from mmt_upgrade.pipeline.experiment.spec import ExperimentConfig
from mmt_upgrade.pipeline.rundir import ExperimentDir
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


def old_eval_tokenizer(old_data: PreparedData, out: Path) -> Path:
    """A tokenizer directory for the old model's own SPM and dictionary, so its test data can be re-cut."""
    if not (out / "tokenizer.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        for name in ("spm.model", "dict.txt"):
            (out / name).write_bytes((old_data.root / name).read_bytes())
        Tokenizer.single(out / "spm.model", [old_data.manifest["pivot"], *old_data.langs]).save()
    return out


def new_data_config(cfg: ExperimentConfig, old: DataConfig, tokenizer: Path | None,
                    eval_pairs: int | None = None) -> DataConfig:
    """Old languages as the old model had them; new ones with a fraction of the pairs; the test sample
    (`eval_pairs` sentences per direction, 0: all; default: the curve's sample)."""
    cap = max(1, round(old.max_train_pairs * cfg.new_pairs_fraction))
    pairs = cfg.evaluate.max_pairs if eval_pairs is None else eval_pairs
    return DataConfig(**{**asdict(old), "langs": old.langs + cfg.new_langs, "heldout_langs": cfg.heldout_langs,
                         "max_train_pairs_per_lang": {**old.max_train_pairs_per_lang, **{x: cap for x in cfg.new_langs}},
                         "max_eval_pairs": pairs, "tokenizer": str(tokenizer or "")})


def old_eval_config(cfg: ExperimentConfig, tokenizer: Path, eval_pairs: int) -> DataConfig:
    """The old model's data with the experiment's test sample, cut with its own tokenizer."""
    return DataConfig(**{**asdict(cfg.old.data), "max_eval_pairs": eval_pairs, "heldout_langs": cfg.heldout_langs,
                         "tokenizer": str(tokenizer)})


def prepare_upgrades(cfg: ExperimentConfig, root: Path, old_data: PreparedData, old_best: Path,
                     upgrades: Mapping[str, UpgradeOptions]) -> tuple[PreparedData, PreparedData]:
    """Build each distinct upgrade once, then the new data with their (one) tokenizer: with the curve's test
    sample, and with the final test set (the same directory when they agree)."""
    old_cfg = cfg.old
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
    tokenizer = ExperimentDir(root).upgrade(first)
    data = prepare_data(new_data_config(cfg, old_cfg.data, tokenizer), cache_dir())
    final_pairs = cfg.evaluate.final_pairs
    if final_pairs == cfg.evaluate.max_pairs:
        return data, data
    return data, prepare_data(new_data_config(cfg, old_cfg.data, tokenizer, final_pairs), cache_dir())
