"""Growing a fairseq transformer: more layers and a wider FFN, with two initializations each.

- `paper` (Sun et al. 2023): a new layer is the average of its stack's existing layers; the wider FFN
  is the old weights concatenated with a noisy copy (fc1 rows, fc1 bias, fc2 columns). Neither keeps
  the model's function: `verify` reports by how much it moves.
- `preserve`: a new layer's residual branches are zero (attention output and fc2 projections), so in a
  pre-norm model it is an exact identity. In a post-norm model every layer re-normalizes the residual
  stream, so the affine part of the preceding layer's final LayerNorm moves to the end of the inserted
  block and every LayerNorm in between becomes the plain normalization: the input of a new layer is
  then already normalized and re-normalizing it changes it only through LayerNorm's epsilon.
  The wider FFN is Net2WiderNet: a copied unit and its original split their fc2 column, with optional
  zero-sum noise across the copies, so the output is unchanged.

Every new layer's parameters, and the new fc1 rows / fc2 columns of every widened layer, go into the
new-parameter record.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.fairseq_cfg import cfg_fields
from mmt_upgrade.core.options import OptionGroup, option
from mmt_upgrade.core.record import NewParameterRecord

GROW_INITS = ("paper", "preserve")
GROW_POSITIONS = ("top", "interleave")
SIDES = ("encoder", "decoder")
LAYER_KEY = re.compile(r"^(encoder|decoder)\.layers\.(\d+)\.(.+)$")
# Residual-branch outputs: zero in a preserving new layer.
BRANCH_OUTPUTS = ("self_attn.out_proj.", "encoder_attn.out_proj.", "fc2.")
INNER_NORMS = ("self_attn_layer_norm", "encoder_attn_layer_norm")
FINAL_NORM = "final_layer_norm"


@dataclass
class GrowthOptions(OptionGroup):
    """`mmt-upgrade upgrade`'s growth flags. The noise's seed is the upgrade's `--seed` (one seed per upgrade)."""
    add_encoder_layers: int = option(0, "grow the encoder by N layers", metavar="N")
    add_decoder_layers: int = option(0, "grow the decoder by N layers", metavar="N")
    widen_ffn: float = option(1.0, "multiply every FFN's width (encoder and decoder) by FACTOR >= 1", metavar="FACTOR")
    init: str = option("paper", "paper: new layers = average of the stack, FFN = old + noisy copy (changes the "
                                "function); preserve: identity layers and Net2WiderNet (the old function at step 0)",
                       choices=GROW_INITS, flag="grow-init")
    position: str = option("top", "new layers on top of the stack, or spread between old ones",
                           choices=GROW_POSITIONS, flag="grow-position")
    noise: float = option(0.01, "std of the widening noise relative to each tensor's std (preserve: zero-sum "
                                "across copies)", flag="grow-noise")

    def active(self) -> bool:
        return bool(self.add_encoder_layers or self.add_decoder_layers or self.widen_ffn != 1.0)

    def added_layers(self, side: str) -> int:
        return self.add_encoder_layers if side == "encoder" else self.add_decoder_layers

    def check(self) -> None:
        if self.widen_ffn < 1:
            raise UserInputError(f"--widen-ffn must be at least 1 (got {self.widen_ffn:g}); shrinking is not growth")
        if self.add_encoder_layers < 0 or self.add_decoder_layers < 0:
            raise UserInputError("--add-encoder-layers / --add-decoder-layers must not be negative")
        if self.init not in GROW_INITS:
            raise UserInputError(f"--grow-init: unknown {self.init!r}; choose from {', '.join(GROW_INITS)}")
        if self.position not in GROW_POSITIONS:
            raise UserInputError(f"--grow-position: unknown {self.position!r}; choose from {', '.join(GROW_POSITIONS)}")
        if self.noise < 0:
            raise UserInputError(f"--grow-noise must not be negative (got {self.noise:g})")


def _cfg_get(model_cfg: Any, key: str) -> Any:
    return cfg_fields(model_cfg).get(key)


