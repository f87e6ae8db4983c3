"""The vocabulary stage: the new dictionary and tokenizer (`keep` for growth alone, `extend`, `retrain`), and
what they do to segmentation. It contributes upgrade.json's `vocab_mode`, `vocab`, `segmentation_change`,
`segmentation` and `tokenizer`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mmt_upgrade.core.files import log
from mmt_upgrade.core.spm import SPECIALS
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


def build_vocabulary(inputs: ResolvedInputs, options: UpgradeOptions, out_dir: Path) -> VocabularyUpgrade:
    """The new dictionary and tokenizer, its models written into `out_dir`."""
    new_langs, langs = inputs.new_langs, inputs.langs
    log(f"upgrade: {options.vocab_mode} vocabulary for {', '.join(new_langs)}")
    if not new_langs and options.vocab_mode == "extend":
        vocab = keep_vocabulary(inputs.spm, inputs.pieces, langs, out_dir)
    elif options.vocab_mode == "extend":
        vocab = extend_vocabulary(inputs.spm, inputs.pieces, inputs.old_langs,
                                  {x: inputs.texts[x] for x in new_langs}, options.new_spm_size, options.seed, out_dir)
    else:
        size = options.spm_size or len(inputs.pieces) + len(SPECIALS) + options.new_spm_size
        vocab = retrain_vocabulary(inputs.pieces, {x: inputs.texts[x] for x in langs}, size, options.seed, out_dir)
    vocab.tokenizer.save()
    return vocab


def vocabulary_section(inputs: ResolvedInputs, vocab: VocabularyUpgrade) -> dict[str, Any]:
    """How the new tokenizer segments: old-language dev text must not change unless retrained."""
    langs = inputs.langs
    old_tok = Tokenizer.single(inputs.spm, langs, inputs.sp)
    seg_change = segmentation_change(old_tok, vocab.tokenizer, {x: inputs.dev_texts[x] for x in inputs.old_langs})
    if vocab.mode != "retrain" and any(v["changed"] for v in seg_change.values()):
        raise AssertionError(f"extend mode changed old-language segmentations: {seg_change}")
    sample = {x: inputs.dev_texts.get(x) or inputs.texts[x][:STATS_SAMPLE] for x in langs}
    before = segmentation_stats(old_tok, sample)
    after = segmentation_stats(vocab.tokenizer, sample, set(inputs.pieces))
    return {
        "vocab_mode": vocab.mode,
        "vocab": vocab.stats,
        "segmentation_change": seg_change,
        "segmentation": {x: {"old": before[x], "upgraded": after[x]} for x in langs},
        "tokenizer": {"models": vocab.tokenizer.models, "route": vocab.tokenizer.route},
    }
