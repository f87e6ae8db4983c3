"""The new-parameter record: which parameters, or which slices of them, an upgrade added.

It is small JSON (ranges, not index lists: a 256k-row embedding costs one entry) stored in
`upgrade.json` and in the checkpoint's `task_state["upgrade_record"]`; `--task upgrade_translation`
reads it from the checkpoint fairseq-train loads and keeps it in every checkpoint it saves, so it
survives saving and resuming. The LR-scaling optimizer and the distillation criterion read it.

Format (version 1)::

    {"format": 1,
     "whole": ["decoder.layers.6.fc1.weight", ...],              # parameters that are new entirely
     "slices": {"encoder.embed_tokens.weight": [[0, 4000, 5310]],  # [dim, start, stop): new rows
                "encoder.layers.0.fc2.weight": [[1, 1024, 2048]]}}  # new columns
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from mmt_upgrade.core.errors import UserInputError

FORMAT = 1
TASK_STATE_KEY = "upgrade_record"
UPGRADE_JSON = "upgrade.json"  # beside an upgraded checkpoint: what the upgrade did, the record included


@dataclass
class NewParameterRecord:
    whole: list[str] = field(default_factory=list)
    slices: dict[str, list[list[int]]] = field(default_factory=dict)

    def add_whole(self, name: str) -> None:
        if name not in self.whole:
            self.whole.append(name)

    def add_slice(self, name: str, dim: int, start: int, stop: int) -> None:
        if stop > start:
            self.slices.setdefault(name, []).append([dim, start, stop])

    def add_rows(self, name: str, start: int, stop: int) -> None:
        self.add_slice(name, 0, start, stop)

    def is_empty(self) -> bool:
        return not self.whole and not self.slices

    def new_mask(self, name: str, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        """Boolean tensor of `shape`, True where the parameter `name` is new."""
        mask = torch.zeros(shape, dtype=torch.bool)
        if name in self.whole:
            mask[...] = True
        for dim, start, stop in self.slices.get(name, []):
            mask.narrow(dim, start, stop - start).fill_(True)
        return mask

    def new_rows(self, name: str) -> list[tuple[int, int]]:
        return [(start, stop) for dim, start, stop in self.slices.get(name, []) if dim == 0]

    def check_shapes(self, shapes: Mapping[str, tuple[int, ...]], what: str, hint: str = "") -> None:
        """Every named parameter exists and every slice lies inside it; `hint` ends the error."""
        hint = f"; {hint}" if hint else ""
        for name in self.whole:
            if name not in shapes:
                raise UserInputError(f"{what}: the new-parameter record names {name}, which the model lacks{hint}")
        for name, items in self.slices.items():
            if name not in shapes:
                raise UserInputError(f"{what}: the new-parameter record names {name}, which the model lacks{hint}")
            for dim, start, stop in items:
                if not (0 <= dim < len(shapes[name]) and 0 <= start < stop <= shapes[name][dim]):
                    raise UserInputError(f"{what}: record slice {[dim, start, stop]} of {name} lies outside "
                                         f"its shape {tuple(shapes[name])}{hint}")

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "whole": list(self.whole), "slices": {k: [list(s) for s in v] for k, v in self.slices.items()}}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> "NewParameterRecord":
        if obj.get("format") != FORMAT:
            raise UserInputError(f"new-parameter record has format {obj.get('format')!r}, expected {FORMAT}")
        return cls(whole=list(obj.get("whole", [])),
                   slices={k: [list(map(int, s)) for s in v] for k, v in obj.get("slices", {}).items()})

    @classmethod
    def from_task_state(cls, task_state: Mapping[str, Any] | None) -> "NewParameterRecord | None":
        obj = (task_state or {}).get(TASK_STATE_KEY)
        return None if obj is None else cls.from_dict(obj)


def size_flags_hint(checkpoint: Path | None) -> str:
    """What to do when a record does not fit the model fairseq built: fairseq builds it from its flags, so an
    upgraded (grown) checkpoint needs the upgrade's size flags, shown when upgrade.json lies beside it."""
    report = Path(checkpoint).parent / UPGRADE_JSON if checkpoint else None
    flags = {}
    if report is not None and report.is_file():
        flags = json.loads(report.read_text(encoding="utf-8")).get("fairseq_model_flags") or {}
    if not flags:
        return (f"fairseq builds the model from its flags: give the upgraded model's size flags "
                f"({UPGRADE_JSON}'s fairseq_model_flags)")
    return (f"fairseq builds the model from its flags: give the upgraded model's, {UPGRADE_JSON}'s "
            f"fairseq_model_flags ({report}): " + " ".join(f"--{k} {v}" for k, v in flags.items()))
