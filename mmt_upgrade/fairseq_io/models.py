"""fairseq models loaded the way fairseq-generate loads them, and batches laid out as fairseq collates them
(used by `verify` and by the distillation teacher)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from mmt_upgrade.core.paths import PLUGIN_DIR
from mmt_upgrade.core.vocab import Tokenizer, lang_token


@dataclass
class LoadedModel:
    model: torch.nn.Module
    symbols: list[str]  # fairseq's full symbol list: specials, pieces, language tokens
    tokenizer: Tokenizer
    index: dict[str, int] = field(init=False, repr=False)  # symbol -> id, built once

    def __post_init__(self) -> None:
        self.index = {s: i for i, s in enumerate(self.symbols)}

    def ids(self, pieces: Sequence[str]) -> list[int]:
        unk = self.index["<unk>"]
        return [self.index.get(p, unk) for p in pieces]


def load_model(checkpoint: Path, dict_dir: Path, tokenizer: Tokenizer) -> LoadedModel:
    """A checkpoint loaded the way fairseq-generate loads it, in eval mode on CPU."""
    from argparse import Namespace

    from fairseq import checkpoint_utils, utils

    utils.import_user_module(Namespace(user_dir=str(PLUGIN_DIR)))
    quiet = [logging.getLogger(name) for name in ("fairseq", "fairseq_plugins")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:  # fairseq narrates every dictionary it loads
        lg.setLevel(logging.WARNING)
    try:
        models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
            [str(checkpoint)], arg_overrides={"data": str(dict_dir)})
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
    model = models[0].float().eval()
    return LoadedModel(model, list(task.source_dictionary.symbols), tokenizer)


def collate_pairs(srcs: list[torch.Tensor], tgts: list[torch.Tensor] | None, pad: int, eos: int):
    """fairseq's translation batch layout from unpadded `__src__ x </s>` and `__tgt__ y </s>` rows:
    left-padded sources `(B, S)`, lengths `(B,)`, and when `tgts` is given right-padded decoder input
    `</s> __tgt__ y` and target `(B, T)` (the target starts with the language token, as fairseq trains)."""
    from fairseq.data import data_utils

    src_tokens = data_utils.collate_tokens(srcs, pad, left_pad=True)
    src_lengths = torch.tensor([len(s) for s in srcs])
    if tgts is None:
        return src_tokens, src_lengths, None, None
    target = data_utils.collate_tokens(tgts, pad, left_pad=False)
    prev = data_utils.collate_tokens(tgts, pad, eos, left_pad=False, move_eos_to_beginning=True)
    return src_tokens, src_lengths, prev, target


@torch.no_grad()
def teacher_forced_logits(m: LoadedModel, src_tokens, src_lengths, prev) -> torch.Tensor:
    """`(B, T, V)` output logits."""
    logits, _ = m.model(src_tokens, src_lengths, prev)
    return logits.float()


@torch.no_grad()
def greedy(m: LoadedModel, src_tokens, src_lengths, tgt_lang: str, max_len: int,
           banned: torch.Tensor | None = None) -> list[list[str]]:
    """Greedy decoding as fairseq-generate starts it (`</s> __tgt__`); `banned` ids never win."""
    eos = m.index["</s>"]
    bsz = src_tokens.shape[0]
    enc = m.model.encoder(src_tokens, src_lengths=src_lengths)
    tokens = torch.tensor([[eos, m.index[lang_token(tgt_lang)]]]).repeat(bsz, 1)
    done = torch.zeros(bsz, dtype=torch.bool)
    state: dict = {}
    for _ in range(max_len):
        logits, _ = m.model.decoder(tokens, encoder_out=enc, incremental_state=state)
        step = logits[:, -1].float()
        if banned is not None:
            step[:, banned] = float("-inf")
        nxt = step.argmax(-1).masked_fill(done, eos)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt == eos
        if done.all():
            break
    out = []
    for row in tokens[:, 2:].tolist():
        row = row[: row.index(eos)] if eos in row else row
        out.append([m.symbols[i] for i in row])
    return out
