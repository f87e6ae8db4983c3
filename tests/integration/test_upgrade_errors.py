"""`mmt-upgrade upgrade` / `verify` on the real tiny model: one seed reaches growth in every path, and the
mistakes a user makes end in one line naming the flag at fault, not a traceback."""
from __future__ import annotations

import json
import re
import shlex
import shutil

import torch

from mmt_upgrade.core.files import sha256_file
from mmt_upgrade.fairseq_io.checkpoint import read_checkpoint
from mmt_upgrade.pipeline.experiment.plan import build_plan
from mmt_upgrade.pipeline.experiment.prepare import new_data_config
from mmt_upgrade.pipeline.experiment.spec import ExperimentConfig
from mmt_upgrade.pipeline.runconfig import load_config
from mmt_upgrade.pipeline.upgrade import BibleText, UpgradeInputs, upgrade

from ..conftest import run_cli, tiny_train_argv


def _one_line_error(res, *expected: str) -> str:
    assert res.returncode == 2, res.stdout + res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("mmt-upgrade ") and ": error: " in line, res.stderr[-3000:]
    for text in expected:
        assert text in line, line
    return line


def test_the_experiment_seed_reaches_growth_and_its_printed_command_reproduces_the_upgrade(tiny_trained, tiny_data,
                                                                                          tmp_path):
    """`upgrade: {seed: 2}` in the tiny experiment grows with seed 2: the upgrade the experiment builds equals the
    one its printed `mmt-upgrade upgrade` command builds, and differs from seed 1 in the grown tensors."""
    ckpt = tiny_trained[0] / "checkpoint_best.pt"
    built = {}
    for seed in (1, 2):
        cfg = ExperimentConfig.load("tiny_upgrade", [f"upgrade.seed={seed}"])
        options = cfg.upgrade_options(cfg.resolved()["full"])  # paper growth: an encoder layer, FFN x1.5
        bible = BibleText(new_data_config(cfg, load_config(cfg.old_model).data, None))  # as prepare_upgrades
        upgrade(UpgradeInputs(ckpt, list(cfg.new_langs), old_data=tiny_data, bible=bible), tmp_path / f"exp{seed}",
                options)
        built[seed] = read_checkpoint(tmp_path / f"exp{seed}" / "checkpoint.pt")["model"]
    plan = build_plan(cfg, tmp_path / "plan", prepare=False)
    line = next(x for x in plan.describe().splitlines() if x.startswith(f"upgrade {plan.run_upgrade['full']}:"))
    assert " --seed 2 " in line and " --widen-ffn 1.5 " in line
    argv = shlex.split(line.split("mmt-upgrade upgrade ", 1)[1])
    flags = argv[argv.index("--new-langs"):]  # the plan's paths stand for the experiment's; ours replace them
    text = tmp_path / "it.txt"
    text.write_text("\n".join(bible.lines("it")) + "\n", encoding="utf-8")
    run_cli("mmt-upgrade", "upgrade", str(ckpt), "--out", str(tmp_path / "cli"), "--old-data", str(tiny_data.root),
            "--text", f"it={text}", *flags)
    cli = read_checkpoint(tmp_path / "cli" / "checkpoint.pt")["model"]
    assert cli.keys() == built[2].keys()
    for name in cli:
        assert torch.equal(cli[name], built[2][name]), name
    widened = "encoder.layers.0.fc1.weight"  # old units 0-63 and the noisy copies 64-95 (paper init)
    assert cli[widened].shape == (96, 32)
    assert torch.equal(cli[widened][:64], built[1][widened][:64])
    assert not torch.equal(cli[widened][64:], built[1][widened][64:])


def test_new_spm_size_below_the_new_scripts_characters(tiny_trained, tiny_data, tmp_path):
    """Korean needs more than the tiny experiment's 500 pieces: its characters alone exceed it."""
    ckpt = tiny_trained[0] / "checkpoint_best.pt"
    res = run_cli("mmt-upgrade", "upgrade", str(ckpt), "--out", str(tmp_path / "out"), "--old-data",
                  str(tiny_data.root), "--new-langs", "ko", "--new-spm-size", "500", check=False)
    line = _one_line_error(res, "--new-spm-size 500 is too small for the characters of ko", "give --new-spm-size")
    needed = int(line.split("needs at least ")[1].split(" ")[0])
    assert needed > 500 and not (tmp_path / "out").exists()
    run_cli("mmt-upgrade", "upgrade", str(ckpt), "--out", str(tmp_path / "out"), "--old-data", str(tiny_data.root),
            "--new-langs", "ko", "--new-spm-size", str(needed))  # the size it names is enough
    assert json.loads((tmp_path / "out" / "upgrade.json").read_text())["vocab"]["new_model_pieces"] >= needed - 4


