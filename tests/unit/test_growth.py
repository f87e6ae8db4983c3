"""Depth growth on hand-made state dicts with three distinct layers per stack: where new layers go, and
what they hold (the average of the old layers; zero branches and moved norms for `preserve`)."""
from __future__ import annotations

import pytest
import torch

from mmt_upgrade.core.growth import grow_depth, layer_order, stack_layers
from mmt_upgrade.core.record import NewParameterRecord

SUFFIXES = ("self_attn.q_proj.weight", "self_attn.out_proj.weight", "self_attn_layer_norm.weight",
            "self_attn_layer_norm.bias", "fc1.weight", "fc1.bias", "fc2.weight", "final_layer_norm.weight",
            "final_layer_norm.bias")


def _state(n_layers: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    state = {"encoder.embed_tokens.weight": torch.randn(10, 4, generator=g)}
    for i in range(n_layers):
        for suffix in SUFFIXES:
            state[f"encoder.layers.{i}.{suffix}"] = torch.randn(4, 4, generator=g) + 10 * i  # layers differ
    return state


def test_layer_order_places_new_layers_on_top_or_between():
    assert layer_order(3, 2, "top") == [0, 1, 2, None, None]
    assert layer_order(4, 2, "interleave") == [0, 1, None, 2, None, 3]
    assert layer_order(3, 2, "interleave") == [0, None, 1, None, 2]
    assert layer_order(1, 1, "interleave") == [0, None]


@pytest.mark.parametrize("position, expected", [("top", [0, 1, 2, None, None]),
                                                ("interleave", [0, None, 1, None, 2])])
def test_paper_growth_keeps_old_layers_in_order_and_averages_them_into_new_ones(position, expected):
    state = _state()
    old = stack_layers(state, "encoder")
    record = NewParameterRecord()
    report = grow_depth(state, "encoder", 2, "paper", position, normalize_before=True, record=record)
    grown = stack_layers(state, "encoder")
    assert report == {"layers_before": 3, "layers_after": 5,
                      "new_layer_indices": [j for j, s in enumerate(expected) if s is None]}
    for j, source in enumerate(expected):
        for suffix in SUFFIXES:
            name = f"encoder.layers.{j}.{suffix}"
            if source is None:
                mean = (old[0][suffix] + old[1][suffix] + old[2][suffix]) / 3
                assert torch.allclose(grown[j][suffix], mean, atol=1e-5), name
                assert name in record.whole
            else:
                assert torch.equal(grown[j][suffix], old[source][suffix]), name
                assert name not in record.whole
    assert torch.equal(state["encoder.embed_tokens.weight"], _state()["encoder.embed_tokens.weight"])


def test_preserving_growth_of_a_post_norm_stack_zeroes_branches_and_moves_the_final_norm():
    state = _state()
    old = stack_layers(state, "encoder")
    grow_depth(state, "encoder", 2, "preserve", "interleave", normalize_before=False, record=NewParameterRecord())
    grown = stack_layers(state, "encoder")  # [0, new, 1, new, 2]
    for j, prev in ((1, 0), (3, 1)):
        new = grown[j]
        assert not new["self_attn.out_proj.weight"].any() and not new["fc2.weight"].any()
        assert torch.allclose(new["self_attn.q_proj.weight"], sum(layer["self_attn.q_proj.weight"] for layer in old) / 3)
        assert torch.equal(new["self_attn_layer_norm.weight"], torch.ones(4, 4))
        assert not new["self_attn_layer_norm.bias"].any()
        # the predecessor's final norm moves to the end of the new block and becomes the plain normalization
        assert torch.equal(new["final_layer_norm.weight"], old[prev]["final_layer_norm.weight"])
        assert torch.equal(new["final_layer_norm.bias"], old[prev]["final_layer_norm.bias"])
        assert torch.equal(grown[j - 1]["final_layer_norm.weight"], torch.ones(4, 4))
        assert not grown[j - 1]["final_layer_norm.bias"].any()
    assert torch.equal(grown[4]["final_layer_norm.weight"], old[2]["final_layer_norm.weight"])
