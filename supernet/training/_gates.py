"""UFO's per-task, per-layer gates between the shared FFN and the task's own FFN expert.

During multi-task training every layer of a task's path runs both FFNs and mixes them with a
*hard-policy* Gumbel-softmax gate, as UFO 2.0's ``MoeLayer`` (PaddlePaddle/VIMER,
``UFO/OneForAll/modeling/backbones/moe_layer.py``, ``hardpolicy``): two logits per task and layer
(initialised to 0, i.e. 50/50), Gumbel noise added per sample in training, a softmax at temperature
``tau`` and a straight-through one-hot, so the forward uses exactly one FFN while the gradient
reaches the logits through the soft probabilities. Index 0 is the shared FFN, 1 the task's expert.

What training learns is reported as :class:`LearnedGates` (``gates.json``): per task and layer the
probability that the hard gate picks the task's expert, ``softmax(logits)[1]`` (the Gumbel-max
trick: the temperature does not change which branch is picked, only how soft the gradient is).
Its argmax per layer is the ``ffn_path`` the task's subnets should take; :func:`fix_ffn_paths`
and :func:`ffn_path_log_prior` let a search fix or bias ``ffn_path`` with it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._definition import SpaceDefinition
from .._space import SearchSpace, Subnet

GATES_FORMAT = "gpnas-gates/1"
SHARED, TASK = 0, 1
"""Gate indices: 0 = the shared FFN (UFO's common expert), 1 = the task's own expert."""
_EPS, _GAMMA = 1e-5, 0.9999  # UFO's clip of the uniform noise


def gumbel_noise(shape: Sequence[int], generator: torch.Generator | None = None) -> Tensor:
    """Standard Gumbel noise ``-log(-log(u))`` (``u`` uniform, clipped to [1e-5, 0.9999] as UFO
    does), drawn on the CPU from ``generator`` so that a run is reproducible on any device."""
    u = torch.rand(tuple(shape), generator=generator).clamp_(_EPS, _GAMMA)
    return -torch.log(-torch.log(u))


def straight_through_gumbel(
    logits: Tensor, tau: float, *, noise: Tensor | None = None, hard: bool = True
) -> Tensor:
    """UFO's hard policy: ``softmax((logits + noise) / tau)`` over the last dimension, made one-hot
    in the forward (straight-through: ``y_hard - y_soft.detach() + y_soft``).

    Args:
        logits: ``... x k`` gate logits (any leading dimensions, e.g. batch x 2).
        tau: Softmax temperature (> 0).
        noise: Gumbel noise of ``logits``' shape (:func:`gumbel_noise`); ``None``: none (UFO's
            evaluation mode, a deterministic argmax).
        hard: ``False``: the soft probabilities themselves.

    Returns:
        Float32 tensor of ``logits``' shape: one-hot rows whose gradient is that of the softmax.
    """
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    z = logits.float() if noise is None else logits.float() + noise.to(logits.device)
    soft = F.softmax(z / tau, dim=-1)
    if not hard:
        return soft
    # The last of tied maxima, as UFO's argsort()[:, -1:]: at equal logits (no noise) the expert.
    last = soft.shape[-1] - 1 - soft.flip(-1).argmax(-1, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(-1, last, 1.0)
    return one_hot - soft.detach() + soft


class TaskGates(nn.Module):
    """Gate logits, ``max_depth x 2`` per task (``logits[task]``; state-dict keys ``logits.<task>``).

    Kept apart from the supernet so that the supernet's state dict stays what
    :class:`~profilers.SupernetEvalProfiler` loads; the training checkpoint holds both.

    Args:
        tasks: The gated tasks.
        depth: Layers (the space's ``max_depth``).
    """

    def __init__(self, tasks: Sequence[str], depth: int) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"gates need at least one layer, got depth {depth}")
        self.depth = depth
        self.logits = nn.ParameterDict()  # filled in order (a dict argument would be sorted)
        for task in tasks:
            self.logits[task] = nn.Parameter(torch.zeros(depth, 2))

    @property
    def tasks(self) -> list[str]:
        return list(self.logits.keys())

    def add_task(self, task: str) -> None:
        """Gates for a new task (logits 0: both FFNs equally likely), on the device of the others."""
        if task in self.logits:
            raise ValueError(f"task {task!r} already has gates")
        device = next(iter(self.logits.values())).device if len(self.logits) else None
        self.logits[task] = nn.Parameter(torch.zeros(self.depth, 2, device=device))

    def _logits(self, task: str) -> Tensor:
        if task not in self.logits:
            raise ValueError(f"no gates for task {task!r}; gated tasks: {self.tasks}")
        result: Tensor = self.logits[task]
        return result

    def sample(
        self,
        task: str,
        batch: int,
        tau: float,
        generator: torch.Generator | None = None,
        *,
        noise: bool = True,
    ) -> Tensor:
        """Straight-through one-hot gates of ``task`` for a batch, ``max_depth x batch x 2``.

        As UFO, the logits are repeated per sample and every sample draws its own noise, so a
        batch trains both branches while the temperature is high.
        """
        logits = self._logits(task)[:, None, :].expand(self.depth, batch, 2)
        drawn = gumbel_noise(logits.shape, generator) if noise else None
        return straight_through_gumbel(logits, tau, noise=drawn)

    def p_task(self, task: str) -> Tensor:
        """P(the hard gate picks ``task``'s expert) per layer, ``max_depth`` (detached, CPU)."""
        return F.softmax(self._logits(task).detach().double().cpu(), dim=-1)[:, TASK]

    def report(self, space: str, tau: float | None = None) -> LearnedGates:
        """What the gates say now, as :class:`LearnedGates`."""
        stacked = torch.stack([self._logits(task).detach().cpu() for task in self.tasks])
        return LearnedGates.from_logits(space, self.tasks, stacked, tau)


@dataclass(frozen=True)
class LearnedGates:
    """The gates of a trained multi-task supernet: per task and layer P(task expert).

    Attributes:
        space: Name of the space the supernet was trained on.
        p_task: Task -> ``max_depth`` probabilities that the hard gate picks the task's own FFN
            expert (``softmax(logits)[1]``).
        tau: The temperature at the end of training (informational).
    """

    space: str
    p_task: Mapping[str, tuple[float, ...]]
    tau: float | None = None
    tasks: list[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", list(self.p_task))
        for task, probs in self.p_task.items():
            if not probs or not all(0.0 <= p <= 1.0 for p in probs):
                raise ValueError(f"gates of task {task!r} must be probabilities in [0, 1], got {list(probs)}")

    def _probs(self, task: str) -> tuple[float, ...]:
        if task not in self.p_task:
            raise ValueError(f"no gates for task {task!r} (space {self.space!r}); gated tasks: {self.tasks}")
        return self.p_task[task]

    def ffn_paths(self, task: str) -> list[str]:
        """The argmax per layer: ``"task"`` where P(task expert) >= 0.5, else ``"shared"`` (a tie
        goes to the expert, as UFO's evaluation forward and extraction break it)."""
        return ["task" if p >= 0.5 else "shared" for p in self._probs(task)]

    @classmethod
    def from_logits(
        cls, space: str, tasks: Sequence[str], logits: Tensor, tau: float | None = None
    ) -> LearnedGates:
        """Gates from ``tasks x layers x 2`` logits (shared, task), e.g. UFO's ``expert_weight``
        of an imported checkpoint."""
        if logits.dim() != 3 or logits.shape[0] != len(tasks) or logits.shape[2] != 2:
            raise ValueError(f"logits must be {len(tasks)} x layers x 2, got {tuple(logits.shape)}")
        p = F.softmax(logits.detach().double().cpu(), dim=-1)[..., TASK]
        return cls(space, {t: tuple(float(v) for v in row) for t, row in zip(tasks, p, strict=True)}, tau)

    def distance(self, a: str, b: str) -> float:
        """Mean absolute difference of two tasks' P(task expert) over the layers (0: same gates,
        1: opposite hard choices everywhere)."""
        pa, pb = np.asarray(self._probs(a)), np.asarray(self._probs(b))
        return float(np.abs(pa - pb).mean())

    def path_disagreements(self, a: str, b: str) -> int:
        """Layers whose argmax ``ffn_path`` differs between two tasks."""
        return sum(x != y for x, y in zip(self.ffn_paths(a), self.ffn_paths(b), strict=True))

    # ------------------------------------------------------------------ gates.json
    def to_json(self) -> str:
        """The ``gates.json`` document: format, space, tau and per task ``p_task`` and
        the argmax ``ffn_path``; one line per task."""
        head = {"format": GATES_FORMAT, "space": self.space, "tau": self.tau}
        lines = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
        entries = [
            f"    {json.dumps(task)}: "
            + json.dumps({"p_task": list(probs), "ffn_path": self.ffn_paths(task)})
            for task, probs in self.p_task.items()
        ]
        return "{\n" + "\n".join(lines) + '\n  "tasks": {\n' + ",\n".join(entries) + "\n  }\n}\n"

    @classmethod
    def from_json(cls, text: str, where: str = "gates") -> LearnedGates:
        """Parse :meth:`to_json`'s output (``ffn_path`` is derived, so only ``p_task`` is read).

        Raises:
            ValueError: Not JSON, another format, or malformed probabilities (naming ``where``).
        """
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where} is not JSON: {error}") from None
        if not isinstance(doc, dict) or doc.get("format") != GATES_FORMAT:
            raise ValueError(f"{where} is not a {GATES_FORMAT} document (gpnas train's gates.json)")
        tasks = doc.get("tasks")
        if not isinstance(doc.get("space"), str) or not isinstance(tasks, dict):
            raise ValueError(f"{where} needs a 'space' name and a 'tasks' object")
        p_task: dict[str, tuple[float, ...]] = {}
        for task, entry in tasks.items():
            probs = entry.get("p_task") if isinstance(entry, dict) else None
            if not isinstance(probs, list) or not all(isinstance(p, int | float) for p in probs):
                raise ValueError(f"{where}: task {task!r} needs a list of numbers under 'p_task'")
            p_task[task] = tuple(float(p) for p in probs)
        tau = doc.get("tau")
        return cls(doc["space"], p_task, float(tau) if isinstance(tau, int | float) else None)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_json` to ``path`` (atomically: a temporary file, then a rename)."""
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LearnedGates:
        """Read a ``gates.json``.

        Raises:
            ValueError: The file is missing or not a gates document.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(f"gates file {str(path)!r}: {error.strerror}") from None
        return cls.from_json(text, f"gates file {str(path)!r}")

    def check_space(self, space: SearchSpace, task: str) -> None:
        """That these gates fit ``space`` (its ``ffn_path`` choice and depth) and know ``task``."""
        names = [d.name for d in space.dimensions]
        if "ffn_path" not in names:
            raise ValueError(f"space {space.name!r} has no ffn_path choice, so gates do not apply to it")
        if len(self._probs(task)) != space.max_depth:
            raise ValueError(
                f"gates of task {task!r} have {len(self._probs(task))} layers; space {space.name!r} has "
                f"{space.max_depth}"
            )


# ---------------------------------------------------------------------- search-side helpers
def _ffn_column(space: SearchSpace) -> tuple[int, int, int]:
    """(index of the ``ffn_path`` dimension, choice index of ``shared``, of ``task``)."""
    names = [d.name for d in space.dimensions]
    if "ffn_path" not in names:
        raise ValueError(f"space {space.name!r} has no ffn_path choice, so gates do not apply to it")
    k = names.index("ffn_path")
    values = space.dimensions[k].values
    if "shared" not in values or "task" not in values:
        raise ValueError(
            f"space {space.name!r} offers ffn_path {list(values)}: learned gates choose between "
            "'shared' and 'task', so they need both"
        )
    return k, values.index("shared"), values.index("task")


@overload
def fix_ffn_paths(space: SearchSpace, subnets: np.ndarray, gates: LearnedGates, task: str) -> np.ndarray: ...
@overload
def fix_ffn_paths(
    space: SearchSpace, subnets: Sequence[Subnet], gates: LearnedGates, task: str
) -> list[Subnet]: ...
def fix_ffn_paths(
    space: SearchSpace, subnets: np.ndarray | Sequence[Subnet], gates: LearnedGates, task: str
) -> np.ndarray | list[Subnet]:
    """Set every active layer's ``ffn_path`` to ``task``'s learned choice (the gates' argmax).

    A search restricted to what the gates chose applies this to its candidates (a choice matrix
    ``n x max_depth x n_dims`` with -1 for absent layers, as ``space.choice_matrix`` returns, or
    :class:`Subnet` objects); everything else about each subnet is kept.

    Returns:
        A new choice matrix or list of subnets (duplicates are possible and kept).
    """
    gates.check_space(space, task)
    k, shared, own = _ffn_column(space)
    chosen = np.where(np.asarray(gates.ffn_paths(task)) == "task", own, shared)
    if isinstance(subnets, np.ndarray):
        codes = subnets.copy()
        active = codes[:, :, 0] >= 0
        codes[:, :, k] = np.where(active, chosen[None, :], -1)
        return codes
    subs = list(subnets)
    codes = fix_ffn_paths(space, space.choice_matrix(subs), gates, task)
    return space.from_choice_matrix(codes, [s.depth for s in subs])


def gated_definition(space: SearchSpace, gates: LearnedGates, name: str | None = None) -> SpaceDefinition:
    """``space``'s definition with every task the gates know fixed to their ``ffn_path`` choice
    per layer (the task's ``ffn_paths``), named ``name`` (default: ``<space>-gated``). Registered
    as a space of its own, its fronts and deployment queries search only the paths the gates chose
    (a registered space never changes its tasks' paths)."""
    data = space.to_definition().model_dump(mode="json")
    data["name"] = name or f"{space.name[:58]}-gated"
    for task in data["tasks"]:
        if task["name"] in gates.tasks:
            gates.check_space(space, task["name"])
            task["ffn_paths"] = gates.ffn_paths(task["name"])
    return SpaceDefinition.load(data)


def ffn_path_log_prior(space: SearchSpace, codes: np.ndarray, gates: LearnedGates, task: str) -> np.ndarray:
    """``sum`` over active layers of ``log P(the layer's ffn_path)`` under ``task``'s gates.

    A soft alternative to :func:`fix_ffn_paths`: a search can add ``weight * log_prior`` to its
    objective, or rank or sample candidates by it, to prefer what the gates chose without
    excluding the rest. Probabilities are clipped to [1e-6, 1 - 1e-6].

    Args:
        codes: Choice matrix ``n x max_depth x n_dims`` (-1 for absent layers).

    Returns:
        float64 array ``n`` (0 for a subnet that follows the gates wherever they are certain).
    """
    gates.check_space(space, task)
    k, _, own = _ffn_column(space)
    codes = np.asarray(codes)
    p = np.clip(np.asarray(gates.p_task[task], dtype=np.float64), 1e-6, 1 - 1e-6)
    picks_task = codes[:, :, k] == own
    logp = np.where(picks_task, np.log(p)[None, :], np.log1p(-p)[None, :])
    result: np.ndarray = np.where(codes[:, :, 0] >= 0, logp, 0.0).sum(1)
    return result


def sample_with_gates(
    space: SearchSpace,
    n: int,
    gates: LearnedGates,
    task: str,
    *,
    mode: Literal["fix", "bias"] = "fix",
    seed: int | None = None,
) -> list[Subnet]:
    """``n`` subnets drawn uniformly over everything but ``ffn_path``, which follows the gates:
    their argmax (``fix``) or a draw per layer with P(task expert) (``bias``).

    Duplicates are dropped; the result holds fewer than ``n`` subnets only if the restricted
    space is that small.
    """
    gates.check_space(space, task)
    k, shared, own = _ffn_column(space)
    rng = np.random.default_rng(seed)
    p = np.asarray(gates.p_task[task], dtype=np.float64)
    found: dict[Subnet, None] = {}
    for _ in range(20):
        draws = space.sample(
            min(space.cardinality, max(16, 2 * (n - len(found)))), seed=int(rng.integers(2**31))
        )
        codes = space.choice_matrix(draws)
        if mode == "fix":
            codes = fix_ffn_paths(space, codes, gates, task)
        elif mode == "bias":
            picks = rng.random(codes.shape[:2]) < p[None, :]
            codes[:, :, k] = np.where(codes[:, :, 0] >= 0, np.where(picks, own, shared), -1)
        else:
            raise ValueError(f"mode must be 'fix' or 'bias', got {mode!r}")
        for sub in space.from_choice_matrix(codes, [s.depth for s in draws]):
            found.setdefault(sub)
            if len(found) == n:
                return list(found)
    return list(found)


def gate_table(gates: LearnedGates) -> str:
    """The gates as a text table: one row per task, P(task expert) per layer and the argmax path."""
    depth = max(len(p) for p in gates.p_task.values())
    width = max(4, *(len(t) for t in gates.tasks))
    lines = [f"{'task':<{width}}  " + " ".join(f"{'L' + str(i):>5}" for i in range(depth)) + "  ffn_path"]
    for task, probs in gates.p_task.items():
        cells = " ".join(f"{p:5.2f}" for p in probs)
        path = "".join("t" if p == "task" else "s" for p in gates.ffn_paths(task))
        lines.append(f"{task:<{width}}  {cells}  {path}")
    return "\n".join(lines)


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def gates_from_report(report: LearnedGates, tasks: Sequence[str] | None = None) -> TaskGates:
    """:class:`TaskGates` whose probabilities are ``report``'s (logits ``[0, logit(p)]``)."""
    names = list(report.p_task) if tasks is None else list(tasks)
    depth = len(report.p_task[names[0]])
    gates = TaskGates(names, depth)
    with torch.no_grad():
        for task in names:
            gates.logits[task][:, TASK] = torch.tensor([_logit(p) for p in report.p_task[task]])
    return gates
