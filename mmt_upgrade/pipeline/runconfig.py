"""Run configurations (YAML): the data plan, fairseq-train flags and evaluation settings."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from mmt_upgrade.core.config_files import read_config_tree
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.pipeline.data.prepare import DataConfig


@dataclass
class EvalConfig:
    beam: int = 5
    max_tokens: int = 6000
    split: str = "test"
    new_langs: list[str] = field(default_factory=list)  # languages reported as the "new" group


@dataclass
class RunConfig:
    name: str
    data: DataConfig
    # fairseq-train flags without the leading dashes; `true` is a bare flag, `false`/null omit it.
    train: dict[str, Any]
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    source: str = ""



def load_config(name_or_path: str, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a run config; `overrides` are `section.key=value` strings (value parsed as YAML)."""
    path, tree = read_config_tree(name_or_path, overrides)
    unknown = set(tree) - {"name", "data", "train", "evaluate"}
    if unknown:
        raise UserInputError(f"{path}: unknown sections {', '.join(sorted(unknown))}")
    try:
        data = DataConfig(**tree.get("data", {}))
        evaluate = EvalConfig(**tree.get("evaluate", {}))
    except TypeError as e:
        raise UserInputError(f"{path}: {e}") from None
    return RunConfig(
        name=str(tree.get("name", path.stem)),
        data=data,
        train=dict(tree.get("train", {})),
        evaluate=evaluate,
        source=str(path),
    )
