"""Upgraded vocabularies: which SentencePiece model segments each language, and the new dictionary.

- `extend`: old languages keep the OLD model, so their segmentation cannot change (and
  `segmentation_change` measures that it did not); new languages use a model trained on their own
  text. The dictionary is the old one, every piece at its old id, plus the new model's pieces it lacks.
  (Appending pieces to the old unigram model instead either changes old segmentations or, with
  hopeless scores, never uses the new pieces.)
- `retrain`: one model trained on old + new text for every language; rows are mapped by piece string.

The rows of a model (`core/symbols.py`: this project's, M2M-100's, NLLB-200's layouts): adding pieces shifts
language tokens and tags, and fairseq dictionaries are frequency-ordered, so rows are always mapped by string,
never by id.
"""
from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import sentencepiece as spm
import torch

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import write_json_atomic
from mmt_upgrade.core.spm import SPECIALS, all_pieces, load_spm, train_spm
from mmt_upgrade.core.symbols import SymbolLayout, lang_token

VOCAB_MODES = ("extend", "retrain")
TOKENIZER_FILE = "tokenizer.json"


def read_dictionary(path: Path) -> list[str]:
    """The pieces of a fairseq `dict.txt`, in id order (ids start at 4, after the specials)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"dictionary not found: {path}")
    pieces = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.rstrip("\n").split(" ")
        if len(fields) < 2 or not fields[0]:
            raise UserInputError(f"{path}:{n}: not a fairseq dictionary line ('<symbol> <count>'): {line!r}")
        pieces.append(fields[0])
    return pieces


def model_symbols(pieces: Sequence[str], langs: Sequence[str]) -> list[str]:
    """Every row of a model's embedding, in fairseq's order."""
    return list(SPECIALS) + list(pieces) + [lang_token(x) for x in langs]


def check_spm_matches_dictionary(sp: spm.SentencePieceProcessor, sp_path: Path, pieces: Sequence[str],
                                 dict_path: Path) -> None:
    """The dictionary must list exactly the model's pieces in id order (piece id == dictionary id)."""
    n = sp.GetPieceSize() - len(SPECIALS)
    if n != len(pieces):
        raise UserInputError(f"SentencePiece model {sp_path} has {n} pieces besides the specials but dictionary "
                             f"{dict_path} has {len(pieces)}: they do not belong together")
    model = all_pieces(sp)[len(SPECIALS):]
    for i, (piece, theirs) in enumerate(zip(pieces, model)):
        if theirs != piece:
            raise UserInputError(f"SentencePiece model {sp_path} is not dictionary {dict_path}'s: id {i + 4} is "
                                 f"{theirs!r} in the model, {piece!r} in the dictionary")


def check_spm_covers_dictionary(sp: spm.SentencePieceProcessor, sp_path: Path, pieces: Sequence[str],
                                dict_path: Path) -> None:
    """Every dictionary piece must be a piece of the model, in any order (fairseq dictionaries such as
    M2M-100's are frequency-ordered). A dictionary in the model's id order except at a few places is a
    corrupted one of this project's layout (piece id == dictionary id): named as such."""
    unk = sp.IdToPiece(sp.unk_id())
    model = all_pieces(sp)
    known = set(model)
    missing = [p for p in pieces if p != unk and p not in known]
    if missing:
        raise UserInputError(f"dictionary {dict_path} has {len(missing)} pieces that SentencePiece model {sp_path} "
                             f"lacks (the first: {missing[0]!r}): they do not belong together")
    n, size = len(SPECIALS), len(model)
    in_order = sum(i + n < size and model[i + n] == p for i, p in enumerate(pieces))
    if len(pieces) == size - n and len(pieces) // 2 < in_order < len(pieces):
        check_spm_matches_dictionary(sp, sp_path, pieces, dict_path)


