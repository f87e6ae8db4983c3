"""Learning-rate multipliers per parameter and per row/column, from the new-parameter record and rules.

Under Adam a gradient multiplier is normalized away (m and sqrt(v) scale alike), so the multipliers act
on the UPDATE: whole tensors go into optimizer groups whose lr is `scale * lr`; a tensor with both old
and new rows (an extended embedding) or columns (a widened fc2) stays at the base lr and its update
is rescaled after the step, `p = p_prev + s * (p - p_prev)`, with `s` broadcast over rows or columns.
Both are exact learning-rate multipliers, because Adam's moments do not depend on the lr; its
decoupled weight decay (proportional to lr) is scaled alike.

Rules (`encoder.layers.*=0.5,decoder.embed_tokens.weight=2`): the first pattern (fnmatch) that matches
a parameter name sets the multiplier of its OLD entries; new entries always get `--lr-scale-new`.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Sequence

import torch

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.options import OptionGroup, option
from mmt_upgrade.core.record import NewParameterRecord


@dataclass(frozen=True)
class ScaleRule:
    pattern: str
    scale: float


def parse_rules(text: str, flag: str = "--lr-scale-rules") -> list[ScaleRule]:
    rules = []
    for item in filter(None, (x.strip() for x in (text or "").split(","))):
        pattern, sep, value = item.rpartition("=")
        try:
            scale = float(value)
        except ValueError:
            scale = -1.0
        if not sep or not pattern or scale < 0:
            raise UserInputError(f"{flag}: expected PATTERN=SCALE with SCALE >= 0, got {item!r}")
        rules.append(ScaleRule(pattern, scale))
    return rules


@dataclass
class LrScaleOptions(OptionGroup):
    """The flags of `--optimizer adam_scaled` (its fairseq dataclass is built from these)."""

    lr_scale_old: float = option(1.0, "lr multiplier of old parameters and rows")
    lr_scale_new: float = option(1.0, "lr multiplier of new parameters and rows")
    lr_scale_rules: str = option("", "PATTERN=SCALE,... (fnmatch on parameter names): the first match sets "
                                     "the multiplier of that parameter's old entries")

    def check(self) -> None:
        for flag, value in (("--lr-scale-old", self.lr_scale_old), ("--lr-scale-new", self.lr_scale_new)):
            if value < 0:
                raise UserInputError(f"{flag} must not be negative (got {value:g})")
        parse_rules(self.lr_scale_rules)

    def rules(self) -> list[ScaleRule]:
        return parse_rules(self.lr_scale_rules)


def old_scale(name: str, old: float, rules: Sequence[ScaleRule]) -> float:
    return next((r.scale for r in rules if fnmatch.fnmatchcase(name, r.pattern)), old)


def _reduce(mask: torch.Tensor) -> torch.Tensor:
    """Keep only the dimensions along which the mask varies (rows -> `(V, 1)`, columns -> `(1, F)`)."""
    for dim in range(mask.dim()):
        if torch.equal(mask.all(dim, keepdim=True), mask.any(dim, keepdim=True)):
            mask = mask.any(dim, keepdim=True)
    return mask


def parameter_scale(name: str, shape: Sequence[int], record: NewParameterRecord | None, old: float, new: float,
                    rules: Sequence[ScaleRule]) -> float | torch.Tensor:
    """The multiplier of one parameter: a float, or a float tensor broadcastable to `shape`."""
    s_old = old_scale(name, old, rules)
    if record is None:
        return s_old
    if name in record.whole:
        return new
    if name not in record.slices:
        return s_old
    mask = _reduce(record.new_mask(name, tuple(shape)))
    if mask.all():
        return new
    return torch.where(mask, torch.tensor(float(new)), torch.tensor(float(s_old)))


@dataclass
class ScaleGroup:
    """Parameters that share one lr multiplier (`scale`), or the masked ones (`masks`, scale 1)."""

    label: str
    scale: float
    indices: list[int]
    masks: dict[int, torch.Tensor]


def group_parameters(names: Sequence[str], shapes: Sequence[Sequence[int]], record: NewParameterRecord | None,
                     options: LrScaleOptions) -> list[ScaleGroup]:
    """Groups in a fixed order (first appearance), so a resumed run rebuilds the same optimizer groups."""
    options.check()
    old, new, rules = options.lr_scale_old, options.lr_scale_new, options.rules()
    groups: dict[str, ScaleGroup] = {}
    for i, (name, shape) in enumerate(zip(names, shapes)):
        scale = parameter_scale(name, shape, record, old, new, rules)
        if isinstance(scale, torch.Tensor):
            group = groups.setdefault("mixed", ScaleGroup("mixed", 1.0, [], {}))
            group.masks[i] = scale
        else:
            new_whole = record is not None and (name in record.whole or name in record.slices)
            label = "new" if new_whole else ("old" if scale == old else f"old*{scale:g}")
            group = groups.setdefault(label, ScaleGroup(label, scale, [], {}))
        group.indices.append(i)
    return list(groups.values())


def rescale_update_(param: torch.Tensor, prev: torch.Tensor, scale: torch.Tensor) -> None:
    """`param = prev + scale * (param - prev)`, in place: the step taken at base lr, scaled.
    Entries with scale 1 keep the step as taken (no rounding through the subtraction)."""
    scale = scale.to(param.dtype)
    param.copy_(torch.where(scale == 1, param, prev + scale * (param - prev)))
