"""`--task upgrade_translation`: translation_multi_simple_epoch plus what upgrading needs.

- `--cpu-bf16 {auto,always,never}`: forward passes under CPU bf16 autocast with fp32 master weights
  (fairseq's `--bf16` assumes a TPU on CPU and crashes).
- The task records its language list in the checkpoint's task state and refuses to load a
  checkpoint whose language tokens the current `--langs` would reorder.
- `--upsample-langs it,ar --upsample-factor F --related-langs es,fr --related-factor G`: training
  directions are sampled by `mmt_upgrade.core.sampling` (temperature or uniform, times the factors); the
  distribution is logged and written to `<save-dir>/sampling.json`. Validation and generation are the
  parent task's.
- It carries the new-parameter record (`mmt_upgrade.core.record`): read from the checkpoint fairseq-train
  starts from (`--finetune-from-model` or the resumed `checkpoint_last.pt`) or from the checkpoint
  fairseq-generate loads, and written into every checkpoint it saves.
- `--add-data-source-prefix-tags`: the three tags of fairseq's NLLB branch after the language tokens, so
  NLLB-200 checkpoints (256,206 rows) load with fairseq main.
- It counts the target tokens trained on (`target_tokens` in the task state of every checkpoint,
  carried over on resume, zero when fine-tuning starts): the compute axis of `mmt-upgrade report`.
"""
import logging
from pathlib import Path

import torch
from fairseq.data.multilingual.multilingual_data_manager import MultilingualDatasetManager
from fairseq.logging import metrics
from fairseq.optim.amp_optimizer import AMPOptimizer
from fairseq.tasks import register_task
from fairseq.tasks.translation_multi_simple_epoch import TranslationMultiSimpleEpochTask

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import write_json_atomic
from mmt_upgrade.core.languages import check_extends
from mmt_upgrade.core.precision import PrecisionOptions, cpu_autocast, resolve_cpu_bf16
from mmt_upgrade.core.record import TASK_STATE_KEY, NewParameterRecord, size_flags_hint
from mmt_upgrade.core.sampling import (
    SAMPLING_METHODS,
    SamplingOptions,
    sampling_distribution,
)
from mmt_upgrade.core.symbols import DATA_SOURCE_TAGS, LayoutOptions
from mmt_upgrade.fairseq_io.checkpoint import LAST, checkpoint_to_restore, read_task_state

logger = logging.getLogger(__name__)
TARGET_TOKENS = "target_tokens"


