"""The vocabulary stage: the new dictionary and tokenizer (`keep` for growth alone, `extend`, `retrain`), and
what they do to segmentation. It contributes upgrade.json's `vocab_mode`, `vocab`, `segmentation_change`,
`segmentation`, `tokenizer` and, when `extend` adds languages, `merged_spm`: the one SentencePiece model
(`spm.model`) for tools that take a single model, measured against the exact language-routed tokenizer."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mmt_upgrade.core.files import log
from mmt_upgrade.core.spm import SPECIALS
from mmt_upgrade.core.spm_merge import is_unigram, merge_spm, merged_figures, pieces_per_word
from mmt_upgrade.core.vocab import (
    Tokenizer,
    VocabularyUpgrade,
    extend_vocabulary,
    keep_vocabulary,
    retrain_vocabulary,
    segmentation_change,
    segmentation_stats,
)
from mmt_upgrade.pipeline.upgrade.inputs import ResolvedInputs
from mmt_upgrade.pipeline.upgrade.options import UpgradeOptions

STATS_SAMPLE = 2000  # training lines per language measured where a language has no dev text
MERGED_SPM = "spm.model"  # the name keep and retrain give their one model: the model where one is expected


def _sample(inputs: ResolvedInputs, lang: str) -> list[str]:
    return inputs.dev_texts.get(lang) or inputs.texts.get(lang, [])[:STATS_SAMPLE]


def _samples(inputs: ResolvedInputs) -> dict[str, list[str]]:
    """Per language with any text (old languages without dev or training text are not measured)."""
    return {x: lines for x in inputs.langs if (lines := _sample(inputs, x))}


def _old_fit_text(inputs: ResolvedInputs) -> dict[str, list[str]]:
    """The old languages' text the merged model must segment as the old one does: the dev text, which the
    segmentation figures measure on (0 changes there by construction, unless a character the old model lacked
    is involved), plus their training text where known (a --text file, else --old-data's train split): text
    never fitted on can still change, far less often the more there is (BENCHMARKS.md)."""
    fit = {x: inputs.dev_texts.get(x, []) + (inputs.texts.get(x) or inputs.old_train_texts.get(x, []))
           for x in inputs.old_langs}
    return {x: lines for x, lines in fit.items() if lines}


def _write_merged(inputs: ResolvedInputs, vocab: VocabularyUpgrade) -> None:
    """`spm.model`: the old model plus the appended pieces, fitted so that old-language text keeps its
    segmentation."""
    tok = vocab.tokenizer
    new_model = tok.root / tok.models[tok.route[inputs.new_langs[0]]]
    result = merge_spm(inputs.spm, new_model, vocab.pieces[len(inputs.pieces):], _old_fit_text(inputs),
                       {x: _sample(inputs, x) for x in inputs.new_langs}, tok.root / MERGED_SPM, inputs.sp)
    log(f"upgrade: merged SentencePiece model {MERGED_SPM}: {result.appended} pieces appended (score offset "
        f"{result.offset}), {result.demoted} demoted and {result.dropped} dropped so that old text keeps its "
        f"segmentation; {result.changed} old-language sentences still segment differently")


def build_vocabulary(inputs: ResolvedInputs, options: UpgradeOptions, out_dir: Path) -> VocabularyUpgrade:
    """The new dictionary and tokenizer, its models written into `out_dir`."""
    new_langs, langs = inputs.new_langs, inputs.langs
    log(f"upgrade: {options.vocab_mode} vocabulary for {', '.join(new_langs)}")
    if not new_langs and options.vocab_mode == "extend":
        vocab = keep_vocabulary(inputs.spm, inputs.pieces, langs, out_dir)
    elif options.vocab_mode == "extend":
        vocab = extend_vocabulary(inputs.spm, inputs.pieces, inputs.old_langs,
                                  {x: inputs.texts[x] for x in new_langs}, options.new_spm_size, options.seed, out_dir,
                                  old_processor=inputs.sp)
        if is_unigram(inputs.spm):
            _write_merged(inputs, vocab)
        else:
            log(f"upgrade: no merged {MERGED_SPM}: {inputs.spm} is not a unigram model (use tokenizer.json)")
    else:
        size = options.spm_size or len(inputs.pieces) + len(SPECIALS) + options.new_spm_size
        vocab = retrain_vocabulary(inputs.pieces, {x: inputs.texts[x] for x in langs}, size, options.seed, out_dir)
    vocab.tokenizer.save()
    return vocab


def vocabulary_section(inputs: ResolvedInputs, vocab: VocabularyUpgrade) -> dict[str, Any]:
    """How the new tokenizer segments: old-language dev text must not change unless retrained."""
    langs = inputs.langs
    old_tok = Tokenizer.single(inputs.spm, langs, inputs.sp)
    measured = inputs.measured_langs
    seg_change = segmentation_change(old_tok, vocab.tokenizer, {x: inputs.dev_texts[x] for x in measured})
    if vocab.mode != "retrain" and any(v["changed"] for v in seg_change.values()):
        raise AssertionError(f"extend mode changed old-language segmentations: {seg_change}")
    sample = _samples(inputs)
    before = segmentation_stats(old_tok, sample)
    after = segmentation_stats(vocab.tokenizer, sample, set(inputs.pieces))
    return {
        "vocab_mode": vocab.mode,
        "vocab": vocab.stats,
        "segmentation_change": seg_change,
        "segmentation": {x: {"old": before[x], "upgraded": after[x]} for x in langs if x in sample},
        "dev_text_langs": {"measured": measured, "old_langs": len(inputs.old_langs)},
        "tokenizer": {"models": vocab.tokenizer.models, "route": vocab.tokenizer.route},
        **(_merged_section(inputs, vocab, sample) if vocab.mode == "extend" and inputs.new_langs else {}),
    }


def _merged_section(inputs: ResolvedInputs, vocab: VocabularyUpgrade, sample: dict[str, list[str]]) -> dict[str, Any]:
    """upgrade.json's `merged_spm`: changed old-language dev sentences (goal 0) and new-language pieces per
    word against the routed tokenizer (goal: within 5 %), measured on the files written."""
    if not is_unigram(inputs.spm):
        return {"merged_spm": {"file": None, "reason": f"{inputs.spm} is not a unigram model"}}
    routed = {x: pieces_per_word(vocab.tokenizer.processor(x), sample[x]) for x in inputs.new_langs}
    figures = merged_figures(inputs.sp, vocab.tokenizer.root / MERGED_SPM,
                             {x: inputs.dev_texts[x] for x in inputs.measured_langs}, routed,
                             {x: sample[x] for x in inputs.new_langs}, inputs.sp.GetPieceSize())
    fitted = _old_fit_text(inputs)
    return {"merged_spm": figures | {"fitted_on_lines": {x: len(v) for x, v in fitted.items()}}}