def stack_layers(model_state: Mapping[str, torch.Tensor], side: str) -> list[dict[str, torch.Tensor]]:
    """The layers of one stack, in order, each as {suffix: tensor}."""
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in model_state.items():
        m = LAYER_KEY.match(name)
        if m and m.group(1) == side:
            layers.setdefault(int(m.group(2)), {})[m.group(3)] = tensor
    return [layers[i] for i in sorted(layers)]


def check_architecture(model_state: Mapping[str, torch.Tensor], model_cfg: Any, what: str) -> None:
    """A fairseq transformer encoder-decoder whose weights match its config."""
    arch = _cfg_get(model_cfg, "arch") or _cfg_get(model_cfg, "_name")
    for side in SIDES:
        layers = stack_layers(model_state, side)
        if not layers or any("fc1.weight" not in layer for layer in layers):
            raise UserInputError(f"{what}: architecture {arch!r} is not a fairseq transformer encoder-decoder "
                                 f"(no {side}.layers.N.fc1 weights); only those can grow")
        n_cfg = _cfg_get(model_cfg, f"{side}_layers")
        if n_cfg != len(layers):
            raise UserInputError(f"{what}: the weights have {len(layers)} {side} layers but the config says "
                                 f"{side}_layers={n_cfg}")
        ffn = _cfg_get(model_cfg, f"{side}_ffn_embed_dim")
        for i, layer in enumerate(layers):
            if layer["fc1.weight"].shape[0] != ffn or layer["fc2.weight"].shape[1] != ffn:
                raise UserInputError(f"{what}: {side}.layers.{i}.fc1 has {layer['fc1.weight'].shape[0]} units but "
                                     f"the config says {side}_ffn_embed_dim={ffn}")


def layer_order(n_old: int, n_new: int, position: str) -> list[int | None]:
    """The grown stack: old layer indices in order, `None` where a new layer goes.

    `top` appends; `interleave` spreads the new layers evenly between old ones.
    """
    if position == "top":
        return list(range(n_old)) + [None] * n_new
    after = [math.ceil((k + 1) * n_old / (n_new + 1)) - 1 for k in range(n_new)]
    order: list[int | None] = []
    for i in range(n_old):
        order.append(i)
        order += [None] * after.count(i)
    return order


def _plain_norm(layer: dict[str, torch.Tensor], name: str) -> None:
    layer[f"{name}.weight"] = torch.ones_like(layer[f"{name}.weight"])
    layer[f"{name}.bias"] = torch.zeros_like(layer[f"{name}.bias"])


def grow_depth(model_state: dict[str, torch.Tensor], side: str, n_new: int, init: str, position: str,
               normalize_before: bool, record: NewParameterRecord) -> dict:
    """Insert `n_new` layers into one stack (in place); returns what was done."""
    layers = stack_layers(model_state, side)
    average = {k: torch.stack([layer[k].float() for layer in layers]).mean(0).to(layers[0][k].dtype)
               for k in layers[0]}
    order = layer_order(len(layers), n_new, position)
    grown: list[dict[str, torch.Tensor]] = []
    for j, source in enumerate(order):
        if source is not None:
            grown.append(dict(layers[source]))
            continue
        layer = {k: v.clone() for k, v in average.items()}
        if init == "preserve":
            for k in layer:
                if k.startswith(BRANCH_OUTPUTS):
                    layer[k].zero_()
            if not normalize_before:
                for name in INNER_NORMS:
                    if f"{name}.weight" in layer:
                        _plain_norm(layer, name)
                # the affine part of the block's predecessor's final norm moves to the block's end
                prev = grown[j - 1]
                for part in ("weight", "bias"):
                    layer[f"{FINAL_NORM}.{part}"] = prev[f"{FINAL_NORM}.{part}"]
                _plain_norm(prev, FINAL_NORM)
        grown.append(layer)
    for name in [k for k in model_state if (m := LAYER_KEY.match(k)) and m.group(1) == side]:
        del model_state[name]
    for j, layer in enumerate(grown):
        for k, v in layer.items():
            model_state[f"{side}.layers.{j}.{k}"] = v
            if order[j] is None:
                record.add_whole(f"{side}.layers.{j}.{k}")
    return {"layers_before": len(layers), "layers_after": len(grown),
            "new_layer_indices": [j for j, s in enumerate(order) if s is None]}


