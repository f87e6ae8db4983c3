"""A fairseq multilingual model in its own layout: checkpoint, dictionary, SentencePiece model, languages.

What `export`, `evaluate` on raw text and the distillation teacher need to read a model they did not train:
a downloaded M2M-100 or NLLB-200 checkpoint, an `upgrade` or `import` output directory, or one of this
project's run directories. Each file comes from its flag, else from the model directory under the names the
toolkit writes (`checkpoint.pt`, `dict.txt`, `spm.model`), else from the path the checkpoint's own config
names where that file exists here; the languages from `--langs-file`, else the checkpoint's config.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.paths import PLUGIN_DIR
from mmt_upgrade.core.spm import load_spm
from mmt_upgrade.core.symbols import SymbolLayout, read_dictionary_file
from mmt_upgrade.core.vocab import Tokenizer, check_spm_covers_dictionary
from mmt_upgrade.fairseq_io.checkpoint import checkpoint_langs, checkpoint_layout, read_checkpoint
from mmt_upgrade.fairseq_io.models import LoadedModel, load_model_in_layout

CHECKPOINT = "checkpoint.pt"
DICTIONARY = "dict.txt"
SPM_MODEL = "spm.model"


def _pick(flag: str, given: Path | None, in_dir: Path | None, configured: str | None, what: str) -> Path:
    """A flag's file, else the directory's, else the config's where it exists here; one error naming the flag."""
    for path in (given, in_dir):
        if path is not None and Path(path).is_file():
            return Path(path).absolute()
    if given is not None:
        raise UserInputError(f"{flag} {given}: no such file")
    if configured and Path(configured).is_file():
        return Path(configured).absolute()
    where = f" (the checkpoint's config names {configured}, which is not here)" if configured else ""
    raise UserInputError(f"no {what} found{where}: give {flag} FILE")


@dataclass(frozen=True)
class ModelFiles:
    """A checkpoint with the dictionary, SentencePiece model and language order it was trained with."""

    checkpoint: Path
    dictionary: Path
    spm: Path
    layout: SymbolLayout

    @classmethod
    def open(cls, model: Path, dictionary: Path | None = None, spm: Path | None = None,
             langs_file: Path | None = None, checkpoint: Path | None = None) -> "ModelFiles":
        """`model`: a model directory or a checkpoint file; `checkpoint` picks another checkpoint (a fine-tuned
        one) while the directory still provides the vocabulary. Everything is checked against the checkpoint:
        its row count, the SentencePiece model's coverage of the dictionary's pieces."""
        model = Path(model)
        if not model.exists():
            raise UserInputError(f"{model}: no such model directory or checkpoint")
        directory = model if model.is_dir() else None
        ckpt = Path(checkpoint) if checkpoint else (model / CHECKPOINT if directory else model)
        if not ckpt.is_file():
            raise UserInputError(f"{ckpt}: no checkpoint (give --checkpoint FILE)")
        state = read_checkpoint(ckpt, mmap=True)
        settings = checkpoint_layout(state)
        dict_path = _pick("--dict", dictionary, directory / DICTIONARY if directory else None,
                          settings["fixed_dictionary"], "dictionary")
        spm_path = _pick("--spm", spm, directory / SPM_MODEL if directory else None,
                         settings["sentencepiece_model"], "SentencePiece model")
        langs = checkpoint_langs(state, langs_file)
        symbols, _ = read_dictionary_file(dict_path)
        layout = SymbolLayout(symbols, langs, settings["style"], settings["data_source_tags"])
        rows = state["model"]["encoder.embed_tokens.weight"].shape[0]
        if rows != len(layout.rows):
            raise UserInputError(f"dictionary {dict_path} with {len(langs)} languages gives {len(layout.rows)} "
                                 f"rows but checkpoint {ckpt} has {rows}: they do not belong together")
        check_spm_covers_dictionary(load_spm(spm_path), spm_path, layout.pieces, dict_path)
        return cls(ckpt.absolute(), dict_path, spm_path, layout)

    @property
    def langs(self) -> list[str]:
        return list(self.layout.langs)

    @property
    def fixed_dictionary(self) -> bool:
        """The dictionary file holds the language tokens (M2M-100): fairseq needs `--fixed-dictionary`."""
        return self.layout.langs_in_file

    def tokenizer(self) -> Tokenizer:
        return Tokenizer.single(self.spm, self.langs)

    def load(self, state: dict[str, Any] | None = None) -> LoadedModel:
        """The model as fairseq-generate builds it (`--task upgrade_translation`), in eval mode on CPU."""
        return load_model_in_layout(self.checkpoint, self.layout, self.dictionary, self.fixed_dictionary,
                                    self.tokenizer(), state)

    def task_flags(self, src: str, tgt: str, bpe: bool = True) -> list[str]:
        """The flags fairseq-generate, -interactive and -train need for this model and one direction (`bpe`: raw
        text through the SentencePiece model; off for a data-bin read with `--post-process sentencepiece`; the
        DATA argument needs `dict.<lang>.txt` copies of `dictionary`)."""
        flags = ["--user-dir", str(PLUGIN_DIR), "--task", "upgrade_translation", "--langs", ",".join(self.langs),
                 "--lang-pairs", f"{src}-{tgt}", "-s", src, "-t", tgt, "--lang-tok-style", self.layout.style,
                 "--encoder-langtok", "src", "--decoder-langtok"]
        if bpe:
            flags += ["--bpe", "sentencepiece", "--sentencepiece-model", str(self.spm)]
        if self.fixed_dictionary:
            flags += ["--fixed-dictionary", str(self.dictionary)]
        if self.layout.data_source_tags:
            flags.append("--add-data-source-prefix-tags")
        return flags
