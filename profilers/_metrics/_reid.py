"""Re-identification: Market-1501's ranking protocol and the ``reid`` metric (mAP, CMC, mINP)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from ._data import EvalOutputs, as_vector
from ._distances import CHUNK_ELEMENTS, Distance, as_float, distance_blocks
from ._protocol import MetricResult, TaskMetric, standard_error


@dataclass(frozen=True)
class RankedQueries:
    """Per query of a re-id evaluation: what its ranked gallery gives.

    Attributes:
        valid: The query has at least one correct match in its gallery (after the exclusions).
        average_precision: AP of its ranking (NaN where not ``valid``).
        first_match: 1-based rank of its first correct match within its gallery (0 where not
            ``valid``); CMC at rank ``k`` is the share of valid queries with ``first_match <= k``.
        inverse_negative_penalty: INP: correct matches / rank of the last one (NaN where not valid).
    """

    valid: np.ndarray
    average_precision: np.ndarray
    first_match: np.ndarray
    inverse_negative_penalty: np.ndarray

    @property
    def valid_count(self) -> int:
        return int(self.valid.sum())

    def mean_ap(self) -> float:
        """mAP: the mean AP over valid queries."""
        return float(np.mean(self.average_precision[self.valid]))

    def cmc(self, k: int) -> float:
        """CMC at rank ``k``: share of valid queries whose first correct match is within the top ``k``."""
        return float(np.mean(self.first_match[self.valid] <= k))

    def mean_inp(self) -> float:
        return float(np.mean(self.inverse_negative_penalty[self.valid]))


def reid_rankings(
    query: Tensor | np.ndarray,
    gallery: Tensor | np.ndarray,
    query_ids: Tensor | np.ndarray,
    gallery_ids: Tensor | np.ndarray,
    query_cameras: Tensor | np.ndarray | None = None,
    gallery_cameras: Tensor | np.ndarray | None = None,
    *,
    distance: Distance = "cosine",
    chunk_elements: int = CHUNK_ELEMENTS,
) -> RankedQueries:
    """Rank every query's gallery and score it, under the Market-1501 protocol.

    The protocol of UFO's re-id evaluator (``evaluation/rank.py``, ``eval_market1501``, after
    torchreid): each query's gallery is sorted by distance (ascending; ties keep gallery order);
    gallery items with the query's identity *and* camera are removed from that query's ranking
    (they are the same view, not a re-identification); a query none of whose remaining gallery
    items has its identity is not valid and takes no part in mAP or CMC (the released code
    ``continue``\\ s past it). AP = mean over the correct matches of the precision at their rank
    (ranks counted among the remaining items); CMC and INP (fastreid's mINP) as in that code.
    Junk images are not handled here: :class:`ReIDMetric` drops them before calling this.

    Args:
        query, gallery: Embeddings, ``m x d`` and ``n x d``.
        query_ids, gallery_ids: Identities, ``m`` and ``n`` integers.
        query_cameras, gallery_cameras: Camera ids, or both ``None`` to exclude nothing (every
            item its own camera, as for VehicleID).
        distance: ``cosine`` (UFO's configs) or ``euclidean``.
        chunk_elements: Distance entries per block of queries (bounds the memory).

    Raises:
        ValueError: Shapes disagree, only one of the camera arrays is given, or the gallery is empty.
    """
    q, g = as_float(query), as_float(gallery)
    if q.dim() != 2 or g.dim() != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(
            f"query and gallery must be m x d and n x d, got {tuple(q.shape)} and {tuple(g.shape)}"
        )
    if g.shape[0] == 0:
        raise ValueError("the gallery is empty")
    g = g.to(device=q.device, dtype=torch.promote_types(q.dtype, g.dtype))
    q = q.to(g.dtype)
    qids = as_vector(query_ids, torch.int64, "query_ids", q.shape[0]).to(q.device)
    gids = as_vector(gallery_ids, torch.int64, "gallery_ids", g.shape[0]).to(q.device)
    if (query_cameras is None) != (gallery_cameras is None):
        raise ValueError("give camera ids for both the queries and the gallery, or for neither")
    qcams = gcams = None
    if query_cameras is not None and gallery_cameras is not None:
        qcams = as_vector(query_cameras, torch.int64, "query_cameras", q.shape[0]).to(q.device)
        gcams = as_vector(gallery_cameras, torch.int64, "gallery_cameras", g.shape[0]).to(q.device)
    m, n = q.shape[0], g.shape[0]
    ap = np.full(m, np.nan)
    inp = np.full(m, np.nan)
    first = np.zeros(m, dtype=np.int64)
    for start, stop, d in distance_blocks(q, g, distance, chunk_elements):
        order = torch.argsort(d, dim=1, stable=True)
        del d
        match = gids[order] == qids[start:stop, None]
        keep = torch.ones_like(match)
        if qcams is not None and gcams is not None:
            keep = ~(match & (gcams[order] == qcams[start:stop, None]))
        relevant = match & keep
        rank = keep.cumsum(1)  # 1-based rank among the kept items (at kept positions)
        hits = relevant.cumsum(1)
        found = hits[:, -1]
        precision = hits.to(torch.float64) / rank.clamp_min(1).to(torch.float64)
        block_ap = (precision * relevant).sum(1) / found.clamp_min(1)
        block_first = torch.where(relevant, rank, n + 1).min(1).values
        block_last = torch.where(relevant, rank, 0).max(1).values
        ok = (found > 0).cpu().numpy()
        ap[start:stop] = np.where(ok, block_ap.cpu().numpy(), np.nan)
        first[start:stop] = np.where(ok, block_first.cpu().numpy(), 0)
        inp[start:stop] = np.where(ok, (found / block_last.clamp_min(1)).cpu().numpy(), np.nan)
    return RankedQueries(first > 0, ap, first, inp)


class ReIDMetric(TaskMetric):
    """Re-identification: mAP and CMC over query/gallery embeddings, Market-1501's protocol
    (:func:`reid_rankings`).

    Queries are the items with ``is_query``, the gallery the others. Items whose identity is one
    of ``junk_ids`` (Market-1501's ``-1``) take part in neither, as UFO's fastreid readers drop
    them when loading; distractors (Market-1501's identity ``0``) are ordinary gallery items that
    match no query. Without ``cameras`` nothing is excluded from a gallery (VehicleID gives every
    image its own camera). The value is mAP over the valid queries; ``std`` the standard error of
    their APs; ``count`` the number of valid queries.

    Args:
        distance: Default ``cosine`` (UFO's re-id configs: ``metric='cosine'``).
        ranks: CMC ranks reported as ``rank<k>`` (the released evaluator: 1, 5, 10).
        junk_ids: Identities that mark junk images.
    """

    name: ClassVar[str] = "reid"
    requires: tuple[str, ...] = ("labels", "is_query")
    uses_distance: ClassVar[bool] = True

    def __init__(
        self,
        distance: Distance | None = None,
        ranks: Sequence[int] = (1, 5, 10),
        junk_ids: Sequence[int] = (-1,),
        chunk_elements: int = CHUNK_ELEMENTS,
    ) -> None:
        super().__init__(distance)
        if not ranks or min(ranks) < 1:
            raise ValueError(f"ranks must be positive integers, got {list(ranks)}")
        self.ranks, self.junk_ids, self.chunk_elements = tuple(ranks), tuple(junk_ids), chunk_elements

    def compute(self, out: EvalOutputs) -> MetricResult:
        assert out.labels is not None
        assert out.is_query is not None
        assert self.distance is not None
        usable = ~torch.isin(out.labels, torch.tensor(self.junk_ids, dtype=torch.int64))
        query, gallery = usable & out.is_query, usable & ~out.is_query
        if not bool(query.any()) or not bool(gallery.any()):
            raise ValueError(
                f"metric 'reid' needs queries and gallery items; got {int(query.sum())} and "
                f"{int(gallery.sum())} (junk identities {list(self.junk_ids)} left out)"
            )
        cameras = out.cameras
        ranked = reid_rankings(
            out.outputs[query],
            out.outputs[gallery],
            out.labels[query],
            out.labels[gallery],
            None if cameras is None else cameras[query],
            None if cameras is None else cameras[gallery],
            distance=self.distance,
            chunk_elements=self.chunk_elements,
        )
        if ranked.valid_count == 0:
            raise ValueError(
                "metric 'reid': no query has a correct match in its gallery (an item of its identity "
                "from another camera)"
            )
        mean_ap = ranked.mean_ap()
        values = {"mAP": mean_ap, **{f"rank{k}": ranked.cmc(k) for k in self.ranks}}
        values |= {
            "mINP": ranked.mean_inp(),
            "queries": float(query.sum()),
            "valid_queries": float(ranked.valid_count),
        }
        std = standard_error(ranked.average_precision[ranked.valid])
        return MetricResult(mean_ap, std, ranked.valid_count, "mAP", values)
