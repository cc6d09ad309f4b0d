"""pymoo's NSGA-II over a search space's choice matrices, with the interface of ``evolve``.

For benchmarks/fronts.py, which compares it with the hand-written NSGA-II of
search_service/search/_nsga2.py on the same objective (pass it as ``compute_front(...,
evolver=...)``); pymoo is not a dependency of the package (``pip install pymoo``).

pymoo searches integer vectors ``[depth index, choice of (layer 0, dim 0), ...]``, the stock
pymoo recipe for discrete variables (integer random sampling, SBX and polynomial mutation with
rounding). Choices of layers beyond a vector's depth are kept as hidden genes (they come back if
the depth grows) and ignored when the vector is turned into a choice matrix. Every distinct
subnet is passed to the objective once; repeats (e.g. two vectors that differ only in hidden
genes) are answered from a cache and not counted as evaluations.
"""

from __future__ import annotations

import time

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.crossover import Crossover
from pymoo.core.problem import Problem
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.crossover.ux import UniformCrossover
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair

from search_service.search import Archive, EvolutionConfig, Objective, homogeneous_codes, random_codes
from supernet import SearchSpace


class _Recorder:
    """Calls the objective on never-seen subnets only and keeps the archive in evaluation order."""

    def __init__(self, space: SearchSpace, objective: Objective) -> None:
        self.space, self.objective = space, objective
        self.sizes = np.array([len(d) for d in space.dimensions])
        self.index: dict[bytes, int] = {}
        self.codes: list[np.ndarray] = []
        self.depths: list[np.ndarray] = []
        self.objectives: list[np.ndarray] = []
        self.all_objectives = np.empty((0, 0))

    def decode(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer vectors ``n x (1 + max_depth * n_dims)`` -> ``(codes, depths)``."""
        X = np.rint(X).astype(np.int64)
        depths = np.asarray(self.space.depths)[X[:, 0]]
        codes = X[:, 1:].reshape(len(X), self.space.max_depth, len(self.sizes)).copy()
        codes[np.arange(self.space.max_depth)[None, :] >= depths[:, None]] = -1
        return codes, depths

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Objectives ``n x m`` (maximised) of the vectors ``X``."""
        codes, depths = self.decode(X)
        keys = [row.tobytes() for row in codes.reshape(len(codes), -1).astype(np.int16)]
        fresh, pending = [], set()
        for i, key in enumerate(keys):
            if key not in self.index and key not in pending:
                pending.add(key)
                fresh.append(i)
        if fresh:
            Y = np.asarray(self.objective(codes[fresh], depths[fresh]), dtype=np.float64)
            base = sum(len(c) for c in self.codes)
            for offset, i in enumerate(fresh):
                self.index[keys[i]] = base + offset
            self.codes.append(codes[fresh])
            self.depths.append(depths[fresh])
            self.objectives.append(Y)
            self.all_objectives = np.concatenate(self.objectives)
        return self.all_objectives[[self.index[key] for key in keys]]

    @property
    def n_evaluated(self) -> int:
        return len(self.index)


class _Problem(Problem):
    def __init__(self, space: SearchSpace, recorder: _Recorder, n_obj: int) -> None:
        sizes = np.array([len(d) for d in space.dimensions])
        upper = np.concatenate([[len(space.depths) - 1], np.tile(sizes - 1, space.max_depth)])
        super().__init__(n_var=len(upper), n_obj=n_obj, xl=np.zeros(len(upper)), xu=upper, vtype=int)
        self.recorder = recorder

    def _evaluate(self, x: np.ndarray, out: dict, *args: object, **kwargs: object) -> None:
        out["F"] = -self.recorder(x)  # pymoo minimises


def _vectors(
    space: SearchSpace, codes: np.ndarray, depths: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Choice matrices as pymoo vectors; absent layers get random hidden genes."""
    sizes = np.array([len(d) for d in space.dimensions])
    filled = np.where(codes < 0, np.floor(rng.random(codes.shape) * sizes).astype(np.int64), codes)
    depth_index = np.searchsorted(np.asarray(space.depths), depths)
    return np.column_stack([depth_index, filled.reshape(len(codes), -1)]).astype(float)


def evolve_pymoo(
    space: SearchSpace,
    objective: Objective,
    *,
    config: EvolutionConfig | None = None,
    seed: int = 0,
    initial: tuple[np.ndarray, np.ndarray] | None = None,
    operators: str = "sbx",
) -> Archive:
    """``evolve``'s contract with pymoo's NSGA-II: population size, budget and time limit of
    ``config`` (the budget may be overshot by the last generation).

    Args:
        space: The search space.
        objective: ``(codes, depths) -> n x m`` objectives, maximised.
        config: Budget and population size.
        seed: Seed of pymoo and of the first population.
        initial: Seeds of the first population, ``(codes, depths)``.
        operators: ``sbx``: pymoo's recipe for integer variables (SBX with eta 15 and polynomial
            mutation with eta 20, both rounded); ``ux``: uniform crossover and polynomial mutation
            with eta 1 (wide jumps), which suits 3-valued choices better.

    The first population holds ``initial``, homogeneous subnets (as ``evolve`` seeds them) and
    uniform draws.
    """
    cfg = config or EvolutionConfig()
    start, rng = time.perf_counter(), np.random.default_rng(seed)
    n_pop = cfg.population_size
    limit = min(cfg.max_evaluations, space.cardinality)
    recorder = _Recorder(space, objective)
    seeds = [initial] if initial is not None else []
    if cfg.homogeneous_seeds:
        homog_c, homog_d = homogeneous_codes(space)
        pick = rng.permutation(len(homog_c))[: n_pop // 2]
        seeds.append((homog_c[pick], homog_d[pick]))
    seeds.append(random_codes(space, n_pop, rng))
    X0 = np.concatenate([_vectors(space, c, d, rng) for c, d in seeds])[:n_pop]
    # The first population, evaluated here to learn the number of objectives; pymoo's own
    # evaluation of it is then answered from the cache.
    problem = _Problem(space, recorder, n_obj=recorder(X0).shape[1])
    if operators == "sbx":
        crossover: Crossover = SBX(prob=cfg.crossover_prob, eta=15, vtype=float, repair=RoundingRepair())
        mutation = PM(eta=20, vtype=float, repair=RoundingRepair())
    elif operators == "ux":
        crossover = UniformCrossover(prob=cfg.crossover_prob)
        mutation = PM(eta=1, vtype=float, repair=RoundingRepair())
    else:
        raise ValueError(f"unknown operators {operators!r}; expected 'sbx' or 'ux'")
    algorithm = NSGA2(
        pop_size=n_pop, sampling=X0, crossover=crossover, mutation=mutation, eliminate_duplicates=True
    )
    algorithm.setup(problem, seed=seed, verbose=False)
    generations = 0
    while recorder.n_evaluated < limit:
        if cfg.time_limit_s is not None and time.perf_counter() - start >= cfg.time_limit_s:
            break
        if cfg.max_generations is not None and generations > cfg.max_generations:
            break
        population = algorithm.ask()
        algorithm.evaluator.eval(problem, population)
        algorithm.tell(infills=population)
        generations += 1
    return Archive(
        codes=np.concatenate(recorder.codes),
        depths=np.concatenate(recorder.depths),
        objectives=np.concatenate(recorder.objectives),
        generations=max(generations - 1, 0),
        elapsed_s=time.perf_counter() - start,
    )
