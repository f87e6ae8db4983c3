"""Option groups, each declared once as a dataclass.

A field declared with `option(default, help, ...)` becomes, from that one declaration:
- a CLI flag (`OptionGroup.add_arguments`: `--new-spm-size`, typed, with its help and choices);
- a key of a YAML section (`OptionGroup.from_mapping`: unknown keys and wrong types are one clear error
  naming the file, the section and the key; `OptionGroup.schema` documents the section);
- a field of a fairseq dataclass where fairseq parses the flags itself (`OptionGroup.fairseq_fields`, for
  `dataclasses.make_dataclass` in a plugin).
`check()` holds the value rules of the group and runs wherever a group is built from user input.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Callable, Mapping, Sequence, TypeVar

from mmt_upgrade.core.errors import UserInputError

G = TypeVar("G", bound="OptionGroup")


def option(default: Any, help: str, *, choices: Sequence[str] | None = None, metavar: str | None = None,
           parse: Callable[[str], Any] | None = None, show: Callable[[Any], str] | None = None) -> Any:
    """A dataclass field with what its flag needs. `parse` turns a flag's text into the value (e.g.
    `it=es,ar=mean` into a dict); `show` turns the value back into the flag's text."""
    meta = {"help": help, "choices": tuple(choices) if choices else None, "metavar": metavar,
            "parse": parse, "show": show}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _base_type(hint: Any) -> Any:
    """`Optional[float]` -> float; `list[str]` -> list."""
    args = [t for t in typing.get_args(hint) if t is not type(None)]
    if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        hint = args[0]
    return typing.get_origin(hint) or hint


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]


def flag_name(name: str) -> str:
    return name.replace("_", "-")


class OptionGroup:
    """Mixin for a dataclass of options (see the module docstring)."""

    def check(self) -> None:
        """Value rules of the group; raise UserInputError naming the flag."""

    @classmethod
    def option_fields(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if "help" in f.metadata]  # type: ignore[arg-type]

    @classmethod
    def _hints(cls) -> dict[str, Any]:
        return typing.get_type_hints(cls)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
        """The group's flags on an argparse parser (defaults from the declaration)."""
        hints = cls._hints()
        for f in cls.option_fields():
            if f.name in skip:
                continue
            kind, meta = _base_type(hints[f.name]), f.metadata
            kwargs: dict[str, Any] = {"default": _default(f), "help": meta["help"], "dest": f.name}
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
            if meta["metavar"]:
                kwargs["metavar"] = meta["metavar"]
            if kind is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["type"] = meta["parse"] or (_comma_list if kind is list else kind)
            parser.add_argument("--" + flag_name(f.name), **kwargs)

    @classmethod
    def from_namespace(cls: type[G], ns: argparse.Namespace, **extra: Any) -> G:
        """The group from parsed flags (fields the parser lacks keep their defaults); checked."""
        values = {f.name: getattr(ns, f.name) for f in cls.option_fields() if hasattr(ns, f.name)}
        group = cls(**values, **extra)
        group.check()
        return group

    @classmethod
    def from_mapping(cls: type[G], values: Mapping[str, Any] | None, where: str, **extra: Any) -> G:
        """The group from a YAML section (keys as flags `new-spm-size` or fields `new_spm_size`); unknown keys
        and values of the wrong type are one error naming `where` and the key; checked."""
        fields = {f.name: f for f in cls.option_fields()}
        hints = cls._hints()
        out: dict[str, Any] = {}
        for key, value in (values or {}).items():
            name = str(key).replace("-", "_")
            if name not in fields:
                raise UserInputError(f"{where}: unknown key {key!r} (known: "
                                     f"{', '.join(flag_name(n) for n in fields)})")
            out[name] = _coerce(value, hints[name], fields[name], f"{where}: {key}")
        group = cls(**out, **extra)
        try:
            group.check()
        except UserInputError as e:
            raise UserInputError(f"{where}: {e}") from None
        return group

    def to_flags(self) -> dict[str, Any]:
        """Flag name -> value as a command line shows it (for printing the command that reproduces it)."""
        out = {}
        for f in self.option_fields():
            value = getattr(self, f.name)
            show = f.metadata["show"]
            out[flag_name(f.name)] = show(value) if show else value
        return out

    @classmethod
    def schema(cls) -> dict[str, dict[str, Any]]:
        """What a YAML section of this group may hold: key -> type, default, help (and choices)."""
        hints = cls._hints()
        out = {}
        for f in cls.option_fields():
            kind = _base_type(hints[f.name])
            entry = {"type": getattr(kind, "__name__", str(kind)), "default": _default(f), "help": f.metadata["help"]}
            if f.metadata["choices"]:
                entry["choices"] = list(f.metadata["choices"])
            out[flag_name(f.name)] = entry
        return out

    @classmethod
    def fairseq_fields(cls) -> list[tuple[str, Any, dataclasses.Field]]:
        """The group's fields for a fairseq dataclass (`dataclasses.make_dataclass(..., fields)`): fairseq
        reads the help from the metadata and the type from the annotation."""
        hints = cls._hints()
        return [(f.name, hints[f.name], dataclasses.field(default=_default(f), metadata={"help": f.metadata["help"]}))
                for f in cls.option_fields()]


def _comma_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _coerce(value: Any, hint: Any, f: dataclasses.Field, where: str) -> Any:
    """A YAML value checked against the field's type (ints are floats; text goes through `parse`)."""
    kind = _base_type(hint)
    if value is None and type(None) in typing.get_args(hint):
        return None
    parse = f.metadata["parse"]
    if parse is not None and isinstance(value, str):
        return parse(value)
    if kind is list and isinstance(value, str):
        return _comma_list(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if not ok:
        raise UserInputError(f"{where}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    if f.metadata["choices"] and value not in f.metadata["choices"]:
        raise UserInputError(f"{where}: {value!r} is not one of {', '.join(f.metadata['choices'])}")
    return value
