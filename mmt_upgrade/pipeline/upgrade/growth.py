"""The growth stage: more layers and wider FFNs (`core/growth.py`), the model config made to match, and the
size flags fairseq-train must be given from now on. It contributes upgrade.json's `growth` and
`fairseq_model_flags`."""
from __future__ import annotations

from typing import Any, Mapping

from mmt_upgrade.core.fairseq_cfg import cfg_fields
from mmt_upgrade.core.files import log
from mmt_upgrade.core.growth import grow
from mmt_upgrade.core.record import NewParameterRecord
from mmt_upgrade.fairseq_io.checkpoint import checkpoint_model_cfg, config_sections
from mmt_upgrade.pipeline.upgrade.options import UpgradeOptions

SIZE_KEYS = ("arch", "encoder_layers", "decoder_layers", "encoder_ffn_embed_dim", "decoder_ffn_embed_dim")


def model_flags(model_cfg: Any) -> dict[str, Any]:
    """The size flags of the model as fairseq-train takes them (`encoder-layers`, ...)."""
    fields = cfg_fields(model_cfg)
    return {k.replace("_", "-"): fields[k] for k in SIZE_KEYS if k in fields}


def _set_model_cfg(state: dict[str, Any], values: Mapping[str, Any]) -> None:
    for ns in config_sections(state, "model"):
        cfg_fields(ns).update(values)


def grow_model(state: dict[str, Any], options: UpgradeOptions, record: NewParameterRecord,
               what: str) -> dict[str, Any]:
    """The stage (in place; nothing to do without growth flags). The noise is drawn with the upgrade's seed."""
    growth = None
    g = options.growth
    if g.active():
        log(f"upgrade: growing ({g.init}): +{g.add_encoder_layers} encoder, +{g.add_decoder_layers} decoder "
            f"layers ({g.position}), FFN x{g.widen_ffn:g}")
        growth = grow(state["model"], checkpoint_model_cfg(state), g, options.seed, record, what)
        _set_model_cfg(state, growth["config"])
    # fairseq-train builds the model from its flags, not from the checkpoint: train with these
    return {"growth": growth, "fairseq_model_flags": model_flags(checkpoint_model_cfg(state))}
