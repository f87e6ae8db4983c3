"""Issue 14 point 4 on the Bible: the merged SentencePiece model against the exact language-routed tokenizer.

The old model's data (configs/old_model.yaml: 4000 pieces) and the default experiment's new languages (it, ar,
--new-spm-size 4000) go through what `mmt-upgrade upgrade` does in extend mode: the new model is trained on the
new languages' train split, the merged model is fitted on the old languages' dev text alone (what the upgrade does
given only --dev-text) and on dev + train text (what it does given --old-data), then measured on the old
languages' dev and test text and on the new languages' dev text (pieces per word against the routed tokenizer).
No checkpoint is needed: segmentation only. Prints one JSON object.

    .venv/bin/python benchmarks/spm_merge_segmentation.py [--new-langs it,ar] [--new-spm-size 4000]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from mmt_upgrade.core.paths import cache_dir
from mmt_upgrade.core.spm import load_spm
from mmt_upgrade.core.spm_merge import merge_spm, merged_figures, pieces_per_word
from mmt_upgrade.core.vocab import extend_vocabulary, read_dictionary
from mmt_upgrade.pipeline.data.prepare import bible_texts, prepare_data
from mmt_upgrade.pipeline.runconfig import load_config
from mmt_upgrade.pipeline.upgrade.inputs import BibleText


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--new-langs", default="it,ar")
    parser.add_argument("--new-spm-size", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    new_langs = args.new_langs.split(",")
    data = prepare_data(load_config("old_model").data, cache_dir())
    old_langs = data.langs
    bible = BibleText.of(data, new_langs)
    train = {x: bible.lines(x) for x in new_langs}
    dev, test = data.texts("valid"), data.texts("test")
    new_dev = bible_texts(bible.cfg, cache_dir(), "valid")
    old_sp, pieces = load_spm(data.spm_model), read_dictionary(data.dictionary)
    old_train = data.texts("train")
    fits = {"dev": {x: dev[x] for x in old_langs},
            "dev+train": {x: dev[x] + old_train[x] for x in old_langs}}
    report = {"old_data": data.root.name, "old_langs": old_langs, "new_langs": new_langs,
              "new_spm_size": args.new_spm_size, "merged": {}}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        vocab = extend_vocabulary(data.spm_model, pieces, old_langs, train, args.new_spm_size, args.seed, out)
        new_sp = vocab.tokenizer.processor(new_langs[0])
        routed = {x: pieces_per_word(new_sp, new_dev[x]) for x in new_langs}
        for fit, old_text in fits.items():
            t0 = time.monotonic()
            result = merge_spm(data.spm_model, out / "spm.new.model", vocab.pieces[len(pieces):], old_text,
                               {x: train[x][:2000] for x in new_langs}, out / "spm.model")
            row = {"fitted_on": f"old languages' {fit} text", "offset": result.offset, "demoted": result.demoted,
                   "merge_s": round(time.monotonic() - t0, 2)}
            for split, text in [("dev", dev), ("test (never fitted on)", test)]:
                row[split] = merged_figures(old_sp, out / "spm.model", {x: text[x] for x in old_langs}, routed,
                                            {x: new_dev[x] for x in new_langs}, old_sp.GetPieceSize())
            report["merged"][fit] = row
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
