"""fairseq keeps a config section as a dict (current checkpoints) or an `argparse.Namespace` (legacy `args`);
one accessor for both, so checkpoint surgery needs no fairseq process."""
from __future__ import annotations

from typing import Any


def cfg_fields(ns: Any) -> dict[str, Any]:
    """The fields of a config section, which fairseq keeps as a dict or an `argparse.Namespace` (live view)."""
    return ns if isinstance(ns, dict) else vars(ns)
