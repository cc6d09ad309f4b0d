"""Merging the files of UFO's training ranks (one task's expert each) into one checkpoint."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from ._errors import CheckpointError
from ._layout import shape_of, strip_wrapper

_RANK_EXPERT = re.compile(r"(.*\.mlp\.moe_mlp\.)specific_experts\.([^.]+)\.(.+)")


def _same_everywhere(
    key: str, value: np.ndarray, states: Sequence[Mapping[str, np.ndarray]], atol: float
) -> None:
    for i, state in enumerate(states[1:], start=2):
        other = state.get(key)
        if other is None:
            raise CheckpointError(f"file {i}: missing key {key}", key)
        if other.shape != value.shape:
            raise CheckpointError(
                f"{key}: shape {shape_of(other)} in file {i}, {shape_of(value)} in file 1", key
            )
        if not np.allclose(other, value, rtol=0, atol=atol):
            diff = float(np.abs(other.astype(np.float64) - value).max())
            raise CheckpointError(
                f"{key}: file {i} differs from file 1 (max |difference| {diff:.3g}); the ranks' shared "
                "weights are equal in files of one training step",
                key,
            )


def _each_rank(
    key: str, states: Sequence[Mapping[str, np.ndarray]], task_names: Sequence[str]
) -> list[np.ndarray]:
    """``key``'s array in every rank's file."""
    arrays = []
    for i, state in enumerate(states):
        array = state.get(key)
        if array is None:
            raise CheckpointError(f"file {i + 1} ({task_names[i]}): missing key {key}", key)
        arrays.append(array)
    return arrays


def _expert_tails(state: Mapping[str, np.ndarray]) -> dict[str, list[str]]:
    """MoeLayer prefix (``...mlp.moe_mlp.``) -> the keys of its one expert, in the file's order."""
    tails: dict[str, list[str]] = {}
    for key in state:
        if expert := _RANK_EXPERT.fullmatch(key):
            if expert.group(2) != "0":
                raise CheckpointError(f"{key}: a rank's file holds its one expert as specific_experts.0", key)
            tails.setdefault(expert.group(1), []).append(expert.group(3))
    return tails


def merge_rank_states(
    states: Sequence[Mapping[str, np.ndarray]], task_names: Sequence[str], *, atol: float = 1e-6
) -> dict[str, np.ndarray]:
    """One merged state from the files UFO's training ranks save, one file per task.

    Each rank's file holds the whole model with its own task's expert as ``specific_experts.0``
    and its gate logits ``expert_weight`` ``[1, 2]``; the rest is synchronised across the ranks
    (all-reduced). The merged state has ``specific_experts.<i>`` (task ``i``'s, from file ``i``)
    and ``expert_weight`` ``[tasks, 2]``; the other arrays are the first file's, once checked
    equal (to ``atol``) in every file.

    Raises:
        CheckpointError: Not one file per task; the files do not hold the same keys; a shared array
            differs between them; a file holds another expert than ``specific_experts.0``.
    """
    if len(states) != len(task_names):
        raise CheckpointError(
            f"{len(states)} files for {len(task_names)} tasks: give one file per task, in order"
        )
    stripped = [strip_wrapper(s) for s in states]
    first = stripped[0]
    tails = _expert_tails(first)
    merged: dict[str, np.ndarray] = {}
    for key, value in first.items():
        expert = _RANK_EXPERT.fullmatch(key)
        if expert is not None:
            layer = expert.group(1)
            if expert.group(3) == tails[layer][0]:  # the layer's experts, task after task, at its first key
                arrays = {
                    tail: _each_rank(f"{layer}specific_experts.0.{tail}", stripped, task_names)
                    for tail in tails[layer]
                }
                for i in range(len(stripped)):
                    merged.update(
                        {f"{layer}specific_experts.{i}.{tail}": arrays[tail][i] for tail in tails[layer]}
                    )
        elif key.endswith(".mlp.moe_mlp.expert_weight"):
            rows = _each_rank(key, stripped, task_names)
            wrong = next((i for i, row in enumerate(rows) if row.shape != (1, 2)), None)
            if wrong is not None:
                raise CheckpointError(f"file {wrong + 1} ({task_names[wrong]}): {key} is not [1, 2]", key)
            merged[key] = np.concatenate(rows)
        else:
            _same_everywhere(key, value, stripped, atol)
            merged[key] = value
    for i, state in enumerate(stripped[1:], start=2):
        extra = next((k for k in state if k not in first), None)
        if extra is not None:
            raise CheckpointError(f"file {i} ({task_names[i - 1]}): key {extra} is not in file 1", extra)
    return merged
