"""The rows stage: every vocabulary-sized parameter (input embeddings, output projection) gets the new rows
in the new symbol order; old rows are copied by piece string, tied parameters stay one tensor. It contributes
upgrade.json's `rows` and `init`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from mmt_upgrade.core.embeddings import (
    composition_matrix,
    init_compose,
    init_mean,
    init_normal,
    init_random,
    init_unk,
    piece_segmenter,
)
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import log
from mmt_upgrade.core.record import NewParameterRecord
from mmt_upgrade.core.spm import SPECIALS
from mmt_upgrade.core.vocab import VocabularyUpgrade, model_symbols, row_sources
from mmt_upgrade.pipeline.upgrade.options import UpgradeOptions

UNK_ID = SPECIALS.index("<unk>")
VOCAB_PARAM_SUFFIXES = ("embed_tokens.weight", "output_projection.weight")


def vocab_param_groups(model_state: Mapping[str, torch.Tensor], n_rows: int, what: str) -> list[list[str]]:
    """Names of the vocabulary-sized parameters, grouped by shared storage (tied embeddings)."""
    names = [k for k in model_state if k.endswith(VOCAB_PARAM_SUFFIXES)]
    if not names:
        raise UserInputError(f"{what}: no embedding or output projection parameters found; only fairseq "
                             "transformer encoder-decoders can be upgraded")
    if any("adaptive" in k for k in model_state):
        raise UserInputError(f"{what}: adaptive input/softmax models are not supported")
    groups: dict[int, list[str]] = {}
    for name in names:
        rows = model_state[name].shape[0]
        if rows != n_rows:
            raise UserInputError(f"{what}: {name} has {rows} rows but the dictionary and language list give "
                                 f"{n_rows} symbols; the dictionary does not belong to this checkpoint")
        groups.setdefault(model_state[name].untyped_storage().data_ptr(), []).append(name)
    return list(groups.values())


def init_new_piece_rows(old: torch.Tensor, n_piece_rows: int, method: str, n_new: int,
                        generator: torch.Generator, compose_weights: torch.Tensor | None) -> torch.Tensor:
    """New rows of one matrix. Statistics (`mean`, `normal`) use the old piece rows only, not specials
    or language tokens."""
    pieces = old[len(SPECIALS): len(SPECIALS) + n_piece_rows]
    if method == "unk":
        return init_unk(old, n_new, UNK_ID)
    if method == "mean":
        return init_mean(pieces, n_new)
    if method == "normal":
        return init_normal(pieces, n_new, generator)
    if method == "random":
        return init_random(old, n_new, generator)
    return init_compose(old, compose_weights)


def init_langtok_rows(old: torch.Tensor, old_langs: Sequence[str], new_langs: Sequence[str],
                      langtok_init: Mapping[str, str]) -> torch.Tensor:
    """Rows of the new language tokens: a copy of a named old language's token, or the old tokens' mean."""
    first = old.shape[0] - len(old_langs)
    rows = []
    for lang in new_langs:
        source = langtok_init.get(lang, "mean")
        if source == "mean":
            rows.append(old[first:].mean(dim=0))
        else:
            rows.append(old[first + list(old_langs).index(source)])
    return torch.stack(rows)


def _runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """Half-open index ranges where a 1-D bool mask is True."""
    idx = mask.nonzero().flatten().tolist()
    out: list[tuple[int, int]] = []
    for i in idx:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def upgrade_vocab_params(model_state: dict[str, torch.Tensor], old_pieces: Sequence[str], old_langs: Sequence[str],
                         vocab: VocabularyUpgrade, new_langs: Sequence[str], options: UpgradeOptions,
                         compose_weights: torch.Tensor | None, record: NewParameterRecord,
                         what: str) -> dict[str, Any]:
    """Rewrite every vocabulary-sized parameter in `model_state` (in place); returns what was done."""
    old_symbols = model_symbols(old_pieces, old_langs)
    new_symbols = model_symbols(vocab.pieces, list(old_langs) + list(new_langs))
    sources = row_sources(old_symbols, new_symbols)
    langtok_rows = torch.zeros(len(new_symbols), dtype=torch.bool)
    langtok_rows[len(new_symbols) - len(new_langs):] = True
    piece_rows = (sources < 0) & ~langtok_rows
    if (sources[: len(SPECIALS)] != torch.arange(len(SPECIALS))).any():
        raise AssertionError("special symbols moved")
    groups = vocab_param_groups(model_state, len(old_symbols), what)
    if compose_weights is not None and compose_weights.shape[0] != int(piece_rows.sum()):
        raise AssertionError("compose weights do not match the new pieces")
    done = {}
    for gi, names in enumerate(groups):
        old = model_state[names[0]]
        generator = torch.Generator().manual_seed(options.seed * 1000 + gi)
        new = old.new_empty(len(new_symbols), old.shape[1])
        copied = sources >= 0
        new[copied] = old[sources[copied]]
        new[piece_rows] = init_new_piece_rows(old, len(old_pieces), options.init, int(piece_rows.sum()),
                                              generator, compose_weights)
        new[langtok_rows] = init_langtok_rows(old, old_langs, new_langs, options.langtok_init)
        for name in names:
            model_state[name] = new
            for start, stop in _runs(sources < 0):
                record.add_rows(name, start, stop)
        done[", ".join(names)] = {"rows_before": old.shape[0], "rows_after": new.shape[0], "tied": len(names) > 1}
    return {
        "symbols_before": len(old_symbols),
        "symbols_after": len(new_symbols),
        "rows_copied": int((sources >= 0).sum()),
        "new_piece_rows": int(piece_rows.sum()),
        "new_langtok_rows": len(new_langs),
        "params": done,
    }


def upgrade_rows(model_state: dict[str, torch.Tensor], old_spm: Path, old_pieces: Sequence[str],
                 old_langs: Sequence[str], vocab: VocabularyUpgrade, new_langs: Sequence[str],
                 options: UpgradeOptions, record: NewParameterRecord, what: str) -> dict[str, Any]:
    """The stage: new rows (none when the vocabulary is kept); returns upgrade.json's `init` and `rows`."""
    old_set = set(old_pieces)
    new_piece_strings = [p for p in vocab.pieces if p not in old_set]
    compose_weights, fallbacks = None, 0
    if options.init == "compose":
        compose_weights, fallbacks = composition_matrix(
            new_piece_strings, piece_segmenter(old_spm), len(model_symbols(old_pieces, old_langs)), UNK_ID)
    rows = None
    if vocab.mode != "keep":
        log(f"upgrade: {len(new_piece_strings)} new pieces, {len(new_langs)} language tokens, init {options.init}")
        rows = upgrade_vocab_params(model_state, old_pieces, old_langs, vocab, new_langs, options,
                                    compose_weights, record, what)
    return {
        "init": {
            "pieces": options.init,
            "compose_fallback_to_unk": fallbacks if options.init == "compose" else None,
            "langtoks": {x: options.langtok_init.get(x, "mean") for x in new_langs},
            "seed": options.seed,
            "statistics_rows": "old piece rows (specials and language tokens excluded)",
        },
        "rows": rows,
    }
