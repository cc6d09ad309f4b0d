"""Sandwich-rule supernet training and a small real multi-task data set (scikit-learn's digits).

Enough to give :class:`~profilers.SupernetEvalProfiler` real trained weights in seconds on a
CPU: the digits images are split into two tasks (digits 0-4 and digits 5-9, five classes each)
that share a tiny UFO 2.0 task-MoE ViT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache

import numpy as np
import torch
from torch import nn

from supernet import MultipathSpace, Subnet, UFOSpace, ViTGeometry

from ._metrics import EvalBatch

DIGITS_TASKS: dict[str, tuple[int, ...]] = {"low": (0, 1, 2, 3, 4), "high": (5, 6, 7, 8, 9)}
"""Task name -> the digit classes it distinguishes."""


def digits_space() -> MultipathSpace:
    """A tiny ``ufo2-multipath`` space for the digits tasks: 1-channel 8x8 images, patch 4,
    embed 32, head width 8; per layer shared/task FFN, ratio 4/2/0.5, 4/2/1 heads; depth 1-4."""
    return MultipathSpace(
        {task: len(classes) for task, classes in DIGITS_TASKS.items()},
        depths=(1, 2, 3, 4),
        mlp_ratios=(4.0, 2.0, 0.5),
        num_heads=(4, 2, 1),
        geometry=ViTGeometry(embed_dim=32, patch_size=4, image_size=8, head_dim=8, in_chans=1),
        name="ufo2-multipath-digits",
    )


@cache
def _digits_split() -> dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)  # n x 1 x 8 x 8
    labels = torch.tensor(digits.target)
    rng = np.random.default_rng(0)
    out: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}
    for task, classes in DIGITS_TASKS.items():
        idx = np.flatnonzero(np.isin(digits.target, classes))
        idx = idx[rng.permutation(idx.size)]
        cut = int(0.75 * idx.size)
        remap = {c: i for i, c in enumerate(classes)}
        y = torch.tensor([remap[int(v)] for v in labels[idx]])
        x = images[idx]
        out[task] = {"train": (x[:cut], y[:cut]), "val": (x[cut:], y[cut:])}
    return out


def digits_batches(
    task: str, split: str = "val", batch_size: int = 256
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches ``(x: b x 1 x 8 x 8, y: b)`` of one digits task (fixed 75/25 train/val split).

    Raises:
        ValueError: Unknown task or split.
    """
    if task not in DIGITS_TASKS:
        raise ValueError(f"unknown digits task {task!r}; known: {', '.join(DIGITS_TASKS)}")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    x, y = _digits_split()[task][split]
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]


DIGITS_CAMERAS = 3
"""Synthetic cameras of :func:`digits_eval_batches`."""


