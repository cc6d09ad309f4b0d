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

import abc
import contextlib
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from importlib.metadata import entry_points
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from ._local import ENTRY_POINT_GROUPS, LocalConfig

Distance = Literal["cosine", "euclidean"]
DISTANCES: tuple[Distance, ...] = ("cosine", "euclidean")
METRICS_ENTRY_POINT_GROUP = ENTRY_POINT_GROUPS["metric"]
#: Distance entries per block of queries (about 100 MB of temporaries for re-id ranking).
CHUNK_ELEMENTS = 1 << 21


# ---------------------------------------------------------------------- data
def _vector(value: Any, dtype: torch.dtype, name: str, length: int) -> Tensor:
    """``value`` as a 1-d tensor of ``length`` entries (bools or int64)."""
    tensor = torch.as_tensor(value)
    if tensor.dim() != 1 or tensor.shape[0] != length:
        raise ValueError(
            f"field {name!r} must hold one entry per item ({length}), got shape {tuple(tensor.shape)}"
        )
    if dtype == torch.bool and tensor.dtype != torch.bool:
        raise ValueError(f"field {name!r} must be booleans, got {tensor.dtype}")
    if dtype == torch.int64 and (tensor.dtype == torch.bool or tensor.is_floating_point()):
        raise ValueError(f"field {name!r} must be integers, got {tensor.dtype}")
    return tensor.to(dtype)


@dataclass(frozen=True)
class EvalBatch:
    """One batch of a task's evaluation data, as a ``gpnas.datasets`` callable yields it.

    Only ``inputs`` is always needed; each metric names the fields it reads
    (:attr:`TaskMetric.requires`). A dataset may equally yield mappings with these keys, or
    ``(inputs, labels)`` tuples.

    Attributes:
        inputs: ``b x C x H x W`` images.
        labels: ``b`` integers: the class (``top1``, ``retrieval``) or the identity (``reid``).
            Identity ``-1`` marks a junk image (Market-1501's convention), left out by ``reid``.
        cameras: ``b`` integers, the camera of each item (``reid``): a gallery item of the
            query's identity taken by the query's camera is not in that query's gallery.
        is_query: ``b`` booleans: the item is a query (``True``) or a gallery item (``reid``;
            ``retrieval`` with separate query and gallery sets).
        pair_inputs: ``b x C x H x W``: the second image of each pair (``verification``); pair
            ``i`` is ``(inputs[i], pair_inputs[i])``.
        same: ``b`` booleans: pair ``i`` shows one identity (``verification``).
    """

    inputs: Tensor
    labels: Tensor | None = None
    cameras: Tensor | None = None
    is_query: Tensor | None = None
    pair_inputs: Tensor | None = None
    same: Tensor | None = None

    def __post_init__(self) -> None:
        inputs = torch.as_tensor(self.inputs)
        if inputs.dim() < 1:
            raise ValueError("field 'inputs' must hold one input per item")
        object.__setattr__(self, "inputs", inputs)
        n = inputs.shape[0]
        for name, dtype in _ITEM_FIELDS.items():
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _vector(value, dtype, name, n))
        if self.pair_inputs is not None:
            pair = torch.as_tensor(self.pair_inputs)
            if pair.shape != inputs.shape:
                raise ValueError(
                    f"field 'pair_inputs' must have the shape of 'inputs' {tuple(inputs.shape)}, "
                    f"got {tuple(pair.shape)}"
                )
            object.__setattr__(self, "pair_inputs", pair)


_ITEM_FIELDS: dict[str, torch.dtype] = {
    "labels": torch.int64,
    "cameras": torch.int64,
    "is_query": torch.bool,
    "same": torch.bool,
}
_BATCH_FIELDS = tuple(f.name for f in fields(EvalBatch))


