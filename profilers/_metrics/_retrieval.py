"""Retrieval: Stanford Online Products' ranks and the ``retrieval`` metric (Recall@K)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from ._data import EvalOutputs, as_vector
from ._distances import CHUNK_ELEMENTS, Distance, as_float, distance_blocks
from ._protocol import MetricResult, TaskMetric, binomial_se


def retrieval_ranks(
    query: Tensor | np.ndarray,
    query_labels: Tensor | np.ndarray,
    gallery: Tensor | np.ndarray | None = None,
    gallery_labels: Tensor | np.ndarray | None = None,
    *,
    distance: Distance = "cosine",
    chunk_elements: int = CHUNK_ELEMENTS,
) -> np.ndarray:
    """1-based rank of each query's nearest gallery item of its own class (0: none in the gallery).

    Without a gallery every query is searched among all the *other* queries: the query itself is
    removed from its own gallery (Stanford Online Products, as UFO's ``retri_evaluator.py``,
    which drops the first hit of a search of the query set in itself; here the query's own index
    is removed, so that a duplicate image cannot take its place). The rank counts the gallery
    items strictly closer than the nearest correct one, so ties go to the correct item.

    Raises:
        ValueError: Shapes disagree, or only one of ``gallery`` and ``gallery_labels`` is given.
    """
    q = as_float(query)
    if q.dim() != 2:
        raise ValueError(f"query must be m x d, got {tuple(q.shape)}")
    qlabels = as_vector(query_labels, torch.int64, "query_labels", q.shape[0]).to(q.device)
    if (gallery is None) != (gallery_labels is None):
        raise ValueError("give both gallery and gallery_labels, or neither")
    leave_one_out = gallery is None
    if gallery is None or gallery_labels is None:
        g, glabels = q, qlabels
    else:
        g = as_float(gallery).to(q.device)
        if g.dim() != 2 or g.shape[1] != q.shape[1]:
            raise ValueError(f"gallery must be n x {q.shape[1]}, got {tuple(g.shape)}")
        glabels = as_vector(gallery_labels, torch.int64, "gallery_labels", g.shape[0]).to(q.device)
        dtype = torch.promote_types(q.dtype, g.dtype)
        q, g = q.to(dtype), g.to(dtype)
    m = q.shape[0]
    ranks = np.zeros(m, dtype=np.int64)
    for start, stop, d in distance_blocks(q, g, distance, chunk_elements):
        positive = glabels[None, :] == qlabels[start:stop, None]
        if leave_one_out:
            rows = torch.arange(stop - start, device=q.device)
            d[rows, rows + start] = math.inf
            positive[rows, rows + start] = False
        nearest = torch.where(positive, d, math.inf).min(1).values
        rank = (d < nearest[:, None]).sum(1) + 1
        ranks[start:stop] = torch.where(positive.any(1), rank, 0).cpu().numpy()
    return ranks


class RetrievalMetric(TaskMetric):
    """Recall@K: the share of queries with an item of their class among their ``K`` nearest
    gallery items (:func:`retrieval_ranks`); queries without any such item count as misses, as in
    UFO's ``retri_evaluator.py``.

    Every item is a query and all the other items are its gallery: the query is removed from its
    own gallery (Stanford Online Products' protocol; a batch's ``is_query`` is ignored). With
    ``separate_gallery`` the items flagged ``is_query`` search the others instead (In-Shop style,
    the released evaluator's ``gallery_features``). The value is Recall@``ks[0]``, ``std`` its
    binomial standard error, ``count`` the number of queries.

    Args:
        distance: Default ``cosine`` (the released SOP evaluation: ``cosine=True``).
        ks: Reported as ``recall@<k>`` (the released SOP config: 1, 10, 100, 1000).
        separate_gallery: Queries are the ``is_query`` items, the gallery the others.
    """

    name: ClassVar[str] = "retrieval"
    requires: tuple[str, ...] = ("labels",)
    uses_distance: ClassVar[bool] = True

    def __init__(
        self,
        distance: Distance | None = None,
        ks: Sequence[int] = (1, 10, 100, 1000),
        separate_gallery: bool = False,
        chunk_elements: int = CHUNK_ELEMENTS,
    ) -> None:
        super().__init__(distance)
        if not ks or min(ks) < 1:
            raise ValueError(f"ks must be positive integers, got {list(ks)}")
        self.ks, self.chunk_elements = tuple(ks), chunk_elements
        self.separate_gallery = separate_gallery
        if separate_gallery:
            self.requires = ("labels", "is_query")

    def compute(self, out: EvalOutputs) -> MetricResult:
        assert out.labels is not None
        assert self.distance is not None
        if not self.separate_gallery:
            ranks = retrieval_ranks(
                out.outputs, out.labels, distance=self.distance, chunk_elements=self.chunk_elements
            )
        else:
            q = out.is_query
            assert q is not None
            if not bool(q.any()) or bool(q.all()):
                raise ValueError(
                    f"metric 'retrieval' with a separate gallery needs queries and gallery items; got "
                    f"{int(q.sum())} and {int((~q).sum())}"
                )
            ranks = retrieval_ranks(
                out.outputs[q],
                out.labels[q],
                out.outputs[~q],
                out.labels[~q],
                distance=self.distance,
                chunk_elements=self.chunk_elements,
            )
        found = ranks > 0
        values = {f"recall@{k}": float(np.mean(found & (ranks <= k))) for k in self.ks}
        values["queries"] = float(ranks.size)
        primary = f"recall@{self.ks[0]}"
        value = values[primary]
        return MetricResult(value, binomial_se(value, ranks.size), int(ranks.size), primary, values)
