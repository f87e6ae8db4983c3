"""The inputs stage: what an upgrade reads, assembled one way for `mmt-upgrade upgrade` and for an experiment.

The old checkpoint, its SentencePiece model and dictionary (from the old model's prepared data unless given),
training text per language (a `--text` file, else the Bible train split under the old data's split rules)
and old-language dev text (the segmentation-change measurement). Everything is read and checked against
everything else before anything is built; upgrade.json's `inputs` records each with its hash.
"""
from __future__ import annotations

from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import sentencepiece as spm

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import sha256_file, sha256_text
from mmt_upgrade.core.growth import check_architecture
from mmt_upgrade.core.languages import check_extends, parse_lang_list
from mmt_upgrade.core.paths import cache_dir
from mmt_upgrade.core.spm import load_spm
from mmt_upgrade.core.vocab import check_spm_matches_dictionary, model_symbols, read_dictionary
from mmt_upgrade.fairseq_io.checkpoint import checkpoint_langs, read_checkpoint
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.pipeline.data.prepare import DataConfig, bible_texts
from mmt_upgrade.pipeline.upgrade.options import UpgradeOptions
from mmt_upgrade.pipeline.upgrade.rows import vocab_param_groups


@dataclass
class BibleText:
    """The Bible train split under a data config's split rules: the text of a language given no file
    (read once, when first needed, then shared by every upgrade that holds this object)."""
    cfg: DataConfig
    _lines: dict[str, list[str]] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, data: PreparedData, new_langs: Sequence[str]) -> "BibleText":
        """The split rules of the old model's prepared data, with the new languages added."""
        return cls(DataConfig(**{**data.manifest["config"], "langs": data.manifest["langs"] + list(new_langs)}))

    @property
    def source(self) -> str:
        return f"bible train split ({self.cfg.key()})"

    def lines(self, lang: str) -> list[str]:
        if self._lines is None:
            self._lines = bible_texts(self.cfg, cache_dir(), "train")
        return self._lines.get(lang, [])


@dataclass
class UpgradeInputs:
    """What an upgrade reads, as given; `resolve_inputs` fills in the defaults."""
    checkpoint: Path
    new_langs: list[str]
    old_data: PreparedData | None = None  # the old model's prepared data: default SPM, dictionary, dev text
    spm: Path | None = None
    dictionary: Path | None = None
    text_files: dict[str, Path] = field(default_factory=dict)  # --text: training text per language
    dev_text_files: dict[str, Path] = field(default_factory=dict)  # --dev-text: old-language dev text
    bible: BibleText | None = None  # languages without a text file (default: old_data's split rules)


@dataclass
class ResolvedInputs:
    """The inputs read and checked. Later stages edit `state` in place."""
    checkpoint: Path
    state: dict[str, Any]
    old_langs: list[str]
    new_langs: list[str]
    spm: Path
    dictionary: Path
    sp: spm.SentencePieceProcessor
    pieces: list[str]  # the old dict.txt
    texts: dict[str, list[str]]  # training text: new languages (and old ones for retrain), any given file
    text_sources: dict[str, str]
    dev_texts: dict[str, list[str]]

    @property
    def langs(self) -> list[str]:
        return self.old_langs + self.new_langs

    @property
    def what(self) -> str:
        return f"checkpoint {self.checkpoint}"


def parse_lang_files(items: Sequence[str], flag: str) -> dict[str, Path]:
    """`LANG=FILE` items -> {lang: file}."""
    out = {}
    for item in items:
        lang, sep, path = item.partition("=")
        if not sep or not lang.strip() or not path.strip():
            raise UserInputError(f"{flag}: expected LANG=FILE, got {item!r}")
        out[lang.strip()] = Path(path.strip())
    return out


def read_text_file(file: Path, flag: str, lang: str) -> list[str]:
    """The non-empty lines of a UTF-8 text file; a missing, empty or non-UTF-8 file is one error."""
    if not file.is_file():
        raise UserInputError(f"{flag} {lang}: file not found: {file}")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserInputError(f"{flag} {lang}: {file} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
                             f"{e.start}); convert it, e.g. with iconv -t utf-8") from None
    lines = [x for x in text.splitlines() if x.strip()]
    if not lines:
        raise UserInputError(f"{flag} {lang}: {file} holds no text")
    return lines


