"""fairseq models loaded the way fairseq-generate loads them, and batches laid out as fairseq collates them
(used by `verify` and by the distillation teacher)."""
from __future__ import annotations

import contextlib
import itertools
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from omegaconf import OmegaConf

from mmt_upgrade.core.paths import PLUGIN_DIR
from mmt_upgrade.core.symbols import SymbolLayout, lang_token
from mmt_upgrade.core.vocab import Tokenizer


@dataclass
class LoadedModel:
    model: torch.nn.Module
    symbols: list[str]  # fairseq's full symbol list: specials, pieces, language tokens
    tokenizer: Tokenizer
    style: str = "multilingual"  # --lang-tok-style
    index: dict[str, int] = field(init=False, repr=False)  # symbol -> id, built once

    def __post_init__(self) -> None:
        self.index = {s: i for i, s in enumerate(self.symbols)}

    def langtok(self, lang: str) -> int:
        return self.index[lang_token(lang, self.style)]

    def ids(self, pieces: Sequence[str]) -> list[int]:
        unk = self.index["<unk>"]
        return [self.index.get(p, unk) for p in pieces]


@contextlib.contextmanager
def _quiet_fairseq() -> Iterator[None]:
    from argparse import Namespace

    from fairseq import utils

    utils.import_user_module(Namespace(user_dir=str(PLUGIN_DIR)))
    quiet = [logging.getLogger(name) for name in ("fairseq", "fairseq_plugins")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:  # fairseq narrates every dictionary it loads
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)


def load_model(checkpoint: Path, dict_dir: Path, tokenizer: Tokenizer) -> LoadedModel:
    """A checkpoint loaded the way fairseq-generate loads it, in eval mode on CPU."""
    from fairseq import checkpoint_utils

    with _quiet_fairseq():
        models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
            [str(checkpoint)], arg_overrides={"data": str(dict_dir)})
    model = models[0].float().eval()
    return LoadedModel(model, list(task.source_dictionary.symbols), tokenizer)


def _model_on_state(task: Any, state: dict[str, Any]) -> torch.nn.Module:
    """The model built on the meta device, its parameters then the checkpoint's own (memory-mapped) tensors: no
    second copy of a multi-GB model. Sinusoidal position tables are not in checkpoints: recomputed."""
    from fairseq.modules import SinusoidalPositionalEmbedding

    cfg = state["cfg"]["model"] if state.get("cfg") is not None else state["args"]
    with torch.device("meta"):
        model = task.build_model(OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg)
    torch.nn.Module.load_state_dict(model, dict(state["model"]), strict=True, assign=True)
    for m in model.modules():
        if isinstance(m, SinusoidalPositionalEmbedding) and m.weights.is_meta:
            m.weights = SinusoidalPositionalEmbedding.get_embedding(m.weights.shape[0], m.embedding_dim, m.padding_idx)
    meta = [n for n, t in itertools.chain(model.named_parameters(), model.named_buffers()) if t.is_meta]
    if meta:
        raise AssertionError(f"no values for {', '.join(meta)}")
    return model


def load_model_in_layout(checkpoint: Path, layout: SymbolLayout, dict_file: Path, fixed_dictionary: bool,
                         tokenizer: Tokenizer, state: dict[str, Any] | None = None) -> LoadedModel:
    """A checkpoint of any layout (M2M-100, NLLB-200, mbart style) loaded with `--task upgrade_translation` set up
    from the given dictionary and layout, not from the checkpoint's config (its paths are another machine's, and
    fairseq main's own task cannot build NLLB's data-source tags). Given the checkpoint's `state` (read
    memory-mapped), the model computes on those tensors instead of a copy (read only)."""
    from fairseq import checkpoint_utils, options, tasks

    lang = layout.langs[0]
    with tempfile.TemporaryDirectory() as data, _quiet_fairseq():
        for x in layout.langs:
            shutil.copyfile(dict_file, Path(data) / f"dict.{x}.txt")
        argv = [data, "--user-dir", str(PLUGIN_DIR), "--task", "upgrade_translation", "--langs",
                ",".join(layout.langs), "--lang-pairs", f"{lang}-{lang}", "-s", lang, "-t", lang, "--lang-tok-style",
                layout.style, "--encoder-langtok", "src", "--decoder-langtok", "--path", str(checkpoint), "--cpu",
                "--cpu-bf16", "never"]
        argv += ["--fixed-dictionary", str(dict_file)] if fixed_dictionary else []
        argv += ["--add-data-source-prefix-tags"] if layout.data_source_tags else []
        args = options.parse_args_and_arch(options.get_generation_parser(default_task="upgrade_translation"), argv)
        task = tasks.setup_task(args)
        if state is not None:
            model = _model_on_state(task, state)
        else:
            model = checkpoint_utils.load_model_ensemble([str(checkpoint)], task=task)[0][0]
    if list(task.source_dictionary.symbols) != list(layout.rows):
        raise AssertionError("fairseq built other rows than the layout")
    return LoadedModel(model.float().eval(), list(layout.rows), tokenizer, layout.style)


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
    tokens = torch.tensor([[eos, m.langtok(tgt_lang)]]).repeat(bsz, 1)
    done = torch.zeros(bsz, dtype=torch.bool)
    state: dict = {}
    # An incremental decoder reads only the last token of each call: `</s>` gets its own step, as in
    # fairseq-generate (step 0 feeds `</s>`, the forced `__tgt__` follows), else its keys never enter the cache.
    m.model.decoder(tokens[:, :1], encoder_out=enc, incremental_state=state)
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
