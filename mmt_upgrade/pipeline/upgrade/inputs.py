"""The inputs stage: what an upgrade reads, assembled one way for `mmt-upgrade upgrade` and for an experiment.

The old checkpoint with the language list, token style and tags of its own config (`--langs-file` overrides the
list), its SentencePiece model and dictionary (`--spm`/`--dict`, else the old model's prepared data, else the
files its config names), in any layout (`core/symbols.py`: rows matched by string),
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

from mmt_upgrade.core.options import comma_list
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import read_text_lines, sha256_file, sha256_text
from mmt_upgrade.core.growth import check_architecture
from mmt_upgrade.core.languages import check_extends, parse_lang_list
from mmt_upgrade.core.paths import cache_dir
from mmt_upgrade.core.spm import load_spm
from mmt_upgrade.core.symbols import SymbolLayout, check_lang_code, read_dictionary_file
from mmt_upgrade.core.vocab import check_spm_covers_dictionary
from mmt_upgrade.fairseq_io.checkpoint import checkpoint_langs, checkpoint_layout, checkpoint_model_cfg, read_checkpoint
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
    langs_file: Path | None = None  # --langs-file: the model's --langs order (default: the checkpoint's config)
    lang_pairs_file: Path | None = None  # --lang-pairs-file: M2M-100's language_pairs*.txt, extended in the output
    bible: BibleText | None = None  # languages without a text file (default: old_data's split rules)
    rows_check: bool = True  # --no-rows-check: do not ask the old model whether --dict and --spm are its own


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
    layout: SymbolLayout  # the old model's rows
    dict_rest: list[str]  # the dictionary file's count column (and flags), line by line
    texts: dict[str, list[str]]  # training text: new languages (and old ones for retrain), any given file
    text_sources: dict[str, str]
    dev_texts: dict[str, list[str]]
    old_train_texts: dict[str, list[str]] = field(default_factory=dict)  # --old-data's: fits the merged SPM
    lang_pairs_file: tuple[Path, list[str]] | None = None  # --lang-pairs-file and its pairs

    @property
    def pieces(self) -> list[str]:
        """The old dictionary's SentencePiece pieces (no language tokens, fillers or tags)."""
        return list(self.layout.pieces)

    @property
    def langs(self) -> list[str]:
        return self.old_langs + self.new_langs

    @property
    def measured_langs(self) -> list[str]:
        """The old languages with dev text (`check_dev_langs`): what the checks and figures are measured on."""
        return [x for x in self.old_langs if self.dev_texts.get(x)]

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
        out[check_lang_code(lang.strip(), flag)] = Path(path.strip())
    return out


def check_new_langs(new_langs: Sequence[str], old_langs: Sequence[str], checkpoint: Path) -> None:
    if new_langs:
        parse_lang_list(new_langs, "--new-langs")
    for lang in new_langs:
        if lang in old_langs:
            raise UserInputError(f"--new-langs: {lang!r} is already in the model ({','.join(old_langs)}), "
                                 f"checkpoint {checkpoint}")


