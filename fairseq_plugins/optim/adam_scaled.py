"""`--optimizer adam_scaled`: fairseq's Adam with learning-rate multipliers for old and new parameters.

`--lr-scale-old S --lr-scale-new S --lr-scale-rules 'PATTERN=S,...'`; what is new comes from the
new-parameter record of the checkpoint the run starts from (`--finetune-from-model`, or the resumed
`checkpoint_last.pt`); parameter names come from `--task upgrade_translation`, which tags every
parameter's `param_group` with its name (the one attribute fairseq's fp16 master copies keep).
The grouping and the multipliers are `mmt_upgrade.core.lr_scaling`; this adapter applies them on every
`set_lr` and `step` and logs each group's effective lr (`lr_<group>`).
"""
import dataclasses
import logging
from typing import Optional

import torch
from fairseq.logging import metrics
from fairseq.optim import register_optimizer
from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig
from omegaconf import II

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.lr_scaling import LrScaleOptions, group_parameters, rescale_update_
from mmt_upgrade.core.record import NewParameterRecord
from mmt_upgrade.fairseq_io.checkpoint import checkpoint_to_restore, read_task_state

logger = logging.getLogger(__name__)


# Adam's flags plus LrScaleOptions' (declared once in mmt_upgrade.core.lr_scaling), and where the run starts.
AdamScaledConfig = dataclasses.make_dataclass("AdamScaledConfig", LrScaleOptions.fairseq_fields() + [
    ("save_dir", str, dataclasses.field(default=II("checkpoint.save_dir"))),
    ("restore_file", str, dataclasses.field(default=II("checkpoint.restore_file"))),
    ("finetune_from_model", Optional[str], dataclasses.field(default=II("checkpoint.finetune_from_model")))],
    bases=(FairseqAdamConfig,))


@register_optimizer("adam_scaled", dataclass=AdamScaledConfig)
class AdamScaled(FairseqAdam):
    def __init__(self, cfg, params):
        params = list(params)
        names = [getattr(p, "param_group", None) for p in params]
        if not all(isinstance(n, str) and "." in n for n in names):
            raise UserInputError("--optimizer adam_scaled needs --task upgrade_translation, which names the "
                                 "parameters it scales")
        record = None
        path = checkpoint_to_restore(cfg.save_dir, cfg.restore_file, cfg.finetune_from_model)
        if path is not None:
            record = NewParameterRecord.from_task_state(read_task_state(path))
        if record is None:
            logger.warning("adam_scaled: no new-parameter record in %s: every parameter is old", path)
        options = LrScaleOptions(**{f.name: getattr(cfg, f.name) for f in LrScaleOptions.option_fields()})
        groups = group_parameters(names, [p.shape for p in params], record, options)
        super().__init__(cfg, [{"params": [params[i] for i in g.indices], "lr_scale": g.scale, "label": g.label}
                               for g in groups])
        self._masks = {params[i]: mask.to(params[i].device) for g in groups for i, mask in g.masks.items()}
        self._base_lr = self.optimizer_config["lr"]
        self.set_lr(self._base_lr)
        for g in groups:
            logger.info("adam_scaled group %s: lr x %g, %d tensors%s", g.label, g.scale, len(g.indices),
                        f" (row/column masks on {len(g.masks)})" if g.masks else "")

    @property
    def supports_flat_params(self):
        return False  # one flat fp16 buffer would merge the groups: fairseq then asks for --fp16-no-flatten-grads

    def get_lr(self):
        return self._base_lr

    def set_lr(self, lr):
        self._base_lr = lr
        for group in self.param_groups:
            group["lr"] = lr * group["lr_scale"]
            metrics.log_scalar(f"lr_{group['label']}", group["lr"], weight=0, round=8)

    def load_state_dict(self, state_dict, optimizer_overrides=None):
        saved = [(g.get("label"), g.get("lr_scale")) for g in state_dict["param_groups"]]
        now = [(g["label"], g["lr_scale"]) for g in self.param_groups]
        if [label for label, _ in saved] != [label for label, _ in now]:
            raise UserInputError(f"adam_scaled: the checkpoint's optimizer groups {saved} differ from this run's "
                                 f"{now}; resume with the same --lr-scale-* flags (or --reset-optimizer)")
        super().load_state_dict(state_dict, optimizer_overrides)
        for group, (_, scale) in zip(self.param_groups, now):  # this run's flags win, as for the lr
            group["lr_scale"] = scale
        self.set_lr(self._base_lr)

    def step(self, closure=None, scale=1.0, groups=None):
        before = {p: p.data.clone() for p in self._masks}
        super().step(closure, scale, groups)
        with torch.no_grad():
            for p, mask in self._masks.items():
                rescale_update_(p.data, before[p], mask)
