"""The languages stage: the new languages appended to the checkpoint's language list, and pivot-centric
directions for them, wherever fairseq keeps those (task, model, legacy args). It contributes upgrade.json's
`langs` and `lang_pairs`."""
from __future__ import annotations

from typing import Any, Sequence

from mmt_upgrade.core.fairseq_cfg import cfg_fields
from mmt_upgrade.core.languages import PIVOT, directions
from mmt_upgrade.fairseq_io.checkpoint import checkpoint_task_cfg


def upgraded_lang_pairs(state: dict[str, Any], old_langs: Sequence[str], new_langs: Sequence[str]) -> list[str]:
    """The old directions, then pivot-centric directions for every new language."""
    old = checkpoint_task_cfg(state).get("lang_pairs") or []
    old = old.split(",") if isinstance(old, str) else list(old)
    pivot = PIVOT if PIVOT in old_langs else old_langs[0]
    return old + [f"{s}-{t}" for s, t in directions(pivot, new_langs)]


def _update_cfg(state: dict[str, Any], langs: list[str], pairs: list[str]) -> None:
    for ns in (state["cfg"].get("task"), state["cfg"].get("model"), state.get("args")):
        if ns is None:
            continue
        fields = cfg_fields(ns)
        fields["langs"] = langs
        if "lang_pairs" in fields:
            fields["lang_pairs"] = pairs if isinstance(fields["lang_pairs"], list) else ",".join(pairs)


def upgrade_languages(state: dict[str, Any], old_langs: Sequence[str], new_langs: Sequence[str]) -> dict[str, Any]:
    """The stage (in place): the checkpoint's config and task state name every language."""
    langs = list(old_langs) + list(new_langs)
    pairs = upgraded_lang_pairs(state, old_langs, new_langs)
    _update_cfg(state, langs, pairs)
    state.setdefault("task_state", {})["model_langs"] = langs
    return {"langs": {"old": list(old_langs), "new": list(new_langs), "model": langs}, "lang_pairs": pairs}