def as_eval_batch(item: Any, where: str = "dataset") -> EvalBatch:
    """One batch a dataset yielded, as an :class:`EvalBatch`.

    Accepts an :class:`EvalBatch`, a mapping with its field names as keys (``inputs`` required)
    or an ``(inputs, labels)`` pair.

    Raises:
        ValueError: Naming ``where`` and what is wrong with the batch.
    """
    try:
        if isinstance(item, EvalBatch):
            return item
        if isinstance(item, Mapping):
            unknown = sorted(set(item) - set(_BATCH_FIELDS))
            if unknown or "inputs" not in item:
                raise ValueError(
                    f"a batch mapping needs key 'inputs' and only keys of {list(_BATCH_FIELDS)}; "
                    f"got {sorted(map(str, item))}"
                )
            return EvalBatch(**item)
        if isinstance(item, tuple | list) and len(item) == 2:
            return EvalBatch(inputs=item[0], labels=item[1])
    except (TypeError, RuntimeError, ValueError) as error:
        raise ValueError(f"{where}: bad batch: {error}") from None
    got = type(item).__name__
    if isinstance(item, tuple | list):
        got += f" of {len(item)} items"
    raise ValueError(
        f"{where}: a batch must be an EvalBatch, a mapping of its fields or an (inputs, labels) pair; "
        f"got {got}"
    )


