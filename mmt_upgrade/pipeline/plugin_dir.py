"""`mmt-upgrade plugin-dir`: where the fairseq plugins are installed, for `fairseq-train --user-dir`."""
from __future__ import annotations

import argparse

from mmt_upgrade.core.paths import PLUGIN_DIR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No flags: `fairseq-train --user-dir "$(mmt-upgrade plugin-dir)" ...`."""


def run(args: argparse.Namespace) -> int:
    print(PLUGIN_DIR)
    return 0
