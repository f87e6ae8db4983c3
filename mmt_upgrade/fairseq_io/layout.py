"""A prepared data directory (`manifest.json`, raw text, SentencePiece models, fairseq data-bin), read back."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import sha256_file, sha256_text
from mmt_upgrade.core.vocab import TOKENIZER_FILE, Tokenizer

MANIFEST = "manifest.json"


def tokenizer_hash(root: Path) -> str:
    """What identifies an upgraded tokenizer: its routing, models and dictionary, not its path."""
    tok = Tokenizer.load(root)
    files = [TOKENIZER_FILE, "dict.txt", *sorted(set(tok.models.values()))]
    return sha256_text(" ".join(sha256_file(root / f) for f in files))


@dataclass
class PreparedData:
    """A finished data directory, read back from its manifest."""

    root: Path
    manifest: dict

    @property
    def bin_dir(self) -> Path:
        return self.root / self.manifest["bin"]

    @property
    def spm_model(self) -> Path:
        return self.root / self.manifest["spm_model"]

    @property
    def dictionary(self) -> Path:
        return self.root / self.manifest["dict"]

    @property
    def langs(self) -> list[str]:
        return list(self.manifest["model_langs"])

    @property
    def directions(self) -> list[tuple[str, str]]:
        return [tuple(d.split("-")) for d in self.manifest["directions"]]

    def texts(self, split: str) -> dict[str, list[str]]:
        """One split's raw text per language (each language from the first direction that has it)."""
        out: dict[str, list[str]] = {}
        for src, tgt in self.directions:
            for lang in (src, tgt):
                if lang not in out:
                    out[lang] = self.raw_file(split, src, tgt, lang).read_text(encoding="utf-8").splitlines()
        return out

    @property
    def tokenizer(self) -> Tokenizer:
        """How each language was segmented: the upgraded tokenizer, or the one model for all."""
        if "tokenizer" in self.manifest:
            return Tokenizer(self.root, dict(self.manifest["tokenizer"]["models"]),
                             dict(self.manifest["tokenizer"]["route"]))
        return Tokenizer.single(self.spm_model, self.langs)

    def raw_file(self, split: str, src: str, tgt: str, lang: str) -> Path:
        a, b = sorted_pair(src, tgt, self.manifest["pivot"])
        return self.root / "raw" / f"{split}.{a}-{b}.{lang}"

    @classmethod
    def open(cls, root: Path) -> "PreparedData":
        root = Path(root)
        path = root / MANIFEST
        if not path.exists():
            raise UserInputError(f"{root} is not a prepared data directory ({MANIFEST} missing)")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise UserInputError(f"{path} is not valid JSON ({e})") from None
        return cls(root, manifest)


def sorted_pair(src: str, tgt: str, pivot: str) -> tuple[str, str]:
    """File-name order of a pair: pivot first (fairseq also finds the reversed name)."""
    return (src, tgt) if src == pivot else (tgt, src)
