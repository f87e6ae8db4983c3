"""fairseq transformer <-> Hugging Face `M2M100ForConditionalGeneration`: tensor names and model settings.

Both compute the same function when the fairseq model is what M2M-100 and NLLB-200 are: pre-norm layers with a
final layer norm per stack, one embedding shared by encoder, decoder and output projection, scaled by sqrt(d)
(`scale_embedding`), sinusoidal positions counted from padding_idx + 1 (fairseq's `make_positions`; HF's
`create_position_ids_from_input_ids` with pad 1), no embedding layer norm. Layer tensors have the same names
under `model.`; fairseq's `version` buffers and HF's tied copies (`lm_head`, `*.embed_tokens`) are bookkeeping.
Anything else is refused by name, never approximated: a silently different model would be worse than none.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from mmt_upgrade.core.errors import UserInputError

# fairseq --activation-fn -> HF activation_function (same formula: gelu_accurate is HF's tanh-approximated gelu_new)
ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "gelu_accurate": "gelu_new", "gelu_fast": "gelu_new",
               "tanh": "tanh", "linear": "linear", "swish": "silu"}
HF_ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "gelu_new": "gelu_accurate", "tanh": "tanh", "linear": "linear",
                  "silu": "swish", "swish": "swish"}
SHARED = "model.shared.weight"
FAIRSEQ_EMBEDDINGS = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight")
HF_TIED = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight")
FAIRSEQ_BUFFERS = ("encoder.version", "decoder.version")
_ENC = r"encoder\.layers\.\d+\.(self_attn\.(k|v|q|out)_proj|self_attn_layer_norm|fc1|fc2|final_layer_norm)\.(weight|bias)"
_DEC = (r"decoder\.layers\.\d+\.((self_attn|encoder_attn)\.(k|v|q|out)_proj|self_attn_layer_norm|"
        r"encoder_attn_layer_norm|fc1|fc2|final_layer_norm)\.(weight|bias)")
LAYER_TENSOR = re.compile(rf"({_ENC}|{_DEC}|(encoder|decoder)\.layer_norm\.(weight|bias))")
POSITIONS = re.compile(r"(model\.)?(encoder|decoder)\.embed_positions\.(weights|_float_tensor)")
PAD, BOS, EOS = 1, 0, 2  # fairseq's <pad>, <s>, </s> ids; HF's config uses the same


def _flag(value: Any) -> bool:
    return bool(value) and value != "False"


def _stack_sizes(shapes: Mapping[str, tuple[int, ...]], stack: str) -> tuple[int, int]:
    """(layers, ffn width) of one stack, from the state dict; every layer must have the same width."""
    widths = {int(m.group(1)): shape[0] for name, shape in shapes.items()
              if (m := re.fullmatch(rf"{stack}\.layers\.(\d+)\.fc1\.weight", name))}
    if sorted(widths) != list(range(len(widths))):
        raise UserInputError(f"the checkpoint's {stack} layers are not numbered 0..{len(widths) - 1}")
    if len(set(widths.values())) > 1:
        raise UserInputError(f"{stack} layers have different FFN widths {sorted(set(widths.values()))}: "
                             "Hugging Face M2M100 has one encoder_ffn_dim/decoder_ffn_dim per stack")
    return len(widths), next(iter(widths.values()), 0)


def hf_config(cfg: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """The `M2M100Config` fields of a fairseq transformer (`cfg`: its model settings; `shapes`: its state dict's
    tensor shapes); a setting M2M100 cannot express is one error naming it."""
    def refuse(setting: str, why: str) -> None:
        raise UserInputError(f"Hugging Face M2M100 cannot express this model: {setting} ({why})")

    for flag, why in (("encoder_normalize_before", "post-norm encoder; M2M100 layers are pre-norm"),
                      ("decoder_normalize_before", "post-norm decoder; M2M100 layers are pre-norm")):
        if not _flag(cfg.get(flag)):
            refuse(f"--{flag.replace('_', '-')} is off", why)
    for flag, why in (("encoder_learned_pos", "learned positions; M2M100 has sinusoidal ones"),
                      ("decoder_learned_pos", "learned positions; M2M100 has sinusoidal ones"),
                      ("no_token_positional_embeddings", "no positions; M2M100 always adds them"),
                      ("layernorm_embedding", "an embedding layer norm, which M2M100 lacks"),
                      ("adaptive_input", "adaptive input embeddings"), ("cross_self_attention", "M2M100 lacks it"),
                      ("no_cross_attention", "M2M100 decoders always attend to the encoder")):
        if _flag(cfg.get(flag)):
            refuse(f"--{flag.replace('_', '-')}", why)
    if cfg.get("adaptive_softmax_cutoff"):
        refuse("--adaptive-softmax-cutoff", "M2M100 has one output projection")
    if not _flag(cfg.get("share_all_embeddings")):
        refuse("--share-all-embeddings is off", "M2M100 ties encoder, decoder and output embeddings to one matrix")
    d = int(cfg["encoder_embed_dim"])
    for key in ("decoder_embed_dim", "decoder_input_dim", "decoder_output_dim"):
        if cfg.get(key) is not None and int(cfg[key]) != d:
            refuse(f"--{key.replace('_', '-')} {cfg[key]} != --encoder-embed-dim {d}",
                   "M2M100 has one d_model for encoder and decoder")
    activation = cfg.get("activation_fn") or "relu"
    if activation not in ACTIVATIONS:
        refuse(f"--activation-fn {activation}", f"M2M100 activations fairseq shares: {', '.join(ACTIVATIONS)}")
    enc_layers, enc_ffn = _stack_sizes(shapes, "encoder")
    dec_layers, dec_ffn = _stack_sizes(shapes, "decoder")
    vocab = shapes["encoder.embed_tokens.weight"][0]
    return {
        "model_type": "m2m_100", "architectures": ["M2M100ForConditionalGeneration"], "vocab_size": vocab,
        "d_model": d, "encoder_layers": enc_layers, "decoder_layers": dec_layers, "encoder_ffn_dim": enc_ffn,
        "decoder_ffn_dim": dec_ffn, "encoder_attention_heads": int(cfg["encoder_attention_heads"]),
        "decoder_attention_heads": int(cfg["decoder_attention_heads"]), "activation_function": ACTIVATIONS[activation],
        "dropout": float(cfg.get("dropout") or 0.0), "attention_dropout": float(cfg.get("attention_dropout") or 0.0),
        "activation_dropout": float(cfg.get("activation_dropout") or 0.0),
        "encoder_layerdrop": float(cfg.get("encoder_layerdrop") or 0.0),
        "decoder_layerdrop": float(cfg.get("decoder_layerdrop") or 0.0),
        "max_position_embeddings": max(int(cfg.get("max_source_positions") or 1024),
                                       int(cfg.get("max_target_positions") or 1024)),
        "scale_embedding": not _flag(cfg.get("no_scale_embedding")), "tie_word_embeddings": True,
        "pad_token_id": PAD, "bos_token_id": BOS, "eos_token_id": EOS, "decoder_start_token_id": EOS,
        "is_encoder_decoder": True, "use_cache": True,
    }


def to_hf(state: Mapping[str, Any]) -> dict[str, Any]:
    """fairseq state dict -> the tensors `save_pretrained` writes (the shared embedding once). Tied fairseq
    embeddings must be equal; a tensor without an M2M100 counterpart is an error naming it."""
    emb = state[FAIRSEQ_EMBEDDINGS[0]]
    for name in FAIRSEQ_EMBEDDINGS[1:]:
        if name in state and not (state[name] is emb or _equal(state[name], emb)):
            raise UserInputError(f"Hugging Face M2M100 cannot express this model: {name} differs from "
                                 f"{FAIRSEQ_EMBEDDINGS[0]} (unshared embeddings; M2M100 ties them)")
    out = {SHARED: emb}
    for name, tensor in state.items():
        if name in FAIRSEQ_EMBEDDINGS or name in FAIRSEQ_BUFFERS or POSITIONS.fullmatch(name):
            continue
        if not LAYER_TENSOR.fullmatch(name):
            raise UserInputError(f"Hugging Face M2M100 cannot express this model: tensor {name} has no counterpart "
                                 "(a layer type or option M2M100 lacks)")
        out[f"model.{name}"] = tensor
    for stack in ("encoder", "decoder"):
        if f"{stack}.layer_norm.weight" not in state:
            raise UserInputError(f"Hugging Face M2M100 cannot express this model: no final {stack} layer norm "
                                 f"({stack}.layer_norm; M2M100 always applies one)")
    return out


def to_fairseq(hf: Mapping[str, Any]) -> dict[str, Any]:
    """HF M2M100 tensors (`model.`-prefixed or bare M2M100Model names) -> a fairseq transformer state dict with
    shared embeddings (one tensor under all three names) and the `version` buffers fairseq writes."""
    hf = {(k if k.startswith(("model.", "lm_head.")) else f"model.{k}"): v for k, v in hf.items()}
    emb = next((hf[k] for k in (SHARED, *HF_TIED) if k in hf), None)
    if emb is None:
        raise UserInputError(f"no embedding tensor ({SHARED}) in the weights")
    for name in (SHARED, *HF_TIED):
        if name in hf and not _equal(hf[name], emb):
            raise UserInputError(f"{name} differs from the other embeddings: untied embeddings are not an "
                                 "M2M-100/NLLB model this toolkit imports")
    out: dict[str, Any] = dict.fromkeys(FAIRSEQ_EMBEDDINGS, emb)
    for name, tensor in hf.items():
        if name in (SHARED, *HF_TIED) or POSITIONS.fullmatch(name):
            continue
        bare = name.removeprefix("model.")
        if not LAYER_TENSOR.fullmatch(bare):
            raise UserInputError(f"weights tensor {name} is not part of an M2M100 model")
        out[bare] = tensor
    # the buffers fairseq's TransformerEncoder/Decoder write (version 3: current layer-norm names)
    out.update({name: torch.tensor([3.0]) for name in FAIRSEQ_BUFFERS})
    return out


def _equal(a: Any, b: Any) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def fairseq_model_flags(config: Mapping[str, Any]) -> list[str]:
    """fairseq-train's model flags for an HF M2M100 config (what `import` writes into the checkpoint's cfg and
    what fine-tuning the imported model needs: fairseq builds the model from its flags)."""
    if config.get("model_type") != "m2m_100":
        raise UserInputError(f"config.json model_type {config.get('model_type')!r}: import reads Hugging Face "
                             "M2M-100/NLLB models (model_type m2m_100)")
    if config.get("tie_word_embeddings", True) is False:
        raise UserInputError("config.json tie_word_embeddings false: untied embeddings are not an M2M-100/NLLB "
                             "model this toolkit imports")
    activation = config.get("activation_function", "relu")
    if activation not in HF_ACTIVATIONS:
        raise UserInputError(f"config.json activation_function {activation!r}: fairseq has "
                             f"{', '.join(HF_ACTIVATIONS)}")
    for key, want in (("pad_token_id", PAD), ("bos_token_id", BOS), ("eos_token_id", EOS)):
        if config.get(key, want) != want:
            raise UserInputError(f"config.json {key} {config.get(key)}: fairseq's is {want}")
    d = int(config["d_model"])
    positions = int(config.get("max_position_embeddings", 1024))
    flags = ["--arch", "transformer", "--share-all-embeddings", "--encoder-normalize-before",
             "--decoder-normalize-before", "--activation-fn", HF_ACTIVATIONS[activation],
             "--encoder-embed-dim", str(d), "--decoder-embed-dim", str(d)]
    for stack in ("encoder", "decoder"):
        flags += [f"--{stack}-layers", str(config[f"{stack}_layers"]),
                  f"--{stack}-ffn-embed-dim", str(config[f"{stack}_ffn_dim"]),
                  f"--{stack}-attention-heads", str(config[f"{stack}_attention_heads"]),
                  f"--{stack}-layerdrop", str(config.get(f"{stack}_layerdrop", 0.0))]
    flags += ["--dropout", str(config.get("dropout", 0.1)), "--attention-dropout",
              str(config.get("attention_dropout", 0.0)), "--activation-dropout",
              str(config.get("activation_dropout", 0.0)), "--max-source-positions", str(positions),
              "--max-target-positions", str(positions)]
    return flags + ([] if config.get("scale_embedding", True) else ["--no-scale-embedding"])
