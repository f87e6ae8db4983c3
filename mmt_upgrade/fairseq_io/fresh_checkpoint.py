"""A fairseq checkpoint for tensors that did not come from fairseq-train (`mmt-upgrade import`).

The config is what fairseq-train itself would store for the given flags (its parser, its conversion to the
dataclass config), so fairseq-generate, `--finetune-from-model` and this toolkit read it like any other; the
training state is that of update 0 (no optimizer state: fine-tuning starts a new one).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from omegaconf import OmegaConf


def fresh_checkpoint(model: dict[str, torch.Tensor], argv: Sequence[str]) -> dict[str, Any]:
    """`model` under the config fairseq-train builds from `argv` (DATA and flags, as on its command line)."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser(default_task="translation_multi_simple_epoch")
    args = options.parse_args_and_arch(parser, list(argv))
    cfg = OmegaConf.to_container(convert_namespace_to_omegaconf(args), resolve=True, enum_to_str=True)
    return {
        "args": None, "cfg": cfg, "model": model, "criterion": None,
        "optimizer_history": [{"criterion_name": "LabelSmoothedCrossEntropyCriterion", "optimizer_name": "FairseqAdam",
                               "lr_scheduler_state": {"best": None}, "num_updates": 0}],
        "task_state": {}, "last_optimizer_state": None,
        "extra_state": {"previous_training_time": 0.0,
                        "train_iterator": {"version": 2, "epoch": 1, "iterations_in_epoch": 0, "shuffle": True}},
    }
