"""Growing a real tiny model (post-norm and pre-norm): shapes, the record, preservation, fairseq CLIs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import sha256_file
from mmt_upgrade.core.growth import check_architecture, stack_layers
from mmt_upgrade.core.record import NewParameterRecord
from mmt_upgrade.fairseq_io.checkpoint import read_checkpoint

from ..conftest import assert_interactive_equals_generate, run_cli, tiny_train_argv


def _train_two_layers(data, save: Path, *flags: str) -> Path:
    """The tiny model with two layers per stack (so a new layer's average is no copy of one), 20 updates."""
    run_cli("fairseq-train", *tiny_train_argv(data, save, **{"encoder-layers": 2, "decoder-layers": 2}), *flags)
    return save / "checkpoint_best.pt"


@pytest.fixture(scope="module")
def prenorm(tiny_data, tmp_path_factory) -> Path:
    return _train_two_layers(tiny_data, tmp_path_factory.mktemp("prenorm"), "--encoder-normalize-before",
                             "--decoder-normalize-before")


@pytest.fixture(scope="module")
def postnorm(tiny_data, tmp_path_factory) -> Path:
    return _train_two_layers(tiny_data, tmp_path_factory.mktemp("postnorm"))


def _grow(ckpt: Path, data, out: Path, *flags: str, check: bool = True):
    return run_cli("mmt-upgrade", "upgrade", str(ckpt), "--out", str(out), "--old-data", str(data.root), *flags,
                   check=check)


def _verify(ckpt: Path, out: Path, data, tmp: Path) -> tuple[int, dict, str]:
    res = run_cli("mmt-upgrade", "verify", str(ckpt), str(out), "--old-data", str(data.root), "--sentences", "10",
                  "--json", str(tmp / "verify.json"), check=False)
    return res.returncode, json.loads((tmp / "verify.json").read_text()), res.stdout


# (norm, init, position): together they cover all four growth modes, both norms and both positions
CASES = [("pre", "preserve", "top"), ("post", "preserve", "interleave"), ("pre", "paper", "interleave"),
         ("post", "paper", "top")]


# The grown stacks of a two-layer model (2 new encoder layers, 1 new decoder layer): the old layer at each
# position, None for a new one. Written out by hand, not computed by the code under test.
ORDERS = {("top", "encoder"): [0, 1, None, None], ("top", "decoder"): [0, 1, None],
          ("interleave", "encoder"): [0, None, 1, None], ("interleave", "decoder"): [0, None, 1]}


@pytest.mark.parametrize("norm,init,position", CASES)
def test_grow_deeper_and_wider(norm, init, position, prenorm, postnorm, tiny_data, tmp_path):
    ckpt = prenorm if norm == "pre" else postnorm
    before = sha256_file(ckpt)
    out = tmp_path / "grown"
    res = _grow(ckpt, tiny_data, out, "--new-langs", "", "--add-encoder-layers", "2", "--add-decoder-layers", "1",
                "--widen-ffn", "2", "--grow-init", init, "--grow-position", position)
    assert sha256_file(ckpt) == before
    assert "--encoder-layers 4 --decoder-layers 3 --encoder-ffn-embed-dim 128" in res.stdout
    old, new = read_checkpoint(ckpt), read_checkpoint(out / "checkpoint.pt")
    report = json.loads((out / "upgrade.json").read_text())
    assert report["vocab_mode"] == "keep" and report["growth"]["init"] == init
    cfg = new["cfg"]["model"]
    assert (cfg.encoder_layers, cfg.decoder_layers, cfg.encoder_ffn_embed_dim, cfg.decoder_ffn_embed_dim) == (4, 3, 128, 128)
    check_architecture(new["model"], cfg, "grown")
    record = NewParameterRecord.from_task_state(new["task_state"])
    record.check_shapes({k: tuple(v.shape) for k, v in new["model"].items()}, "grown")
    for side in ("encoder", "decoder"):
        order = ORDERS[(position, side)]
        old_layers, layers = stack_layers(old["model"], side), stack_layers(new["model"], side)
        assert len(old_layers) == 2 and len(layers) == len(order)
        assert report["growth"][side]["new_layer_indices"] == [j for j, s in enumerate(order) if s is None]
        mean = {k: (old_layers[0][k].float() + old_layers[1][k].float()) / 2 for k in old_layers[0]}
        assert not torch.allclose(old_layers[0]["self_attn.q_proj.weight"], mean["self_attn.q_proj.weight"])
        for j, (layer, source) in enumerate(zip(layers, order)):
            assert layer["fc1.weight"].shape == (128, 32) and layer["fc2.weight"].shape == (32, 128)
            names = [f"{side}.layers.{j}.{k}" for k in layer]
            if source is None:  # a new layer: the average of the stack's old layers (then widened)
                assert all(n in record.whole for n in names)
                assert torch.allclose(layer["self_attn.q_proj.weight"], mean["self_attn.q_proj.weight"], atol=1e-6)
                assert torch.allclose(layer["fc1.weight"][:64], mean["fc1.weight"], atol=1e-6)
                if init == "preserve":
                    assert not layer["fc2.weight"].any() and not layer["self_attn.out_proj.weight"].any()
                else:
                    assert torch.allclose(layer["self_attn.out_proj.weight"], mean["self_attn.out_proj.weight"],
                                          atol=1e-6)
            else:  # an old layer, in its old order, widened
                assert not any(n in record.whole for n in names)
                assert record.slices[f"{side}.layers.{j}.fc1.weight"] == [[0, 64, 128]]
                assert record.slices[f"{side}.layers.{j}.fc2.weight"] == [[1, 64, 128]]
                assert torch.equal(layer["self_attn.q_proj.weight"], old_layers[source]["self_attn.q_proj.weight"])
                assert torch.equal(layer["fc1.weight"][:64], old_layers[source]["fc1.weight"])
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
    from mmt_upgrade.core.paths import cache_dir
    from mmt_upgrade.pipeline.data.prepare import DataConfig, prepare_data

    out = tmp_path / "grown"
    texts = [a for lang in ("it", "ar") for a in ("--text", f"{lang}={lang_texts[lang]}")]
    _grow(prenorm, tiny_data, out, "--new-spm-size", "500", *texts, "--add-encoder-layers", "1",
          "--add-decoder-layers", "1", "--widen-ffn", "2", "--grow-init", "preserve")
    code, figures, stdout = _verify(prenorm, out, tiny_data, tmp_path)
    assert code == 0 and figures["ok"] and figures["tolerance"] == 1e-4, stdout
    report = json.loads((out / "upgrade.json").read_text())
    assert report["vocab"]["added"] > 0 and report["growth"]["config"]["encoder_layers"] == 3

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
    # the upgrade's own directory serves as fairseq-interactive's dictionary directory
    assert_interactive_equals_generate(data.bin_dir, tmp_path / "ft" / "checkpoint_last.pt", data.langs, "it", "en",
                                       data, interactive_dir=out)


def test_bad_growth_inputs(tiny_trained, tiny_data, tmp_path):
    postnorm = tiny_trained[0] / "checkpoint_best.pt"  # one layer per stack
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
