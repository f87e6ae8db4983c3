"""`mmt-upgrade export MODEL --to hf|ct2 OUT`: a fairseq multilingual model (an `upgrade` or `import` output
directory, a run's checkpoint with its files, a downloaded M2M-100/NLLB checkpoint) as a Hugging Face or
CTranslate2 model directory, written beside OUT and renamed in when complete."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmt_upgrade.core.decoding import CT2_QUANTIZATIONS
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import log
from mmt_upgrade.fairseq_io.model_files import ModelFiles
from mmt_upgrade.pipeline.export.outdir import check_new, require_extra

EXTRAS = {"hf": ("hf", ("transformers", "safetensors")), "ct2": ("ct2", ("ctranslate2",))}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a model directory (checkpoint.pt, dict.txt, spm.model: what "
                        "upgrade and import write) or a checkpoint file")
    parser.add_argument("--to", required=True, choices=sorted(EXTRAS), help="hf: transformers' M2M100 + "
                        "NllbTokenizer; ct2: CTranslate2 (its fairseq converter)")
    parser.add_argument("out", metavar="OUT", help="the directory to write (must not exist)")
    parser.add_argument("--checkpoint", metavar="CKPT", help="another checkpoint (a fine-tuned one); the "
                        "vocabulary still comes from MODEL")
    parser.add_argument("--dict", metavar="FILE", help="the model's dictionary (default: MODEL/dict.txt, else the "
                        "one its config names)")
    parser.add_argument("--spm", metavar="FILE", help="its SentencePiece model (default: MODEL/spm.model)")
    parser.add_argument("--langs-file", metavar="FILE", help="its --langs order (default: its config)")
    parser.add_argument("--quantization", choices=CT2_QUANTIZATIONS,
                        help="--to ct2 only: weight type of the CTranslate2 model (default: float32)")


def run(args: argparse.Namespace) -> int:
    extra, modules = EXTRAS[args.to]
    require_extra(extra, *modules)
    out = check_new(Path(args.out), "OUT")
    if args.quantization and args.to != "ct2":
        raise UserInputError("--quantization is for --to ct2 (a Hugging Face export keeps the checkpoint's weights)")
    model = ModelFiles.open(Path(args.model), dictionary=args.dict and Path(args.dict),
                            spm=args.spm and Path(args.spm), langs_file=args.langs_file and Path(args.langs_file),
                            checkpoint=args.checkpoint and Path(args.checkpoint))
    if args.to == "hf":
        from mmt_upgrade.pipeline.export.hf import export_hf

        result = export_hf(model, out)
    else:
        from mmt_upgrade.pipeline.export.ct2 import export_ct2

        result = export_ct2(model, out, *([args.quantization] if args.quantization else []))
    log(f"exported {model.checkpoint} -> {out} ({args.to})")
    print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    return 0