@dataclass
class Tokenizer:
    """Language-routed SentencePiece segmentation, saved as `tokenizer.json` beside its models."""

    root: Path
    models: dict[str, str]  # model name -> file name in root
    route: dict[str, str]  # language -> model name
    _loaded: dict[str, spm.SentencePieceProcessor] = field(default_factory=dict, repr=False)

    def model_path(self, lang: str) -> Path:
        if lang not in self.route:
            raise UserInputError(f"tokenizer {self.root / TOKENIZER_FILE} has no model for language {lang!r} "
                                 f"(it knows {', '.join(self.route)})")
        return self.root / self.models[self.route[lang]]

    def processor(self, lang: str) -> spm.SentencePieceProcessor:
        name = self.route.get(lang)
        if name not in self._loaded:
            self._loaded[name] = load_spm(self.model_path(lang))
        return self._loaded[name]

    def encode(self, lang: str, lines: Sequence[str]) -> list[list[str]]:
        return self.processor(lang).Encode(list(lines), out_type=str)

    def encode_ids(self, lang: str, lines: Sequence[str]) -> list[list[int]]:
        """Ids of the language's own SentencePiece model (not dictionary ids)."""
        return self.processor(lang).Encode(list(lines))

    def decode(self, lang: str, pieces: Sequence[Sequence[str]]) -> list[str]:
        return [self.processor(lang).DecodePieces(list(p)) for p in pieces]

    def save(self) -> None:
        write_json_atomic(self.root / TOKENIZER_FILE, {"models": self.models, "route": self.route})

    @classmethod
    def load(cls, root: Path) -> "Tokenizer":
        path = Path(root) / TOKENIZER_FILE
        if not path.is_file():
            raise UserInputError(f"{root} has no {TOKENIZER_FILE}: not an upgraded model directory")
        obj = json.loads(path.read_text())
        return cls(Path(root), dict(obj["models"]), dict(obj["route"]))

    @classmethod
    def single(cls, spm_path: Path, langs: Sequence[str],
               processor: spm.SentencePieceProcessor | None = None) -> "Tokenizer":
        """One model for every language (`processor`: that model, already loaded)."""
        spm_path = Path(spm_path)
        tok = cls(spm_path.parent, {"spm": spm_path.name}, {lang: "spm" for lang in langs})
        if processor is not None:
            tok._loaded["spm"] = processor
        return tok


@dataclass
class VocabularyUpgrade:
    """The new dictionary and tokenizer, before the checkpoint is touched."""

    mode: str
    pieces: list[str]  # the new dict.txt, in id order
    tokenizer: Tokenizer
    stats: dict


def _piece_list(sp: spm.SentencePieceProcessor) -> list[str]:
    return all_pieces(sp)[len(SPECIALS):]


def extend_vocabulary(old_spm: Path, old_pieces: Sequence[str], old_langs: Sequence[str],
                      new_texts: Mapping[str, Sequence[str]], new_spm_size: int, seed: int, out_dir: Path,
                      sentences_per_lang: int = 20000,
                      old_processor: spm.SentencePieceProcessor | None = None) -> VocabularyUpgrade:
    """Old pieces keep their ids; pieces of a model learnt on the new languages' text are appended if new
    (`old_processor`: the old model, already loaded)."""
    out_dir = Path(out_dir)
    shutil.copyfile(old_spm, out_dir / "spm.old.model")
    train_spm(new_texts, out_dir / "spm.new.model", new_spm_size, sentences_per_lang, seed, size_flag="--new-spm-size")
    new_model_pieces = _piece_list(load_spm(out_dir / "spm.new.model"))
    old_set = set(old_pieces)
    added = [p for p in new_model_pieces if p not in old_set]
    route = {lang: "old" for lang in old_langs} | {lang: "new" for lang in new_texts}
    tokenizer = Tokenizer(out_dir, {"old": "spm.old.model", "new": "spm.new.model"}, route)
    if old_processor is not None:
        tokenizer._loaded["old"] = old_processor
    stats = {
        "old_pieces": len(old_pieces),
        "new_model_pieces": len(new_model_pieces),
        "kept": len(old_pieces),
        "added": len(added),
        "shared": len(new_model_pieces) - len(added),
        "shared_fraction_of_new_model": round((len(new_model_pieces) - len(added)) / len(new_model_pieces), 4),
    }
    return VocabularyUpgrade("extend", list(old_pieces) + added, tokenizer, stats)


