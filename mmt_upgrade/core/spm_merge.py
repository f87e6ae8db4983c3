"""One SentencePiece model for old and new languages: the old unigram model with the new model's pieces appended.

fairseq's `--bpe sentencepiece`, Hugging Face tokenizers and CTranslate2 take a single model, while the
upgrade's exact tokenizer routes each language to its own model. The merged model is the old model's proto
(normalizer, denormalizer, byte fallback, special ids and every old piece at its old id and score) with the
appended pieces after it, in the dictionary's order, as NORMAL pieces (one the old model already holds, though
its dictionary did not, stays where it is).

Unigram Viterbi picks the segmentation with the largest sum of piece scores, so an appended piece changes an
old-language sentence only where a path through it outscores the old best path. New pieces get the new
model's scores shifted by one offset: the smallest (fewest wins on old text) at which new-language text
reaches the routed tokenizer's pieces per word. Then, on old-language text, every appended piece used where
the segmentation changed is demoted by the score gap it won by, until nothing changes; a piece that would
fall below the old model's lowest score is dropped (type UNUSED: it keeps its id, Viterbi never uses it).
Scores never go below that lowest score because unigram's penalty for unknown characters is derived from it.
A single-character piece for a character the old model lacks is never demoted: without it the new language
falls back to bytes, and old text holding that character was bytes before (such changes are counted).

Exact segmentation is therefore guaranteed on the fitting text only: no scores make it exact on every text
while the pieces are used, since a piece that scores below the old model's best segmentation of its own
string is never used, and one that scores above it wins where that string stands alone. A new language in an
old script loses the pieces its words share with old-language text (BENCHMARKS.md: it over es/fr, +8 %
pieces per word); one in a new script keeps them all.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import sentencepiece as spm
from google.protobuf.message import DecodeError
from sentencepiece import sentencepiece_model_pb2 as pb

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import atomic_path
from mmt_upgrade.core.spm import all_pieces

Piece = pb.ModelProto.SentencePiece
UNKNOWN_PENALTY = 10.0  # unigram's score of an unknown character: the lowest piece score minus this
MARGIN = 0.5  # added to every demotion, so that a demoted piece loses by a clear score difference
MAX_ROUNDS = 8  # demotion rounds before the pieces still winning on old text are dropped
PPW_TOLERANCE = 0.01  # the offset search stops at 1 % more pieces per word than the routed tokenizer
SEARCH_STEPS = 16  # grid steps of the offset search
_UNIT = re.compile("\u2581?[^\u2581]+|\u2581")  # SentencePiece's whitespace-delimited units (normalized text)


@dataclass
class MergeResult:
    """What the merge did; `changed` counts the fitting text's old-language sentences still segmented differently."""
    path: Path
    offset: float
    appended: int
    demoted: int
    dropped: int
    changed: int


def read_proto(path: Path) -> pb.ModelProto:
    proto = pb.ModelProto()
    try:
        proto.ParseFromString(Path(path).read_bytes())
    except DecodeError as e:
        raise UserInputError(f"{path} is not a SentencePiece model ({e})") from None
    return proto


def is_unigram(path: Path) -> bool:
    """Only unigram models can be merged (BPE merges by rank, not by score)."""
    return read_proto(path).trainer_spec.model_type == pb.TrainerSpec.UNIGRAM


def processor(proto: pb.ModelProto) -> spm.SentencePieceProcessor:
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(proto.SerializeToString())
    return sp


def pieces_per_word(sp: spm.SentencePieceProcessor, lines: Sequence[str]) -> float:
    return _per_word(sp.Encode(list(lines)), lines)


def _per_word(ids: Sequence[Sequence[int]], lines: Sequence[str]) -> float:
    return sum(len(x) for x in ids) / max(sum(len(x.split()) for x in lines), 1)


