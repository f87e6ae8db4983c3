"""The rows stage: every vocabulary-sized parameter (input embeddings, output projection) gets the new rows
in the new symbol order; old rows are copied by piece string, tied parameters stay one tensor. It contributes
upgrade.json's `rows` and `init`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import sentencepiece as spm
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
from mmt_upgrade.core.spm import SPECIALS, all_pieces
from mmt_upgrade.core.symbols import SymbolLayout
from mmt_upgrade.core.vocab import row_sources
from mmt_upgrade.fairseq_io.checkpoint import populate_mapped, release_mapped
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


def init_new_piece_rows(old: torch.Tensor, piece_rows: torch.Tensor, method: str, n_new: int,
                        generator: torch.Generator, compose_weights: torch.Tensor | None) -> torch.Tensor:
    """New rows of one matrix. Statistics (`mean`, `normal`) use the old piece rows only (`piece_rows`), not
    specials, language tokens, fillers or tags."""
    if method == "unk":
        return init_unk(old, n_new, UNK_ID)
    if method == "mean":
        return init_mean(old, n_new, piece_rows)
    if method == "normal":
        return init_normal(old, n_new, generator, piece_rows)
    if method == "random":
        return init_random(old, n_new, generator)
    return init_compose(old, compose_weights)


def init_langtok_rows(old: torch.Tensor, old_langtoks: Mapping[str, int], new_langs: Sequence[str],
                      langtok_init: Mapping[str, str]) -> torch.Tensor:
    """Rows of the new language tokens: a copy of a named old language's token (`old_langtoks`: language ->
    row), or the old tokens' mean."""
    mean = old[torch.tensor(list(old_langtoks.values()), dtype=torch.long)].mean(dim=0)
    rows = []
    for lang in new_langs:
        source = langtok_init.get(lang, "mean")
        rows.append(mean if source == "mean" else old[old_langtoks[source]])
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


def copy_rows(matrix: torch.Tensor, old_matrix: torch.Tensor, sources: torch.Tensor, chunk: int = 16384,
               max_runs: int = 1024) -> None:
    """`matrix[i] = old_matrix[sources[i]]` where `sources[i] >= 0`. Rows usually keep their order in long runs
    (new rows appended, language tokens moved up): each run is then one slice copy, with no gathered temporary.
    Otherwise (a reordered dictionary), a chunk of rows is gathered at a time: one gather of a 256k x 1024
    embedding would hold a third copy of it."""
    dst = (sources >= 0).nonzero().squeeze(1)
    if not len(dst):
        return
    src = sources[dst]
    starts = torch.cat([torch.tensor([0]), ((dst.diff() != 1) | (src.diff() != 1)).nonzero().squeeze(1) + 1])
    if len(starts) <= max_runs:
        ends = torch.cat([starts[1:], torch.tensor([len(dst)])])
        for a, b in zip(starts.tolist(), ends.tolist()):
            matrix[int(dst[a]):int(dst[a]) + b - a].copy_(old_matrix[int(src[a]):int(src[a]) + b - a])
        return
    for i in range(0, len(dst), chunk):
        rows = dst[i:i + chunk]
        matrix[rows] = old_matrix[sources[rows]]


def upgrade_vocab_params(model_state: dict[str, torch.Tensor], old: SymbolLayout, new: SymbolLayout,
                         options: UpgradeOptions, compose_weights: torch.Tensor | None, record: NewParameterRecord,
                         what: str) -> dict[str, Any]:
    """Rewrite every vocabulary-sized parameter in `model_state` (in place), rows matched by symbol string;
    returns what was done."""
    new_langs = new.langs[len(old.langs):]
    sources = row_sources(old.rows, new.rows)
    new_langtoks = set(new.lang_tokens(new_langs))
    langtok_rows = torch.tensor([x in new_langtoks for x in new.rows], dtype=torch.bool)
    piece_rows = (sources < 0) & ~langtok_rows
    if (sources[: len(SPECIALS)] != torch.arange(len(SPECIALS))).any():
        raise AssertionError("special symbols moved")
    groups = vocab_param_groups(model_state, len(old.rows), what)
    if compose_weights is not None and compose_weights.shape[0] != int(piece_rows.sum()):
        raise AssertionError("compose weights do not match the new pieces")
    old_piece_rows, old_langtoks = torch.tensor(old.piece_rows(), dtype=torch.long), old.langtok_rows()
    done = {}
    for gi, names in enumerate(groups):
        old_matrix = model_state[names[0]]
        generator = torch.Generator().manual_seed(options.seed * 1000 + gi)
        matrix = old_matrix.new_empty(len(new.rows), old_matrix.shape[1])
        populate_mapped([old_matrix])  # read whole, not page by page (faults cost more than the copy)
        copy_rows(matrix, old_matrix, sources)
        matrix[piece_rows] = init_new_piece_rows(old_matrix, old_piece_rows, options.init, int(piece_rows.sum()),
                                                 generator, compose_weights)
        matrix[langtok_rows] = init_langtok_rows(old_matrix, old_langtoks, new_langs, options.langtok_init)
        release_mapped(old_matrix)
        for name in names:
            model_state[name] = matrix
            for start, stop in _runs(sources < 0):
                record.add_rows(name, start, stop)
        done[", ".join(names)] = {"rows_before": old_matrix.shape[0], "rows_after": matrix.shape[0],
                                  "tied": len(names) > 1}
    return {
        "symbols_before": len(old.rows),
        "symbols_after": len(new.rows),
        "rows_copied": int((sources >= 0).sum()),
        "new_piece_rows": int(piece_rows.sum()),
        "new_langtok_rows": len(new_langs),
        "params": done,
    }


def spm_segmenter_rows(old_spm: Path, sp: spm.SentencePieceProcessor,
                       old_rows: Sequence[str]) -> Callable[[list[str]], list[list[int]]]:
    """`piece_segmenter` with SentencePiece ids turned into the old model's rows by piece string (a dictionary's
    ids are not SentencePiece ids in general); a piece the dictionary lacks is `<unk>`."""
    index = {x: i for i, x in enumerate(old_rows)}
    to_row = [index.get(p, UNK_ID) for p in all_pieces(sp)]
    segment = piece_segmenter(old_spm)
    return lambda pieces: [[to_row[i] for i in ids] for ids in segment(pieces)]


def upgrade_rows(model_state: dict[str, torch.Tensor], old_spm: Path, sp: spm.SentencePieceProcessor,
                 old: SymbolLayout, new: SymbolLayout, vocab_mode: str, options: UpgradeOptions,
                 record: NewParameterRecord, what: str) -> dict[str, Any]:
    """The stage: new rows (none when the vocabulary is kept); returns upgrade.json's `init` and `rows`."""
    old_set = set(old.rows)
    new_piece_strings = [p for p in new.pieces if p not in old_set]
    new_langs = new.langs[len(old.langs):]
    compose_weights, fallbacks = None, 0
    if options.init == "compose":
        compose_weights, fallbacks = composition_matrix(
            new_piece_strings, spm_segmenter_rows(old_spm, sp, old.rows), len(old.rows), UNK_ID)
    rows = None
    if vocab_mode != "keep":
        log(f"upgrade: {len(new_piece_strings)} new pieces, {len(new_langs)} language tokens, init {options.init}")
        rows = upgrade_vocab_params(model_state, old, new, options, compose_weights, record, what)
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
