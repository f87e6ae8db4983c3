"""Option groups declared once: the CLI flags, the YAML section and the fairseq dataclass fields of one
declaration agree, and bad input is one line naming the key; the CLI is a table of stages."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Optional

import pytest

from mmt_upgrade.cli import COMMANDS, build_parser, main
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.lr_scaling import LrScaleOptions
from mmt_upgrade.core.options import REQUIRED, OptionGroup, option
from mmt_upgrade.core.paths import PLUGIN_DIR
from mmt_upgrade.core.precision import PrecisionOptions
from mmt_upgrade.core.sampling import SamplingOptions
from mmt_upgrade.pipeline.data.prepare import DataConfig
from mmt_upgrade.pipeline.runconfig import EvalOptions, load_config


@dataclass
class Toy(OptionGroup):
    name: str = option(REQUIRED, "a required key")
    size: int = option(3, "a number")
    rate: float = option(0.5, "a float")
    mode: str = option("a", "a choice", choices=("a", "b"))
    langs: list[str] = option([], "a list")
    weight: Optional[float] = option(None, "optional")
    on: bool = option(True, "a switch")
    depth: int = option(1, "renamed flag", flag="toy-depth")

    def check(self) -> None:
        if self.size < 0:
            raise UserInputError(f"--size must not be negative (got {self.size})")


def parser_of(group: type[OptionGroup], **kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(exit_on_error=False)
    group.add_arguments(p, **kw)
    return p


def test_flags_and_yaml_keys_come_from_one_declaration():
    ns = parser_of(Toy).parse_args(["--name", "x", "--size", "4", "--langs", "it, ar", "--no-on", "--toy-depth", "2",
                                    "--weight", "0.25"])
    from_flags = Toy.from_namespace(ns)
    from_yaml = Toy.from_mapping({"name": "x", "size": 4, "langs": "it,ar", "on": False, "toy-depth": 2,
                                  "weight": 0.25}, "f.yaml: toy")
    assert from_flags == from_yaml == Toy("x", 4, 0.5, "a", ["it", "ar"], 0.25, False, 2)
    assert from_yaml.to_flags() == {"name": "x", "size": 4, "rate": 0.5, "mode": "a", "langs": ["it", "ar"],
                                    "weight": 0.25, "on": False, "toy-depth": 2}
    assert Toy.from_mapping({"name": "x", "rate": 1}, "w").rate == 1.0 and Toy.from_mapping({"name": "x", "size": "7"},
                                                                                             "w").size == 7
    assert Toy.schema()["mode"] == {"type": "str", "help": "a choice", "default": "a", "choices": ["a", "b"]}
    assert Toy.schema()["name"]["required"] is True


@pytest.mark.parametrize("values, message", [
    ({"name": "x", "sise": 1}, "f.yaml: toy: unknown key 'sise' (known: name, size, rate, mode, langs, weight, on, "
                               "toy-depth)"),
    ({"size": 1}, "f.yaml: toy: missing key 'name'"),
    ({"name": "x", "size": "big"}, "f.yaml: toy: size: expected int, got 'big'"),
    ({"name": "x", "on": "yes"}, "f.yaml: toy: on: expected bool, got 'yes'"),
    ({"name": "x", "mode": "c"}, "f.yaml: toy: mode: 'c' is not one of a, b"),
    ({"name": "x", "size": -1}, "f.yaml: toy: --size must not be negative (got -1)"),
])
def test_bad_sections_are_one_line_naming_the_key(values, message):
    with pytest.raises(UserInputError) as e:
        Toy.from_mapping(values, "f.yaml: toy")
    assert str(e.value) == message


def test_overrides_leave_flags_not_given_out():
    ns = parser_of(Toy, overrides=True).parse_args(["--size", "9"])
    assert Toy.given(ns) == {"size": 9}
    assert Toy.pick({"size": 1, "toy-depth": 2, "max-update": 3}) == {"size": 1, "toy-depth": 2}


def test_fairseq_fields_carry_type_default_and_help():
    fields = {name: (hint, f) for name, hint, f in LrScaleOptions.fairseq_fields()}
    assert list(fields) == ["lr_scale_old", "lr_scale_new", "lr_scale_rules"]
    hint, f = fields["lr_scale_old"]
    assert hint is float and f.default == 1.0 and f.metadata["help"] == "lr multiplier of old parameters and rows"
    made = dataclasses.make_dataclass("Cfg", LrScaleOptions.fairseq_fields())
    assert made().lr_scale_rules == ""


@pytest.mark.parametrize("group, values, message", [
    (LrScaleOptions, {"lr-scale-old": -1}, "train: --lr-scale-old must not be negative (got -1)"),
    (LrScaleOptions, {"lr-scale-rules": "enc*"}, "train: --lr-scale-rules: expected PATTERN=SCALE"),
    (SamplingOptions, {"upsample-factor": 0}, "train: --upsample-factor must be positive (got 0)"),
    (SamplingOptions, {"upsample-langs": "es", "related-langs": "es"}, "train: es given both in --upsample-langs"),
    (PrecisionOptions, {"cpu-bf16": "sometimes"}, "train: cpu-bf16: 'sometimes' is not one of auto, always, never"),
    (EvalOptions, {"beam": 0}, "train: beam (0) and max_tokens (6000) must be positive"),
    (EvalOptions, {"ct2_workers": 0}, "train: ct2_workers (0) must be at least 1"),
    (EvalOptions, {"ct2_batch_size": -2}, "train: ct2_threads (0) and ct2_batch_size (-2) must not be negative"),
])
def test_groups_check_their_values(group, values, message):
    with pytest.raises(UserInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        group.from_mapping(values, "train")


def test_data_flags_override_the_yaml_section_without_string_round_trips():
    args = build_parser(("data",)).parse_args(["data", "tiny", "--langs", "es,it", "--max-train-pairs-per-lang",
                                               "it=10", "--no-byte-fallback"])
    assert DataConfig.given(args) == {"langs": ["es", "it"], "max_train_pairs_per_lang": {"it": 10},
                                      "byte_fallback": False}
    cfg = load_config(args.config, args.overrides, data=DataConfig.given(args))
    shipped = load_config("tiny")
    assert cfg.data == dataclasses.replace(shipped.data, langs=["es", "it"], max_train_pairs_per_lang={"it": 10},
                                           byte_fallback=False)


def test_data_config_key_is_unchanged_by_the_declaration():
    """The cache directory of prepared data is keyed by this hash (computed before the option groups)."""
    assert DataConfig(langs=["es", "fr"]).key() == "80046ad3c7f7"


def test_bad_data_flag_and_run_config_key(capsys):
    assert main(["data", "tiny", "--max-train-pairs-per-lang", "it=5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tiny.yaml: data: data.max_train_pairs_per_lang names 'it'" in err
    with pytest.raises(UserInputError, match=r"tiny.yaml: evaluate: unknown key 'bem'"):
        load_config("tiny", ["evaluate.bem=2"])


def test_every_command_builds_from_the_table(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == [name for name, _, _ in COMMANDS]
    for name in sub.choices:
        assert callable(sub.choices[name].get_default("run")), name
    assert main(["plugin-dir"]) == 0
    assert capsys.readouterr().out.strip() == str(PLUGIN_DIR)
    assert (PLUGIN_DIR / "__init__.py").is_file()
