"""The fairseq <-> Hugging Face M2M100 mapping (core/hf_names.py), without transformers: tensor names both
ways, the config, and every setting M2M100 cannot express refused by name."""
from __future__ import annotations

import pytest
import torch

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.hf_names import SHARED, fairseq_model_flags, hf_config, to_fairseq, to_hf

D, V = 8, 20
CFG = {"encoder_embed_dim": D, "decoder_embed_dim": D, "decoder_input_dim": D, "decoder_output_dim": D,
       "encoder_attention_heads": 2, "decoder_attention_heads": 4, "share_all_embeddings": True,
       "encoder_normalize_before": True, "decoder_normalize_before": True, "activation_fn": "relu",
       "max_source_positions": 256, "max_target_positions": 512, "dropout": 0.1}


def _layer(prefix: str, ffn: int, cross: bool) -> dict[str, torch.Tensor]:
    out = {}
    for attn in ("self_attn",) + (("encoder_attn",) if cross else ()):
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            out[f"{prefix}.{attn}.{proj}.weight"], out[f"{prefix}.{attn}.{proj}.bias"] = torch.randn(D, D), torch.randn(D)
    norms = ["self_attn_layer_norm", "final_layer_norm"] + (["encoder_attn_layer_norm"] if cross else [])
    for norm in norms:
        out[f"{prefix}.{norm}.weight"], out[f"{prefix}.{norm}.bias"] = torch.randn(D), torch.randn(D)
    out[f"{prefix}.fc1.weight"], out[f"{prefix}.fc1.bias"] = torch.randn(ffn, D), torch.randn(ffn)
    out[f"{prefix}.fc2.weight"], out[f"{prefix}.fc2.bias"] = torch.randn(D, ffn), torch.randn(D)
    return out


def fairseq_state(enc_ffn=(16, 16), dec_ffn=(12,)) -> dict[str, torch.Tensor]:
    """A fairseq pre-norm transformer's state dict, as fairseq-train saves it (tied embeddings: one tensor)."""
    torch.manual_seed(0)
    emb = torch.randn(V, D)
    state = {"encoder.version": torch.tensor([3.0]), "decoder.version": torch.tensor([3.0]),
             "encoder.embed_tokens.weight": emb, "decoder.embed_tokens.weight": emb,
             "decoder.output_projection.weight": emb}
    for i, ffn in enumerate(enc_ffn):
        state.update(_layer(f"encoder.layers.{i}", ffn, False))
    for i, ffn in enumerate(dec_ffn):
        state.update(_layer(f"decoder.layers.{i}", ffn, True))
    for stack in ("encoder", "decoder"):
        state[f"{stack}.layer_norm.weight"], state[f"{stack}.layer_norm.bias"] = torch.randn(D), torch.randn(D)
    return state


def _shapes(state):
    return {k: tuple(v.shape) for k, v in state.items()}


def test_names_both_ways_keep_every_tensor():
    state = fairseq_state()
    hf = to_hf(state)
    assert hf[SHARED] is state["encoder.embed_tokens.weight"]
    assert "model.decoder.layers.0.encoder_attn.q_proj.weight" in hf and "model.encoder.layer_norm.bias" in hf
    assert len(hf) == len(state) - 4  # the embedding once; no version buffers
    back = to_fairseq(hf)
    assert sorted(back) == sorted(state)
    assert all(torch.equal(back[k], state[k]) for k in state)
    bare = to_fairseq({k.removeprefix("model."): v for k, v in hf.items()})  # M2M100Model names work too
    assert all(torch.equal(bare[k], state[k]) for k in state)


