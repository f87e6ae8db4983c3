"""`upgrade()`: the stages in order, inputs -> vocabulary -> rows -> languages -> growth -> write, each adding
its sections to upgrade.json.

Checkpoint surgery on the state dict; the only fairseq model built is the old one, scoring a few dev
sentences before anything is written (`check_rows_mean_pieces`: a dictionary of another model of the same
size; `--no-rows-check` skips it). The old checkpoint is read memory-mapped and never written; every input is
checked before anything is built, and the output directory is built beside its final place and renamed when
complete.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mmt_upgrade.core.files import atomic_dir, log, write_json_atomic
from mmt_upgrade.core.record import UPGRADE_JSON, NewParameterRecord
from mmt_upgrade.core.vocab import upgraded_layout
from mmt_upgrade.fairseq_io.checkpoint import checkpoint_task_cfg
from mmt_upgrade.pipeline.upgrade.growth import grow_model
from mmt_upgrade.pipeline.upgrade.inputs import (
    ResolvedInputs,
    UpgradeInputs,
    hash_files,
    inputs_section,
    resolve_inputs,
)
from mmt_upgrade.pipeline.upgrade.languages import upgrade_languages
from mmt_upgrade.pipeline.upgrade.options import UpgradeOptions
from mmt_upgrade.pipeline.upgrade.rows import upgrade_rows
from mmt_upgrade.pipeline.upgrade.vocabulary import build_vocabulary, vocabulary_section
from mmt_upgrade.pipeline.upgrade.write import (
    CHECKPOINT,
    check_out_dir,
    commands_section,
    outputs_section,
    write_lang_pairs,
    write_model,
)

FORMAT = 1


def _check_rows(found: ResolvedInputs) -> dict:
    """The rows check, imported only when it runs: it loads fairseq's model code and omegaconf (0.1 s+)."""
    from mmt_upgrade.pipeline.upgrade.rows_check import check_rows_mean_pieces

    return check_rows_mean_pieces(found)


def upgrade(inputs: UpgradeInputs, out_dir: Path, options: UpgradeOptions) -> Path:
    """Build `out_dir` (must not exist) holding the upgraded model; returns its checkpoint path."""
    t0 = time.monotonic()
    out_dir = check_out_dir(out_dir, inputs.checkpoint)
    found = resolve_inputs(inputs, options)
    rows_check = (_check_rows(found) if inputs.rows_check else
                  {"rows_check": {"skipped": "--no-rows-check: --dict and --spm were not checked against the model"}})
    state, record = found.state, NewParameterRecord()
    report = {"format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())} | rows_check
    hasher = ThreadPoolExecutor(max_workers=1)  # a multi-GB checkpoint hashes beside SentencePiece training
    hashes = hash_files(hasher, found)
    try:
        with atomic_dir(out_dir) as tmp:
            vocab = build_vocabulary(found, options, tmp)
            report |= vocabulary_section(found, vocab)
            layout = upgraded_layout(found.layout, vocab, found.new_langs)
            report |= upgrade_rows(state["model"], found.spm, found.sp, found.layout, layout, vocab.mode, options,
                                   record, found.what)
            lang_dict = bool(checkpoint_task_cfg(state).get("lang_dict")) or inputs.langs_file is not None
            report |= upgrade_languages(state, found.old_langs, found.new_langs, out_dir)
            report |= grow_model(state, options, record, found.what)
            log(f"upgrade: writing {out_dir / CHECKPOINT}")
            report |= write_model(state, found.layout, layout, found.dict_rest, found.dictionary.name, record, tmp,
                                  lang_dict)
            report |= inputs_section(found, hashes)  # after the write, which the input's hashing overlaps too
            write_lang_pairs(found.lang_pairs_file, report["lang_pairs"], found.new_langs, tmp)
            report |= commands_section(state, found.layout, layout, report["lang_pairs"], out_dir)
            report |= outputs_section(tmp)
            report["wall_s"] = round(time.monotonic() - t0, 2)
            write_json_atomic(tmp / UPGRADE_JSON, report)
    finally:
        hasher.shutdown(cancel_futures=True)
    log(f"upgrade: done in {time.monotonic() - t0:.1f} s -> {out_dir}")
    return out_dir / CHECKPOINT
