"""`mmt-upgrade upgrade`'s options declared once (CLI flags = experiment keys = printed flags), one seed for
every random draw including growth, and the one-line errors of its inputs."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from mmt_upgrade.core.files import read_text_lines
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import sha256_file
from mmt_upgrade.core.record import UPGRADE_JSON, NewParameterRecord, size_flags_hint
from mmt_upgrade.core.spm import load_spm, train_spm
from mmt_upgrade.fairseq_io.drivers import flags_to_argv
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.pipeline.upgrade import command
from mmt_upgrade.pipeline.upgrade.growth import grow_model
from mmt_upgrade.pipeline.upgrade.inputs import check_dev_langs
from mmt_upgrade.pipeline.upgrade.options import UpgradeOptions
from mmt_upgrade.pipeline.verify import check_old_data

# The tiny experiment's `full` run, as its YAML says it and as `mmt-upgrade upgrade` takes it.
FULL_YAML = {"new-spm-size": 500, "init": "unk", "langtok-init": "it=es", "add-encoder-layers": 1, "widen-ffn": 1.5}
FULL_ARGV = ["--new-spm-size", "500", "--init", "unk", "--langtok-init", "it=es", "--add-encoder-layers", "1",
             "--widen-ffn", "1.5"]


def _cli(*argv: str) -> UpgradeOptions:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return UpgradeOptions.from_namespace(parser.parse_args(["old.pt", "--out", "new", *argv]))


def test_yaml_keys_and_cli_flags_give_the_same_options_and_the_printed_flags_reproduce_them():
    from_yaml = UpgradeOptions.from_mapping(FULL_YAML, "test")
    assert from_yaml == _cli(*FULL_ARGV)
    assert from_yaml.growth.add_encoder_layers == 1 and from_yaml.growth.widen_ffn == 1.5
    assert from_yaml.init == "unk" and from_yaml.growth.init == "paper"  # `init` is not `grow-init`
    flags = from_yaml.to_flags()
    assert list(flags) == ["vocab-mode", "new-spm-size", "spm-size", "init", "langtok-init", "seed",
                           "add-encoder-layers", "add-decoder-layers", "widen-ffn", "grow-init", "grow-position",
                           "grow-noise"]
    # the printed plan line of the tiny experiment's `full` upgrade, as it was before the options moved
    assert " ".join(flags_to_argv(flags)) == (
        "--vocab-mode extend --new-spm-size 500 --spm-size 0 --init unk --langtok-init it=es --seed 1 "
        "--add-encoder-layers 1 --add-decoder-layers 0 --widen-ffn 1.5 --grow-init paper --grow-position top "
        "--grow-noise 0.01")
    assert _cli(*flags_to_argv(flags)) == from_yaml
    assert list(UpgradeOptions.schema()) == list(flags)  # what the docs list for an `upgrade:` section
    assert UpgradeOptions().to_flags()["langtok-init"] is None  # no flag for an empty mapping
    both = UpgradeOptions.from_mapping({"init": "mean", "grow-init": "preserve", "grow_position": "interleave"}, "t")
    assert (both.init, both.growth.init, both.growth.position) == ("mean", "preserve", "interleave")


def test_upgrade_keys_of_existing_plans_are_unchanged():
    """An experiment's upgrade directories keep their names (the keys its plan printed before)."""
    assert UpgradeOptions.from_mapping({"new-spm-size": 500, "init": "random"}, "t").key() == "dc652d5853"
    assert UpgradeOptions.from_mapping(FULL_YAML, "t").key() == "33f49bdb66"
    assert UpgradeOptions.from_mapping({**FULL_YAML, "seed": 2}, "t").key() != "33f49bdb66"


@pytest.mark.parametrize("values, message", [
    ({"initt": "unk"}, "test: unknown key 'initt' (known: vocab-mode, new-spm-size, spm-size, init, "
                       "langtok-init, seed, add-encoder-layers, add-decoder-layers, widen-ffn, grow-init, "
                       "grow-position, grow-noise)"),
    ({"widen-ffn": 0.5}, "test: --widen-ffn must be at least 1 (got 0.5)"),
    ({"grow-init": "fancy"}, "test: grow-init: 'fancy' is not one of paper, preserve"),
    ({"seed": "two"}, "test: seed: expected int, got 'two'"),
    ({"langtok-init": "it"}, "--langtok-init: expected NEW=OLD or NEW=mean, got 'it'"),
])
def test_bad_upgrade_keys_are_one_error_naming_the_key(values, message):
    with pytest.raises(UserInputError) as e:
        UpgradeOptions.from_mapping(values, "test")
    assert message in str(e.value)


