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
import types
import typing
from typing import Any, Callable, Mapping, Sequence, TypeVar

from mmt_upgrade.core.errors import UserInputError

G = TypeVar("G", bound="OptionGroup")
REQUIRED = dataclasses.MISSING


def option(default: Any, help: str, *, choices: Sequence[str] | None = None, metavar: str | None = None,
           parse: Callable[[str], Any] | None = None, show: Callable[[Any], str | None] | None = None,
           flag: str | None = None) -> Any:
    """A dataclass field with what its flag needs (`default=REQUIRED`: a key the section must hold).
    `parse` turns a flag's text into the value (e.g. `it=es,ar=mean` into a dict); `show` turns the value
    back into the flag's text; `flag` names the flag and key when the field's name would not (`grow-init`)."""
    meta = {"help": help, "choices": tuple(choices) if choices else None, "metavar": metavar,
            "parse": parse, "show": show, "flag": flag}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _base_type(hint: Any) -> Any:
    """`Optional[float]` -> float; `list[str]` -> list."""
    args = [t for t in typing.get_args(hint) if t is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and args:
        hint = args[0]
    return typing.get_origin(hint) or hint


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]


def flag_name(name: str) -> str:
    return name.replace("_", "-")


def _flag(f: dataclasses.Field) -> str:
    """A field's flag (and YAML key), without the dashes."""
    return f.metadata["flag"] or flag_name(f.name)


def _dest(f: dataclasses.Field) -> str:
    """A field's attribute in parsed flags (unique where groups share a parser: `grow_init`, not `init`)."""
    return _flag(f).replace("-", "_")


def _key(key: Any) -> str:
    return str(key).replace("-", "_")


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
    def add_arguments(cls, parser: argparse.ArgumentParser | Any, skip: Sequence[str] = (),
                      overrides: bool = False) -> None:
        """The group's flags on an argparse parser (or group), defaults from the declaration; with
        `overrides`, a flag not given is absent from the namespace (it overrides a config file's value)."""
        hints = cls._hints()
        for f in cls.option_fields():
            if f.name in skip:
                continue
            kind, meta = _base_type(hints[f.name]), f.metadata
            default = argparse.SUPPRESS if overrides or _default(f) is REQUIRED else _default(f)
            kwargs: dict[str, Any] = {"default": default, "help": meta["help"], "dest": _dest(f)}
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
            if meta["metavar"]:
                kwargs["metavar"] = meta["metavar"]
            if kind is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["type"] = _flag_type(meta["parse"]) if meta["parse"] else (comma_list if kind is list else kind)
            parser.add_argument("--" + _flag(f), **kwargs)

    @classmethod
    def given(cls, ns: argparse.Namespace) -> dict[str, Any]:
        """The group's values present in parsed flags (all of them, or those given with `overrides`)."""
        return {f.name: getattr(ns, _dest(f)) for f in cls.option_fields() if hasattr(ns, _dest(f))}

    @classmethod
    def from_namespace(cls: type[G], ns: argparse.Namespace, **extra: Any) -> G:
        """The group from parsed flags (fields the parser lacks keep their defaults); checked."""
        group = cls(**cls.given(ns), **extra)
        group.check()
        return group

    @classmethod
    def pick(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of a mapping that are this group's keys (e.g. a plugin's flags among `train:`)."""
        names = {n for f in cls.option_fields() for n in (f.name, _dest(f))}
        return {k: v for k, v in values.items() if _key(k) in names}

    @classmethod
    def from_mapping(cls: type[G], values: Mapping[str, Any] | None, where: str, **extra: Any) -> G:
        """The group from a YAML section (keys as flags `new-spm-size` or fields `new_spm_size`); unknown or
        missing keys and values of the wrong type are one error naming `where` and the key; checked."""
        if values is not None and not isinstance(values, Mapping):
            raise UserInputError(f"{where}: expected a section of keys, got {values!r}")
        fields = {f.name: f for f in cls.option_fields()}
        by_key = {k: f.name for f in fields.values() for k in (f.name, _dest(f)) if f.name not in extra}
        hints = cls._hints()
        out: dict[str, Any] = {}
        for key, value in (values or {}).items():
            name = by_key.get(_key(key))
            if name is None:
                known = [_flag(f) for f in fields.values() if f.name not in extra]
                raise UserInputError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
            out[name] = _coerce(value, hints[name], fields[name], f"{where}: {key}")
        missing = [_flag(f) for n, f in fields.items() if _default(f) is REQUIRED and n not in out | extra]
        if missing:
            raise UserInputError(f"{where}: missing key {missing[0]!r}")
        try:
            group = cls(**out, **extra)
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
            out[_flag(f)] = show(value) if show else value
        return out

    @classmethod
    def schema(cls) -> dict[str, dict[str, Any]]:
        """What a YAML section of this group may hold: key -> type, default, help (and choices)."""
        hints = cls._hints()
        out = {}
        for f in cls.option_fields():
            kind = _base_type(hints[f.name])
            default = _default(f)
            entry = {"type": getattr(kind, "__name__", str(kind)), "help": f.metadata["help"]}
            entry |= {"required": True} if default is REQUIRED else {"default": default}
            if f.metadata["choices"]:
                entry["choices"] = list(f.metadata["choices"])
            out[_flag(f)] = entry
        return out

    @classmethod
    def fairseq_fields(cls) -> list[tuple[str, Any, dataclasses.Field]]:
        """The group's fields for a fairseq dataclass (`dataclasses.make_dataclass(..., fields)`): fairseq
        reads the help from the metadata and the type from the annotation."""
        hints = cls._hints()
        return [(f.name, hints[f.name], dataclasses.field(default=_default(f), metadata={"help": f.metadata["help"]}))
                for f in cls.option_fields()]


def _flag_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A `parse` function as an argparse type: its message, not argparse's "invalid value"."""
    def flag_type(text: str) -> Any:
        try:
            return parse(text)
        except UserInputError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return flag_type


def comma_list(text: str) -> list[str]:
    """`it, ar` -> ["it", "ar"] (a list flag's text)."""
    return [x.strip() for x in text.split(",") if x.strip()]


def _coerce(value: Any, hint: Any, f: dataclasses.Field, where: str) -> Any:
    """A YAML value checked against the field's type: ints are floats; text goes through `parse`, or is read
    as the number or list a command line would read it as."""
    kind = _base_type(hint)
    if value is None and type(None) in typing.get_args(hint):
        return None
    parse = f.metadata["parse"]
    if isinstance(value, str) and kind is not str:
        if parse is not None:
            return parse(value)
        if kind is list:
            return comma_list(value)
        if kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                raise UserInputError(f"{where}: expected {kind.__name__}, got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if not ok:
        raise UserInputError(f"{where}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    if f.metadata["choices"] and value not in f.metadata["choices"]:
        raise UserInputError(f"{where}: {value!r} is not one of {', '.join(f.metadata['choices'])}")
    return value
