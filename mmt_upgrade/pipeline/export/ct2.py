"""`mmt-upgrade export MODEL --to ct2 OUT`: a CTranslate2 model directory through CTranslate2's own fairseq
converter (`fairseq_io/ct2_convert.py`), with the SentencePiece model and `ct2_export.json` beside it, so the
directory alone translates (README, section CTranslate2)."""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from mmt_upgrade.core.decoding import CT2_QUANTIZATIONS
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import sha256_file
from mmt_upgrade.fairseq_io.model_files import ModelFiles
from mmt_upgrade.pipeline.export.outdir import building, check_new, require_extra


def export_ct2(model: ModelFiles, out: Path, quantization: str = "float32",
               checkpoint_sha256: str | None = None) -> dict[str, Any]:
    """Write OUT (built beside it, renamed in when complete; never over an existing path) and return a summary.
    `checkpoint_sha256`: the checkpoint's, when the caller has it already."""
    require_extra("ct2", "ctranslate2")
    if quantization not in CT2_QUANTIZATIONS:
        raise UserInputError(f"--quantization {quantization}: choose one of {', '.join(CT2_QUANTIZATIONS)}")
    check_new(out, "OUT")
    import ctranslate2

    from mmt_upgrade.fairseq_io.ct2_convert import convert_to_ct2
    from mmt_upgrade.fairseq_io.ct2_runtime import SPM_FILE, Ct2Export

    start = time.time()
    sha = checkpoint_sha256 or sha256_file(model.checkpoint)
    with building(out, "OUT") as tmp:
        converted = convert_to_ct2(model, tmp, quantization)
        shutil.copyfile(model.spm, tmp / SPM_FILE)
        info = Ct2Export(langs=model.langs, lang_tok_style=model.layout.style,
                         max_source_positions=converted["max_source_positions"],
                         max_target_positions=converted["max_target_positions"], quantization=quantization,
                         ctranslate2=ctranslate2.__version__, checkpoint=str(model.checkpoint), checkpoint_sha256=sha)
        info.save(tmp)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    return {"format": "ct2", "out": str(Path(out).absolute()), "checkpoint": str(model.checkpoint),
            "checkpoint_sha256": sha, "quantization": quantization, "ctranslate2": ctranslate2.__version__,
            "langs": model.langs, "vocabulary": len(model.layout.rows), "config_fixes": converted["config_fixes"],
            "files": files, "wall_s": round(time.time() - start, 1)}
