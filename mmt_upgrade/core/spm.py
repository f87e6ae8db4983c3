"""SentencePiece training and the fairseq dictionary derived from it.

The SPM model reserves ids 0-3 for `<s> <pad> </s> <unk>`, exactly fairseq's specials, and the
dictionary lists the remaining pieces in SPM id order: a piece's fairseq id equals its SPM id.
Language tokens are appended after all pieces by fairseq itself.
"""
from __future__ import annotations

import io
import random
import re
from pathlib import Path
from typing import Mapping, Sequence

import sentencepiece as spm

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import atomic_path

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


def train_spm(
    texts_by_lang: Mapping[str, Sequence[str]],
    model_path: Path,
    vocab_size: int,
    sentences_per_lang: int,
    seed: int,
    byte_fallback: bool = True,
    size_flag: str = "data.vocab_size",
) -> Path:
    """Train a unigram model on an equal-size sample of every language (balanced input). A `vocab_size`
    below what the text's characters need is an error naming `size_flag`, the languages and that size."""
    rng = random.Random(seed)
    sample: list[str] = []
    for lang in sorted(texts_by_lang):
        lines = list(texts_by_lang[lang])
        if not lines:
            raise UserInputError(f"no training text for language {lang!r} to train SentencePiece on")
        rng.shuffle(lines)
        sample += lines[:sentences_per_lang]
    rng.shuffle(sample)
    model_path = Path(model_path)
    spm.set_random_generator_seed(seed)
    # Sentences from memory and the model to memory: the saved model then records no temporary file
    # names, so the same text and settings give the same bytes (upgrades compare tokenizers by hash).
    model = io.BytesIO()
    try:
        _train(sample, model, vocab_size, seed, byte_fallback)
    except RuntimeError as e:
        needed = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(e))
        if needed is None:
            raise
        raise UserInputError(f"{size_flag} {vocab_size} is too small for the characters of "
                             f"{','.join(sorted(texts_by_lang))}: SentencePiece needs at least {needed.group(1)} "
                             f"(each character, the specials{' and 256 byte pieces' if byte_fallback else ''}); "
                             f"give {size_flag} {needed.group(1)} or more") from None
    with atomic_path(model_path) as tmp:
        tmp.write_bytes(model.getvalue())
    return model_path


def _train(sample: list[str], model: io.BytesIO, vocab_size: int, seed: int, byte_fallback: bool) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sample),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        input_sentence_size=len(sample),
        shuffle_input_sentence=True,
        seed_sentencepiece_size=200_000,
        bos_id=0,
        pad_id=1,
        eos_id=2,
        unk_id=3,
        byte_fallback=byte_fallback,
        normalization_rule_name="identity",
        hard_vocab_limit=False,
        num_threads=1,  # multi-threaded EM is not bit-reproducible
        minloglevel=2,
    )


def load_spm(model_path: Path) -> spm.SentencePieceProcessor:
    model_path = Path(model_path)
    if not model_path.exists():
        raise UserInputError(f"SentencePiece model not found: {model_path}")
    sp = spm.SentencePieceProcessor()
    try:
        sp.Load(str(model_path))
    except (OSError, RuntimeError) as e:
        raise UserInputError(f"{model_path} is not a SentencePiece model ({e})") from None
    if tuple(sp.IdToPiece(i) for i in range(4)) != SPECIALS:
        raise UserInputError(f"{model_path}: ids 0-3 must be {' '.join(SPECIALS)} to match fairseq's dictionary")
    return sp


def all_pieces(sp: spm.SentencePieceProcessor) -> list[str]:
    """Every piece of the model in id order, in one call (a 256k-piece model: per-piece calls take seconds)."""
    return sp.IdToPiece(list(range(sp.GetPieceSize())))


def dictionary_lines(sp: spm.SentencePieceProcessor) -> list[str]:
    """fairseq `dict.txt` lines: every non-special piece, in SPM id order."""
    return [f"{p} 1" for p in all_pieces(sp)[len(SPECIALS):]]


def write_dictionary(sp: spm.SentencePieceProcessor, path: Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(dictionary_lines(sp)) + "\n", encoding="utf-8")
    return path


def encode_lines(sp: spm.SentencePieceProcessor, lines: Sequence[str]) -> list[str]:
    """Space-joined pieces, the input format of fairseq's binarizer."""
    return [" ".join(pieces) for pieces in sp.Encode(list(lines), out_type=str)]
