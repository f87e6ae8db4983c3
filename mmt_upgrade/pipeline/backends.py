"""Who translates a direction's test sentences for `mmt-upgrade evaluate` (`--backend`): fairseq-generate, on
the prepared data-bin or on raw text binarized on the fly, or CTranslate2 on an export of the checkpoint cached
beside it (keyed by the checkpoint's sha256 and the quantization). Every backend returns the strings
fairseq-generate prints and counts the sentences fairseq skips as too long (scored as empty output), so the
scores of two backends differ only where their translations do."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

from mmt_upgrade.core.decoding import ct2_cache_name, hypothesis_string, too_long
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import log
from mmt_upgrade.core.precision import resolve_cpu_bf16
from mmt_upgrade.core.symbols import SymbolLayout, lang_token, read_dictionary_file
from mmt_upgrade.core.vocab import Tokenizer
from mmt_upgrade.fairseq_io.checkpoint import checkpoint_layout, read_checkpoint
from mmt_upgrade.fairseq_io.drivers import generate_direction
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.fairseq_io.model_files import ModelFiles
from mmt_upgrade.pipeline.export.outdir import require_extra
from mmt_upgrade.pipeline.runconfig import EvalOptions

CT2_CACHE = "ct2"  # beside the checkpoint: <checkpoint dir>/ct2/<sha256[:16]>-<quantization>/


@dataclass
class TestSet:
    """One direction's test sentences; `train_targets` (for the most-frequent-target baseline) may be absent."""

    src: str
    tgt: str
    sources: list[str]
    refs: list[str]
    train_targets: list[str] | None = None

    @property
    def name(self) -> str:
        return f"{self.src}-{self.tgt}"


class Translator(Protocol):
    def describe(self) -> dict[str, Any]:
        """The backend and its settings (results' signature, the hypothesis cache's key)."""

    def translate(self, test: TestSet, beam: int, max_tokens: int) -> tuple[list[str], int]:
        """Hypotheses in order (empty for skipped sentences), and how many were skipped."""


def _bf16_flags(mode: str) -> list[str]:
    return [] if mode == "auto" else ["--cpu-bf16", mode]  # auto: the argv fairseq-generate always had


def fairseq_settings(cpu_bf16: str) -> dict[str, Any]:
    """The fairseq backend's `describe()` (`auto`: the hypotheses evaluate wrote before backends existed)."""
    return {"backend": "fairseq", "cpu_bf16": cpu_bf16, "bf16_autocast": resolve_cpu_bf16(cpu_bf16, True)}


class FairseqPrepared:
    """fairseq-generate on a prepared data directory's binarized split."""

    def __init__(self, checkpoint: Path, data: PreparedData, langs: Sequence[str], split: str, cpu_bf16: str):
        self.checkpoint, self.data, self.langs, self.split, self.cpu_bf16 = checkpoint, data, list(langs), split, cpu_bf16

    def describe(self) -> dict[str, Any]:
        return fairseq_settings(self.cpu_bf16)

    def translate(self, test: TestSet, beam: int, max_tokens: int) -> tuple[list[str], int]:
        return generate_direction(self.checkpoint, self.data, self.langs, test.src, test.tgt, self.split, beam,
                                  max_tokens, extra=_bf16_flags(self.cpu_bf16))


class FairseqText:
    """fairseq-generate on raw text, segmented by the model's SentencePiece model."""

    def __init__(self, model: ModelFiles, cpu_bf16: str):
        self.model, self.cpu_bf16, self.tokenizer = model, cpu_bf16, model.tokenizer()

    def describe(self) -> dict[str, Any]:
        return fairseq_settings(self.cpu_bf16)

    def translate(self, test: TestSet, beam: int, max_tokens: int) -> tuple[list[str], int]:
        from mmt_upgrade.fairseq_io.generate_text import generate_pieces

        return generate_pieces(self.model, test.src, test.tgt, self.tokenizer.encode(test.src, test.sources),
                               self.tokenizer.encode(test.tgt, test.refs), beam, max_tokens,
                               _bf16_flags(self.cpu_bf16))