def test_a_text_file_that_is_not_utf8(tiny_trained, tiny_data, tmp_path):
    latin1 = tmp_path / "it.txt"
    latin1.write_bytes("Nel principio Iddio creò il cielo e la terra.\n".encode("latin-1"))
    res = run_cli("mmt-upgrade", "upgrade", str(tiny_trained[0] / "checkpoint_best.pt"), "--out",
                  str(tmp_path / "out"), "--old-data", str(tiny_data.root), "--new-langs", "it", "--text",
                  f"it={latin1}", check=False)
    _one_line_error(res, f"--text it: {latin1} is not UTF-8 text")
    assert not (tmp_path / "out").exists()


def test_training_a_grown_model_with_the_old_size_flags_points_to_fairseq_model_flags(tiny_trained, tiny_data,
                                                                                      tmp_path):
    ckpt = tiny_trained[0] / "checkpoint_best.pt"
    grown = tmp_path / "grown"
    run_cli("mmt-upgrade", "upgrade", str(ckpt), "--out", str(grown), "--old-data", str(tiny_data.root),
            "--new-langs", "", "--add-encoder-layers", "1")
    flags = json.loads((grown / "upgrade.json").read_text())["fairseq_model_flags"]
    assert flags["encoder-layers"] == 2
    res = run_cli("fairseq-train", *tiny_train_argv(tiny_data, tmp_path / "ft", **{"max-update": 1}),
                  "--finetune-from-model", str(grown / "checkpoint.pt"), check=False)
    assert res.returncode != 0
    shown = " ".join(f"--{k} {v}" for k, v in flags.items())
    error = res.stderr.strip().splitlines()[-1]
    assert re.search(r"the new-parameter record names encoder\.layers\.1\.\S+, which the model lacks; ", error), error
    assert error.endswith(f"; fairseq builds the model from its flags: give the upgraded model's, upgrade.json's "
                          f"fairseq_model_flags ({grown / 'upgrade.json'}): {shown}"), error


def test_verify_with_another_models_data_names_old_data(tiny_trained, tiny_data, tmp_path):
    ckpt = tiny_trained[0] / "checkpoint_best.pt"
    out = tmp_path / "up"
    run_cli("mmt-upgrade", "upgrade", str(ckpt), "--out", str(out), "--old-data", str(tiny_data.root),
            "--new-langs", "", "--widen-ffn", "1.5")
    other = tmp_path / "other_data"  # the old data with a language more: another model's
    shutil.copytree(tiny_data.root, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["model_langs"] = manifest["model_langs"] + ["it"]
    (other / "manifest.json").write_text(json.dumps(manifest))
    res = run_cli("mmt-upgrade", "verify", str(ckpt), str(out), "--old-data", str(other), check=False)
    line = _one_line_error(res, f"--old-data {other}: its languages (en,es,fr,it) are not the old model's (en,es,fr)")
    assert "--langs" not in line
    manifest["model_langs"] = manifest["model_langs"][:-1]
    (other / "manifest.json").write_text(json.dumps(manifest))
    (other / manifest["dict"]).write_text((other / manifest["dict"]).read_text().replace(" 1\n", " 2\n", 1))
    assert sha256_file(other / manifest["dict"]) != sha256_file(tiny_data.dictionary)
    res = run_cli("mmt-upgrade", "verify", str(ckpt), str(out), "--old-data", str(other), check=False)
    _one_line_error(res, f"--old-data {other}: {other / manifest['dict']} is not the dict the model was upgraded from")


def test_no_dev_text_for_any_old_language_names_the_flag(tiny_trained, tiny_data, tmp_path):
    """Without --old-data, the dev text of one old language is enough; none at all is one line naming --dev-text."""
    ckpt = tiny_trained[0] / "checkpoint_best.pt"
    text = tmp_path / "it.txt"
    text.write_text("Nel principio Iddio creò il cielo e la terra.\n" * 50, encoding="utf-8")
    argv = [str(ckpt), "--dict", str(tiny_data.dictionary), "--spm", str(tiny_data.spm_model), "--new-langs", "it",
            "--text", f"it={text}", "--new-spm-size", "60"]
    res = run_cli("mmt-upgrade", "upgrade", *argv, "--out", str(tmp_path / "out"), check=False)
    _one_line_error(res, "no dev text for any old language", "give --dev-text LANG=FILE")
    assert not (tmp_path / "out").exists()
    dev = tmp_path / "dev.es"
    dev.write_text("\n".join(tiny_data.texts("valid")["es"]) + "\n", encoding="utf-8")
    res = run_cli("mmt-upgrade", "upgrade", *argv, "--dev-text", f"ko={dev}", "--out", str(tmp_path / "out"),
                  check=False)
    _one_line_error(res, "--dev-text ko: not a language of checkpoint")