def _digits_eval_split(task: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of a digits task's split; tasks other than :data:`DIGITS_TASKS`: all
    ten digits (both tasks' items, labelled by the digit)."""
    parts = _digits_split()
    if task in DIGITS_TASKS:
        return parts[task][split]
    xs, ys = [], []
    for name, classes in DIGITS_TASKS.items():
        x, y = parts[name][split]
        xs.append(x)
        ys.append(torch.tensor(classes)[y])
    return torch.cat(xs), torch.cat(ys)


def digits_eval_batches(task: str, split: str = "val", batch_size: int = 256) -> list[EvalBatch]:
    """scikit-learn's digits as a re-id, verification and retrieval set: digits are identities.

    For ``low`` and ``high`` the items (and labels 0-4) are those of :func:`digits_batches`; any
    other task name gets all ten digits, labelled by the digit, so that spaces with other tasks
    (ufo-track2's, on a ``1 x 8 x 8`` geometry) are scored end to end. Every batch carries the
    fields of every built-in metric (:class:`~profilers.EvalBatch`):

    * ``labels``: the class, which is also the identity;
    * ``cameras``: the ``j``-th item of an identity (in split order) is seen by camera
      ``j % 3``;
    * ``is_query``: the first item of each identity on each camera is a query (three per
      identity, as Market-1501 takes one query per identity and camera), the others the gallery;
    * ``pair_inputs`` / ``same``: item ``j`` of an identity is paired with the next item of the
      same identity when ``j`` is even, else with an item of the next identity (about half the
      pairs are "same").

    Raises:
        ValueError: Unknown split.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    x, y = _digits_eval_split(task, split)
    n = len(y)
    labels = y.numpy()
    classes = np.unique(labels)
    members = {int(c): np.flatnonzero(labels == c) for c in classes}
    position = np.zeros(n, dtype=np.int64)  # j: the item's index among its identity's items
    for idx in members.values():
        position[idx] = np.arange(idx.size)
    partner = np.zeros(n, dtype=np.int64)
    for i in range(n):
        c, j = int(labels[i]), int(position[i])
        if j % 2 == 0:
            own = members[c]
            partner[i] = own[(j + 1) % own.size]
        else:
            other = members[int(classes[(np.searchsorted(classes, c) + 1) % classes.size])]
            partner[i] = other[j % other.size]
    cameras = torch.as_tensor(position % DIGITS_CAMERAS)
    is_query = torch.as_tensor(position < DIGITS_CAMERAS)
    same = torch.as_tensor(labels[partner] == labels)
    pair_x = x[torch.as_tensor(partner)]
    return [
        EvalBatch(
            inputs=x[i : i + batch_size],
            labels=y[i : i + batch_size],
            cameras=cameras[i : i + batch_size],
            is_query=is_query[i : i + batch_size],
            pair_inputs=pair_x[i : i + batch_size],
            same=same[i : i + batch_size],
        )
        for i in range(0, n, batch_size)
    ]


def extreme_subnet(space: UFOSpace, largest: bool, rng: np.random.Generator) -> Subnet:
    """The biggest (or smallest) subnet: deepest (shallowest), with the largest (smallest)
    numeric choice per layer; categorical choices such as ``ffn_path`` are drawn at random."""
    depth = space.depths[-1] if largest else space.depths[0]
    layer = []
    for dim in space.dimensions:
        if all(isinstance(v, int | float) for v in dim.values):
            order = np.argsort(dim.values)
            layer.append(int(order[-1] if largest else order[0]))
        else:
            layer.append(-1)
    layers = tuple(
        tuple(int(rng.integers(len(d))) if c < 0 else c for c, d in zip(layer, space.dimensions, strict=True))
        for _ in range(depth)
    )
    return Subnet(space.name, depth, layers)


def train_sandwich(
    net: nn.Module,
    space: UFOSpace,
    train_batches: Mapping[str, Sequence[tuple[torch.Tensor, torch.Tensor]]],
    epochs: int = 5,
    lr: float = 3e-3,
    n_random: int = 2,
    seed: int = 0,
) -> list[float]:
    """Train a supernet with the sandwich rule across tasks.

    Every step takes one batch of every task and, per task, accumulates the cross-entropy
    gradients of the largest subnet, the smallest and ``n_random`` uniformly sampled ones before
    one AdamW step, so small and large paths (and shared and task experts) all learn.

    Args:
        net: Supernet with ``net(x, sub, task) -> logits`` (``b x classes``).
        space: Its search space.
        train_batches: Task -> batches ``(x, y)``; an epoch is the longest task's batch count.
        epochs: Passes over the data.
        lr: AdamW learning rate (cosine-decayed to 0).
        n_random: Random subnets per task and step besides the two extremes.
        seed: Seed of the subnet sampling.

    Returns:
        Mean loss of the largest subnets per epoch, ``epochs`` floats.
    """
    rng = np.random.default_rng(seed)
    steps_per_epoch = max(len(b) for b in train_batches.values())
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    net.train()
    for _ in range(epochs):
        largest_losses = []
        for step in range(steps_per_epoch):
            optimizer.zero_grad()
            for task, batches in train_batches.items():
                x, y = batches[step % len(batches)]
                subs = [extreme_subnet(space, True, rng), extreme_subnet(space, False, rng)]
                subs += space.sample(n_random, seed=int(rng.integers(2**31)))
                for i, sub in enumerate(subs):
                    loss = loss_fn(net(x, sub, task=task), y)
                    (loss / len(subs)).backward()
                    if i == 0:
                        largest_losses.append(float(loss.detach()))
            optimizer.step()
            schedule.step()
        history.append(float(np.mean(largest_losses)))
    net.eval()
    return history
