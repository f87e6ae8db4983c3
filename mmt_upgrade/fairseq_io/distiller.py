"""Distillation of one student batch: which examples the teacher knows, their teacher views (converted
once per example and memoized), the teacher signal (online or from the cache), the loss."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from mmt_upgrade.core.distill.align import (
    ExampleAligner,
    TargetAlignment,
    TeacherExample,
    example_key,
)
from mmt_upgrade.core.distill.batch import BatchAlignment, KDVocab, StudentOutput
from mmt_upgrade.core.distill.losses import KD_METHODS, KDMethod
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.options import OptionGroup, option
from mmt_upgrade.core.spm import SPECIALS, load_spm
from mmt_upgrade.core.vocab import TOKENIZER_FILE, Tokenizer, lang_token
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.fairseq_io.teacher import Teacher, TeacherVocab


@dataclass
class DistillOptions(OptionGroup):
    """The distillation flags, shared by `--criterion cross_vocab_distillation` and `mmt-upgrade distill-cache`."""

    teacher_path: str = option("", "the old model's checkpoint or model directory (the teacher), in its own layout "
                                   "(this project's, M2M-100, NLLB-200, mbart-style tokens)")
    teacher_spm: str = option("", "the teacher's SentencePiece model")
    teacher_dict: Optional[str] = option(None, "the teacher's fairseq dictionary file, in any order (M2M-100's "
                                               "model_dict, NLLB's dictionary.txt); default: its --fixed-dictionary "
                                               "where that file is here, else its data-bin's")
    teacher_data: Optional[str] = option(None, "the teacher's data-bin directory (its dictionary, where it has no "
                                               "fixed dictionary); default: the one its checkpoint names")
    teacher_langs_file: Optional[str] = option(None, "the teacher's --langs order, one code per line or a comma "
                                                     "list (NLLB's 202 codes); default: its checkpoint's config")
    student_tokenizer: Optional[str] = option(None, "how the student's data was segmented: a directory with "
                                                    "tokenizer.json, or one SentencePiece model for every language "
                                                    "(an upgrade's merged spm.model); default: the prepared data "
                                                    "directory holding the data-bin")
    distill_langs: str = option("", "comma-separated languages to distil (default: every language the teacher "
                                    "and the student share); directions need both languages")
    kd_method: str = option("alm", f"one of {', '.join(KD_METHODS)}", choices=tuple(KD_METHODS))
    kd_weight: Optional[float] = option(None, "weight of the distillation term (default per method: " + ", ".join(
        f"{m.name} {m.weight}" for m in KD_METHODS.values()) + ")")
    kd_temperature: Optional[float] = option(None, "temperature (default per method: " + ", ".join(
        f"{m.name} {m.temperature}" for m in KD_METHODS.values()) + ")")
    kd_topk: int = option(16, "shared, uld: teacher entries kept per position, plus one bucket for the rest "
                              "(0: all, online only)")
    lexical_ratio: float = option(0.4, "lexical: share of the aligned tokens whose cross-entropy is kept")
    teacher_cache: Optional[str] = option(None, "the teacher signal precomputed by `mmt-upgrade distill-cache` "
                                                "(no teacher forward pass in training)")

    def check(self) -> None:
        if not self.teacher_path or not self.teacher_spm:
            raise UserInputError("distillation needs --teacher-path and --teacher-spm")
        if self.kd_method not in KD_METHODS:
            raise UserInputError(f"--kd-method {self.kd_method!r}: choose one of {', '.join(KD_METHODS)}")
        if self.kd_topk < 0:
            raise UserInputError(f"--kd-topk {self.kd_topk}: must be >= 0 (0: the whole distribution)")
        if not 0 < self.lexical_ratio <= 1:
            raise UserInputError(f"--lexical-ratio {self.lexical_ratio}: must be in (0, 1]")
        if self.kd_temperature is not None and self.kd_temperature <= 0:
            raise UserInputError(f"--kd-temperature {self.kd_temperature}: must be > 0")
        if self.teacher_cache and self.kd_topk == 0 and KD_METHODS[self.kd_method].needs_topk:
            raise UserInputError(f"--teacher-cache with --kd-method {self.kd_method} stores the teacher's top-k: "
                                 f"set --kd-topk > 0")


def student_tokenizer(data_bin: Path, override: str | None, langs: Sequence[str] = ()) -> Tokenizer:
    """How the student's data was segmented: `override` (a directory with tokenizer.json, or one SentencePiece
    model for all of `langs`), else the prepared data directory that holds `data_bin`."""
    if override and Path(override).is_file():
        return Tokenizer.single(Path(override), langs)
    if override:
        return Tokenizer.load(Path(override))
    root = Path(data_bin).parent
    if (root / "manifest.json").is_file():
        return PreparedData.open(root).tokenizer
    if (root / TOKENIZER_FILE).is_file():
        return Tokenizer.load(root)
    raise UserInputError(f"cannot tell how {data_bin} was segmented (no manifest.json or {TOKENIZER_FILE} in "
                         f"{root}); pass --student-tokenizer DIR")


def distill_langs(opts: DistillOptions, teacher_langs: Sequence[str], student_langs: Sequence[str]) -> list[str]:
    if not opts.distill_langs:
        return [x for x in student_langs if x in teacher_langs]
    langs = [x for x in opts.distill_langs.split(",") if x]
    for lang in langs:
        if lang not in teacher_langs:
            raise UserInputError(f"--distill-langs {lang}: the teacher {opts.teacher_path} does not know {lang!r} "
                                 f"(it knows {', '.join(teacher_langs)})")
        if lang not in student_langs:
            raise UserInputError(f"--distill-langs {lang}: not one of the student's --langs ({', '.join(student_langs)})")
    return langs


@dataclass(frozen=True)
class KDResult:
    loss: Tensor  # the weighted distillation loss, summed over the batch
    aligned: int  # student target tokens the loss covers
    distilled: int  # target tokens (besides language tokens) of the distilled examples
    unk_examples: int  # examples of distilled directions left out: their student pieces contain <unk>


class Distiller:
    """Everything the criterion does besides cross-entropy, for a batch in fairseq's layout."""

    def __init__(self, opts: DistillOptions, student_symbols: Sequence[str], student_langs: Sequence[str],
                 tokenizer: Tokenizer, student_style: str = "multilingual"):
        """`student_style`: the student's --lang-tok-style (the teacher's comes from its own checkpoint)."""
        from mmt_upgrade.fairseq_io.teacher_cache import TeacherCache

        opts.check()
        self.opts = opts
        self.tvocab = TeacherVocab.load(Path(opts.teacher_path), Path(opts.teacher_spm), opts.teacher_data,
                                        opts.teacher_dict, opts.teacher_langs_file)
        self.langs = distill_langs(opts, self.tvocab.langs, student_langs)
        for lang in self.langs:
            tokenizer.model_path(lang)  # the student's tokenizer must know every distilled language
        # not text: specials but </s>, either side's language tokens, fillers, data-source tags, <mask>
        t_layout = self.tvocab.layout
        exclude = {s for s in self.tvocab.symbols if not t_layout.is_piece(s)} - {"</s>"} | {
            lang_token(x, student_style) for x in student_langs} | (set(SPECIALS) - {"</s>"})
        self.kd_vocab = KDVocab.from_symbols(student_symbols, self.tvocab.symbols, exclude)
        self._on = torch.device("cpu")  # where the method's vocabulary tensors are
        method_cls = KD_METHODS[opts.kd_method]
        self.method: KDMethod = method_cls(self.kd_vocab, opts.kd_temperature, opts.kd_topk, opts.lexical_ratio)
        self.weight = method_cls.weight if opts.kd_weight is None else opts.kd_weight
        self.aligner = ExampleAligner(student_symbols, tokenizer, self.tvocab.symbols, load_spm(self.tvocab.spm_path),
                                      self.tvocab.style)
        self.pad = student_symbols.index("<pad>")
        self.lang_of = {student_symbols.index(lang_token(x, student_style)): x for x in student_langs}
        self.cache = None
        if opts.teacher_cache:
            self.cache = TeacherCache.load(Path(opts.teacher_cache), self.fingerprint())
        self.teacher = None if self.cache else Teacher(self.tvocab)
        self._memo: dict[bytes, TeacherExample | None] = {}

    def fingerprint(self) -> dict:
        """What a teacher cache for this distillation must have been built with."""
        from mmt_upgrade.fairseq_io.teacher_cache import fingerprint

        return fingerprint(self.method, self.tvocab, self.aligner.s_symbols.tolist(), self.aligner.s_tok, self.langs)

    def view(self, src: np.ndarray, tgt: np.ndarray) -> tuple[bytes, TeacherExample | None] | None:
        """The teacher's view of one student example (`__src__ x </s>`, `__tgt__ y </s>`, no padding);
        None when the teacher does not distil its direction."""
        src_lang, tgt_lang = self.lang_of.get(int(src[0])), self.lang_of.get(int(tgt[0]))
        if src_lang not in self.langs or tgt_lang not in self.langs:
            return None
        key = example_key(src_lang, tgt_lang, src[1:-1], tgt[1:-1])
        if key not in self._memo:
            self._memo[key] = self.aligner.convert(src_lang, tgt_lang, src[1:-1], tgt[1:-1])
        return key, self._memo[key]

    def select(self, src_tokens: Tensor, target: Tensor) -> tuple[list[int], list[bytes], list[TeacherExample], int]:
        """Rows of the batch to distil, their keys and teacher views, and how many examples of distilled
        directions were left out because their student pieces contain `<unk>`."""
        src_np, tgt_np = src_tokens.cpu().numpy(), target.cpu().numpy()
        rows, keys, views, unk = [], [], [], 0
        for i in range(len(src_np)):
            v = self.view(src_np[i][src_np[i] != self.pad], tgt_np[i][tgt_np[i] != self.pad])
            if v is not None and v[1] is None:
                unk += 1
            elif v is not None:
                rows.append(i)
                keys.append(v[0])
                views.append(v[1])
        return rows, keys, views, unk

    def kd(self, student: StudentOutput, target: Tensor, src_tokens: Tensor, student_param: Tensor) -> KDResult:
        """The weighted distillation loss of a batch; `student_param`: any student parameter (the teacher
        follows its device and dtype)."""
        rows, keys, views, unk = self.select(src_tokens, target)
        if not rows:
            return KDResult(student.ce.new_zeros(()), 0, 0, unk)
        device = target.device
        if device != self._on:
            self.method.vocab, self._on = self.kd_vocab.to(device), device
        per_row: list[TargetAlignment | None] = [None] * target.shape[0]
        for r, v in zip(rows, views):
            per_row[r] = v.align
        align = BatchAlignment.collate(per_row, target.shape[1], max(len(v.tgt) for v in views)).to(device)
        rows_t = torch.tensor(rows, device=device)
        sub = align.subset(rows_t)
        if self.cache is not None:
            signal = self.method.collate([self.cache.get(k) for k in keys], sub).to(device)
        else:
            self.teacher.follow(student_param)
            with torch.inference_mode():
                t_logits, t_target = self.teacher.logits(views, device)
                signal = self.method.teacher_signal(t_logits, t_target, sub)
            signal = signal.clone()  # a normal tensor: autograd may save it for the student's backward
        kd, aligned = self.method.loss(student, align, self.method.expand(signal, rows_t, align))
        distilled = int((target[rows_t] != self.pad).sum()) - len(rows)  # text and </s>: not the language tokens
        return KDResult(self.weight * kd, int(aligned), distilled, unk)

    def describe(self) -> str:
        source = f"cache {self.opts.teacher_cache}" if self.cache else f"online teacher {self.opts.teacher_path}"
        return (f"cross-vocabulary distillation: {self.method.name} (weight {self.weight}, temperature "
                f"{self.method.tau}) from the {source} on {','.join(self.langs)}; "
                f"{len(self.kd_vocab.s_shared)} shared pieces")