class _Merged:
    """The merged proto under construction; appended pieces are proto indices `base..`. Its piece table (ids by
    string, the fixed pieces every view keeps, pieces spanning whitespace) is read once, through the old model's
    batched calls (walking a 256k-piece proto costs a third of a second). Those cannot tell user-defined pieces
    from normal ones: a user-defined piece then joins a view only where it occurs, which cannot change the
    view's segmentation of the view's lines."""

    def __init__(self, old: pb.ModelProto, new: pb.ModelProto, added: Sequence[str],
                 old_sp: spm.SentencePieceProcessor) -> None:
        ids = list(range(old_sp.GetPieceSize()))
        pieces = all_pieces(old_sp)
        special = [any(x) for x in zip(old_sp.IsControl(ids), old_sp.IsUnknown(ids), old_sp.IsByte(ids))]
        normal = [not (s or u) for s, u in zip(special, old_sp.IsUnused(ids))]
        # unigram prices unknown characters from the lowest normal score: that piece stays in every view
        self.floor, lowest = min((score, i) for i, score in enumerate(old_sp.GetScore(ids)) if normal[i])
        self.index = dict(zip(pieces, ids))
        self.fixed = {i for i in ids if special[i]} | {lowest}
        old_chars = {piece for piece, usable in zip(pieces, normal) if usable and len(piece) == 1}
        new_pieces = {p.piece: p for p in new.pieces}
        self.proto = pb.ModelProto()
        self.proto.CopyFrom(old)
        self.base = len(old.pieces)
        self.new_scores: list[float] = []
        self.protected: set[int] = set()
        for piece in added:
            if piece in self.index:  # a model piece its dictionary lacked (M2M-100's): it keeps its id and score
                continue
            if piece not in new_pieces:
                raise UserInputError(f"piece {piece!r} to append is not in the new SentencePiece model")
            usable = new_pieces[piece].type == Piece.NORMAL
            self.index[piece] = len(self.proto.pieces)
            self.proto.pieces.add(piece=piece, score=self.floor, type=Piece.NORMAL if usable else Piece.UNUSED)
            self.new_scores.append(new_pieces[piece].score if usable else float("nan"))
            if usable and len(piece) == 1 and piece not in old_chars:
                self.protected.add(self.base + len(self.new_scores) - 1)
        self.proto.trainer_spec.vocab_size = len(self.proto.pieces)
        self.longest = max((len(piece) for piece in self.index), default=1)
        self.spanning = [(piece, i) for piece, i in self.index.items() if "\u2581" in piece[1:]]

    def usable(self) -> list[int]:
        return [i for i in range(self.base, len(self.proto.pieces)) if self.proto.pieces[i].type == Piece.NORMAL]

    def shift(self, offset: float) -> None:
        """Scores = the new model's + offset, never below the floor (protected pieces stay usable)."""
        for i in self.usable():
            self.proto.pieces[i].score = max(self.new_scores[i - self.base] + offset, self.floor)

    def score(self, ids: Sequence[int]) -> float:
        unk, pieces = self.floor - UNKNOWN_PENALTY, self.proto.pieces
        return sum(unk if pieces[i].type in (Piece.BYTE, Piece.UNKNOWN) else pieces[i].score for i in ids)

    def occurring(self, normalized: Sequence[str]) -> set[int]:
        """Ids of the pieces that occur in the normalized lines: substrings of each whitespace-delimited unit
        (`▁word`: pieces learnt by SentencePiece do not cross whitespace) looked up by string, and the few pieces
        that do cross it searched in the lines."""
        units = {u for line in normalized for u in _UNIT.findall(line)}
        within = {u[a:b] for u in units for a in range(len(u)) for b in range(a + 1, min(a + self.longest, len(u)) + 1)}
        text = "\n".join(normalized)
        return ({self.index[x] for x in within if x in self.index}
                | {i for piece, i in self.spanning if piece in text})


class _View:
    """The merged model restricted to the pieces that occur in some lines. Viterbi over those lines never meets
    the others, so it segments them exactly as the whole model does; and a 256k-piece model (NLLB-200) takes about
    half a second to load, which the offset search and the demotion rounds would pay after every change of
    scores. Ids are the whole model's."""

    def __init__(self, merged: _Merged, lines: Sequence[str], normalizer: spm.SentencePieceProcessor) -> None:
        pieces = merged.proto.pieces
        occurs = merged.occurring([normalizer.Normalize(x) for x in lines])
        self.ids = sorted(merged.fixed | {i for i in occurs if pieces[i].type == Piece.NORMAL})
        self.merged = merged
        self.template = pb.ModelProto()
        for name in ("trainer_spec", "normalizer_spec", "denormalizer_spec"):
            getattr(self.template, name).CopyFrom(getattr(merged.proto, name))
        self.template.trainer_spec.vocab_size = len(self.ids)

    def encode(self, lines: Sequence[str]) -> list[list[int]]:
        """The merged model's current segmentation of `lines`, in its ids."""
        proto = pb.ModelProto()
        proto.CopyFrom(self.template)
        proto.pieces.extend(self.merged.proto.pieces[i] for i in self.ids)
        return [[self.ids[i] for i in x] for x in processor(proto).Encode(list(lines))]


def _search_offset(merged: _Merged, new_texts: Mapping[str, Sequence[str]], targets: Mapping[str, float],
                   normalizer: spm.SentencePieceProcessor) -> float:
    """The smallest offset on a grid up to 0 (the new model's own scores) at which every new language's pieces
    per word is within PPW_TOLERANCE of its target, else the one with the smallest worst ratio. (Pieces per word
    is not monotone in the offset: near-zero scores make Viterbi prefer other pieces of the new language.)"""
    lo = merged.floor - max((s for s in merged.new_scores if s == s), default=0.0)
    best: tuple[float, float] = (float("inf"), 0.0)
    view = _View(merged, [x for lines in new_texts.values() for x in lines], normalizer)
    for step in range(SEARCH_STEPS + 1):
        offset = lo * (1 - step / SEARCH_STEPS)
        merged.shift(offset)
        worst = max(_per_word(view.encode(new_texts[x]), new_texts[x]) / targets[x] for x in new_texts)
        if worst <= 1 + PPW_TOLERANCE:
            return offset
        best = min(best, (worst, offset))
    return best[1]


