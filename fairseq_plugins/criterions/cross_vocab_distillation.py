"""`--criterion cross_vocab_distillation`: label-smoothed cross-entropy plus distillation from the old
model (teacher), whose vocabulary and segmentation differ from the student's (`mmt_upgrade.core.distill`,
`mmt_upgrade.fairseq_io.distiller`).

Only training batches are distilled, and only examples whose two languages the teacher knows
(`--distill-langs` narrows them); validation reports the plain label-smoothed cross-entropy, so runs
with and without distillation compare on one scale. Logged: `ce_loss`, `kd_loss`, `kd_aligned` (share
of the distilled examples' target tokens the distillation term covers), `kd_share` (share of all
target tokens in distilled examples) and, when there are any, `kd_unk_examples` (examples left out: their
student pieces contain `<unk>`, so their text is lost).
"""
import dataclasses
import logging
import math
from pathlib import Path

from fairseq.criterions import register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
    label_smoothed_nll_loss,
)
from fairseq.logging import metrics

from mmt_upgrade.core.distill.batch import StudentOutput
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.fairseq_io.distiller import (
    Distiller,
    DistillOptions,
    KDResult,
    student_tokenizer,
)

logger = logging.getLogger(__name__)

# The label-smoothing flags plus DistillOptions' (declared once, with `mmt-upgrade distill-cache`).
CrossVocabDistillationConfig = dataclasses.make_dataclass(
    "CrossVocabDistillationConfig", DistillOptions.fairseq_fields(), bases=(LabelSmoothedCrossEntropyCriterionConfig,))


@register_criterion("cross_vocab_distillation", dataclass=CrossVocabDistillationConfig)
class CrossVocabDistillationCriterion(LabelSmoothedCrossEntropyCriterion):
    def __init__(self, task, cfg):
        super().__init__(task, cfg.sentence_avg, cfg.label_smoothing, cfg.ignore_prefix_size, cfg.report_accuracy)
        args = task.args
        if not hasattr(task, "langs") or getattr(args, "encoder_langtok", None) != "src" \
                or not getattr(args, "decoder_langtok", False):
            raise UserInputError("--criterion cross_vocab_distillation needs --task upgrade_translation (or "
                                 "translation_multi_simple_epoch) with --encoder-langtok src --decoder-langtok: "
                                 "it reads each example's languages from those tokens")
        opts = DistillOptions(**{f.name: getattr(cfg, f.name) for f in DistillOptions.option_fields()})
        data_bin = Path(str(args.data).split(":")[0])
        self.distiller = Distiller(opts, task.target_dictionary.symbols, task.langs,
                                   student_tokenizer(data_bin, opts.student_tokenizer, task.langs),
                                   getattr(args, "lang_tok_style", None) or "multilingual")
        logger.info(self.distiller.describe())

    def forward(self, model, sample, reduce=True):
        net_output = model(**sample["net_input"])
        lprobs = model.get_normalized_probs(net_output, log_probs=True)  # (B, T, V) fp32
        target = model.get_targets(sample, net_output)
        ce_tok, nll_tok = label_smoothed_nll_loss(lprobs, target.unsqueeze(-1), self.eps,
                                                  ignore_index=self.padding_idx, reduce=False)
        ce_tok, nll_tok = ce_tok.squeeze(-1), nll_tok.squeeze(-1)  # (B, T)
        if self.ignore_prefix_size > 0:
            ce_tok[:, : self.ignore_prefix_size] = 0
            nll_tok[:, : self.ignore_prefix_size] = 0
        ce, nll = ce_tok.sum(), nll_tok.sum()
        kd = KDResult(ce.new_zeros(()), 0, 0, 0)
        if model.training:
            student = StudentOutput(net_output[0], lprobs, nll_tok, ce_tok)
            kd = self.distiller.kd(student, target, sample["net_input"]["src_tokens"], next(model.parameters()))
        loss = ce + kd.loss
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        logging_output = {
            "loss": loss.data, "nll_loss": nll.data, "ce_loss": ce.data, "kd_loss": kd.loss.data,
            "kd_aligned_tokens": kd.aligned, "kd_tokens": kd.distilled, "kd_unk_examples": kd.unk_examples,
            "ntokens": sample["ntokens"], "nsentences": sample["target"].size(0), "sample_size": sample_size,
        }
        if self.report_accuracy:
            n_correct, total = self.compute_accuracy(model, net_output, sample)
            logging_output["n_correct"], logging_output["total"] = n_correct.item(), total.item()
        return loss, sample_size, logging_output

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)

        def total(key):
            return sum(float(log.get(key, 0)) for log in logging_outputs)
        sample_size, ntokens = total("sample_size"), total("ntokens")
        if sample_size:
            metrics.log_scalar("ce_loss", total("ce_loss") / sample_size / math.log(2), sample_size, round=3)
            metrics.log_scalar("kd_loss", total("kd_loss") / sample_size / math.log(2), sample_size, round=3)
        if total("kd_tokens"):
            metrics.log_scalar("kd_aligned", total("kd_aligned_tokens") / total("kd_tokens"), total("kd_tokens"),
                               round=3)
        if ntokens:
            metrics.log_scalar("kd_share", total("kd_tokens") / ntokens, ntokens, round=3)
        if total("kd_unk_examples"):
            metrics.log_scalar_sum("kd_unk_examples", total("kd_unk_examples"))
