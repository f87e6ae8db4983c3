"""YAML config files: a path or the name of a shipped config, with `section.key=value` overrides."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import yaml

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.paths import CONFIG_DIR


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
