"""A CTranslate2 export of a fairseq multilingual model, translating as fairseq-generate does: the source
`__src__ pieces </s>`, the decoder started with `</s>` and forced to the target language token, `<pad>` never
generated, the same length limit (`core/decoding.py`). `ct2_export.json` beside CTranslate2's files says
what the model needs: its languages and token style, its position limits, its SentencePiece model."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from mmt_upgrade.core.decoding import CT2_PAD, max_output_tokens
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import write_json_atomic
from mmt_upgrade.core.symbols import lang_token

EXPORT_INFO = "ct2_export.json"
SPM_FILE = "spm.model"


@dataclass(frozen=True)
class Ct2Export:
    """`ct2_export.json`: what an export is of and what translating with it needs."""

    langs: list[str]
    lang_tok_style: str
    max_source_positions: int
    max_target_positions: int
    quantization: str
    ctranslate2: str  # the converter's version
    checkpoint: str
    checkpoint_sha256: str
    spm: str = SPM_FILE
    format: int = 1

    def save(self, directory: Path) -> None:
        write_json_atomic(Path(directory) / EXPORT_INFO, asdict(self))

    @classmethod
    def load(cls, directory: Path) -> "Ct2Export":
        path = Path(directory) / EXPORT_INFO
        if not path.is_file():
            raise UserInputError(f"{directory} is not a CTranslate2 export of mmt-upgrade ({EXPORT_INFO} missing)")
        return cls(**json.loads(path.read_text(encoding="utf-8")))


class Ct2Model:
    """A CTranslate2 `Translator` on CPU over an export directory. `workers` batches are translated at once
    (CTranslate2's inter_threads), each on `threads` threads: on a small model, two single-threaded workers
    outrun one two-threaded one (BENCHMARKS.md), given batches small enough to keep both busy
    (`batch_size` sentences; 0: batches of `max_tokens` source tokens)."""

    def __init__(self, directory: Path, threads: int = 0, compute_type: str = "default", workers: int = 1,
                 batch_size: int = 0) -> None:
        import ctranslate2

        self.directory = Path(directory)
        self.info = Ct2Export.load(self.directory)
        self.translator = ctranslate2.Translator(str(self.directory), device="cpu", compute_type=compute_type,
                                                 inter_threads=workers, intra_threads=threads)
        self.version = ctranslate2.__version__
        self.workers, self.batch_size = workers, batch_size

    @property
    def compute_type(self) -> str:
        return self.translator.compute_type

    def describe(self) -> dict[str, Any]:
        """The settings a result must name to be reproduced."""
        return {"backend": "ct2", "ctranslate2": self.version, "quantization": self.info.quantization,
                "compute_type": self.compute_type, "workers": self.workers, "batch_size": self.batch_size}

    def _batching(self, max_tokens: int) -> dict[str, Any]:
        if self.batch_size:
            return {"max_batch_size": self.batch_size, "batch_type": "examples"}
        return {"max_batch_size": max_tokens, "batch_type": "tokens"}

    def _check(self, *langs: str) -> None:
        for lang in langs:
            if lang not in self.info.langs:
                raise UserInputError(f"language {lang!r} is not one of the model's ({', '.join(self.info.langs)})")

    def translate(self, pieces: Sequence[Sequence[str]], src: str, tgt: str, beam: int, max_tokens: int,
                  max_len_b: int | None = None) -> list[list[str]]:
        """The best hypothesis of each source (its pieces), target language token first, as fairseq-generate's
        search at `beam` (greedy at 1); batches of at most `max_tokens` source tokens (or `batch_size`
        sentences), sorted by length by CTranslate2."""
        self._check(src, tgt)
        if not pieces:
            return []
        style = self.info.lang_tok_style
        limit = max_output_tokens(self.info.max_target_positions, *(() if max_len_b is None else (max_len_b,)))
        results = self.translator.translate_batch(
            [[lang_token(src, style), *p] for p in pieces], [[lang_token(tgt, style)]] * len(pieces),
            **self._batching(max_tokens), beam_size=beam, max_decoding_length=limit,
            min_decoding_length=0, max_input_length=0, suppress_sequences=[[CT2_PAD]])
        return [list(r.hypotheses[0]) for r in results]

    def score(self, src_pieces: Sequence[Sequence[str]], tgt_pieces: Sequence[Sequence[str]], src: str, tgt: str,
              max_tokens: int) -> list[list[float]]:
        """Teacher-forced log-probabilities of `__tgt__ pieces </s>` given each source, one per target token
        after the language token (the pieces, then `</s>`)."""
        self._check(src, tgt)
        style = self.info.lang_tok_style
        results = self.translator.score_batch(
            [[lang_token(src, style), *p] for p in src_pieces], [[lang_token(tgt, style), *t] for t in tgt_pieces],
            **self._batching(max_tokens))
        return [list(r.log_probs[1:]) for r in results]
