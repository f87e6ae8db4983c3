"""`mmt-upgrade upgrade`: a new model directory from an old checkpoint and new-language text, in stages
(inputs -> vocabulary -> rows -> languages -> growth -> write; `run.py`), each adding its own sections to
upgrade.json. `options.py` declares the options once; `command.py` is the CLI command."""
from mmt_upgrade.pipeline.upgrade.inputs import BibleText, UpgradeInputs
from mmt_upgrade.pipeline.upgrade.options import UpgradeOptions
from mmt_upgrade.pipeline.upgrade.run import upgrade
from mmt_upgrade.pipeline.upgrade.write import CHECKPOINT

__all__ = ["BibleText", "CHECKPOINT", "UpgradeInputs", "UpgradeOptions", "upgrade"]