def test_config_from_the_state_and_flags():
    config = hf_config(CFG, _shapes(fairseq_state()))
    assert (config["vocab_size"], config["d_model"], config["encoder_layers"], config["decoder_layers"]) == (V, D, 2, 1)
    assert (config["encoder_ffn_dim"], config["decoder_ffn_dim"]) == (16, 12)
    assert (config["encoder_attention_heads"], config["decoder_attention_heads"]) == (2, 4)
    assert config["max_position_embeddings"] == 512 and config["scale_embedding"] is True
    assert (config["pad_token_id"], config["eos_token_id"], config["decoder_start_token_id"]) == (1, 2, 2)
    assert hf_config({**CFG, "no_scale_embedding": True}, _shapes(fairseq_state()))["scale_embedding"] is False
    assert hf_config({**CFG, "activation_fn": "gelu_accurate"}, _shapes(fairseq_state()))[
        "activation_function"] == "gelu_new"
    flags = fairseq_model_flags(config)
    pairs = dict(zip(flags, flags[1:]))
    assert pairs["--encoder-ffn-embed-dim"] == "16" and pairs["--decoder-attention-heads"] == "4"
    assert "--share-all-embeddings" in flags and "--encoder-normalize-before" in flags
    assert "--no-scale-embedding" not in flags
    assert "--no-scale-embedding" in fairseq_model_flags({**config, "scale_embedding": False})


@pytest.mark.parametrize("change, culprit", [
    ({"encoder_normalize_before": False}, "--encoder-normalize-before is off"),
    ({"decoder_normalize_before": False}, "--decoder-normalize-before is off"),
    ({"encoder_learned_pos": True}, "--encoder-learned-pos"),
    ({"decoder_learned_pos": True}, "--decoder-learned-pos"),
    ({"layernorm_embedding": True}, "--layernorm-embedding"),
    ({"no_token_positional_embeddings": True}, "--no-token-positional-embeddings"),
    ({"share_all_embeddings": False}, "--share-all-embeddings is off"),
    ({"decoder_embed_dim": 16}, "--decoder-embed-dim 16"),
    ({"decoder_output_dim": 4}, "--decoder-output-dim 4"),
    ({"activation_fn": "relu_squared"}, "--activation-fn relu_squared"),
    ({"adaptive_softmax_cutoff": "100,200"}, "--adaptive-softmax-cutoff"),
    ({"cross_self_attention": True}, "--cross-self-attention"),
])
def test_a_setting_m2m100_lacks_is_refused_by_name(change, culprit):
    with pytest.raises(UserInputError, match="cannot express") as e:
        hf_config({**CFG, **change}, _shapes(fairseq_state()))
    assert culprit in str(e.value)
    hf_config(CFG, _shapes(fairseq_state()))  # the unchanged config passes: the test can fail


def test_state_dicts_m2m100_cannot_hold_are_refused_by_name():
    with pytest.raises(UserInputError, match="different FFN widths"):
        hf_config(CFG, _shapes(fairseq_state(enc_ffn=(16, 24))))
    unshared = fairseq_state()
    unshared["decoder.output_projection.weight"] = unshared["decoder.output_projection.weight"] + 1
    with pytest.raises(UserInputError, match="decoder.output_projection.weight differs"):
        to_hf(unshared)
    extra = {**fairseq_state(), "encoder.layernorm_embedding.weight": torch.ones(D)}
    with pytest.raises(UserInputError, match="encoder.layernorm_embedding.weight has no counterpart"):
        to_hf(extra)
    post_norm = {k: v for k, v in fairseq_state().items() if not k.startswith("decoder.layer_norm")}
    with pytest.raises(UserInputError, match="no final decoder layer norm"):
        to_hf(post_norm)


@pytest.mark.parametrize("change, culprit", [
    ({"model_type": "bart"}, "model_type 'bart'"), ({"tie_word_embeddings": False}, "tie_word_embeddings"),
    ({"activation_function": "quick_gelu"}, "quick_gelu"), ({"pad_token_id": 0}, "pad_token_id 0"),
])
def test_hf_configs_fairseq_cannot_hold_are_refused(change, culprit):
    config = hf_config(CFG, _shapes(fairseq_state()))
    with pytest.raises(UserInputError) as e:
        fairseq_model_flags({**config, **change})
    assert culprit in str(e.value)
    hf = to_hf(fairseq_state())
    hf["model.encoder.embed_positions.weights"] = torch.zeros(3, D)  # sinusoidal tables some files hold: dropped
    hf["model.encoder.layers.0.gate.weight"] = torch.zeros(D)
    with pytest.raises(UserInputError, match="model.encoder.layers.0.gate.weight"):
        to_fairseq(hf)
