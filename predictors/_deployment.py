"""Latency of multi-task deployments from single-path latencies and the per-layer cost structure.

A :class:`supernet.Deployment` runs several tasks' paths as one model. On *separate* inputs
(each task its own image) a task's latency is its path's, and running all the tasks one after
another takes the sum. On a *shared* input the deployment computes the stem once and every
layer the paths agree on up to there once (:func:`supernet.reused_layers`), so

    shared = sum_t path_t - sum_t r_t * (path_t - fixed) - (T - 1) * stem,

where ``r_t`` is the share of task ``t``'s layer cost that an earlier task already computed.
The layers' shares come from a non-negative linear cost model of the device
(:class:`predictors.CostModel` on :data:`supernet.UFO_COSTS`, fitted on measured single paths),
the paths' latencies from the device's latency predictor, and the parts outside the layers
(``stem``: patch embedding and tokens, computed once; ``head``: final norm and head, per task;
``fixed = stem + head``) from their MACs at the device's time per MAC. Only single paths are
ever measured: the model needs no timing of a deployment.

Usage::

    model = DeploymentLatencyModel.fit(space, measured_subnets, latency_ms, y_std=std_ms)
    mean, std = model.predict(deployments, latency_predictor)            # both shape n, ms
    mean, std = model.predict(deployments, (path_means, path_stds))      # n x T, predicted once
    per_task_mean, per_task_std = model.predict_tasks(deployments, latency_predictor)  # n x T
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch

from supernet import (
    INPUT_MODES,
    Deployment,
    InputMode,
    SearchSpace,
    Subnet,
    UFOSpace,
    deployment_choices,
    reused_layers,
)

from ._cost import CostModel

StdRule = Literal["correlated", "independent"]
#: Rules that combine the paths' predictive stds into a deployment's (see :class:`DeploymentLatencyModel`).
STD_RULES: tuple[StdRule, ...] = ("correlated", "independent")


@runtime_checkable
class PathLatencyPredictor(Protocol):
    """Anything that predicts single paths' latencies: ``predict(subnets) -> (mean, std)``, each a
    tensor of shape ``n`` in milliseconds (every :class:`predictors.Predictor` does)."""

    def predict(self, subnets: Sequence[Subnet]) -> tuple[torch.Tensor, torch.Tensor]: ...


PathLatencies = PathLatencyPredictor | tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]


@dataclass(frozen=True, eq=False)
class DeploymentLatencyModel:
    """Predicts deployments' latencies on one device from its single-path latency predictions.

    Shared input: each task's path latency ``mu_t`` minus what an earlier task of the
    deployment already computed. A path is ``fixed = stem_ms + head_ms`` plus its layers, and
    its layers' part ``mu_t - fixed`` is spread over them in proportion to the cost line's
    layer costs; the layers that :func:`supernet.reused_layers` marks (a
    :class:`supernet.SharedLayer` used by ``k`` tasks counts ``k - 1`` times) are saved, and so
    is the stem of every task but one. The mean is never below the slowest task's path.
    Separate inputs: each task's path latency, their sum for all tasks one after another.

    The cost line gives the layers' *shares* and the path prediction their *scale*, because the
    line's intercept is not the stem: over the narrow range of depths (10-12) a per-layer cost
    and a constant are nearly the same column: on the benchmark's CPU the intercept fitted on 30
    paths came out anywhere from 0.3 to 2.2 ms, while the stem alone took 0.76 ms
    (``benchmarks/deployment_latency.py`` also reports the absolute line costs). The stem and
    head are priced at the device's median time per MAC over the measured paths.

    Std: the paths' errors are mostly shared (the same device bias on the same kinds of
    layers), and each counts for the share of its path that runs: ``correlated`` (default) is
    ``sum_t (1 - r_t) * std_t``, ``independent`` is ``sqrt(sum_t ((1 - r_t) * std_t)^2)``
    (under-covers for correlated errors). Added in quadrature: the layers' saving times
    ``saving_rel_std`` (the cost line's error), and the stem and head estimates' effect on the
    mean times ``fixed_rel_std`` (MACs miss the small operators' dispatch), and the joint
    latency times ``joint_rel_std``: the deployed model is not the single paths the predictor
    learnt from (it runs slices of the union's weights and holds every branch's activations):
    on the benchmark's CPU a shared forward ran 2-4% slower than its paths imply and separate
    inputs 0-1.5% slower, with a spread of about 2% (deployments of one task are exempt).

    Attributes:
        space: The UFO space of the deployments.
        cost_model: The device's latency line on ``space.costs`` (intercept and one weight per
            column of ``space.cost_names``, milliseconds); its layer costs give the shares.
        stem_ms: Time of the stem (patch embedding, class and position tokens), run once on a
            shared input.
        head_ms: Time of a task's final norm and head, run per task.
        std_rule: One of :data:`STD_RULES`.
        saving_rel_std: Relative std of the layers' saving (``fit``: the cost line's
            out-of-fold relative RMS error on the measured paths).
        fixed_rel_std: Relative std of ``stem_ms`` and ``head_ms``.
        joint_rel_std: Relative std of a joint latency from running the paths as one model.
    """

    space: UFOSpace
    cost_model: CostModel
    stem_ms: float = 0.0
    head_ms: float = 0.0
    std_rule: StdRule = "correlated"
    saving_rel_std: float = 0.0
    fixed_rel_std: float = 1.0
    joint_rel_std: float = 0.02

    def __post_init__(self) -> None:
        if not isinstance(self.space, UFOSpace):
            raise ValueError(
                f"deployments are UFO supernet paths; space {self.space.name!r} is not a UFO space"
            )
        width = 1 + len(self.space.cost_names)
        if np.shape(self.cost_model.weights) != (width,):
            raise ValueError(
                f"cost model has {np.size(self.cost_model.weights)} weights; space {self.space.name!r} "
                f"needs {width} (an intercept and one per cost column {list(self.space.cost_names)})"
            )
        if self.std_rule not in STD_RULES:
            raise ValueError(f"std_rule must be one of {list(STD_RULES)}, got {self.std_rule!r}")
        for name in ("stem_ms", "head_ms", "saving_rel_std", "fixed_rel_std", "joint_rel_std"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def fit(
        cls,
        space: SearchSpace,
        subnets: Sequence[Subnet],
        y: np.ndarray | torch.Tensor | Sequence[float],
        y_std: np.ndarray | torch.Tensor | Sequence[float] | None = None,
        *,
        stem_ms: float | None = None,
        head_ms: float | None = None,
        std_rule: StdRule = "correlated",
        fixed_rel_std: float = 1.0,
        joint_rel_std: float = 0.02,
    ) -> DeploymentLatencyModel:
        """Fit the device's cost line on measured single paths.

        Args:
            space: A UFO space.
            subnets: ``n`` measured paths.
            y: Their latencies (ms), shape ``n``.
            y_std: Optional standard errors of ``y`` (ms), shape ``n``.
            stem_ms: The stem's time; default: its MACs at the paths' median time per MAC.
            head_ms: A task's head time; default: the MACs of the first task's head (the
                path a latency profiler times) at that rate.
            std_rule: See the class attributes.
            fixed_rel_std: See the class attributes.
            joint_rel_std: See the class attributes.

        Raises:
            ValueError: If ``space`` is not a UFO space, shapes disagree or a latency is not
                positive.
        """
        if not isinstance(space, UFOSpace):
            raise ValueError(f"deployments are UFO supernet paths; space {space.name!r} is not a UFO space")
        subnets = list(subnets)
        values = np.asarray(y, dtype=np.float64)
        stds = None if y_std is None else np.asarray(y_std, dtype=np.float64)
        cost = CostModel.fit(space.costs(subnets), values, stds)
        assert cost.out_of_fold is not None
        rel = (values - cost.out_of_fold) / values
        g = space.geometry
        per_mac = float(np.median(values / space.macs(subnets)))
        if stem_ms is None:
            stem_ms = per_mac * g.num_patches * g.embed_dim * g.in_chans * g.patch_size**2
        if head_ms is None:
            head_ms = (
                per_mac * g.embed_dim * (space.task_outputs[space.tasks[0]] or 0) if space.tasks else 0.0
            )
        saving_rel_std = float(np.sqrt(np.mean(rel**2)))
        return cls(space, cost, stem_ms, head_ms, std_rule, saving_rel_std, fixed_rel_std, joint_rel_std)

    # ------------------------------------------------------------------ structure
    def layer_costs(self, codes: np.ndarray) -> np.ndarray:
        """Cost (ms) of every task's every layer by the cost line, without its intercept.

        Args:
            codes: Deployments as choice matrices, ``n x T x max_depth x n_dims`` (-1 for
                absent layers and for padding tasks; see :func:`supernet.deployment_choices`).

        Returns:
            ``n x T x max_depth`` float64, 0 where a layer is absent.
        """
        return self._per_layer(self._check_codes(codes), self.cost_model.weights[1:])

    def reused_shares(self, codes: np.ndarray) -> np.ndarray:
        """``r``: the share of each task's layer cost that an earlier task computed, ``n x T``.

        Shares are of the cost line's layer costs, or of the layers' MACs where the line
        prices a path's layers at 0. Padding tasks get 0.
        """
        codes = self._check_codes(codes)
        costs = self._per_layer(codes, self.cost_model.weights[1:])
        total = costs.sum(2)
        flat = total <= 0
        if flat.any():  # a line of intercept alone: share by MACs instead
            macs = self._per_layer(
                codes, np.array([1.0, 1.0, 1.0] + [0.0] * (len(self.space.cost_names) - 3))
            )
            costs = np.where(flat[:, :, None], macs, costs)
            total = costs.sum(2)
        reused = (costs * reused_layers(self.space, codes)).sum(2)
        result: np.ndarray = np.divide(reused, total, out=np.zeros_like(reused), where=total > 0)
        return result

    def _per_layer(self, codes: np.ndarray, weights: np.ndarray) -> np.ndarray:
        n, tasks, depth, dims = codes.shape
        flat = codes.reshape(n * tasks, depth, dims)
        out = np.empty((n * tasks, depth))
        position = np.arange(depth)[None, :, None]
        for i in range(depth):  # costs are additive over layers: one layer at a time
            out[:, i] = self.space.choice_costs(np.where(position == i, flat, -1)) @ weights
        return out.reshape(n, tasks, depth)

    def choices(self, deps: Sequence[Deployment]) -> np.ndarray:
        """Deployments as one ``n x T x max_depth x n_dims`` choice matrix, ``T`` their most
        tasks; a deployment with fewer tasks is padded with absent tasks (all -1).

        Raises:
            ValueError: If ``deps`` is empty or a deployment is not of :attr:`space`.
        """
        if not deps:
            raise ValueError("give at least one deployment")
        blocks = [deployment_choices(self.space, dep)[0] for dep in deps]
        tasks = max(len(b) for b in blocks)
        out = np.full((len(blocks), tasks, *blocks[0].shape[1:]), -1, dtype=np.int64)
        for i, block in enumerate(blocks):
            out[i, : len(block)] = block
        return out

    # ------------------------------------------------------------------ prediction
    def path_latencies(
        self, deps: Sequence[Deployment], paths: PathLatencies
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each task's path latency: ``(mean, std)``, each ``n x T`` (ms), NaN for padding.

        Args:
            deps: ``n`` deployments; column ``j`` is each one's ``j``-th task.
            paths: A :class:`PathLatencyPredictor` (asked once for every path), or precomputed
                ``(mean, std)`` arrays of shape ``n x T`` (``T`` at least the most tasks of a
                deployment; entries beyond a deployment's tasks are ignored).

        Raises:
            ValueError: If the arrays' shapes do not fit ``deps`` or a used entry is not finite.
        """
        counts = np.array([len(dep) for dep in deps])
        if isinstance(paths, PathLatencyPredictor):
            subnets = [sub for dep in deps for _, sub in dep]
            mean_flat, std_flat = (
                t.detach().cpu().numpy().astype(np.float64) for t in paths.predict(subnets)
            )
            mean = np.full((len(deps), int(counts.max(initial=0))), np.nan)
            std = np.full_like(mean, np.nan)
            rows = np.repeat(np.arange(len(deps)), counts)
            cols = np.concatenate([np.arange(c) for c in counts]) if len(deps) else np.zeros(0, int)
            mean[rows, cols], std[rows, cols] = mean_flat, std_flat
            return mean, std
        mean, std = (_as_array(a) for a in paths)
        if mean.ndim != 2 or mean.shape != std.shape or len(mean) != len(deps):
            raise ValueError(
                f"path means and stds must both be n x T with n = {len(deps)} deployments, "
                f"got shapes {mean.shape} and {std.shape}"
            )
        if mean.shape[1] < counts.max(initial=0):
            raise ValueError(
                f"a deployment has {counts.max()} tasks; the path arrays have {mean.shape[1]} columns"
            )
        used = np.arange(mean.shape[1])[None, :] < counts[:, None]
        if not (np.isfinite(mean[used]).all() and np.isfinite(std[used]).all()):
            raise ValueError("path means and stds must be finite for every task of a deployment")
        return np.where(used, mean, np.nan), np.where(used, std, np.nan)

    def predict(
        self, deps: Sequence[Deployment], paths: PathLatencies, input: InputMode = "shared"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latency of one forward of all of each deployment's tasks.

        Args:
            deps: ``n`` deployments of :attr:`space`.
            paths: The paths' latencies (see :meth:`path_latencies`).
            input: ``shared`` (one image for every task) or ``separate`` (each task its own,
                one task after another).

        Returns:
            ``(mean, std)``, float64 tensors of shape ``n`` (ms).

        Raises:
            ValueError: If a deployment is not of :attr:`space`, ``input`` is unknown, or the
                path arrays do not fit.
        """
        _check_input(input)
        codes = self.choices(deps)
        mean, std = self.path_latencies(deps, paths)
        return self.predict_choices(codes, mean[:, : codes.shape[1]], std[:, : codes.shape[1]], input)

    def savings(self, deps: Sequence[Deployment], paths: PathLatencies) -> np.ndarray:
        """Milliseconds a shared input saves over running the paths one after another, shape ``n``.

        Raises:
            ValueError: If a deployment is not of :attr:`space` or the path arrays do not fit.
        """
        shared = self.predict(deps, paths)[0].numpy()
        result: np.ndarray = self.predict(deps, paths, input="separate")[0].numpy() - shared
        return result

    def predict_tasks(
        self, deps: Sequence[Deployment], paths: PathLatencies
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each task's latency on its own input: its path's, ``(mean, std)`` each ``n x T``
        float64 tensors (ms), NaN beyond a deployment's tasks.

        Raises:
            ValueError: If a deployment is not of :attr:`space` or the path arrays do not fit.
        """
        self.choices(deps)  # checks that every deployment is of this space
        mean, std = self.path_latencies(deps, paths)
        return torch.as_tensor(mean), torch.as_tensor(std)

    def predict_choices(
        self,
        codes: np.ndarray,
        path_mean: np.ndarray | torch.Tensor,
        path_std: np.ndarray | torch.Tensor,
        input: InputMode = "shared",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`predict` on choice matrices (vectorised, for searches over many deployments).

        Args:
            codes: ``n x T x max_depth x n_dims`` choice matrices, tasks in column order (a
                task whose layers are all -1 is padding).
            path_mean: ``n x T`` path latency means (ms); padding entries are ignored.
            path_std: ``n x T`` path latency stds (ms).
            input: ``shared`` or ``separate``.

        Returns:
            ``(mean, std)``, float64 tensors of shape ``n`` (ms).
        """
        _check_input(input)
        codes = self._check_codes(codes)
        mu, sigma = _as_array(path_mean), _as_array(path_std)
        if mu.shape != codes.shape[:2] or sigma.shape != mu.shape:
            raise ValueError(
                f"path means and stds must be n x T = {codes.shape[:2]}, got {mu.shape} and {sigma.shape}"
            )
        present = codes[:, :, :, 0].max(axis=2) >= 0
        mu, sigma = np.where(present, mu, 0.0), np.where(present, sigma, 0.0)
        joint = self.joint_rel_std * (_task_counts(codes) > 1)  # a deployment of one task is its path
        if input == "separate":
            std = np.sqrt((sigma**2).sum(1)) if self.std_rule == "independent" else sigma.sum(1)
            total = mu.sum(1)
            return torch.as_tensor(total), torch.as_tensor(np.hypot(std, joint * total))
        share = self.reused_shares(codes)  # n x T, 0 for padding
        fixed = self.stem_ms + self.head_ms
        layers = share * np.maximum(mu - fixed, 0.0)  # each task's layers already computed
        extra = _task_counts(codes) - 1
        mean = np.maximum(mu.sum(1) - layers.sum(1) - extra * self.stem_ms, mu.max(1))
        runs = (1.0 - share) * sigma  # each path's error, for the part of it that runs
        std = np.sqrt((runs**2).sum(1)) if self.std_rule == "independent" else runs.sum(1)
        # d mean / d stem and d mean / d head: the stem runs once, the heads per task.
        fixed_effect = (share.sum(1) - extra) * self.stem_ms + share.sum(1) * self.head_ms
        std = np.sqrt(
            std**2
            + (self.saving_rel_std * layers.sum(1)) ** 2
            + (self.fixed_rel_std * fixed_effect) ** 2
            + (joint * mean) ** 2
        )
        return torch.as_tensor(mean), torch.as_tensor(std)

    def _check_codes(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes)
        expected = (self.space.max_depth, len(self.space.dimensions))
        if codes.ndim != 4 or codes.shape[2:] != expected:
            raise ValueError(
                f"deployment codes must be n x T x {expected[0]} x {expected[1]} for space "
                f"{self.space.name!r}, got shape {codes.shape}"
            )
        return codes


def _task_counts(codes: np.ndarray) -> np.ndarray:
    """Tasks of each deployment (columns with at least one layer), shape ``n``."""
    result: np.ndarray = (codes[:, :, :, 0].max(axis=2) >= 0).sum(1)
    return result


def _as_array(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def _check_input(input: str) -> None:
    if input not in INPUT_MODES:
        raise ValueError(f"input must be one of {list(INPUT_MODES)}, got {input!r}")


__all__ = ["STD_RULES", "DeploymentLatencyModel", "PathLatencyPredictor"]
