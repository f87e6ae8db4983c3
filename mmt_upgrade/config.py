"""Run configurations (YAML): the data plan, fairseq-train flags and evaluation settings."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from .data.prepare import DataConfig
from .errors import UserInputError
from .paths import CONFIG_DIR


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


def resolve_config_path(name_or_path: str) -> Path:
    """A path, or the name of a config shipped in configs/ (`old_model`, `tiny`)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    raise UserInputError(f"config not found: {name_or_path} (neither a file nor one of configs/*.yaml)")


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise UserInputError(f"--set {dotted}: {k} is not a section")
    node[keys[-1]] = value


def read_config_tree(name_or_path: str, overrides: Sequence[str] = ()) -> tuple[Path, dict[str, Any]]:
    """A YAML config file (a path or a name in configs/) with `section.key=value` overrides (values as YAML)."""
    path = resolve_config_path(name_or_path)
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserInputError(f"{path}: invalid YAML ({e})") from None
    for item in overrides:
        if "=" not in item:
            raise UserInputError(f"--set {item!r}: expected section.key=value")
        key, value = item.split("=", 1)
        _set_dotted(tree, key, yaml.safe_load(value))
    return path, tree


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
