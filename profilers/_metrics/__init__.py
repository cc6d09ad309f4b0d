"""Task metrics: how a subnet's outputs on a task's evaluation data become its score.

A metric is a :class:`TaskMetric` subclass registered under the entry-point group
``gpnas.metrics``; the built-ins are registered the same way in gpnas' ``pyproject.toml`` and are
looked up like datasets and supernets (:meth:`profilers.LocalConfig.resolve_callable`: the
measuring machine's local config section ``[metrics]``, else an installed entry point):

================ ============================ ================================================
name             class                        value (the stored score), other values
================ ============================ ================================================
``top1``         :class:`Top1Metric`          top-1 accuracy of the logits
``reid``         :class:`ReIDMetric`          mAP; ``rank1``/``rank5``/``rank10`` (CMC), mINP
``verification`` :class:`VerificationMetric`  k-fold pair accuracy (LFW); mean threshold
``retrieval``    :class:`RetrievalMetric`     Recall@1; ``recall@10``/``@100``/``@1000``
================ ============================ ================================================

The protocols are those of the evaluation code Baidu released with VIMER-UFO
(PaddlePaddle/VIMER, ``UFO/OneForAll/evaluation/``: ``reid_evaluation.py`` and ``rank.py``,
``face_evaluation.py``, ``retri_evaluator.py``, ``clas_evaluator.py``, and its fastreid dataset
readers), re-implemented here; each function's docstring names the details it follows and where
it deliberately differs.

Data: a ``gpnas.datasets`` callable returns an iterable of batches (a list, a generator or a
``torch.utils.data.DataLoader``); :func:`collect_outputs` accepts each batch as an
:class:`EvalBatch`, as a mapping with :class:`EvalBatch`'s field names as keys (what a DataLoader's
default collation makes of dict samples) or as an ``(inputs, labels)`` pair (what it makes of
``(image, label)`` samples: a two-item list). What each metric needs in every batch of ``b``
items:

================ ==================================================================================
metric           fields (besides ``inputs``: ``b x C x H x W`` float images, already normalised)
================ ==================================================================================
``top1``         ``labels``: ``b`` class indices into the head's logits
``reid``         ``labels``: identities (``-1`` = junk); ``is_query``: ``b`` booleans (query or
                 gallery item, in any order and any batch); ``cameras`` (optional): ``b`` ints
``verification`` ``pair_inputs``: the second image of each pair (shape of ``inputs``); ``same``: ``b``
                 booleans
``retrieval``    ``labels``: classes; ``is_query`` only with ``separate_gallery``
================ ==================================================================================

Every batch carries the same fields; keys other than the field names are refused (a typo must not
silently drop ``cameras``), so a loader whose samples hold more (file names, indices) drops them in
its dataset or ``collate_fn``. The profiler runs the model on ``inputs`` (and ``pair_inputs`` when
the metric compares pairs), concatenates everything into one :class:`EvalOutputs` and hands it to
the metric, which names the fields it needs in :attr:`TaskMetric.requires`.

Distances between embeddings are computed with torch on the embeddings' device, a block of
queries at a time (``chunk_elements`` distance entries per block), so that a 20k x 20k gallery
never holds its whole distance matrix (or its argsort) in memory.
"""

from __future__ import annotations

from ._data import EvalBatch, EvalOutputs, as_eval_batch, collect_outputs
from ._distances import CHUNK_ELEMENTS, DISTANCES, Distance, distance_matrix, pair_distances
from ._protocol import MetricResult, TaskMetric
from ._registry import METRICS_ENTRY_POINT_GROUP, available_metrics, create_metric, get_metric
from ._reid import RankedQueries, ReIDMetric, reid_rankings
from ._retrieval import RetrievalMetric, retrieval_ranks
from ._top1 import Top1Metric
from ._verification import VerificationMetric, best_threshold, kfold_indices, verification_folds

__all__ = [
    "CHUNK_ELEMENTS",
    "DISTANCES",
    "Distance",
    "EvalBatch",
    "EvalOutputs",
    "METRICS_ENTRY_POINT_GROUP",
    "MetricResult",
    "RankedQueries",
    "ReIDMetric",
    "RetrievalMetric",
    "TaskMetric",
    "Top1Metric",
    "VerificationMetric",
    "as_eval_batch",
    "available_metrics",
    "best_threshold",
    "collect_outputs",
    "create_metric",
    "distance_matrix",
    "get_metric",
    "kfold_indices",
    "pair_distances",
    "reid_rankings",
    "retrieval_ranks",
    "verification_folds",
]