def widened_ffn_dim(d_ff: int, factor: float) -> int:
    """The FFN width after `--widen-ffn factor` (what the grown checkpoint and fairseq's flags say)."""
    return round(d_ff * factor)


def widen_ffn(model_state: dict[str, torch.Tensor], side: str, factor: float, init: str, noise: float,
              generator: torch.Generator, record: NewParameterRecord) -> dict:
    """Widen every FFN of one stack by `factor` (in place); new unit k copies old unit k mod d_ff."""
    layers = stack_layers(model_state, side)
    d_ff = layers[0]["fc1.weight"].shape[0]
    n_add = widened_ffn_dim(d_ff, factor) - d_ff
    if n_add == 0:
        return {"ffn_before": d_ff, "ffn_after": d_ff}
    src = torch.arange(n_add) % d_ff
    unit = torch.cat([torch.arange(d_ff), src])  # the old unit every (old or new) column computes
    copies = torch.bincount(unit, minlength=d_ff).to(torch.float32)
    for i, layer in enumerate(layers):
        w1, b1, w2 = layer["fc1.weight"], layer["fc1.bias"], layer["fc2.weight"]
        new_w1 = w1[src].clone()
        if init == "paper":
            new_w1 += noise * w1.float().std() * torch.randn(new_w1.shape, generator=generator)
            new_w2 = w2[:, src] + noise * w2.float().std() * torch.randn(w2.shape[0], n_add, generator=generator)
            w2_out = torch.cat([w2, new_w2], dim=1)
        else:
            # Net2WiderNet: the copies of a unit share its outgoing weight; noise sums to zero per unit
            w2_out = w2[:, unit] / copies[unit]
            if noise:
                eps = noise * w2.float().std() * torch.randn(w2_out.shape, generator=generator)
                eps[:, copies[unit] == 1] = 0  # a unit without copies keeps its column exactly
                group_sum = torch.zeros(w2.shape[0], d_ff).index_add_(1, unit, eps)
                w2_out = w2_out + eps - group_sum[:, unit] / copies[unit]
        prefix = f"{side}.layers.{i}"
        model_state[f"{prefix}.fc1.weight"] = torch.cat([w1, new_w1]).to(w1.dtype)
        model_state[f"{prefix}.fc1.bias"] = torch.cat([b1, b1[src]])
        model_state[f"{prefix}.fc2.weight"] = w2_out.to(w2.dtype)
        if f"{prefix}.fc1.weight" not in record.whole:
            record.add_rows(f"{prefix}.fc1.weight", d_ff, d_ff + n_add)
            record.add_rows(f"{prefix}.fc1.bias", d_ff, d_ff + n_add)
            record.add_slice(f"{prefix}.fc2.weight", 1, d_ff, d_ff + n_add)
    return {"ffn_before": d_ff, "ffn_after": d_ff + n_add}


def grow(model_state: dict[str, torch.Tensor], model_cfg: Any, options: GrowthOptions, seed: int,
         record: NewParameterRecord, what: str) -> dict:
    """Deeper first, then wider (new layers are widened too); returns a report and the new config values.
    `seed` draws the widening noise."""
    check_architecture(model_state, model_cfg, what)
    generator = torch.Generator().manual_seed(seed)
    report: dict[str, Any] = {"init": options.init, "position": options.position, "noise": options.noise,
                              "widen_ffn": options.widen_ffn, "config": {}}
    for side in SIDES:
        n_new = options.added_layers(side)
        side_report: dict[str, Any] = {}
        if n_new:
            side_report |= grow_depth(model_state, side, n_new, options.init, options.position,
                                      bool(_cfg_get(model_cfg, f"{side}_normalize_before")), record)
        if options.widen_ffn != 1.0:
            side_report |= widen_ffn(model_state, side, options.widen_ffn, options.init, options.noise,
                                     generator, record)
        layers = stack_layers(model_state, side)
        report["config"][f"{side}_layers"] = len(layers)
        report["config"][f"{side}_ffn_embed_dim"] = layers[0]["fc1.weight"].shape[0]
        report[side] = side_report
    return report
