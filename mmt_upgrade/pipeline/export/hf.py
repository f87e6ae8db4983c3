"""`export --to hf`: a fairseq multilingual model as a Hugging Face `M2M100ForConditionalGeneration` directory
that `AutoModelForSeq2SeqLM` and `AutoTokenizer` load: config, safetensors weights, generation config, and an
`NllbTokenizer` (slow and fast) on the model's one SentencePiece model whose every language code, old and new,
is a language token (`src_lang=`, `tgt_lang=`, the forced first target token). The tensors are the
checkpoint's own, rows in fairseq's order (`core/hf_names.py`, `core/hf_vocab.py`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmt_upgrade.core.fairseq_cfg import cfg_fields
from mmt_upgrade.core.files import sha256_file
from mmt_upgrade.core.hf_names import hf_config, to_hf
from mmt_upgrade.core.hf_vocab import hf_lang_tokens, hf_spm_proto
from mmt_upgrade.core.spm_merge import processor, read_proto
from mmt_upgrade.core.symbols import MASK
from mmt_upgrade.fairseq_io.checkpoint import checkpoint_model_cfg, read_checkpoint
from mmt_upgrade.fairseq_io.model_files import ModelFiles
from mmt_upgrade.pipeline.export.outdir import building, require_extra

SPM_FILE = "sentencepiece.bpe.model"  # NllbTokenizer's vocab file name
EXPORT_JSON = "mmt_export.json"
# fairseq-generate's defaults (beam 5, at most 200 target tokens), as the published M2M-100 generation config
GENERATION = {"num_beams": 5, "max_length": 200, "early_stopping": True}


def write_tokenizer(out: Path, proto: Any, tokens: dict[str, str], rows: dict[str, int], mask: bool) -> None:
    """`NllbTokenizer` files and the fast tokenizer's `tokenizer.json`; every language token is checked to sit at
    its row in both."""
    from tokenizers import decoders
    from tokenizers.models import Unigram
    from transformers import NllbTokenizer, NllbTokenizerFast

    (out / SPM_FILE).write_bytes(proto.SerializeToString())
    langs = list(tokens)
    slow = NllbTokenizer(vocab_file=str(out / SPM_FILE), additional_special_tokens=list(tokens.values()),
                         src_lang=tokens[langs[0]], tgt_lang=tokens[langs[-1]], mask_token=MASK if mask else None,
                         legacy_behaviour=False)
    slow.save_pretrained(out)
    fast = NllbTokenizerFast.from_pretrained(out, from_slow=True)
    if proto.trainer_spec.byte_fallback:  # the converter drops SentencePiece's byte fallback: put it back
        vocab = [(x, 0.0) for x in ("<s>", "<pad>", "</s>", "<unk>")] + [(p.piece, p.score) for p in proto.pieces[3:]]
        backend = fast.backend_tokenizer
        backend.model = Unigram(vocab, 3, True)
        backend.decoder = decoders.Sequence([decoders.ByteFallback(), backend.decoder])
    fast.save_pretrained(out)
    for tok in (slow, NllbTokenizerFast.from_pretrained(out)):
        got = {x: tok.convert_tokens_to_ids(t) for x, t in tokens.items()}
        if got != rows:
            raise AssertionError(f"{type(tok).__name__} put language tokens at {got}, the model has {rows}")


def export_hf(model: ModelFiles, out: Path) -> dict[str, Any]:
    """Write `out` (built beside it, renamed in when complete); returns what was written and from what. A model
    M2M100 cannot express is one error naming the setting, before anything is written."""
    require_extra("hf", "transformers", "safetensors")
    from safetensors.torch import save_file
    from transformers import GenerationConfig, M2M100Config

    state = read_checkpoint(model.checkpoint, mmap=True)
    weights = state["model"]
    config = hf_config(cfg_fields(checkpoint_model_cfg(state)), {k: tuple(v.shape) for k, v in weights.items()})
    tensors = to_hf(weights)
    rows = list(model.layout.rows)
    tokens = hf_lang_tokens(model.langs)
    lang_rows = model.layout.langtok_rows()
    proto, rowless = hf_spm_proto(read_proto(model.spm), rows, {lang_rows[x]: tokens[x] for x in model.langs})
    processor(proto)  # SentencePiece accepts it
    with building(out, "OUT") as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt"})
        hf = M2M100Config(**{k: v for k, v in config.items() if k != "model_type"})
        hf.save_pretrained(tmp)
        generation = GenerationConfig.from_model_config(hf)
        generation.update(**GENERATION)
        generation.save_pretrained(tmp)
        write_tokenizer(tmp, proto, tokens, lang_rows, MASK in rows)
        report = {
            "format": 1, "to": "hf", "checkpoint": str(model.checkpoint), "dictionary": str(model.dictionary),
            "spm": str(model.spm), "checkpoint_sha256": sha256_file(model.checkpoint),
            "lang_tokens": tokens, "rows": len(rows), "layout": model.layout.describe(),
            "pieces_without_row": rowless[:50], "pieces_without_row_count": len(rowless),
            "config": {k: config[k] for k in ("vocab_size", "d_model", "encoder_layers", "decoder_layers",
                                              "encoder_ffn_dim", "decoder_ffn_dim", "activation_function")},
        }
        (tmp / EXPORT_JSON).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return {**report, "out": str(Path(out).absolute())}
