"""Top-1 accuracy of a classification head (UFO's ``clas_evaluator.py``)."""

from __future__ import annotations

from typing import ClassVar

from ._data import EvalOutputs
from ._protocol import MetricResult, TaskMetric, binomial_se


class Top1Metric(TaskMetric):
    """Top-1 accuracy: the share of items whose largest logit is their label (UFO's
    ``clas_evaluator.py`` ``Acc@1``). ``std`` is the binomial standard error ``sqrt(p(1-p)/n)``."""

    name: ClassVar[str] = "top1"
    requires: tuple[str, ...] = ("labels",)
    needs_head: ClassVar[bool] = True

    def compute(self, out: EvalOutputs) -> MetricResult:
        assert out.labels is not None
        labels, classes = out.labels, out.outputs.shape[1]
        if int(labels.min()) < 0 or int(labels.max()) >= classes:
            raise ValueError(
                f"metric 'top1': labels range {int(labels.min())}..{int(labels.max())}, but the outputs "
                f"have {classes} columns (logits of classes 0..{classes - 1})"
            )
        n = len(out)
        accuracy = float((out.outputs.argmax(dim=1) == labels).sum()) / n
        return MetricResult(accuracy, binomial_se(accuracy, n), n, "top1", {"top1": accuracy})
