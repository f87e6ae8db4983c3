"""fairseq-generate on text that no prepared data directory holds (a downloaded model's test files): the
pieces binarized by fairseq's own preprocessing into a temporary data-bin, then translated exactly as
`drivers.generate_direction` translates a prepared split."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from mmt_upgrade.fairseq_io.binarize import binarize_pair
from mmt_upgrade.fairseq_io.drivers import parse_generate_output
from mmt_upgrade.fairseq_io.model_files import ModelFiles

SPLIT = "test"


def generate_pieces(model: ModelFiles, src: str, tgt: str, sources: Sequence[Sequence[str]],
                    refs: Sequence[Sequence[str]], beam: int, max_tokens: int,
                    extra: Sequence[str] = ()) -> tuple[list[str], int]:
    """Detokenized hypotheses of `sources` (pieces) and the number skipped as too long for the model (the
    references are binarized too: fairseq skips a pair by either side, as on prepared data)."""
    from fairseq import options
    from fairseq_cli import generate

    with tempfile.TemporaryDirectory(prefix="mmt-generate-") as tmp:
        root = Path(tmp)
        for lang, lines in ((src, sources), (tgt, refs)):
            (root / f"{SPLIT}.{src}-{tgt}.{lang}").write_text("".join(" ".join(p) + "\n" for p in lines),
                                                             encoding="utf-8")
        bin_dir = root / "bin"
        binarize_pair(root, bin_dir, src, tgt, model.dictionary, [SPLIT])
        for lang in model.langs:  # the task loads every language's dictionary
            if not (bin_dir / f"dict.{lang}.txt").exists():
                shutil.copyfile(model.dictionary, bin_dir / f"dict.{lang}.txt")
        argv = [str(bin_dir), *model.task_flags(src, tgt, bpe=False), "--path", str(model.checkpoint),
                "--gen-subset", SPLIT, "--beam", str(beam), "--max-tokens", str(max_tokens),
                "--post-process", "sentencepiece", "--results-path", str(root / "out"),
                "--skip-invalid-size-inputs-valid-test", "--required-batch-size-multiple", "1",
                "--num-workers", "0", "--cpu", *extra]
        args = options.parse_args_and_arch(options.get_generation_parser(), input_args=argv)
        generate.main(args)
        return parse_generate_output(root / "out" / f"generate-{SPLIT}.txt", len(sources))