class Ct2Translator:
    """CTranslate2 on an export; sentences fairseq would skip are skipped the same way."""

    def __init__(self, directory: Path, tokenizer: Tokenizer, threads: int, workers: int = 1, batch_size: int = 0):
        from mmt_upgrade.fairseq_io.ct2_runtime import Ct2Model

        require_extra("ct2", "ctranslate2")
        self.model = Ct2Model(directory, threads, workers=workers, batch_size=batch_size)
        self.tokenizer = tokenizer

    def describe(self) -> dict[str, Any]:
        return self.model.describe()

    def translate(self, test: TestSet, beam: int, max_tokens: int) -> tuple[list[str], int]:
        info = self.model.info
        src, refs = self.tokenizer.encode(test.src, test.sources), self.tokenizer.encode(test.tgt, test.refs)
        keep = [i for i, (s, r) in enumerate(zip(src, refs))
                if not too_long(len(s), len(r), info.max_source_positions, info.max_target_positions)]
        outputs = self.model.translate([src[i] for i in keep], test.src, test.tgt, beam, max_tokens)
        hyps = [""] * len(src)
        tgt_token = lang_token(test.tgt, info.lang_tok_style)
        for i, tokens in zip(keep, outputs):
            hyps[i] = hypothesis_string(tokens, tgt_token)
        return hyps, len(src) - len(keep)


def cached_ct2_export(model: ModelFiles, checkpoint_sha256: str, quantization: str) -> Path:
    """The checkpoint's CTranslate2 export for evaluation, made once beside it."""
    from mmt_upgrade.fairseq_io.ct2_runtime import Ct2Export
    from mmt_upgrade.pipeline.export.ct2 import export_ct2

    out = model.checkpoint.parent / CT2_CACHE / ct2_cache_name(checkpoint_sha256, quantization)
    if out.exists():
        info = Ct2Export.load(out)
        if (info.checkpoint_sha256, info.quantization) != (checkpoint_sha256, quantization):
            raise UserInputError(f"{out} is the export of another checkpoint: remove it")
        log(f"evaluate: reusing the CTranslate2 export {out}")
        return out
    log(f"evaluate: exporting {model.checkpoint} to CTranslate2 ({quantization}) -> {out}")
    export_ct2(model, out, quantization, checkpoint_sha256)
    return out


def _prepared_model(checkpoint: Path, data: PreparedData, langs: Sequence[str]) -> ModelFiles:
    """A run's checkpoint with the data's dictionary (its tokenizer may route languages to several
    SentencePiece models: `data.tokenizer` segments, not `ModelFiles.tokenizer`)."""
    settings = checkpoint_layout(read_checkpoint(checkpoint, mmap=True))
    symbols, _ = read_dictionary_file(data.dictionary)
    layout = SymbolLayout(symbols, list(langs), settings["style"], settings["data_source_tags"])
    return ModelFiles(Path(checkpoint).absolute(), data.dictionary, data.spm_model, layout)


def prepared_translator(checkpoint: Path, checkpoint_sha256: str, data: PreparedData, langs: Sequence[str],
                        options: EvalOptions) -> Translator:
    """The backend of `options` for a run's checkpoint on its prepared data."""
    if options.backend == "fairseq":
        return FairseqPrepared(checkpoint, data, langs, options.split, options.cpu_bf16)
    model = _prepared_model(checkpoint, data, langs)
    return Ct2Translator(cached_ct2_export(model, checkpoint_sha256, options.ct2_quantization), data.tokenizer,
                         options.ct2_threads, options.ct2_workers, options.ct2_batch_size)


def model_translator(model: ModelFiles, checkpoint_sha256: str, options: EvalOptions) -> Translator:
    """The backend of `options` for a model in its own layout, on raw text."""
    if options.backend == "fairseq":
        return FairseqText(model, options.cpu_bf16)
    return Ct2Translator(cached_ct2_export(model, checkpoint_sha256, options.ct2_quantization), model.tokenizer(),
                         options.ct2_threads, options.ct2_workers, options.ct2_batch_size)