@dataclass(frozen=True)
class EvalOutputs:
    """A model's outputs on a task's whole evaluation set, with the items' fields.

    Attributes:
        outputs: ``n x d``: logits (``top1``) or embeddings, one row per item.
        labels, cameras, is_query, same: As in :class:`EvalBatch`, ``n`` entries each.
        pair_outputs: ``n x d``: outputs of the second image of each pair (``verification``).
    """

    outputs: Tensor
    labels: Tensor | None = None
    cameras: Tensor | None = None
    is_query: Tensor | None = None
    pair_outputs: Tensor | None = None
    same: Tensor | None = None

    def __post_init__(self) -> None:
        outputs = torch.as_tensor(self.outputs)
        if outputs.dim() != 2:
            raise ValueError(f"outputs must be n x d, got shape {tuple(outputs.shape)}")
        object.__setattr__(self, "outputs", outputs)
        for name, dtype in _ITEM_FIELDS.items():
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _vector(value, dtype, name, outputs.shape[0]))
        if self.pair_outputs is not None:
            pair = torch.as_tensor(self.pair_outputs)
            if pair.shape != outputs.shape:
                raise ValueError(
                    f"pair_outputs must have the shape of outputs {tuple(outputs.shape)}, "
                    f"got {tuple(pair.shape)}"
                )
            object.__setattr__(self, "pair_outputs", pair)

    def __len__(self) -> int:
        return int(self.outputs.shape[0])

    def present(self) -> list[str]:
        """Names of the fields that hold data."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]


def _total_images(batches: Iterable[Any], max_batches: int, pairs: bool) -> int | None:
    """Images a progress bar expects: the length of a DataLoader's (sized) dataset, doubled for
    pairs; ``None`` when unknown (plain iterables, ``max_batches``, ``drop_last``)."""
    dataset = getattr(batches, "dataset", None)
    if max_batches or dataset is None or getattr(batches, "drop_last", False):
        return None
    try:
        n = len(dataset)
    except TypeError:  # an IterableDataset
        return None
    return n * (2 if pairs else 1)


def _as_collected(part: Tensor) -> Tensor:
    """Gathered outputs: float32 (float64 stays float64), so metrics never see half precision."""
    return part if part.dtype in (torch.float32, torch.float64) else part.float()


class _Forward:
    """``model`` on one batch of inputs: moved to ``device`` (``non_blocking``), under
    ``torch.inference_mode()`` and, with ``autocast``, ``torch.autocast``; the outputs stay on
    the device until :class:`_Gathered` flushes them."""

    def __init__(
        self, model: Callable[[Tensor], Tensor], device: torch.device | None, autocast: torch.dtype | None
    ) -> None:
        self.model, self.device, self.autocast = model, device, autocast

    def __call__(self, inputs: Tensor, where: str) -> Tensor:
        x = inputs if self.device is None else inputs.to(self.device, non_blocking=True)
        mixed = (
            torch.autocast(x.device.type, dtype=self.autocast)
            if self.autocast is not None
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), mixed:
            out = self.model(x)
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"{where}: the model must return one row of outputs per input ({x.shape[0]} x d), got {shape}"
            )
        return _as_collected(out.detach())


#: Outputs held on the evaluation device before they are copied to the CPU in one piece: the
#: host then runs ahead of the device instead of waiting for every batch.
_FLUSH_BYTES = 64 << 20


class _Gathered:
    """Per field, the parts of an :class:`EvalOutputs` as batches arrive."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.carried: tuple[str, ...] | None = None
        self.fields: dict[str, list[Tensor]] = {}
        self.done: dict[str, list[Tensor]] = {"outputs": [], "pair_outputs": []}
        self.pending: dict[str, list[Tensor]] = {"outputs": [], "pair_outputs": []}
        self.pending_bytes = 0

    def add_fields(self, count: int, batch: EvalBatch) -> None:
        have = tuple(name for name in _ITEM_FIELDS if getattr(batch, name) is not None)
        if self.carried is not None and have != self.carried:
            raise ValueError(
                f"{self.where}: batch {count} carries fields {list(have)}, the first {list(self.carried)}"
            )
        self.carried = have
        for name in have:
            self.fields.setdefault(name, []).append(getattr(batch, name))

    def add_output(self, name: str, part: Tensor) -> None:
        self.pending[name].append(part)
        self.pending_bytes += part.numel() * part.element_size()
        if self.pending_bytes >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Copy the outputs held on the device to the CPU (one copy per field)."""
        for name, parts in self.pending.items():
            if parts:
                self.done[name].append(torch.cat(parts).to("cpu"))
                parts.clear()
        self.pending_bytes = 0

    def result(self) -> EvalOutputs:
        self.flush()
        if not self.done["outputs"] or sum(len(p) for p in self.done["outputs"]) == 0:
            raise ValueError(f"{self.where} yielded no examples")
        parts = {name: values for name, values in (self.done | self.fields).items() if values}
        return EvalOutputs(**{name: torch.cat(values) for name, values in parts.items()})


def collect_outputs(
    model: Callable[[Tensor], Tensor],
    batches: Iterable[Any],
    *,
    pairs: bool = False,
    max_batches: int = 0,
    where: str = "dataset",
    device: torch.device | str | None = None,
    autocast: torch.dtype | None = None,
    batch_size: int | None = None,
    progress: bool | None = False,
    description: str | None = None,
) -> EvalOutputs:
    """Run ``model`` over a dataset's batches and gather an :class:`EvalOutputs` on the CPU.

    Each batch is fetched outside any grad mode (so tensors a data loader creates and caches stay
    ordinary tensors) and the model runs under ``torch.inference_mode()``. Outputs are gathered
    as float32 (float64 stays float64; float16/bfloat16 from autocast are widened), so the
    metrics compute on exact, device-independent inputs.

    Args:
        model: ``inputs -> outputs`` (``b x d``), already on ``device``.
        batches: What the dataset callable returned: any iterable of batches (a list, a generator,
            a ``torch.utils.data.DataLoader``), each accepted by :func:`as_eval_batch`.
        pairs: Also run the model on ``pair_inputs`` (metrics that compare pairs).
        max_batches: Stop after this many batches (0 = all).
        where: Names the data in error messages.
        device: Move each batch's inputs there (``non_blocking=True``: asynchronous from a
            DataLoader's pinned memory); ``None``: pass them as they are.
        autocast: Run the model under ``torch.autocast`` with this dtype (e.g. ``torch.float16``
            on CUDA); ``None``: in the model's own precision.
        batch_size: A batch of more items than this is an error (the dataset callable was asked
            for batches of this size and did not honour it).
        progress: Show a progress bar on stderr (``tqdm``: images so far, images per second);
            ``None``: only when stderr is a terminal; ``False``: never.
        description: The progress bar's label.

    Raises:
        ValueError: A batch is malformed or larger than ``batch_size``, batches disagree on which
            fields they carry, ``pairs`` is set and a batch has no ``pair_inputs``, the model's
            outputs are not one row per input, or there was no item at all.
    """
    forward = _Forward(model, None if device is None else torch.device(device), autocast)
    gathered = _Gathered(where)
    bar = tqdm(
        total=None if progress is False else _total_images(batches, max_batches, pairs),
        desc=description,
        unit="img",
        unit_scale=True,
        disable=True if progress is False else (None if progress is None else False),
        file=sys.stderr,
        dynamic_ncols=True,
    )
    with bar:
        for count, item in enumerate(batches, start=1):
            batch = as_eval_batch(item, where)
            n = int(batch.inputs.shape[0])
            if batch_size is not None and n > batch_size:
                raise ValueError(
                    f"{where}: batch {count} holds {n} items, more than the batch_size={batch_size} it "
                    "was asked for"
                )
            if pairs and batch.pair_inputs is None:
                raise ValueError(
                    f"{where}: batch {count} has no 'pair_inputs' (the second image of each pair)"
                )
            gathered.add_fields(count, batch)
            gathered.add_output("outputs", forward(batch.inputs, where))
            if batch.pair_inputs is not None and pairs:
                gathered.add_output("pair_outputs", forward(batch.pair_inputs, where))
            bar.update(n * (2 if pairs else 1))
            if max_batches and count >= max_batches:
                break
        return gathered.result()


# ---------------------------------------------------------------------- distances
def _check_distance(distance: Distance) -> Distance:
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {list(DISTANCES)}, got {distance!r}")
    return distance


def distance_matrix(a: Tensor, b: Tensor, distance: Distance = "cosine") -> Tensor:
    """Distances between the rows of ``a`` (``m x d``) and of ``b`` (``n x d``): ``m x n``.

    ``cosine``: ``1 - cos`` of the L2-normalised embeddings (UFO's re-id evaluator,
    ``utils/compute_dist.py``; in [0, 2]). ``euclidean``: the Euclidean distance (the released
    code ranks by its square, which orders the same).
    """
    _check_distance(distance)
    if distance == "cosine":
        return 1.0 - F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return squared.clamp_min_(0.0).sqrt_()


def pair_distances(a: Tensor, b: Tensor, distance: Distance = "cosine") -> Tensor:
    """Distance between ``a[i]`` and ``b[i]`` for every row ``i``: ``n`` values."""
    _check_distance(distance)
    if distance == "cosine":
        return 1.0 - (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(1)
    return (a - b).norm(dim=1)


def _float(x: Tensor | np.ndarray) -> Tensor:
    """Embeddings as a floating tensor (float64 stays float64, everything else float32)."""
    tensor = torch.as_tensor(x)
    return tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()


def _distance_blocks(
    q: Tensor, g: Tensor, distance: Distance, chunk_elements: int
) -> Iterable[tuple[int, int, Tensor]]:
    """``(start, stop, distance_matrix(q[start:stop], g))`` for consecutive blocks of queries of
    about ``chunk_elements`` entries each; the gallery is normalised (or its norms taken) once."""
    _check_distance(distance)
    step = max(1, chunk_elements // max(g.shape[0], 1))
    if distance == "cosine":
        q, g_t = F.normalize(q, dim=1), F.normalize(g, dim=1).T.contiguous()
    else:
        g_t, g_sq = g.T.contiguous(), (g * g).sum(1)[None, :]
    for start in range(0, q.shape[0], step):
        stop = min(start + step, q.shape[0])
        block = q[start:stop] @ g_t
        if distance == "cosine":
            block.neg_().add_(1.0)
        else:
            qb = q[start:stop]
            block.mul_(-2.0).add_((qb * qb).sum(1)[:, None]).add_(g_sq).clamp_min_(0.0).sqrt_()
        yield start, stop, block


# ---------------------------------------------------------------------- re-id (Market-1501)
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
    q, g = _float(query), _float(gallery)
    if q.dim() != 2 or g.dim() != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(
            f"query and gallery must be m x d and n x d, got {tuple(q.shape)} and {tuple(g.shape)}"
        )
    if g.shape[0] == 0:
        raise ValueError("the gallery is empty")
    g = g.to(device=q.device, dtype=torch.promote_types(q.dtype, g.dtype))
    q = q.to(g.dtype)
    qids = _vector(query_ids, torch.int64, "query_ids", q.shape[0]).to(q.device)
    gids = _vector(gallery_ids, torch.int64, "gallery_ids", g.shape[0]).to(q.device)
    if (query_cameras is None) != (gallery_cameras is None):
        raise ValueError("give camera ids for both the queries and the gallery, or for neither")
    qcams = gcams = None
    if query_cameras is not None and gallery_cameras is not None:
        qcams = _vector(query_cameras, torch.int64, "query_cameras", q.shape[0]).to(q.device)
        gcams = _vector(gallery_cameras, torch.int64, "gallery_cameras", g.shape[0]).to(q.device)
    m, n = q.shape[0], g.shape[0]
    ap = np.full(m, np.nan)
    inp = np.full(m, np.nan)
    first = np.zeros(m, dtype=np.int64)
    for start, stop, d in _distance_blocks(q, g, distance, chunk_elements):
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


# ---------------------------------------------------------------------- retrieval (SOP)
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
    q = _float(query)
    if q.dim() != 2:
        raise ValueError(f"query must be m x d, got {tuple(q.shape)}")
    qlabels = _vector(query_labels, torch.int64, "query_labels", q.shape[0]).to(q.device)
    if (gallery is None) != (gallery_labels is None):
        raise ValueError("give both gallery and gallery_labels, or neither")
    leave_one_out = gallery is None
    if gallery is None or gallery_labels is None:
        g, glabels = q, qlabels
    else:
        g = _float(gallery).to(q.device)
        if g.dim() != 2 or g.shape[1] != q.shape[1]:
            raise ValueError(f"gallery must be n x {q.shape[1]}, got {tuple(g.shape)}")
        glabels = _vector(gallery_labels, torch.int64, "gallery_labels", g.shape[0]).to(q.device)
        dtype = torch.promote_types(q.dtype, g.dtype)
        q, g = q.to(dtype), g.to(dtype)
    m = q.shape[0]
    ranks = np.zeros(m, dtype=np.int64)
    for start, stop, d in _distance_blocks(q, g, distance, chunk_elements):
        positive = glabels[None, :] == qlabels[start:stop, None]
        if leave_one_out:
            rows = torch.arange(stop - start, device=q.device)
            d[rows, rows + start] = math.inf
            positive[rows, rows + start] = False
        nearest = torch.where(positive, d, math.inf).min(1).values
        rank = (d < nearest[:, None]).sum(1) + 1
        ranks[start:stop] = torch.where(positive.any(1), rank, 0).cpu().numpy()
    return ranks


# ---------------------------------------------------------------------- verification (LFW)
def kfold_indices(n: int, folds: int) -> list[np.ndarray]:
    """The ``folds`` contiguous folds of ``n`` pairs, in order; the first ``n % folds`` one larger.

    ``sklearn.model_selection.KFold(folds, shuffle=False)``'s test folds, which UFO's
    ``face_evaluation.py`` uses: on LFW's ``pairs.txt`` (10 sets of 300 same + 300 different
    pairs, in order) they are the official 10 splits of the unrestricted protocol.
    """
    if folds < 2 or n < folds:
        raise ValueError(f"{folds}-fold evaluation needs folds >= 2 and at least {folds} pairs, got {n}")
    return np.array_split(np.arange(n), folds)


def best_threshold(distances: np.ndarray, same: np.ndarray, thresholds: np.ndarray | None = None) -> float:
    """The threshold ``t`` that maximises the accuracy of "same iff distance < t" on these pairs.

    ``thresholds=None``: the exact optimum over every threshold, found from the sorted distances
    (candidates: the midpoints between consecutive distinct distances, and one below and one above
    them all); the released code scans a grid (``np.arange(0, 4, 0.01)`` on squared distances of
    L2-normalised embeddings), which can only find as good or fewer. Given ``thresholds``: the best
    of those. Either way the smallest of equally good thresholds wins, as ``np.argmax`` does there.
    """
    d, s = np.asarray(distances, dtype=np.float64), np.asarray(same, dtype=bool)
    if thresholds is not None:
        grid = np.asarray(thresholds, dtype=np.float64)
        accuracy = ((d[None, :] < grid[:, None]) == s[None, :]).mean(1)
        return float(grid[int(np.argmax(accuracy))])
    order = np.argsort(d, kind="stable")
    ds, ss = d[order], s[order]
    n = ds.size
    # Predicting "same" for the i closest pairs (i = 0..n) gets same[:i] + different[i:] right.
    same_before = np.concatenate([[0], np.cumsum(ss)])
    different_before = np.concatenate([[0], np.cumsum(~ss)])
    correct = same_before + (different_before[-1] - different_before)
    cut_allowed = np.ones(n + 1, dtype=bool)
    cut_allowed[1:n] = ds[1:] > ds[:-1]  # a cut between equal distances is no threshold
    i = int(np.argmax(np.where(cut_allowed, correct, -1)))
    if i == 0:
        return float(ds[0])  # nothing is below it: every pair "different"
    if i == n:
        return float(np.nextafter(ds[-1], np.inf))  # every pair "same"
    return float((ds[i - 1] + ds[i]) / 2)


def verification_folds(
    distances: np.ndarray | Tensor,
    same: np.ndarray | Tensor,
    folds: int = 10,
    thresholds: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """LFW's k-fold protocol on pair distances: per fold, the threshold that is best on the other
    ``folds - 1`` folds (:func:`best_threshold`) and the accuracy it gets on the held-out fold
    (UFO's ``face_evaluation.py``, ``calculate_roc``; predicted same iff distance < threshold).

    Returns:
        ``(accuracy, threshold)``, one entry per fold each.
    """
    d = np.asarray(torch.as_tensor(distances).detach().cpu(), dtype=np.float64)
    s = np.asarray(torch.as_tensor(same).detach().cpu(), dtype=bool)
    if d.shape != s.shape or d.ndim != 1:
        raise ValueError(f"distances and same must be two vectors of one length, got {d.shape} and {s.shape}")
    accuracy, chosen = np.zeros(folds), np.zeros(folds)
    everything = np.arange(d.size)
    for fold, test in enumerate(kfold_indices(d.size, folds)):
        train = np.setdiff1d(everything, test, assume_unique=True)
        chosen[fold] = best_threshold(d[train], s[train], thresholds)
        accuracy[fold] = np.mean((d[test] < chosen[fold]) == s[test])
    return accuracy, chosen


# ---------------------------------------------------------------------- plug-in classes
@dataclass(frozen=True)
class MetricResult:
    """What a metric makes of a task's outputs.

    Attributes:
        value: The score stored as the measurement (higher is better), ``values[primary]``.
        std: Its standard error (binomial for proportions; over queries or folds otherwise).
        count: How many units ``value`` averages: examples, valid queries or pairs.
        primary: The name of ``value`` among ``values``.
        values: Every number the metric reports, by name (finite floats).
    """

    value: float
    std: float
    count: int
    primary: str
    values: dict[str, float]


def _binomial_se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n) if n else 0.0


def _standard_error(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1) / math.sqrt(values.size)) if values.size > 1 else 0.0


class TaskMetric(abc.ABC):
    """Base class of the metrics that score a task; registered under ``gpnas.metrics``.

    A plug-in subclasses it, sets the class attributes and implements :meth:`compute`; the
    profiler constructs it as ``cls()`` or, when :attr:`uses_distance`, ``cls(distance=...)``.

    Args:
        distance: ``cosine`` or ``euclidean`` between embeddings (default
            :attr:`default_distance`); only for metrics that compare embeddings.

    Raises:
        ValueError: A distance for a metric that compares no embeddings, or an unknown one.
    """

    name: ClassVar[str] = ""
    """Registry name (the entry-point name under ``gpnas.metrics``)."""
    version: ClassVar[str] = "1"
    """Bumped whenever a change could alter the numbers; stored with every measurement."""
    requires: tuple[str, ...] = ()
    """:class:`EvalOutputs` fields the metric reads besides ``outputs``."""
    uses_distance: ClassVar[bool] = False
    """Whether the metric compares embeddings (takes ``distance``)."""
    default_distance: ClassVar[Distance] = "cosine"
    needs_head: ClassVar[bool] = False
    """The outputs must be a classification head's logits (not an embedding)."""

    def __init__(self, distance: Distance | None = None) -> None:
        if distance is not None and not self.uses_distance:
            raise ValueError(f"metric {self.name!r} compares no embeddings; it takes no distance")
        self.distance: Distance | None = (
            _check_distance(distance or self.default_distance) if self.uses_distance else None
        )

    def check(self, out: EvalOutputs, where: str = "the data") -> None:
        """Raise ValueError if ``out`` lacks a field this metric reads, naming it and what ``where`` gave."""
        missing = [name for name in self.requires if getattr(out, name) is None]
        if missing:
            raise ValueError(
                f"metric {self.name!r} needs the batch field(s) {missing} (see profilers.EvalBatch); "
                f"{where} gave {out.present()}"
            )

    def __call__(self, out: EvalOutputs, where: str = "the data") -> MetricResult:
        """:meth:`check`, then :meth:`compute`."""
        self.check(out, where)
        return self.compute(out)

    @abc.abstractmethod
    def compute(self, out: EvalOutputs) -> MetricResult:
        """Score the outputs (whose :attr:`requires` fields are present)."""

    def __repr__(self) -> str:
        inside = f"distance={self.distance!r}" if self.uses_distance else ""
        return f"{type(self).__name__}({inside})"


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
        return MetricResult(accuracy, _binomial_se(accuracy, n), n, "top1", {"top1": accuracy})


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
        std = _standard_error(ranked.average_precision[ranked.valid])
        return MetricResult(mean_ap, std, ranked.valid_count, "mAP", values)


class VerificationMetric(TaskMetric):
    """Pair verification accuracy under LFW's k-fold protocol (:func:`verification_folds`):
    per fold, the threshold best on the other folds is applied to the held-out fold; the value is
    the mean fold accuracy and ``std`` its standard error ``sigma / sqrt(k)`` (``sigma`` with
    ``k - 1`` degrees of freedom), as LFW asks results to be reported.

    Args:
        distance: Default ``cosine``: UFO's face evaluator L2-normalises the embeddings and
            thresholds their squared Euclidean distance, ``2 * (1 - cos)``, which separates pairs
            exactly as the cosine distance does.
        folds: Number of folds (LFW: 10).
    """

    name: ClassVar[str] = "verification"
    requires: tuple[str, ...] = ("pair_outputs", "same")
    uses_distance: ClassVar[bool] = True

    def __init__(self, distance: Distance | None = None, folds: int = 10) -> None:
        super().__init__(distance)
        self.folds = folds

    def compute(self, out: EvalOutputs) -> MetricResult:
        assert out.pair_outputs is not None
        assert out.same is not None
        assert self.distance is not None
        distances = pair_distances(_float(out.outputs), _float(out.pair_outputs), self.distance)
        accuracy, thresholds = verification_folds(distances, out.same, self.folds)
        mean = float(accuracy.mean())
        values = {
            "accuracy": mean,
            "accuracy_std": float(np.std(accuracy, ddof=1)),
            "threshold": float(thresholds.mean()),
            "pairs": float(len(out)),
        }
        return MetricResult(mean, _standard_error(accuracy), len(out), "accuracy", values)


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
        return MetricResult(value, _binomial_se(value, ranks.size), int(ranks.size), primary, values)


# ---------------------------------------------------------------------- registry
def available_metrics(local: LocalConfig | None = None) -> list[str]:
    """Sorted names of the metrics known here: ``gpnas.metrics`` entry points (built-in and
    plug-in) and the ``[metrics]`` of ``local``'s config."""
    names = {ep.name for ep in entry_points(group=METRICS_ENTRY_POINT_GROUP)}
    return sorted(names | set(local.metrics if local is not None else ()))


def get_metric(name: str, local: LocalConfig | None = None, where: str = "task metric") -> type[TaskMetric]:
    """The metric class that ``name`` means on this machine (``local``'s ``[metrics]``, else a
    ``gpnas.metrics`` entry point).

    Raises:
        ValueError: No metric has that name (the message names it and lists the known ones), or
            it does not load a :class:`TaskMetric` subclass.
    """
    found = (local or LocalConfig()).resolve_callable("metric", name, where)
    if not (isinstance(found, type) and issubclass(found, TaskMetric)):
        raise ValueError(f"{where}: {name!r} is not a profilers.TaskMetric subclass")
    return found


def create_metric(name: str, local: LocalConfig | None = None, **options: Any) -> TaskMetric:
    """``get_metric(name, local)(**options)``."""
    return get_metric(name, local)(**options)
