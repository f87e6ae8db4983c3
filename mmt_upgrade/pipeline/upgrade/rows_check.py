"""Are the given dictionary and SentencePiece model the checkpoint's? A pair of another model with the same number of
rows passes every count, and its rows mean other pieces. Only the old model itself can tell, by its loss on a few
old-language dev sentences (each scored as the translation of another dev sentence, so that no copying helps)
against two controls in which the piece rows are permuted:

- shuffled at random: rows of the model's own pieces must score clearly better (catches a dictionary in another
  order, a pair whose frequencies do not match the model's);
- swapped with the piece of the next-closest frequency in the model's own eyes (its mean prediction): this
  keeps unigram statistics and destroys everything else. The model shows how much it knows beyond frequencies,
  whatever the rows mean, by how much its predictions depend on the context: `context` = entropy of its mean
  prediction - its mean prediction entropy (the information it believes the context gives, in nats per piece).
  With its own rows that knowledge is lost by the swap, so they must beat the swap by a share of `context`; with
  the rows of another model whose dictionary is frequency-ordered like the model's (which passes the first
  control) there is nothing to lose. A model that knows only frequencies (a few updates) cannot be told from
  such a pair by anyone: below CONTEXT_MIN the second control is recorded as not conclusive.

Three capped forward passes of ROWS_CHECK_SENTENCES sentences, in chunks (a 256k-row model's logits are large).
upgrade.json's `rows_check`.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.vocab import Tokenizer
from mmt_upgrade.fairseq_io.models import LoadedModel, collate_pairs, load_model_in_layout
from mmt_upgrade.pipeline.upgrade.inputs import ResolvedInputs

ROWS_CHECK_SENTENCES = 32  # dev sentences in all (its cost: 3 forward passes each)
ROWS_CHECK_MARGIN = 0.3  # nats per piece the given rows must beat shuffled rows by
CONTEXT_MIN = 0.05  # nats: a model whose predictions carry less context knows too little for the swap control
SWAP_SHARE = 0.5  # past CONTEXT_MIN, the given rows must beat frequency-neighbour swaps by this share of `context`
CHUNK = 2  # sentences per forward pass (their logits: 2 x ~50 x 256k floats for NLLB-200)


def _rows(m: LoadedModel, texts: dict[str, list[str]]) -> tuple[list[Tensor], list[Tensor]]:
    """`__lang__ x </s>` of every sentence as target, the next sentence (cyclically) as its source."""
    eos = m.index["</s>"]
    rows = [torch.tensor([m.langtok(lang), *m.ids(p), eos]) for lang, lines in texts.items()
            for p in m.tokenizer.encode(lang, lines)]
    return rows[1:] + rows[:1], rows


@torch.no_grad()
def _score(m: LoadedModel, srcs: list[Tensor], tgts: list[Tensor], remap: Tensor | None,
           marginal: bool) -> tuple[float, float, Tensor | None]:
    """Mean NLL per target piece (not the language token), mean prediction entropy, and with `marginal` the mean
    predicted distribution `(V,)`, with every id sent through `remap`."""
    pad, eos = m.index["<pad>"], m.index["</s>"]
    langtoks = torch.tensor(sorted({int(t[0]) for t in tgts}))
    nll = ent = n = 0.0
    mean = None
    for i in range(0, len(tgts), CHUNK):
        s, t = srcs[i:i + CHUNK], tgts[i:i + CHUNK]
        if remap is not None:
            s, t = [remap[x] for x in s], [remap[x] for x in t]
        src_tokens, src_lengths, prev, target = collate_pairs(s, t, pad, eos)
        logp = m.model(src_tokens, src_lengths, prev)[0].float().log_softmax(-1)
        keep = (target != pad) & ~torch.isin(target, langtoks)  # language tokens: never remapped
        logp = logp[keep]  # (N, V)
        nll += float(-logp.gather(-1, target[keep][:, None]).sum())
        p = logp.exp()
        ent += float(-(p * logp).sum())
        if marginal:
            mean = p.sum(0) if mean is None else mean + p.sum(0)
        n += int(keep.sum())
    return nll / n, ent / n, (mean / n if marginal else None)


def _swap_neighbours(piece_rows: Tensor, p: Tensor, size: int) -> Tensor:
    """A permutation of the `size` rows that swaps each piece row with the one of next-closest probability `p`."""
    order = piece_rows[p[piece_rows].argsort(descending=True)]
    pairs = order[: len(order) // 2 * 2].view(-1, 2)
    remap = torch.arange(size)
    remap[pairs[:, 0]], remap[pairs[:, 1]] = pairs[:, 1], pairs[:, 0]
    return remap


def check_rows_mean_pieces(inputs: ResolvedInputs) -> dict[str, Any]:
    """The old model's loss with the given rows against the two controls (module docstring); one error naming the
    dictionary and SentencePiece model when they are not the checkpoint's. Returns upgrade.json's `rows_check`."""
    layout = inputs.layout
    m = load_model_in_layout(inputs.checkpoint, layout, inputs.dictionary, layout.langs_in_file,
                             Tokenizer.single(inputs.spm, inputs.old_langs, inputs.sp), inputs.state)
    langs = inputs.measured_langs[:ROWS_CHECK_SENTENCES]
    per_lang = max(1, ROWS_CHECK_SENTENCES // len(langs))  # a fixed budget, however many languages
    srcs, tgts = _rows(m, {x: inputs.dev_texts[x][:per_lang] for x in langs})
    pieces = torch.tensor(layout.piece_rows(), dtype=torch.long)
    size = len(layout.rows)
    given, entropy, mean = _score(m, srcs, tgts, None, marginal=True)
    context = float(-(mean * mean.clamp_min(1e-30).log()).sum()) - entropy
    shuffle = torch.arange(size)
    shuffle[pieces] = pieces[torch.randperm(len(pieces), generator=torch.Generator().manual_seed(0))]
    shuffled = _score(m, srcs, tgts, shuffle, marginal=False)[0]
    swapped = _score(m, srcs, tgts, _swap_neighbours(pieces, mean, size), marginal=False)[0]
    del m
    figures = (f"{given:.2f} nats per piece with them, {shuffled:.2f} with the piece rows shuffled, {swapped:.2f} "
               f"with each swapped for the piece of next-closest frequency (uniform: {math.log(size):.2f})")
    conclusive = context >= CONTEXT_MIN
    if shuffled - given < ROWS_CHECK_MARGIN or (conclusive and swapped - given < SWAP_SHARE * context):
        why = ("no better than with its rows shuffled" if shuffled - given < ROWS_CHECK_MARGIN else
               f"no better than with rows of equally frequent pieces, though its predictions show it knows more "
               f"than frequencies ({context:.2f} nats of context)")
        raise UserInputError(
            f"dictionary {inputs.dictionary} and SentencePiece model {inputs.spm} are not checkpoint "
            f"{inputs.checkpoint}'s: its loss on the dev text is {why}: {figures}; so its rows mean other pieces; "
            "give the model's own dictionary and SentencePiece model")
    return {"rows_check": {"sentences": len(tgts), "langs": langs, "nll": round(given, 4),
                           "nll_rows_shuffled": round(shuffled, 4), "nll_frequency_neighbours_swapped": round(swapped, 4),
                           "context_nats": round(context, 4), "swap_control_conclusive": conclusive,
                           "uniform": round(math.log(size), 4)}}
