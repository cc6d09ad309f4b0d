"""Evaluation data: the batches a dataset yields, and a model's outputs gathered over all of them."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm


def as_vector(value: Any, dtype: torch.dtype, name: str, length: int) -> Tensor:
    """``value`` as a 1-d tensor of ``length`` entries (bools or int64).

    Raises:
        ValueError: ``value`` has another shape or dtype kind; the message names field ``name``.
    """
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
                object.__setattr__(self, name, as_vector(value, dtype, name, n))
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
                object.__setattr__(self, name, as_vector(value, dtype, name, outputs.shape[0]))
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