def test_language_rules():
    UpgradeOptions(langtok_init={"it": "es", "ar": "mean"}).check_langs(["en", "es"], ["it", "ar"])
    with pytest.raises(UserInputError, match="--langtok-init names 'ko', which is not a new language"):
        UpgradeOptions(langtok_init={"ko": "es"}).check_langs(["en", "es"], ["it"])
    with pytest.raises(UserInputError, match="--langtok-init it=pt: 'pt' is neither 'mean' nor an old language"):
        UpgradeOptions(langtok_init={"it": "pt"}).check_langs(["en", "es"], ["it"])
    with pytest.raises(UserInputError, match="nothing to upgrade"):
        UpgradeOptions().check_langs(["en", "es"], [])


def test_dev_text_of_any_old_language_is_enough_and_none_is_one_error():
    """A 202-language model comes with the dev text one has: measured on those, in the model's order."""
    old = [f"l{i:03d}_Latn" for i in range(202)]
    assert check_dev_langs({"l150_Latn": ["b"], "l007_Latn": ["a"], "tyv_Cyrl": ["c"]}, old, ["tyv_Cyrl"],
                           Path("m.pt")) == ["l007_Latn", "l150_Latn"]
    with pytest.raises(UserInputError) as e:
        check_dev_langs({"tyv_Cyrl": ["c"]}, old, ["tyv_Cyrl"], Path("m.pt"))
    assert "no dev text for any old language of checkpoint m.pt (l000_Latn,l001_Latn,l002_Latn,l003_Latn," \
           "l004_Latn,... (202 in all))" in str(e.value) and "give --dev-text LANG=FILE" in str(e.value)
    with pytest.raises(UserInputError, match="--dev-text xx: not a language of checkpoint m.pt"):
        check_dev_langs({"xx": ["a"], "l000_Latn": ["b"]}, old, ["tyv_Cyrl"], Path("m.pt"))


