"""Growing a real tiny model (post-norm and pre-norm): shapes, the record, preservation, fairseq CLIs."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import sha256_file
from mmt_upgrade.core.growth import check_architecture, layer_order, stack_layers
from mmt_upgrade.core.record import NewParameterRecord
from mmt_upgrade.fairseq_io.checkpoint import read_checkpoint

from ..conftest import run_cli, tiny_train_argv


@pytest.fixture(scope="module")
def prenorm(tiny_data, tmp_path_factory) -> Path:
    """The tiny model, pre-norm, 20 updates of the real fairseq-train."""
    save = tmp_path_factory.mktemp("prenorm")
    run_cli("fairseq-train", *tiny_train_argv(tiny_data, save), "--encoder-normalize-before",
            "--decoder-normalize-before")
    return save / "checkpoint_best.pt"


@pytest.fixture(scope="module")
def postnorm(tiny_trained) -> Path:
    return tiny_trained[0] / "checkpoint_best.pt"


def _grow(ckpt: Path, data, out: Path, *flags: str, check: bool = True):
    return run_cli("mmt-upgrade", "upgrade", str(ckpt), "--out", str(out), "--old-data", str(data.root), *flags,
                   check=check)


def _verify(ckpt: Path, out: Path, data, tmp: Path) -> tuple[int, dict, str]:
    res = run_cli("mmt-upgrade", "verify", str(ckpt), str(out), "--old-data", str(data.root), "--sentences", "10",
                  "--json", str(tmp / "verify.json"), check=False)
    return res.returncode, json.loads((tmp / "verify.json").read_text()), res.stdout


def test_layer_order_places_new_layers_on_top_or_between():
    assert layer_order(3, 2, "top") == [0, 1, 2, None, None]
    assert layer_order(4, 2, "interleave") == [0, 1, None, 2, None, 3]
    assert layer_order(1, 1, "interleave") == [0, None]


# (norm, init, position): together they cover all four growth modes, both norms and both positions
CASES = [("pre", "preserve", "top"), ("post", "preserve", "interleave"), ("pre", "paper", "interleave"),
         ("post", "paper", "top")]


@pytest.mark.parametrize("norm,init,position", CASES)
def test_grow_deeper_and_wider(norm, init, position, prenorm, postnorm, tiny_data, tmp_path):
    ckpt = prenorm if norm == "pre" else postnorm
    before = sha256_file(ckpt)
    out = tmp_path / "grown"
    res = _grow(ckpt, tiny_data, out, "--new-langs", "", "--add-encoder-layers", "2", "--add-decoder-layers", "1",
                "--widen-ffn", "2", "--grow-init", init, "--grow-position", position)
    assert sha256_file(ckpt) == before
    assert "--encoder-layers 3 --decoder-layers 2 --encoder-ffn-embed-dim 128" in res.stdout
    old, new = read_checkpoint(ckpt), read_checkpoint(out / "checkpoint.pt")
    report = json.loads((out / "upgrade.json").read_text())
    assert report["vocab_mode"] == "keep" and report["growth"]["init"] == init
    cfg = new["cfg"]["model"]
    assert (cfg.encoder_layers, cfg.decoder_layers, cfg.encoder_ffn_embed_dim, cfg.decoder_ffn_embed_dim) == (3, 2, 128, 128)
    check_architecture(new["model"], cfg, "grown")
    record = NewParameterRecord.from_task_state(new["task_state"])
    record.check_shapes({k: tuple(v.shape) for k, v in new["model"].items()}, "grown")
    new_enc = [0, None, None] if position == "top" else [0, None, None]
    assert report["growth"]["encoder"]["new_layer_indices"] == [i for i, s in enumerate(new_enc) if s is None]
    for side, n_old in (("encoder", 1), ("decoder", 1)):
        layers = stack_layers(new["model"], side)
        new_idx = report["growth"][side]["new_layer_indices"]
        for j, layer in enumerate(layers):
            assert layer["fc1.weight"].shape == (128, 32) and layer["fc2.weight"].shape == (32, 128)
            names = [f"{side}.layers.{j}.{k}" for k in layer]
            if j in new_idx:
                assert all(n in record.whole for n in names)
                if init == "preserve":
                    assert not layer["fc2.weight"].any() and not layer["self_attn.out_proj.weight"].any()
                else:  # the average of the stack's old layers (one old layer here: its copy, widened)
                    old_layer = stack_layers(old["model"], side)[0]
                    assert torch.allclose(layer["self_attn.q_proj.weight"], old_layer["self_attn.q_proj.weight"])
            else:
                assert not any(n in record.whole for n in names)
                assert record.slices[f"{side}.layers.{j}.fc1.weight"] == [[0, 64, 128]]
                assert record.slices[f"{side}.layers.{j}.fc2.weight"] == [[1, 64, 128]]
                old_layer = stack_layers(old["model"], side)[0]
                assert torch.equal(layer["fc1.weight"][:64], old_layer["fc1.weight"])
    code, figures, stdout = _verify(ckpt, out, tiny_data, tmp_path)
    if init == "preserve":
        assert code == 0 and figures["ok"], stdout
        assert figures["max_abs_logprob_diff"] <= 1e-4 and figures["greedy_identical"] == figures["sentences"]
    else:
        assert code == 0 and figures["tolerance"] is None
        assert figures["max_abs_logprob_diff"] > 1e-3, "paper growth should move the function"
        assert "paper growth changes the function by design" in stdout


def test_preserving_widening_breaks_symmetry_and_a_broken_promise_is_caught(prenorm, tiny_data, tmp_path):
    out = tmp_path / "wide"
    _grow(prenorm, tiny_data, out, "--new-langs", "", "--widen-ffn", "1.5", "--grow-init", "preserve",
          "--grow-noise", "0.05")
    new = read_checkpoint(out / "checkpoint.pt")["model"]
    old = read_checkpoint(prenorm)["model"]
    w2, w2_old = new["encoder.layers.0.fc2.weight"], old["encoder.layers.0.fc2.weight"]
    assert w2.shape == (32, 96)
    # unit 0 and its copy (column 64) split unit 0's outgoing weight, with zero-sum noise between them
    assert torch.allclose(w2[:, 0] + w2[:, 64], w2_old[:, 0], atol=1e-6)
    assert not torch.allclose(w2[:, 0], w2[:, 64])
    assert torch.equal(w2[:, 40], w2_old[:, 40])  # a unit without a copy keeps its column
    code, figures, _ = _verify(prenorm, out, tiny_data, tmp_path)
    assert code == 0 and figures["max_abs_logprob_diff"] <= 1e-4
    state = read_checkpoint(out / "checkpoint.pt")
    w2 = state["model"]["encoder.layers.0.fc2.weight"]
    w2[:, 64:] += 0.1 * torch.randn_like(w2[:, 64:])  # copies no longer sum to their originals (a constant shift
    # of every output dimension would be invisible: the next LayerNorm subtracts it)
    torch.save(state, out / "checkpoint.pt")
    code, figures, stdout = _verify(prenorm, out, tiny_data, tmp_path)
    assert code == 1 and "BROKEN" in stdout


def test_growth_with_new_languages_then_train_generate_interactive(prenorm, tiny_data, lang_texts, tmp_path):
    from mmt_upgrade.core.paths import PLUGIN_DIR, cache_dir
    from mmt_upgrade.core.vocab import Tokenizer
    from mmt_upgrade.pipeline.data.prepare import DataConfig, prepare_data

    out = tmp_path / "grown"
    texts = [a for lang in ("it", "ar") for a in ("--text", f"{lang}={lang_texts[lang]}")]
    _grow(prenorm, tiny_data, out, "--new-spm-size", "500", *texts, "--add-encoder-layers", "1",
          "--add-decoder-layers", "1", "--widen-ffn", "2", "--grow-init", "preserve")
    code, figures, stdout = _verify(prenorm, out, tiny_data, tmp_path)
    assert code == 0 and figures["ok"] and figures["tolerance"] == 1e-4, stdout
    report = json.loads((out / "upgrade.json").read_text())
    assert report["vocab"]["added"] > 0 and report["growth"]["config"]["encoder_layers"] == 2

    cfg = DataConfig(**{**tiny_data.manifest["config"], "langs": ["es", "fr", "it", "ar"], "max_train_pairs": 100,
                        "tokenizer": str(out)})
    data = prepare_data(cfg, cache_dir(), tmp_path / "data")
    size_flags = {k: v for k, v in report["fairseq_model_flags"].items() if k != "arch"}
    argv = tiny_train_argv(data, tmp_path / "ft", **size_flags, **{"max-update": 3, "save-interval-updates": 0})
    log = run_cli("fairseq-train", *argv, "--encoder-normalize-before", "--decoder-normalize-before",
                  "--finetune-from-model", str(out / "checkpoint.pt"))
    assert "loading pretrained model from" in log.stdout + log.stderr
    last = read_checkpoint(tmp_path / "ft" / "checkpoint_last.pt")
    assert last["task_state"]["upgrade_record"] == report["record"]
    common = ["--user-dir", str(PLUGIN_DIR), "--task", "upgrade_translation", "--langs", ",".join(data.langs),
              "--lang-pairs", "it-en", "--encoder-langtok", "src", "--decoder-langtok", "-s", "it", "-t", "en",
              "--beam", "2", "--cpu"]
    gen = run_cli("fairseq-generate", str(data.bin_dir), *common, "--path", str(tmp_path / "ft" / "checkpoint_last.pt"),
                  "--gen-subset", "test", "--max-tokens", "4000", "--post-process", "sentencepiece",
                  "--skip-invalid-size-inputs-valid-test")
    assert len(re.findall(r"^H-\d+\t", gen.stdout, re.M)) >= 30
    line = " ".join(Tokenizer.load(out).encode("it", ["E Dio disse: Sia la luce."])[0])
    inter = run_cli("fairseq-interactive", str(out), *common, "--path", str(out / "checkpoint.pt"),
                    stdin=line + "\n")
    assert re.search(r"^H-0\t", inter.stdout, re.M)


def test_bad_growth_inputs(postnorm, tiny_data, tmp_path):
    err = _grow(postnorm, tiny_data, tmp_path / "o", "--new-langs", "", "--widen-ffn", "0.5", check=False).stderr
    assert "--widen-ffn must be at least 1 (got 0.5)" in err
    err = _grow(postnorm, tiny_data, tmp_path / "o", "--new-langs", "", check=False).stderr
    assert "nothing to upgrade" in err
    state = read_checkpoint(postnorm)
    cfg = state["cfg"]["model"]
    cfg.encoder_layers = 3
    with pytest.raises(UserInputError, match="weights have 1 encoder layers but the config says encoder_layers=3"):
        check_architecture(state["model"], cfg, "test")
    cfg.encoder_layers = 1
    cfg.encoder_ffn_embed_dim = 100
    with pytest.raises(UserInputError, match="encoder_ffn_embed_dim=100"):
        check_architecture(state["model"], cfg, "test")
    cfg.encoder_ffn_embed_dim = 64
    for k in [k for k in state["model"] if k.startswith("decoder.layers.")]:
        del state["model"][k]
    torch.save(state, tmp_path / "no_decoder.pt")
    res = run_cli("mmt-upgrade", "upgrade", str(tmp_path / "no_decoder.pt"), "--out", str(tmp_path / "o"),
                  "--old-data", str(tiny_data.root), "--new-langs", "", "--add-decoder-layers", "1", check=False)
    assert res.returncode == 2 and "is not a fairseq transformer encoder-decoder" in res.stderr
    assert not (tmp_path / "o").exists()