def _demote(merged: _Merged, old_text: Mapping[str, Sequence[str]], old_sp: spm.SentencePieceProcessor) -> tuple[
        int, int, int]:
    """Demote (then drop) appended pieces until old text keeps its segmentation; returns demoted, dropped and
    the sentences still changed (by protected pieces alone)."""
    lines = [x for v in old_text.values() for x in v]
    old_ids = old_sp.Encode(lines)
    view = _View(merged, lines, old_sp)
    demoted: set[int] = set()
    dropped = 0
    round_ = 0
    while True:  # ends: from MAX_ROUNDS on, every round drops what still wins
        now = view.encode(lines)
        changed = [n for n, (a, b) in enumerate(zip(old_ids, now)) if a != b]
        need: dict[int, float] = {}
        for n in changed:
            # (byte-fallback pieces are priced per byte, unigram prices unknown characters per character:
            # the gap is then approximate, and the doubling per round still ends it)
            gap = max(merged.score(now[n]) - merged.score(old_ids[n]), 0.0) + MARGIN
            for i in set(now[n]):
                if i >= merged.base and i not in merged.protected:
                    need[i] = max(need.get(i, 0.0), gap * 2 ** min(round_, MAX_ROUNDS))
        if not need:
            return len(demoted), dropped, len(changed)
        for i, d in need.items():
            piece = merged.proto.pieces[i]
            if round_ >= MAX_ROUNDS or piece.score - d < merged.floor:
                piece.type, piece.score, dropped = Piece.UNUSED, merged.floor, dropped + 1
                demoted.discard(i)
            else:
                piece.score -= d
                demoted.add(i)
        round_ += 1


def merge_spm(old_model: Path, new_model: Path, added: Sequence[str], old_text: Mapping[str, Sequence[str]],
              new_text: Mapping[str, Sequence[str]], out: Path,
              old_sp: spm.SentencePieceProcessor | None = None) -> MergeResult:
    """Write the merged model to `out`: the old model plus `added` (pieces of `new_model`, in dictionary order),
    scored on `old_text` (old languages' text that must keep its segmentation) and `new_text` (new languages);
    `old_sp`: the old model, already loaded."""
    old, new = read_proto(old_model), read_proto(new_model)
    for proto, path in ((old, old_model), (new, new_model)):
        if proto.trainer_spec.model_type != pb.TrainerSpec.UNIGRAM:
            raise UserInputError(f"{path}: only unigram SentencePiece models can be merged")
    new_sp, old_sp = processor(new), old_sp if old_sp is not None else processor(old)
    merged = _Merged(old, new, added, old_sp)
    targets = {x: pieces_per_word(new_sp, lines) for x, lines in new_text.items()}
    offset = _search_offset(merged, new_text, targets, old_sp) if new_text else 0.0
    merged.shift(offset)
    demoted, dropped, changed = _demote(merged, old_text, old_sp)
    with atomic_path(Path(out)) as tmp:
        tmp.write_bytes(merged.proto.SerializeToString())
    return MergeResult(Path(out), round(offset, 4), len(merged.new_scores), demoted, dropped, changed)


def merged_figures(old_sp: spm.SentencePieceProcessor, merged_path: Path, old_text: Mapping[str, Sequence[str]],
                   routed_ppw: Mapping[str, float], new_text: Mapping[str, Sequence[str]], base: int) -> dict:
    """upgrade.json's `merged_spm`: old-language sentences segmented differently by the merged model (goal 0)
    and new-language pieces per word, merged vs the routed tokenizer (goal: ratio within 5 % of 1). `unused`:
    appended pieces Viterbi never uses (dropped, or the new model's byte pieces where the old model has none)."""
    proto = read_proto(merged_path)
    sp = processor(proto)
    changed = {}
    for lang, lines in old_text.items():
        n = sum(a != b for a, b in zip(old_sp.Encode(list(lines)), sp.Encode(list(lines))))
        changed[lang] = {"sentences": len(lines), "changed": n}
    ppw = {}
    for lang, lines in new_text.items():
        merged_ppw = pieces_per_word(sp, lines)
        ppw[lang] = {"merged": round(merged_ppw, 4), "routed": round(routed_ppw[lang], 4),
                     "ratio": round(merged_ppw / routed_ppw[lang], 4)}
    unused = sum(p.type == Piece.UNUSED for p in proto.pieces[base:])
    return {"file": Path(merged_path).name, "pieces": len(proto.pieces), "appended": len(proto.pieces) - base,
            "unused": unused, "old_text_changed": changed, "new_pieces_per_word": ppw}
