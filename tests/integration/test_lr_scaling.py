"""`--optimizer adam_scaled` and the up-sampling task through the real fairseq-train on an upgraded
checkpoint (the exact update rule: tests/unit/test_lr_scaling.py)."""
from __future__ import annotations

import json
import re

import pytest
import torch

from mmt_upgrade.core.paths import cache_dir
from mmt_upgrade.core.record import NewParameterRecord
from mmt_upgrade.fairseq_io.checkpoint import read_checkpoint
from mmt_upgrade.pipeline.data.prepare import DataConfig, prepare_data

from ..conftest import run_cli, tiny_train_argv


def test_both_plugins_through_fairseq_train_on_an_upgraded_checkpoint(tiny_trained, tiny_data, lang_texts,
                                                                       tmp_path):
    ckpt = tiny_trained[0] / "checkpoint_best.pt"
    up = tmp_path / "up"
    texts = [a for lang in ("it", "ar") for a in ("--text", f"{lang}={lang_texts[lang]}")]
    run_cli("mmt-upgrade", "upgrade", str(ckpt), "--out", str(up), "--old-data", str(tiny_data.root),
            "--new-spm-size", "500", *texts)
    cfg = DataConfig(**{**tiny_data.manifest["config"], "langs": ["es", "fr", "it", "ar"], "max_train_pairs": 100,
                        "tokenizer": str(up)})
    data = prepare_data(cfg, cache_dir(), tmp_path / "data")
    save = tmp_path / "ft"
    argv = tiny_train_argv(data, save, **{"max-update": 3, "save-interval-updates": 0, "log-interval": 1,
                                          "optimizer": "adam_scaled", "lr-scale-old": 0, "lr-scale-new": 1})
    upsampling = ["--upsample-langs", "it,ar", "--upsample-factor", "3", "--related-langs", "es",
                  "--related-factor", "1.5"]
    log = run_cli("fairseq-train", *argv, *upsampling, "--finetune-from-model", str(up / "checkpoint.pt"))
    text = log.stdout + log.stderr
    probs = {k: v["probability"] for k, v in json.loads((save / "sampling.json").read_text())["directions"].items()}
    assert probs["main:it-en"] / probs["main:fr-en"] == pytest.approx(3.0, rel=0.05)  # equal-size pairs
    assert probs["main:es-en"] / probs["main:fr-en"] == pytest.approx(1.5, rel=0.05)
    assert "adam_scaled group mixed: lr x 1, 1 tensors (row/column masks on 1)" in text
    logged = {k: float(v) for k, v in re.findall(r"\b(lr_old|lr_mixed)[= ]([\d.e-]+)", text)}
    assert logged["lr_old"] == 0 and logged["lr_mixed"] > 0, text[-3000:]
    start, trained = read_checkpoint(up / "checkpoint.pt")["model"], read_checkpoint(save / "checkpoint_last.pt")
    record = NewParameterRecord.from_task_state(trained["task_state"])
    emb, emb0 = trained["model"]["encoder.embed_tokens.weight"], start["encoder.embed_tokens.weight"]
    new = record.new_mask("encoder.embed_tokens.weight", emb.shape)[:, 0]
    assert torch.equal(emb[~new], emb0[~new]) and not torch.equal(emb[new], emb0[new])
    for name in ("encoder.layers.0.fc1.weight", "decoder.layers.0.self_attn.k_proj.bias"):
        assert torch.equal(trained["model"][name], start[name]), name
    groups = trained["last_optimizer_state"]["param_groups"]
    assert {g["label"]: g["lr_scale"] for g in groups} == {"mixed": 1.0, "old": 0.0}
    log = run_cli("fairseq-train", *argv, *upsampling, "--finetune-from-model", str(up / "checkpoint.pt"),
                  "--max-update", "5")
    assert "Loaded checkpoint" in log.stdout + log.stderr
    resumed = read_checkpoint(save / "checkpoint_last.pt")
    assert torch.equal(resumed["model"]["encoder.embed_tokens.weight"][~new], emb0[~new])
    assert json.dumps(resumed["task_state"]["upgrade_record"]) == json.dumps(record.to_dict())