def check_new_langs(new_langs: Sequence[str], old_langs: Sequence[str], checkpoint: Path) -> None:
    if new_langs:
        parse_lang_list(new_langs, "--new-langs")
    for lang in new_langs:
        if lang in old_langs:
            raise UserInputError(f"--new-langs: {lang!r} is already in the model ({','.join(old_langs)}), "
                                 f"checkpoint {checkpoint}")


def _training_texts(inputs: UpgradeInputs, needed: Sequence[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Given files first; needed languages without one take the Bible's text."""
    texts = {lang: read_text_file(file, "--text", lang) for lang, file in inputs.text_files.items()}
    sources = {lang: str(file.absolute()) for lang, file in inputs.text_files.items()}
    bible = inputs.bible or (BibleText.of(inputs.old_data, inputs.new_langs) if inputs.old_data else None)
    for lang in needed:
        if lang not in texts and bible is not None:
            texts[lang], sources[lang] = bible.lines(lang), bible.source
        if not any(line.strip() for line in texts.get(lang, [])):
            flag = "--text" if lang in inputs.new_langs else "--text (retrain needs old-language text too)"
            raise UserInputError(f"no training text for {lang!r}: give {flag} {lang}=FILE")
    return texts, sources


def resolve_inputs(inputs: UpgradeInputs, options: UpgradeOptions) -> ResolvedInputs:
    """Read every input, fill in the defaults and check them all against each other."""
    old_data = inputs.old_data
    spm_path = inputs.spm or (old_data.spm_model if old_data else None)
    dictionary = inputs.dictionary or (old_data.dictionary if old_data else None)
    if spm_path is None or dictionary is None:
        raise UserInputError("give --old-data (the old model's prepared data) or both --spm and --dict")
    checkpoint = Path(inputs.checkpoint).absolute()
    state = read_checkpoint(checkpoint, mmap=True)
    old_langs = checkpoint_langs(state)
    new_langs = list(inputs.new_langs)
    check_new_langs(new_langs, old_langs, checkpoint)
    options.check_langs(old_langs, new_langs)
    needed = new_langs + (old_langs if options.vocab_mode == "retrain" else [])
    texts, sources = _training_texts(inputs, needed)
    dev = old_data.texts("valid") if old_data else {}
    dev |= {lang: read_text_file(file, "--dev-text", lang) for lang, file in inputs.dev_text_files.items()}
    missing_dev = [x for x in old_langs if not dev.get(x)]
    if missing_dev:
        raise UserInputError(f"no dev text for {', '.join(missing_dev)} to measure segmentation changes: "
                             "give --old-data or --dev-text LANG=FILE")
    sp = load_spm(spm_path)
    pieces = read_dictionary(dictionary)
    check_spm_matches_dictionary(sp, spm_path, pieces, dictionary)
    vocab_param_groups(state["model"], len(model_symbols(pieces, old_langs)),
                       f"dictionary {dictionary} with checkpoint {checkpoint}")
    if options.growth.active():
        check_architecture(state["model"], state["cfg"]["model"], f"checkpoint {checkpoint}")
    check_extends(old_langs, old_langs + new_langs, "upgrade")
    return ResolvedInputs(checkpoint, state, old_langs, new_langs, Path(spm_path), Path(dictionary), sp, pieces,
                          texts, sources, dev)


def hash_files(pool: Executor, inputs: ResolvedInputs) -> dict[str, Future]:
    """sha256 of the checkpoint, SPM and dictionary, computed beside the next stages (hashing releases the GIL)."""
    files = {"checkpoint": inputs.checkpoint, "spm": inputs.spm, "dict": inputs.dictionary}
    return {k: pool.submit(sha256_file, p) for k, p in files.items()}


def _text_hash(lines: Sequence[str]) -> str:
    return sha256_text("\n".join(lines))


def inputs_section(inputs: ResolvedInputs, hashes: Mapping[str, Future]) -> dict[str, Any]:
    """upgrade.json's `inputs`: every file and text the upgrade read, with its hash."""
    files = {"checkpoint": inputs.checkpoint, "spm": inputs.spm, "dict": inputs.dictionary}
    return {"inputs": {
        **{k: {"path": str(Path(p).absolute()), "sha256": hashes[k].result()} for k, p in files.items()},
        "texts": {x: {"source": inputs.text_sources.get(x, ""), "lines": len(v), "sha256": _text_hash(v)}
                  for x, v in inputs.texts.items()},
        "dev_texts": {x: {"lines": len(v), "sha256": _text_hash(v)} for x, v in inputs.dev_texts.items()},
    }}
