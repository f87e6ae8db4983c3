"""`--optimizer adam_scaled`: an exact lr multiplier under Adam, per parameter and per row."""
from __future__ import annotations

import math

import pytest
import torch

import fairseq_plugins  # noqa: F401  (registers adam_scaled)
from fairseq_plugins.optim.adam_scaled import AdamScaled, AdamScaledConfig
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.lr_scaling import parameter_scale, parse_rules
from mmt_upgrade.core.record import NewParameterRecord

LR, B1, B2, EPS = 0.1, 0.9, 0.98, 1e-8


def _params():
    g = torch.Generator().manual_seed(0)
    shapes = {"encoder.embed_tokens.weight": (6, 3), "decoder.layers.1.fc1.weight": (4, 3),
              "encoder.layers.0.fc1.weight": (4, 3), "encoder.layers.0.fc2.weight": (3, 4), "decoder.bias": (3,)}
    params = {}
    for name, shape in shapes.items():
        p = torch.nn.Parameter(torch.randn(shape, generator=g, dtype=torch.float64))
        p.param_group = name
        params[name] = p
    record = NewParameterRecord()
    record.add_rows("encoder.embed_tokens.weight", 4, 6)
    record.add_whole("decoder.layers.1.fc1.weight")
    record.add_slice("encoder.layers.0.fc2.weight", 1, 2, 4)
    return params, record


def _optimizer(tmp_path, params, record, **flags) -> AdamScaled:
    ckpt = tmp_path / "start.pt"
    torch.save({"model": {}, "cfg": {}, "task_state": {"upgrade_record": record.to_dict()}}, ckpt)
    cfg = AdamScaledConfig(lr=[LR], adam_betas=f"({B1},{B2})", adam_eps=EPS, save_dir=str(tmp_path / "none"),
                           restore_file="checkpoint_last.pt", finetune_from_model=str(ckpt), **flags)
    return AdamScaled(cfg, list(params.values()))


def _grads(params, seed):
    g = torch.Generator().manual_seed(seed)
    for p in params.values():
        p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)


def test_one_step_moves_old_entries_by_exactly_s_times_the_adam_step(tmp_path):
    params, record = _params()
    opt = _optimizer(tmp_path, params, record, lr_scale_old=0.25, lr_scale_new=1.0,
                     lr_scale_rules="encoder.layers.0.fc1.*=0.5")
    before = {k: p.detach().clone() for k, p in params.items()}
    _grads(params, 1)
    grads = {k: p.grad.clone() for k, p in params.items()}
    opt.step()
    for name, p in params.items():
        g = grads[name]  # first Adam step: m = (1-b1) g, v = (1-b2) g^2, bias-corrected step size
        ref = -LR * math.sqrt(1 - B2) * g / (math.sqrt(1 - B2) * g.abs() + EPS)
        scale = torch.full_like(g, 0.25)
        if name == "encoder.layers.0.fc1.weight":
            scale[:] = 0.5  # the rule
        if name == "decoder.layers.1.fc1.weight":
            scale[:] = 1.0  # a whole new parameter
        if name == "encoder.embed_tokens.weight":
            scale[4:] = 1.0  # new rows
        if name == "encoder.layers.0.fc2.weight":
            scale[:, 2:] = 1.0  # new columns
        torch.testing.assert_close(p.detach() - before[name], scale * ref, rtol=1e-12, atol=1e-15)
    assert opt.get_lr() == LR
    assert {g["label"]: g["lr"] for g in opt.param_groups} == {"mixed": LR, "new": LR, "old*0.5": LR * 0.5,
                                                               "old": LR * 0.25}


def test_zero_old_scale_freezes_old_entries_bit_identically(tmp_path):
    params, record = _params()
    opt = _optimizer(tmp_path, params, record, lr_scale_old=0.0, lr_scale_new=2.0)
    before = {k: p.detach().clone() for k, p in params.items()}
    for step in range(5):
        opt.set_lr(LR * (step + 1))  # as fairseq's scheduler does on every update
        _grads(params, step)
        opt.step()
    emb = params["encoder.embed_tokens.weight"].detach()
    assert torch.equal(emb[:4], before["encoder.embed_tokens.weight"][:4])
    assert not torch.equal(emb[4:], before["encoder.embed_tokens.weight"][4:])
    assert torch.equal(params["decoder.bias"].detach(), before["decoder.bias"])
    fc2 = params["encoder.layers.0.fc2.weight"].detach()
    assert torch.equal(fc2[:, :2], before["encoder.layers.0.fc2.weight"][:, :2])
    assert {g["label"]: g["lr"] for g in opt.param_groups}["new"] == LR * 5 * 2.0


def test_resume_keeps_groups_and_refuses_a_changed_grouping(tmp_path):
    params, record = _params()
    opt = _optimizer(tmp_path, params, record, lr_scale_old=0.1)
    _grads(params, 0)
    opt.step()
    state = opt.state_dict()
    again = _optimizer(tmp_path, params, record, lr_scale_old=0.1)
    again.load_state_dict(state)
    assert [(g["label"], g["lr_scale"]) for g in again.param_groups] == \
        [(g["label"], g["lr_scale"]) for g in opt.param_groups]
    assert all(torch.equal(again.optimizer.state[p]["exp_avg"], opt.optimizer.state[p]["exp_avg"])
               for p in params.values())
    other = _optimizer(tmp_path, params, record, lr_scale_old=0.1, lr_scale_rules="decoder.bias=0.3")
    with pytest.raises(UserInputError, match="same --lr-scale-"):
        other.load_state_dict(state)


def test_scales_reduce_to_rows_or_columns_and_bad_rules_are_refused():
    _, record = _params()
    rows = parameter_scale("encoder.embed_tokens.weight", (6, 3), record, 0.1, 1.0, [])
    cols = parameter_scale("encoder.layers.0.fc2.weight", (3, 4), record, 0.1, 1.0, [])
    assert rows.shape == (6, 1) and cols.shape == (1, 4)
    assert cols.flatten().tolist() == pytest.approx([0.1, 0.1, 1.0, 1.0])
    assert parameter_scale("x.weight", (2,), None, 0.3, 1.0, parse_rules("x.*=0.7")) == 0.7
    for bad in ("x.*", "x.*=-1", "=2", "a=b"):
        with pytest.raises(UserInputError, match="PATTERN=SCALE"):
            parse_rules(bad)
