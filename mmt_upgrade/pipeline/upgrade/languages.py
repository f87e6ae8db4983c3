"""The languages stage: the new languages appended to the checkpoint's language list, and pivot-centric
directions for them, wherever fairseq keeps those (task, model, legacy args), and the config pointed at the
upgraded directory's files (`--fixed-dictionary`, `--lang-dict`) where it named files. It contributes
upgrade.json's `langs` and `lang_pairs`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from mmt_upgrade.core.fairseq_cfg import cfg_fields
from mmt_upgrade.core.languages import PIVOT, directions
from mmt_upgrade.fairseq_io.checkpoint import checkpoint_task_cfg, config_sections

MODEL_DICT = "dict.txt"  # the upgraded dictionary file (fairseq's --fixed-dictionary where the input had one)
LANG_DICT = "lang_dict.txt"  # one code per line, where the input's config named a --lang-dict file


def upgraded_lang_pairs(state: dict[str, Any], old_langs: Sequence[str], new_langs: Sequence[str]) -> list[str]:
    """The old directions, then pivot-centric directions for every new language."""
    old = checkpoint_task_cfg(state).get("lang_pairs") or []
    old = old.split(",") if isinstance(old, str) else list(old)
    pivot = PIVOT if PIVOT in old_langs else old_langs[0]
    return old + [f"{s}-{t}" for s, t in directions(pivot, new_langs)]


def _update_cfg(state: dict[str, Any], langs: list[str], pairs: list[str], out_dir: Path) -> None:
    for ns in config_sections(state, "task", "model"):
        fields = cfg_fields(ns)
        if fields.get("lang_dict"):  # fairseq refuses --langs beside --lang-dict
            fields["lang_dict"] = str(out_dir / LANG_DICT)
        else:
            fields["langs"] = langs
        if "lang_pairs" in fields:
            fields["lang_pairs"] = pairs if isinstance(fields["lang_pairs"], list) else ",".join(pairs)
        if fields.get("fixed_dictionary"):
            fields["fixed_dictionary"] = str(out_dir / MODEL_DICT)


def upgrade_languages(state: dict[str, Any], old_langs: Sequence[str], new_langs: Sequence[str],
                      out_dir: Path) -> dict[str, Any]:
    """The stage (in place): the checkpoint's config and task state name every language, and the files of
    `out_dir` (the final directory) where the config names files."""
    langs = list(old_langs) + list(new_langs)
    pairs = upgraded_lang_pairs(state, old_langs, new_langs)
    _update_cfg(state, langs, pairs, Path(out_dir))
    state.setdefault("task_state", {})["model_langs"] = langs
    return {"langs": {"old": list(old_langs), "new": list(new_langs), "model": langs}, "lang_pairs": pairs}
