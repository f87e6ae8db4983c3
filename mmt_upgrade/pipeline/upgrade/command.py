"""The `mmt-upgrade upgrade` command: its flags (the inputs, then the option groups' generated flags) and
what it prints."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmt_upgrade.core.languages import parse_lang_list
from mmt_upgrade.core.record import UPGRADE_JSON
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.pipeline.upgrade.inputs import UpgradeInputs, parse_lang_files
from mmt_upgrade.pipeline.upgrade.options import UpgradeOptions
from mmt_upgrade.pipeline.upgrade.run import upgrade


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="the old fairseq checkpoint (read only)")
    parser.add_argument("--out", required=True, help="new directory for the upgraded model (must not exist)")
    parser.add_argument("--dict", help="the old model's fairseq dictionary file, in any order, language tokens and "
                                       "fillers inside or not (M2M-100's model_dict, NLLB's dictionary.txt; default: "
                                       "--old-data's, else the checkpoint's --fixed-dictionary)")
    parser.add_argument("--spm", help="the old SentencePiece model (default: --old-data's, else the checkpoint's)")
    parser.add_argument("--langs-file", metavar="FILE", help="the model's --langs order, one code per line or a "
                                                             "comma list (default: the checkpoint's config)")
    parser.add_argument("--lang-pairs-file", metavar="FILE", help="the model's language-pairs file (M2M-100's "
                                                                  "language_pairs*.txt): written to --out under its "
                                                                  "name with the new directions appended")
    parser.add_argument("--old-data", help="this project's prepared data directory of the old model (SPM, "
                                           "dictionary, dev text): instead of --dict, --spm and --dev-text")
    parser.add_argument("--new-langs", default="it,ar",
                        help="languages to add, appended in this order (default: it,ar; '' for growth alone)")
    parser.add_argument("--text", action="append", default=[], metavar="LANG=FILE",
                        help="training text of a language, one sentence per line (repeatable; default: the Bible "
                             "train split under --old-data's split rules)")
    parser.add_argument("--dev-text", action="append", default=[], metavar="LANG=FILE",
                        help="dev text of an old language (repeatable): the check that --dict is the model's, the "
                             "segmentation-change figures and the merged SentencePiece model's fit are measured on "
                             "the old languages given; one is enough (default: --old-data's)")
    parser.add_argument("--no-rows-check", dest="rows_check", action="store_false",
                        help="do not check with the old model's loss on the dev text that --dict and --spm are its own "
                             "(seconds to minutes on CPU for a 600M model; no check can tell for a model with random "
                             "weights); upgrade.json records that it was skipped")
    UpgradeOptions.add_arguments(parser)


def inputs_from_args(args: argparse.Namespace) -> UpgradeInputs:
    new_langs = parse_lang_list(args.new_langs, "--new-langs") if args.new_langs.strip() else []
    return UpgradeInputs(
        Path(args.checkpoint), new_langs, old_data=PreparedData.open(Path(args.old_data)) if args.old_data else None,
        spm=Path(args.spm) if args.spm else None, dictionary=Path(args.dict) if args.dict else None,
        text_files=parse_lang_files(args.text, "--text"), dev_text_files=parse_lang_files(args.dev_text, "--dev-text"),
        langs_file=Path(args.langs_file) if args.langs_file else None,
        lang_pairs_file=Path(args.lang_pairs_file) if args.lang_pairs_file else None, rows_check=args.rows_check)


def run(args: argparse.Namespace) -> int:
    checkpoint = upgrade(inputs_from_args(args), Path(args.out), UpgradeOptions.from_namespace(args))
    report = json.loads((checkpoint.parent / UPGRADE_JSON).read_text())
    v = report["vocab"]
    changed = sum(x["changed"] for x in report["segmentation_change"].values())
    print(f"{report['vocab_mode']}: {v['kept']} old pieces kept, {v['added']} added, {v['shared']} shared; "
          f"old-language dev sentences segmented differently: {changed}")
    if report["growth"]:
        print("grown model: " + " ".join(f"--{k} {x}" for k, x in report["fairseq_model_flags"].items()))
    print(checkpoint)
    return 0