def _training_texts(inputs: UpgradeInputs, needed: Sequence[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Given files first; needed languages without one take the Bible's text."""
    texts = {lang: read_text_lines(file, f"--text {lang}") for lang, file in inputs.text_files.items()}
    sources = {lang: str(file.absolute()) for lang, file in inputs.text_files.items()}
    bible = inputs.bible or (BibleText.of(inputs.old_data, inputs.new_langs) if inputs.old_data else None)
    for lang in needed:
        if lang not in texts and bible is not None:
            texts[lang], sources[lang] = bible.lines(lang), bible.source
        if not any(line.strip() for line in texts.get(lang, [])):
            flag = "--text" if lang in inputs.new_langs else "--text (retrain needs old-language text too)"
            raise UserInputError(f"no training text for {lang!r}: give {flag} {lang}=FILE")
    return texts, sources


def read_lang_pairs_file(path: Path) -> tuple[Path, list[str]]:
    """A language-pairs file (comma- or line-separated `src-tgt`), checked before anything is written."""
    text = read_text_lines(path, "--lang-pairs-file pairs")
    pairs = [x for line in text for x in comma_list(line)]
    bad = [x for x in pairs if len(x.split("-")) != 2 or not all(x.split("-"))]
    if bad:
        raise UserInputError(f"--lang-pairs-file {path}: {bad[0]!r} is not a language pair (src-tgt)")
    return Path(path), pairs


def _few(langs: Sequence[str], n: int = 5) -> str:
    return ",".join(langs[:n]) + (f",... ({len(langs)} in all)" if len(langs) > n else "")


def check_dev_langs(dev: Mapping[str, Sequence[str]], old_langs: Sequence[str], new_langs: Sequence[str],
                    checkpoint: Path) -> list[str]:
    """The old languages with dev text, those the rows check and the segmentation figures are measured on: any
    of them is enough (a 202-language model need not come with 202 files), none is one error; a language that
    is neither old nor new is refused by name. Returns them in the model's order."""
    unknown = [x for x in dev if x not in old_langs and x not in new_langs]
    if unknown:
        raise UserInputError(f"--dev-text {unknown[0]}: not a language of checkpoint {checkpoint} "
                             f"({_few(old_langs)}) nor of --new-langs")
    measured = [x for x in old_langs if dev.get(x)]
    if not measured:
        raise UserInputError(f"no dev text for any old language of checkpoint {checkpoint} ({_few(old_langs)}): "
                             "the check that the dictionary is the model's and the segmentation measurement need "
                             "one; give --dev-text LANG=FILE for at least one of them (or --old-data)")
    return measured


def _default_path(given: Path | None, prepared: Path | None, configured: str | None) -> Path | None:
    """A flag's path, else the prepared data's, else the file the checkpoint's config names where it exists."""
    if given or prepared:
        return Path(given or prepared)
    return Path(configured) if configured and Path(configured).is_file() else None


def _old_langs(state: dict[str, Any], langs_file: Path | None, checkpoint: Path) -> list[str]:
    """The model's --langs order; a --langs-file that disagrees with the checkpoint's own list is refused."""
    langs = checkpoint_langs(state, langs_file)
    if langs_file is not None:
        try:
            own = checkpoint_langs(state)
        except UserInputError:
            return langs  # the checkpoint names no list (or a file not here): the file is the only word
        if own != langs:
            first = next((i for i, (a, b) in enumerate(zip(own, langs)) if a != b), min(len(own), len(langs)))
            raise UserInputError(f"--langs-file {langs_file} lists {len(langs)} languages but checkpoint {checkpoint} "
                                 f"was trained with {len(own)}, differing at position {first}: they disagree")
    return langs


def resolve_inputs(inputs: UpgradeInputs, options: UpgradeOptions) -> ResolvedInputs:
    """Read every input, fill in the defaults and check them all against each other."""
    old_data = inputs.old_data
    checkpoint = Path(inputs.checkpoint).absolute()
    state = read_checkpoint(checkpoint, mmap=True)
    settings = checkpoint_layout(state)
    spm_path = _default_path(inputs.spm, old_data.spm_model if old_data else None, settings["sentencepiece_model"])
    dictionary = _default_path(inputs.dictionary, old_data.dictionary if old_data else None,
                               settings["fixed_dictionary"])
    if spm_path is None or dictionary is None:
        raise UserInputError("give --dict and --spm (the model's dictionary and SentencePiece model), or --old-data "
                             "(the old model's prepared data)")
    old_langs = _old_langs(state, inputs.langs_file, checkpoint)
    new_langs = list(inputs.new_langs)
    check_new_langs(new_langs, old_langs, checkpoint)
    options.check_langs(old_langs, new_langs)
    needed = new_langs + (old_langs if options.vocab_mode == "retrain" else [])
    texts, sources = _training_texts(inputs, needed)
    dev = old_data.texts("valid") if old_data else {}
    dev |= {lang: read_text_lines(file, f"--dev-text {lang}") for lang, file in inputs.dev_text_files.items()}
    check_dev_langs(dev, old_langs, new_langs, checkpoint)
    sp = load_spm(spm_path)
    symbols, rest = read_dictionary_file(dictionary)
    layout = SymbolLayout(symbols, old_langs, settings["style"], settings["data_source_tags"])
    check_spm_covers_dictionary(sp, spm_path, layout.pieces, dictionary)
    vocab_param_groups(state["model"], len(layout.rows), f"dictionary {dictionary} with checkpoint {checkpoint}")
    if options.growth.active():
        check_architecture(state["model"], checkpoint_model_cfg(state), f"checkpoint {checkpoint}")
    check_extends(old_langs, old_langs + new_langs, "upgrade")
    pairs = read_lang_pairs_file(inputs.lang_pairs_file) if inputs.lang_pairs_file else None
    return ResolvedInputs(checkpoint, state, old_langs, new_langs, Path(spm_path), Path(dictionary), sp, layout,
                          rest, texts, sources, dev, old_data.texts("train") if old_data else {}, pairs)


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