def _model() -> tuple[dict, dict]:
    """A 2+1-layer transformer state dict and its config: what growth reads."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for side, n in (("encoder", 2), ("decoder", 1)):
        for i in range(n):
            p = f"{side}.layers.{i}"
            state |= {f"{p}.fc1.weight": torch.randn(8, 4, generator=g), f"{p}.fc1.bias": torch.randn(8, generator=g),
                      f"{p}.fc2.weight": torch.randn(4, 8, generator=g), f"{p}.fc2.bias": torch.randn(4, generator=g)}
    cfg = {"arch": "transformer", "encoder_layers": 2, "decoder_layers": 1, "encoder_ffn_embed_dim": 8,
           "decoder_ffn_embed_dim": 8, "encoder_normalize_before": False, "decoder_normalize_before": False}
    return state, {"model": cfg}


def _grown(options: UpgradeOptions) -> tuple[dict, dict]:
    model, cfg = _model()
    state = {"model": model, "cfg": cfg}
    report = grow_model(state, options, NewParameterRecord(), "test")
    return state["model"], report


def test_the_upgrade_seed_draws_the_growth_noise_in_every_path():
    """The experiment's `upgrade: {seed: 2}` and the CLI's `--seed 2` grow the same tensors; seed 1 others."""
    from_yaml, _ = _grown(UpgradeOptions.from_mapping({"widen-ffn": 1.5, "seed": 2}, "test"))
    from_cli, report = _grown(_cli("--widen-ffn", "1.5", "--seed", "2"))
    seed_1, _ = _grown(_cli("--widen-ffn", "1.5"))
    assert report["fairseq_model_flags"] == {"arch": "transformer", "encoder-layers": 2, "decoder-layers": 1,
                                             "encoder-ffn-embed-dim": 12, "decoder-ffn-embed-dim": 12}
    assert from_yaml.keys() == from_cli.keys()
    for name in from_yaml:
        assert torch.equal(from_yaml[name], from_cli[name]), name
    assert not torch.equal(from_cli["encoder.layers.0.fc1.weight"][8:], seed_1["encoder.layers.0.fc1.weight"][8:])
    old, _ = _model()  # the copies are the old units plus noise (paper init), the old units untouched
    assert torch.equal(from_cli["encoder.layers.0.fc1.weight"][:8], old["encoder.layers.0.fc1.weight"])


def test_a_vocabulary_too_small_for_the_script_names_the_flag_the_languages_and_the_size(texts, tmp_path):
    new = {"ar": texts["ar"], "ru": texts["ru"]}
    with pytest.raises(UserInputError) as e:
        train_spm(new, tmp_path / "small.model", 100, 400, seed=1, size_flag="--new-spm-size")
    message = str(e.value)
    assert message.startswith("--new-spm-size 100 is too small for the characters of ar,ru")
    needed = int(message.split("needs at least ")[1].split(" ")[0])
    # the size it names is exactly the smallest that trains: the distinct characters (and the word
    # boundary), the 4 specials and the 256 byte pieces
    chars = {c for lines in new.values() for line in lines for c in line.replace(" ", "\u2581")} | {"\u2581"}
    assert needed == len(chars) + 4 + 256
    train_spm(new, tmp_path / "exact.model", needed, 400, seed=1)
    assert load_spm(tmp_path / "exact.model").GetPieceSize() >= needed - 1


def test_a_text_file_that_is_not_utf8_names_the_flag_and_the_file(tmp_path):
    latin1 = tmp_path / "ko.txt"
    latin1.write_bytes("Città di Dio\n".encode("latin-1"))
    with pytest.raises(UserInputError, match=rf"^--text ko: {latin1} is not UTF-8 text \(byte 0xe0 at offset 4\)"):
        read_text_lines(latin1, "--text ko")
    latin1.write_text("Città di Dio\n\n", encoding="utf-8")
    assert read_text_lines(latin1, "--text ko") == ["Città di Dio"]


def test_verify_names_old_data_when_it_is_not_the_old_models(tmp_path):
    for name in ("spm.model", "dict.txt"):
        (tmp_path / name).write_text(name)
    manifest = {"model_langs": ["en", "es", "fr"], "spm_model": "spm.model", "dict": "dict.txt"}
    files = {"spm": "spm.model", "dict": "dict.txt"}
    report = {"langs": {"old": ["en", "es", "fr"]},
              "inputs": {k: {"sha256": sha256_file(tmp_path / f)} for k, f in files.items()}}
    check_old_data(PreparedData(tmp_path, manifest), report, tmp_path / UPGRADE_JSON)
    other = PreparedData(tmp_path, {**manifest, "model_langs": ["en", "es", "fr", "it"]})
    with pytest.raises(UserInputError, match=rf"^--old-data {tmp_path}: its languages \(en,es,fr,it\) are not the "
                                             r"old model's \(en,es,fr\)"):
        check_old_data(other, report, tmp_path / UPGRADE_JSON)
    (tmp_path / "dict.txt").write_text("another dictionary")
    with pytest.raises(UserInputError, match=rf"^--old-data {tmp_path}: .*dict.txt is not the dict the model was "
                                             "upgraded from"):
        check_old_data(PreparedData(tmp_path, manifest), report, tmp_path / UPGRADE_JSON)


def test_a_record_that_does_not_fit_points_to_the_upgrades_size_flags(tmp_path):
    record = NewParameterRecord(whole=["encoder.layers.1.fc1.weight"])
    flags = {"arch": "transformer", "encoder-layers": 2}
    (tmp_path / UPGRADE_JSON).write_text(json.dumps({"fairseq_model_flags": flags}))
    with pytest.raises(UserInputError) as e:
        record.check_shapes({"encoder.layers.0.fc1.weight": (8, 4)}, "--task upgrade_translation",
                            size_flags_hint(tmp_path / "checkpoint.pt"))
    assert str(e.value).startswith("--task upgrade_translation: the new-parameter record names "
                                   "encoder.layers.1.fc1.weight, which the model lacks; ")
    assert str(e.value).endswith(f"fairseq_model_flags ({tmp_path / UPGRADE_JSON}): --arch transformer "
                                 "--encoder-layers 2")
    assert "fairseq_model_flags" in size_flags_hint(Path("/nowhere/checkpoint_last.pt"))
