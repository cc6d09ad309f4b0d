"""Deployment queries: the best joint choice of paths for several tasks on one chip.

A query names tasks, each with a weight and a latency budget, a confidence, a memory cap and
whether the tasks read separate images or one shared image. The answer maximises the weighted
sum of the tasks' normalised predicted scores, ``sum_t w_t (mu_t - lo_t) / (hi_t - lo_t)``,
subject to every task's chance constraint ``P(latency_t <= budget_t) >= confidence`` (Gaussian
posteriors: ``mean + z_c * std <= budget``) and to the deployment's parameter count, which
counts what the tasks share once (:func:`supernet.deployment_choice_params`). Memory couples the
tasks (two tasks on the same shared layers pay for them once), and so does a shared input (the
layers they compute together run once), so the tasks cannot be chosen one at a time.

Small problems are solved exactly by enumerating every combination; larger ones by a
constrained evolutionary search over joint paths (Deb's feasibility rules), seeded with each
task's best stored candidates and with deployments in which all tasks take the same path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import ndtr, ndtri

from supernet import Deployment, InputMode, Subnet, UFOSpace, deployment_choice_params
from supernet.errors import UserError

from ._bounds import bounded_score
from ._budget import check_confidence
from ._compute import EncodedPredictor, Predictor, as_prediction, enumerate_codes, limited_torch_threads

#: ``(codes n x T x max_depth x n_dims, path_mean n x T, path_std n x T) -> (mean n, std n)``:
#: the latency of one forward of all tasks on one shared image, from the paths' predictions.
SharedLatency = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class TaskGoal:
    """One task of a deployment query.

    Attributes:
        task: Task name.
        weight: Weight of its normalised score in the objective (> 0).
        latency_budget_ms: Its latency budget, or None for no latency constraint.
        score_range: ``(lo, hi)`` that normalise its predicted score to ``(mu - lo) / (hi - lo)``
            (the service uses the range of the task's measured scores).
    """

    task: str
    weight: float = 1.0
    latency_budget_ms: float | None = None
    score_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"task {self.task!r}: weight must be a positive number, got {self.weight}")
        budget = self.latency_budget_ms
        if budget is not None and not (math.isfinite(budget) and budget > 0):
            raise ValueError(f"task {self.task!r}: latency_budget_ms must be positive, got {budget}")

    @property
    def scale(self) -> float:
        lo, hi = self.score_range
        return hi - lo if hi > lo else 1.0


class NoFeasibleDeploymentError(UserError):
    """No deployment meets every budget and the memory cap; the message names what was closest.

    Attributes:
        budget_misses: One phrase per task the closest deployment found misses the budget of.
        params: (its parameter count, the cap) when it is over ``max_params``, else None.
    """

    def __init__(self, budget_misses: list[str], params: tuple[int, int] | None) -> None:
        self.budget_misses = budget_misses
        self.params = params
        super().__init__(self.describe())

    def describe(self, cap: Callable[[int, int], str] | None = None) -> str:
        """The message, the memory part phrased by ``cap(params, max_params)`` (default: in
        parameters against ``max_params``), so a caller can name the cap its user gave."""
        misses = list(self.budget_misses)
        if self.params is not None:
            held, limit = self.params
            default = f"it holds {held:,} parameters against max_params {limit:,}"
            misses.append(cap(held, limit) if cap else default)
        return "no deployment meets every budget at this confidence; the closest found: " + "; ".join(misses)


@dataclass(frozen=True)
class TaskAnswer:
    """One task's part of a :class:`DeploymentAnswer` (predictions of its path).

    Attributes:
        task: Task name.
        subnet: Its path.
        score, score_std: Predicted score mean and standard deviation.
        normalised_score: ``(score - lo) / (hi - lo)`` of its :class:`TaskGoal`.
        latency_ms, latency_std: Predicted latency of the task (its path on separate inputs; the
            joint forward of every task on a shared input).
        p_feasible: ``P(latency <= budget)``, 1 without a budget.
    """

    task: str
    subnet: Subnet
    score: float
    score_std: float
    normalised_score: float
    latency_ms: float
    latency_std: float
    p_feasible: float


@dataclass(frozen=True)
class DeploymentAnswer:
    """The best deployment found.

    Attributes:
        deployment: The tasks' paths.
        tasks: Per-task predictions, in query order.
        objective: Weighted sum of the normalised predicted scores.
        params: Parameter count of the deployment (shared weights once).
        method: ``exact`` (every combination compared) or ``evolution``.
        evaluations: Deployments evaluated.
        elapsed_s: Seconds the search took.
    """

    deployment: Deployment
    tasks: list[TaskAnswer]
    objective: float
    params: int
    method: Literal["exact", "evolution"]
    evaluations: int
    elapsed_s: float


@dataclass
class _Evaluated:
    """Predictions of ``n`` deployments (arrays ``n x T`` unless noted)."""

    codes: np.ndarray  # n x T x max_depth x n_dims
    score: np.ndarray
    score_std: np.ndarray
    latency: np.ndarray
    latency_std: np.ndarray
    params: np.ndarray  # n
    objective: np.ndarray  # n
    violation: np.ndarray  # n; 0 when feasible

    def take(self, index: np.ndarray) -> _Evaluated:
        return _Evaluated(*(getattr(self, f)[index] for f in self.__dataclass_fields__))

    @staticmethod
    def concat(parts: Sequence[_Evaluated]) -> _Evaluated:
        fields = _Evaluated.__dataclass_fields__
        return _Evaluated(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))

    def order(self) -> np.ndarray:
        """Best first: feasible by objective, then infeasible by violation (Deb's rules)."""
        return np.lexsort((-self.objective, self.violation))


class _Problem:
    """Evaluates candidate deployments: predictions per task, memory, objective and violation."""

    def __init__(
        self,
        space: UFOSpace,
        goals: Sequence[TaskGoal],
        score_models: Mapping[str, Predictor],
        latency_model: Predictor,
        confidence: float,
        max_params: int | None,
        input: InputMode,
        shared_latency: SharedLatency | None,
    ) -> None:
        self.space, self.goals = space, list(goals)
        self.tasks = [g.task for g in goals]
        self.score_models, self.latency_model = score_models, latency_model
        self.z = float(ndtri(confidence))
        self.max_params, self.input, self.shared_latency = max_params, input, shared_latency
        self.budgets = np.array(
            [np.inf if g.latency_budget_ms is None else g.latency_budget_ms for g in goals]
        )
        self.weights = np.array([g.weight for g in goals])
        self.lo = np.array([g.score_range[0] for g in goals])
        self.scale = np.array([g.scale for g in goals])
        self.evaluations = 0

    def predict(self, model: Predictor, codes: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
        """``model``'s predictions for each distinct row of ``codes`` (``m x max_depth x n_dims``)."""
        flat = codes.reshape(len(codes), -1)
        unique, inverse = np.unique(flat, axis=0, return_inverse=True)
        rows = unique.reshape(-1, *codes.shape[1:])
        if isinstance(model, EncodedPredictor):
            predicted = model.predict_encoded(model.encode_choices(rows))
        else:
            depths = (rows[:, :, 0] >= 0).sum(1)
            predicted = model.predict(self.space.from_choice_matrix(rows, depths))
        mean, std = as_prediction(predicted, len(rows), what)
        inverse = inverse.reshape(-1)
        return mean[inverse], std[inverse]

    def task_predictions(self, paths: np.ndarray, t: int) -> tuple[np.ndarray, ...]:
        """Score mean/std and latency mean/std of paths ``m x max_depth x n_dims`` for task ``t``."""
        score = self.predict(self.score_models[self.tasks[t]], paths, f"score of {self.tasks[t]!r}")
        bounded = bounded_score(*score, self.space.score_bounds)
        return *bounded, *self.predict(self.latency_model, paths, "latency")

    def evaluate(self, codes: np.ndarray) -> _Evaluated:
        n, tasks = codes.shape[:2]
        self.evaluations += n
        # A task whose ffn_path is fixed takes the nearest path it may (the others pass unchanged).
        codes = np.stack([self.space.restrict_to_task(codes[:, t], a) for t, a in enumerate(self.tasks)], 1)
        columns = [self.task_predictions(codes[:, t], t) for t in range(tasks)]
        score, score_std, latency, latency_std = (np.stack([c[k] for c in columns], 1) for k in range(4))
        return self.finish(codes, score, score_std, latency, latency_std)

    def finish(
        self,
        codes: np.ndarray,
        score: np.ndarray,
        score_std: np.ndarray,
        latency: np.ndarray,
        latency_std: np.ndarray,
    ) -> _Evaluated:
        """Objective and violation of deployments whose paths are predicted (arrays ``n x T``)."""
        if self.input == "shared":
            if self.shared_latency is None:
                raise ValueError("a shared-input query needs a shared-latency model")
            joint, joint_std = self.shared_latency(codes, latency, latency_std)
            latency = np.repeat(np.asarray(joint, dtype=float)[:, None], len(self.tasks), 1)
            latency_std = np.repeat(np.asarray(joint_std, dtype=float)[:, None], len(self.tasks), 1)
        params = deployment_choice_params(self.space, self.tasks, codes)
        objective = ((score - self.lo) / self.scale * self.weights).sum(1)
        excess = np.maximum(latency + self.z * latency_std - self.budgets, 0.0) / np.where(
            np.isfinite(self.budgets), self.budgets, 1.0
        )
        violation = excess.sum(1)
        if self.max_params is not None:
            violation = violation + np.maximum(params - self.max_params, 0) / self.max_params
        return _Evaluated(codes, score, score_std, latency, latency_std, params, objective, violation)


# ---------------------------------------------------------------------- exact
def _exact(problem: _Problem, limit: int) -> _Evaluated | None:
    """Every combination of the tasks' paths, when there are at most ``limit``; else None.

    On separate inputs a path that misses its own task's budget cannot be in a feasible
    deployment, so those are dropped before combining (unless nothing would be left).
    """
    space = problem.space
    if space.cardinality > limit:
        return None
    every, _ = enumerate_codes(space, limit)
    # Each task's own subnets: all of them, unless the task's ffn_path is fixed.
    own = [np.unique(space.restrict_to_task(every, task), axis=0) for task in problem.tasks]
    per_task = [problem.task_predictions(paths, t) for t, paths in enumerate(own)]
    keep = []
    for t, (_, _, latency, latency_std) in enumerate(per_task):
        upper = latency + problem.z * latency_std
        index = np.arange(len(own[t]))
        if problem.input == "separate":
            fits = np.flatnonzero(upper <= problem.budgets[t])
            index = fits if len(fits) else index[np.argsort(upper)[:1]]
        keep.append(index)
    if math.prod(len(k) for k in keep) > limit:
        return None
    problem.evaluations += math.prod(len(k) for k in keep)
    grids = np.meshgrid(*keep, indexing="ij")
    choice = np.stack([g.reshape(-1) for g in grids], 1)  # combinations x T
    tasks = range(len(keep))
    best: list[_Evaluated] = []
    for lo in range(0, len(choice), 100_000):
        block = choice[lo : lo + 100_000]
        codes = np.stack([own[t][block[:, t]] for t in tasks], 1)
        stats = [np.stack([per_task[t][k][block[:, t]] for t in tasks], 1) for k in range(4)]
        evaluated = problem.finish(codes, *stats)
        best.append(evaluated.take(evaluated.order()[:1]))
    merged = _Evaluated.concat(best)
    return merged.take(merged.order()[:1])


# ---------------------------------------------------------------------- evolutionary
def _random_paths(space: UFOSpace, n: int, rng: np.random.Generator) -> np.ndarray:
    subs = space.sample(min(n, space.cardinality), seed=int(rng.integers(1 << 31)))
    if len(subs) < n:
        subs += [subs[int(i)] for i in rng.integers(0, len(subs), n - len(subs))]
    return space.choice_matrix(subs)


def _initial(
    problem: _Problem, seeds: Mapping[str, Sequence[Subnet]], size: int, rng: np.random.Generator
) -> np.ndarray:
    """Half the population from the tasks' seeds (and aligned: every task on one seed's path),
    the rest random."""
    space, tasks = problem.space, problem.tasks
    pool = {t: space.choice_matrix(list(seeds.get(t, ()))) for t in tasks}
    every = np.concatenate([p for p in pool.values() if len(p)] or [_random_paths(space, 1, rng)])
    population = _random_paths(space, size * len(tasks), rng).reshape(size, len(tasks), *every.shape[1:])
    seeded = size // 2
    for i in range(seeded):
        if i % 3 == 2:  # aligned: one path for all tasks, so they share every layer
            population[i] = every[rng.integers(len(every))]
            continue
        for t, task in enumerate(tasks):
            if len(pool[task]):
                population[i, t] = pool[task][rng.integers(len(pool[task]))]
    return population


def _mutate(space: UFOSpace, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Children of ``codes`` (``n x T x max_depth x n_dims``): per child one of a layer change,
    a depth change, or one task taking over (a prefix of) another task's path."""
    children = codes.copy()
    n, tasks, max_depth, n_dims = codes.shape
    sizes = [len(d) for d in space.dimensions]
    for i in range(n):
        t = int(rng.integers(tasks))
        path = children[i, t]
        depth = int((path[:, 0] >= 0).sum())
        move = rng.random()
        if move < 0.6:
            for _ in range(1 + int(rng.integers(2))):
                layer, dim = int(rng.integers(depth)), int(rng.integers(n_dims))
                path[layer, dim] = rng.integers(sizes[dim])
        elif move < 0.75 and len(space.depths) > 1:
            new = int(rng.choice([d for d in space.depths if d != depth]))
            if new > depth:
                path[depth:new] = path[depth - 1]
            else:
                path[new:] = -1
        elif tasks > 1:
            other = children[i, (t + 1 + int(rng.integers(tasks - 1))) % tasks]
            other_depth = int((other[:, 0] >= 0).sum())
            if rng.random() < 0.5:
                path[:] = other
            else:
                cut = int(rng.integers(1, min(depth, other_depth) + 1))
                path[:cut] = other[:cut]
    return children


def _crossover(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per child and task, the path of parent ``a`` or ``b`` (task-level uniform crossover)."""
    pick = rng.random(a.shape[:2]) < 0.5
    return np.where(pick[:, :, None, None], a, b)


def _tournament(evaluated: _Evaluated, n: int, rng: np.random.Generator) -> np.ndarray:
    rank = np.empty(len(evaluated.objective), dtype=np.int64)
    rank[evaluated.order()] = np.arange(len(rank))
    a, b = rng.integers(len(rank), size=(2, n))
    result: np.ndarray = np.where(rank[a] < rank[b], a, b)
    return result


def _evolve(
    problem: _Problem,
    seeds: Mapping[str, Sequence[Subnet]],
    rng: np.random.Generator,
    population_size: int,
    max_evaluations: int,
    deadline: float,
    patience: int,
) -> _Evaluated:
    space = problem.space
    population = problem.evaluate(_initial(problem, seeds, population_size, rng))
    population = population.take(population.order())
    best, stalled = None, 0
    while problem.evaluations < max_evaluations and time.perf_counter() < deadline and stalled < patience:
        parents = _tournament(population, 2 * population_size, rng)
        a, b = population.codes[parents[:population_size]], population.codes[parents[population_size:]]
        children = _mutate(space, _crossover(a, b, rng), rng)
        merged = _Evaluated.concat([population, problem.evaluate(children)])
        # Keep one copy of each deployment, best first.
        flat = merged.codes.reshape(len(merged.codes), -1)
        order = merged.order()
        _, first = np.unique(flat[order], axis=0, return_index=True)
        population = merged.take(order[np.sort(first)][:population_size])
        top = (float(population.violation[0]), -float(population.objective[0]))
        stalled = stalled + 1 if best is not None and top >= best else 0
        best = top if best is None or top < best else best
    return population.take(np.arange(1))


def solve_deployment(
    space: UFOSpace,
    goals: Sequence[TaskGoal],
    score_models: Mapping[str, Predictor],
    latency_model: Predictor,
    *,
    confidence: float = 0.9,
    max_params: int | None = None,
    input: InputMode = "separate",
    shared_latency: SharedLatency | None = None,
    seeds: Mapping[str, Sequence[Subnet]] | None = None,
    exact_limit: int = 2_000_000,
    population_size: int = 128,
    max_evaluations: int = 30_000,
    time_limit_s: float | None = 5.0,
    patience: int = 40,
    seed: int = 0,
    torch_threads: int | None = 1,
) -> DeploymentAnswer:
    """The deployment that maximises the weighted normalised predicted scores under the budgets.

    Args:
        space: The UFO space of every path.
        goals: The tasks, with weights, budgets and score ranges (distinct tasks).
        score_models: Task -> fitted score predictor (higher is better).
        latency_model: The device's fitted path-latency predictor (milliseconds).
        confidence: Required ``P(latency <= budget)`` of every task, in (0, 1).
        max_params: Most parameters the deployment may hold (shared weights counted once).
        input: ``separate`` (each task its own image: its latency is its path's) or ``shared``
            (one image: every task waits for the one joint forward, predicted by
            ``shared_latency``).
        shared_latency: The joint-forward latency model; required for ``shared``.
        seeds: Task -> good paths to start the search from (e.g. the candidates of its front).
        exact_limit: Most combinations compared exhaustively; larger problems are searched.
        population_size: Deployments per generation of the evolutionary search.
        max_evaluations: Most deployments the search evaluates.
        time_limit_s: Wall-clock limit of the search (checked between generations).
        patience: Generations without improvement of the best deployment before stopping.
        seed: Seed of the search.
        torch_threads: torch intra-op threads while predicting (see ``compute_front``).

    Raises:
        ValueError: On an empty or repeated task list, a task without a score model, bad
            weights, budgets or confidence, or a shared input without ``shared_latency``.
        NoFeasibleDeploymentError: If the best deployment found misses a budget or the memory cap.
    """
    confidence = check_confidence(confidence)
    tasks = [g.task for g in goals]
    if not tasks or len(set(tasks)) != len(tasks):
        raise ValueError(f"a deployment query names at least one task, each once; got {tasks}")
    missing = [t for t in tasks if t not in score_models]
    if missing:
        raise ValueError(f"no score model for task(s) {missing}")
    if max_params is not None and max_params < 1:
        raise ValueError(f"max_params must be positive, got {max_params}")
    if input == "shared" and shared_latency is None:
        raise ValueError("a shared-input query needs a shared-latency model")
    problem = _Problem(
        space, goals, score_models, latency_model, confidence, max_params, input, shared_latency
    )
    start = time.perf_counter()
    deadline = start + (time_limit_s if time_limit_s is not None else math.inf)
    method: Literal["exact", "evolution"]
    with limited_torch_threads(torch_threads):
        best = _exact(problem, exact_limit) if exact_limit > 0 else None
        method = "exact"
        if best is None:
            rng = np.random.default_rng(seed)
            best = _evolve(problem, seeds or {}, rng, population_size, max_evaluations, deadline, patience)
            method = "evolution"
    if best.violation[0] > 0:
        raise _closest(problem, best)
    return _answer(problem, best, method, time.perf_counter() - start)


def _closest(problem: _Problem, best: _Evaluated) -> NoFeasibleDeploymentError:
    """What the least-violating deployment found misses."""
    misses = []
    for t, goal in enumerate(problem.goals):
        upper = best.latency[0, t] + problem.z * best.latency_std[0, t]
        if upper > problem.budgets[t]:
            mean, std = best.latency[0, t], best.latency_std[0, t]
            misses.append(
                f"task {goal.task!r} is predicted at {mean:.4g} ± {std:.2g} ms "
                f"against its budget of {problem.budgets[t]:g} ms"
            )
    over = problem.max_params is not None and best.params[0] > problem.max_params
    params = (int(best.params[0]), problem.max_params) if over and problem.max_params is not None else None
    return NoFeasibleDeploymentError(misses, params)


def _answer(
    problem: _Problem, best: _Evaluated, method: Literal["exact", "evolution"], elapsed: float
) -> DeploymentAnswer:
    space = problem.space
    codes = best.codes[0]
    depths = (codes[:, :, 0] >= 0).sum(1)
    subnets = space.from_choice_matrix(codes, depths)
    answers = []
    for t, goal in enumerate(problem.goals):
        mean, std, budget = best.latency[0, t], best.latency_std[0, t], problem.budgets[t]
        if not np.isfinite(budget):
            p = 1.0
        else:
            p = float(ndtr((budget - mean) / std)) if std > 0 else float(mean <= budget)
        answers.append(
            TaskAnswer(
                task=goal.task,
                subnet=subnets[t],
                score=float(best.score[0, t]),
                score_std=float(best.score_std[0, t]),
                normalised_score=float((best.score[0, t] - goal.score_range[0]) / goal.scale),
                latency_ms=float(mean),
                latency_std=float(std),
                p_feasible=p,
            )
        )
    return DeploymentAnswer(
        deployment=Deployment(space.name, tuple((a.task, a.subnet) for a in answers)),
        tasks=answers,
        objective=float(best.objective[0]),
        params=int(best.params[0]),
        method=method,
        evaluations=problem.evaluations,
        elapsed_s=elapsed,
    )