@register_task("upgrade_translation")
class UpgradeTranslationTask(TranslationMultiSimpleEpochTask):
    @staticmethod
    def add_args(parser):
        TranslationMultiSimpleEpochTask.add_args(parser)
        PrecisionOptions.add_arguments(parser)
        SamplingOptions.add_arguments(parser)
        LayoutOptions.add_arguments(parser)

    @classmethod
    def setup_task(cls, args, **kwargs):
        """The parent's dictionaries, plus NLLB's data-source tags where asked: after the language tokens (and
        `<mask>`), as the NLLB branch's `load_dictionary_and_postproc` adds them."""
        langs, dicts, training = MultilingualDatasetManager.prepare(cls.load_dictionary, args, **kwargs)
        if LayoutOptions.from_namespace(args).add_data_source_prefix_tags:
            for d in {id(d): d for d in dicts.values()}.values():  # a fixed dictionary is shared by every language
                for tag in DATA_SOURCE_TAGS:
                    d.add_symbol(tag)
        return cls(args, langs, dicts, training)

    def __init__(self, args, langs, dicts, training):
        super().__init__(args, langs, dicts, training)
        on_cpu = getattr(args, "cpu", False) or not torch.cuda.is_available()
        if getattr(args, "bf16", False) and on_cpu:
            raise UserInputError("--bf16 needs a GPU in fairseq (on CPU it looks for a TPU); "
                                 "use --cpu-bf16 always (or the default, auto) instead")
        self.autocast_bf16 = resolve_cpu_bf16(PrecisionOptions.from_namespace(args).cpu_bf16, on_cpu)
        logger.info("CPU bf16 autocast: %s", "on" if self.autocast_bf16 else "off")
        self.state.merge_state_dict({"model_langs": list(langs), TARGET_TOKENS: 0})
        self.record: NewParameterRecord | None = None
        self._state_loaded = False
        self.sampling = SamplingOptions.from_namespace(args)
        if training and self.sampling.active():
            self.sampling.check_langs(self.langs)
            if args.sampling_weights or args.sampling_weights_from_file:
                raise UserInputError("--upsample-langs/--related-langs compute the sampling weights; "
                                     "drop --sampling-weights")
            if args.sampling_method not in SAMPLING_METHODS:
                raise UserInputError(f"--upsample-langs/--related-langs need --sampling-method "
                                     f"{' or '.join(SAMPLING_METHODS)} (got {args.sampling_method})")
            # fairseq has no hook for per-direction weights computed from dataset sizes: replace the one method
            self.data_manager.get_train_sampling_ratios = self._train_sampling_ratios

    def _train_sampling_ratios(self, data_param_list, datasets, epoch=1, shard_epoch=None):
        sizes = self.data_manager.get_train_dataset_sizes(data_param_list, datasets, epoch, shard_epoch)
        keys = [param["key"] for param in data_param_list]
        args, s = self.args, self.sampling
        probs = sampling_distribution(keys, sizes, args.sampling_method, args.sampling_temperature, s.upsample_langs,
                                      s.upsample_factor, s.related_langs, s.related_factor)
        table = {k: {"size": n, "probability": round(p, 6)} for k, n, p in zip(keys, sizes, probs)}
        logger.info("sampling distribution: %s", {k: v["probability"] for k, v in table.items()})
        if getattr(args, "distributed_rank", 0) == 0 and getattr(args, "save_dir", None):
            write_json_atomic(Path(args.save_dir) / "sampling.json", {
                "method": args.sampling_method, "temperature": args.sampling_temperature,
                "upsample": {"langs": s.upsample_langs, "factor": s.upsample_factor},
                "related": {"langs": s.related_langs, "factor": s.related_factor},
                "epoch": epoch, "directions": table})
        return probs

    def load_state_dict(self, state_dict):
        saved = state_dict.get("model_langs")
        if saved is not None:
            check_extends(saved, self.langs, "--langs")
        self._set_record(NewParameterRecord.from_task_state(state_dict))
        self._state_loaded = True
        super().load_state_dict({k: v for k, v in state_dict.items() if k not in ("model_langs", TASK_STATE_KEY)})

    def _set_record(self, record):
        self.record = record
        if record is not None:
            self.state.merge_state_dict({TASK_STATE_KEY: record.to_dict()})

    def build_model(self, args, from_checkpoint=False):
        model = super().build_model(args, from_checkpoint)
        path = None  # the checkpoint fairseq-train loads (its upgrade.json holds the size flags to give)
        if not self._state_loaded:  # fairseq-train: it never calls load_state_dict, so read the file it will load
            path = checkpoint_to_restore(getattr(self.args, "save_dir", "checkpoints"),
                                         getattr(self.args, "restore_file", LAST),
                                         getattr(self.args, "finetune_from_model", None))
            if path is not None:
                task_state = read_task_state(path)
                if task_state.get("model_langs") is not None:
                    check_extends(task_state["model_langs"], self.langs, f"--langs (loading {path})")
                self._set_record(NewParameterRecord.from_task_state(task_state))
                if path.name == LAST and path.parent == Path(self.args.save_dir):  # a resume
                    self.state.merge_state_dict({TARGET_TOKENS: int(task_state.get(TARGET_TOKENS, 0))})
        for name, param in model.named_parameters():  # names for --optimizer adam_scaled (kept by fp16 copies)
            param.param_group = name
        if self.record is not None:
            self.record.check_shapes({n: tuple(p.shape) for n, p in model.state_dict().items()},
                                     "--task upgrade_translation", size_flags_hint(path))
            logger.info("new-parameter record: %d whole parameters, %d with new slices",
                        len(self.record.whole), len(self.record.slices))
        return model

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        model.train()
        model.set_num_updates(update_num)
        amp = isinstance(optimizer, AMPOptimizer)
        with torch.autocast("cuda") if amp else cpu_autocast(self.autocast_bf16):
            loss, sample_size, logging_output = criterion(model, sample)
        if ignore_grad:
            loss *= 0
        optimizer.backward(loss)
        return loss, sample_size, logging_output

    def reduce_metrics(self, logging_outputs, criterion):
        """Counts training tokens once per update, after fairseq has gathered every worker's outputs."""
        super().reduce_metrics(logging_outputs, criterion)
        if criterion.training:
            total = getattr(self.state, TARGET_TOKENS) + int(sum(log.get("ntokens", 0) for log in logging_outputs))
            self.state.merge_state_dict({TARGET_TOKENS: total})
            metrics.log_scalar("tgt_tokens", total, weight=0, priority=900, round=0)

    def valid_step(self, sample, model, criterion):
        with cpu_autocast(self.autocast_bf16):
            return super().valid_step(sample, model, criterion)

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        with cpu_autocast(self.autocast_bf16):
            return super().inference_step(generator, models, sample, prefix_tokens, constraints)