def keep_vocabulary(old_spm: Path, old_pieces: Sequence[str], langs: Sequence[str], out_dir: Path) -> VocabularyUpgrade:
    """No new languages: the old model and dictionary, unchanged (growth alone)."""
    shutil.copyfile(old_spm, Path(out_dir) / "spm.model")
    stats = {"old_pieces": len(old_pieces), "new_model_pieces": 0, "kept": len(old_pieces), "added": 0, "shared": 0}
    return VocabularyUpgrade("keep", list(old_pieces), Tokenizer.single(Path(out_dir) / "spm.model", langs), stats)


def retrain_vocabulary(old_pieces: Sequence[str], texts: Mapping[str, Sequence[str]], spm_size: int, seed: int,
                       out_dir: Path, sentences_per_lang: int = 20000) -> VocabularyUpgrade:
    """One model for every language; pieces whose string the old dictionary has will copy their row."""
    out_dir = Path(out_dir)
    train_spm(texts, out_dir / "spm.model", spm_size, sentences_per_lang, seed, size_flag="--spm-size")
    pieces = _piece_list(load_spm(out_dir / "spm.model"))
    old_set = set(old_pieces)
    shared = sum(p in old_set for p in pieces)
    stats = {
        "old_pieces": len(old_pieces),
        "new_model_pieces": len(pieces),
        "kept": shared,
        "added": len(pieces) - shared,
        "shared": shared,
        "dropped": len(old_pieces) - shared,
        "overlap_fraction_of_old": round(shared / len(old_pieces), 4),
    }
    return VocabularyUpgrade("retrain", pieces, Tokenizer.single(out_dir / "spm.model", list(texts)), stats)


def upgraded_layout(old: SymbolLayout, vocab: VocabularyUpgrade, new_langs: Sequence[str]) -> SymbolLayout:
    """The new model's rows: `extend`/`keep` append the new pieces to the old dictionary file (`SymbolLayout.upgraded`);
    `retrain` replaces its pieces by the new model's, keeping its language tokens, fillers and tags after them."""
    if vocab.mode != "retrain":
        held = set(old.pieces)
        return old.upgraded([p for p in vocab.pieces if p not in held], new_langs)
    kept = tuple(s for s in old.dict_symbols if not old.is_piece(s))
    added = tuple(old.lang_tokens(new_langs)) if old.langs_in_file else ()
    return SymbolLayout(tuple(vocab.pieces) + kept + added, old.langs + tuple(new_langs), old.style,
                        old.data_source_tags)


def row_sources(old_symbols: Sequence[str], new_symbols: Sequence[str]) -> torch.Tensor:
    """`(V_new,)` old row index of every new symbol with the same string, -1 for new symbols."""
    index = {s: i for i, s in enumerate(old_symbols)}
    return torch.tensor([index.get(s, -1) for s in new_symbols], dtype=torch.long)


def segmentation_change(old: Tokenizer, new: Tokenizer, texts_by_lang: Mapping[str, Sequence[str]]) -> dict:
    """Per language: how many sentences the upgraded tokenizer segments differently from the old one."""
    out = {}
    for lang, lines in texts_by_lang.items():
        changed = sum(a != b for a, b in zip(old.encode(lang, lines), new.encode(lang, lines)))
        out[lang] = {"sentences": len(lines), "changed": changed,
                     "fraction": round(changed / len(lines), 6) if lines else 0.0}
    return out


def segmentation_stats(tokenizer: Tokenizer, texts_by_lang: Mapping[str, Sequence[str]],
                       vocab: set[str] | None = None) -> dict[str, dict]:
    """Per language: pieces per word, the share of byte-fallback pieces (what `<unk>` becomes with byte
    fallback) and, given the old vocabulary, the share of pieces it already had. Only the ids used are looked up
    (one batched call each), not the model's 256k pieces."""
    out = {}
    for lang, lines in texts_by_lang.items():
        sp = tokenizer.processor(lang)
        ids = list(itertools.chain.from_iterable(tokenizer.encode_ids(lang, lines)))
        n_pieces = max(len(ids), 1)
        stats = {"pieces_per_word": round(len(ids) / max(sum(len(x.split()) for x in lines), 1), 3),
                 "byte_fallback_fraction": round(sum(sp.IsByte(ids)) / n_pieces, 4)}
        if vocab is not None:
            stats["old_vocab_fraction"] = round(sum(p in vocab for p in sp.IdToPiece(ids)) / n_pieces, 4)
        out[lang] = stats
    return out
