"""fairseq plugins of mmt-upgrade: `fairseq-<cli> --user-dir "$(mmt-upgrade plugin-dir)"`.

Importing this package also makes torch>=2.6 load fairseq checkpoints: they pickle the legacy
task arguments as an `argparse.Namespace`, which `weights_only=True` loading refuses. Every
fairseq CLI imports `--user-dir` while parsing arguments, before it reads any checkpoint, so
this one allow-list covers resume, `--finetune-from-model`, generate and interactive.
"""
import argparse

import torch

torch.serialization.add_safe_globals([argparse.Namespace])

from . import criterions, optim, tasks  # noqa: E402,F401  (registers the plugins)
