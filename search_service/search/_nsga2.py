"""NSGA-II over a search space's choice matrices.

Subnets are handled as ``n x max_depth x n_dims`` integer arrays (``-1`` for layers beyond the
depth) so that crossover and mutation are vectorised numpy; the objective callback turns them
into whatever its predictors need. Every distinct subnet is evaluated at most once, and the
whole archive of evaluated subnets is returned: the caller takes fronts from the archive, not
from the last population.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from supernet import SearchSpace

from ._pareto import crowding_distance, non_dominated_sort

Objective = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(codes n x max_depth x n_dims, depths n) -> objectives n x m`` (every column maximised)."""


class Evolver(Protocol):
    """An evolutionary search with :func:`evolve`'s signature."""

    def __call__(
        self,
        space: SearchSpace,
        objective: Objective,
        *,
        config: EvolutionConfig | None = None,
        seed: int = 0,
        initial: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Archive:
        """Search ``space`` maximising ``objective``; the archive of everything evaluated."""
        ...


@dataclass(frozen=True)
class EvolutionConfig:
    """Settings of :func:`evolve`.

    Attributes:
        population_size: Survivors per generation (and offspring per generation).
        max_evaluations: Stop once this many distinct subnets have been evaluated.
        time_limit_s: Stop after the generation that crosses this wall-clock limit (None: no limit).
        max_generations: Stop after this many generations (None: no limit).
        crossover_prob: Probability that a child mixes its two parents layer by layer.
        mutation_rate: Per-choice mutation probability; None means ``1 / (active choices)``.
        depth_mutation_prob: Probability that a child's depth is redrawn (variable-depth spaces).
        homogeneous_seeds: Seed the first population with subnets whose layers all share one
            setting, at the smallest and largest depth (this covers the smallest and largest subnets).
    """

    population_size: int = 256
    max_evaluations: int = 20_000
    time_limit_s: float | None = None
    max_generations: int | None = None
    crossover_prob: float = 0.9
    mutation_rate: float | None = None
    depth_mutation_prob: float = 0.1
    homogeneous_seeds: bool = True

    def __post_init__(self) -> None:
        if self.population_size < 4:
            raise ValueError(f"population_size must be >= 4, got {self.population_size}")
        if self.max_evaluations < self.population_size:
            raise ValueError(
                f"max_evaluations ({self.max_evaluations}) must be >= "
                f"population_size ({self.population_size})"
            )
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise ValueError(f"time_limit_s must be positive, got {self.time_limit_s}")
        if not 0.0 <= self.crossover_prob <= 1.0 or not 0.0 <= self.depth_mutation_prob <= 1.0:
            raise ValueError("crossover_prob and depth_mutation_prob must lie in [0, 1]")
        if self.mutation_rate is not None and not 0.0 < self.mutation_rate <= 1.0:
            raise ValueError(f"mutation_rate must lie in (0, 1], got {self.mutation_rate}")


@dataclass
class Archive:
    """Every subnet :func:`evolve` evaluated, in evaluation order.

    Attributes:
        codes: Choice indices, shape ``n x max_depth x n_dims`` (-1 beyond the depth).
        depths: Depths, shape ``n``.
        objectives: Objective values, shape ``n x m`` (maximised).
        generations: Generations run after the initial population.
        elapsed_s: Wall-clock seconds spent.
    """

    codes: np.ndarray
    depths: np.ndarray
    objectives: np.ndarray
    generations: int
    elapsed_s: float


def random_codes(space: SearchSpace, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform draws from the space (depth weighted by its share of the space).

    Returns:
        ``(codes n x max_depth x n_dims, depths n)``; draws may repeat.
    """
    sizes = np.array([len(d) for d in space.dimensions])
    depths = np.asarray(space.depths)[rng.choice(len(space.depths), size=n, p=space.depth_probabilities())]
    codes = np.floor(rng.random((n, space.max_depth, len(sizes))) * sizes).astype(np.int64)
    codes[np.arange(space.max_depth)[None, :] >= depths[:, None]] = -1
    return codes, depths


def homogeneous_codes(space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
    """Subnets whose active layers all share one setting, at the smallest and largest depth.

    Returns:
        ``(codes n x max_depth x n_dims, depths n)`` with ``n = settings x (1 or 2 depths)``.
    """
    grids = np.meshgrid(*[np.arange(len(d)) for d in space.dimensions], indexing="ij")
    settings = np.stack([g.ravel() for g in grids], axis=1)  # settings x n_dims
    depth_choices = sorted({space.depths[0], space.depths[-1]})
    codes, depths = [], []
    for depth in depth_choices:
        block = np.repeat(settings[:, None, :], space.max_depth, axis=1)
        block[:, depth:] = -1
        codes.append(block)
        depths.append(np.full(len(settings), depth))
    return np.concatenate(codes), np.concatenate(depths)


class _Evolution:
    def __init__(
        self,
        space: SearchSpace,
        objective: Objective,
        config: EvolutionConfig,
        seed: int,
        initial: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.space, self.objective, self.config = space, objective, config
        self.initial = initial
        self.rng = np.random.default_rng(seed)
        self.sizes = np.array([len(d) for d in space.dimensions])
        self.allowed_depths = np.asarray(space.depths)
        self.seen: set[bytes] = set()
        self.codes: list[np.ndarray] = []
        self.depths: list[np.ndarray] = []
        self.objectives: list[np.ndarray] = []
        self.n_evaluated = 0

    # -------------------------------------------------------------- bookkeeping
    def _new_only(self, codes: np.ndarray, depths: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Drop rows already evaluated (or repeated within the batch); keep at most ``limit``."""
        flat = codes.reshape(len(codes), -1).astype(np.int16)
        keep = []
        for i, row in enumerate(flat):
            key = row.tobytes()
            if key not in self.seen:
                self.seen.add(key)
                keep.append(i)
                if len(keep) == limit:
                    break
        return codes[keep], depths[keep]

    def _evaluate(self, codes: np.ndarray, depths: np.ndarray) -> np.ndarray:
        Y = np.asarray(self.objective(codes, depths), dtype=np.float64)
        if Y.ndim != 2 or len(Y) != len(codes) or not np.isfinite(Y).all():
            raise ValueError(
                f"objective returned shape {Y.shape} or non-finite values for {len(codes)} subnets"
            )
        self.codes.append(codes)
        self.depths.append(depths)
        self.objectives.append(Y)
        self.n_evaluated += len(codes)
        return Y

    # -------------------------------------------------------------- variation
    def _tournament(self, ranks: np.ndarray, crowding: np.ndarray, n: int) -> np.ndarray:
        a = self.rng.integers(0, len(ranks), size=n)
        b = self.rng.integers(0, len(ranks), size=n)
        a_wins = (ranks[a] < ranks[b]) | ((ranks[a] == ranks[b]) & (crowding[a] >= crowding[b]))
        return np.where(a_wins, a, b)

    def _offspring(
        self, codes: np.ndarray, depths: np.ndarray, ranks: np.ndarray, crowding: np.ndarray, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        rng, cfg, max_depth = self.rng, self.config, self.space.max_depth
        pa = self._tournament(ranks, crowding, n)
        pb = self._tournament(ranks, crowding, n)
        A, B = codes[pa], codes[pb]
        cross = rng.random(n) < cfg.crossover_prob
        # Uniform crossover of whole layers; a child's depth is one parent's depth, and a layer
        # taken from a parent that lacks it comes from the other parent instead.
        take_b = (rng.random((n, max_depth)) < 0.5) & cross[:, None]
        child = np.where(take_b[..., None], B, A)
        absent = child[..., 0] < 0
        child = np.where(absent[..., None], np.where(take_b[..., None], A, B), child)
        child_depth = np.where(cross & (rng.random(n) < 0.5), depths[pb], depths[pa])

        # Depth mutation: redraw among the other allowed depths; new layers are drawn below.
        if len(self.allowed_depths) > 1:
            redraw = rng.random(n) < cfg.depth_mutation_prob
            if redraw.any():
                idx = np.searchsorted(self.allowed_depths, child_depth[redraw])
                shift = rng.integers(1, len(self.allowed_depths), size=int(redraw.sum()))
                child_depth[redraw] = self.allowed_depths[(idx + shift) % len(self.allowed_depths)]
        beyond = np.arange(max_depth)[None, :] >= child_depth[:, None]

        # Per-choice mutation to a different value of the same dimension.
        active_choices = child_depth * len(self.sizes)
        rate = cfg.mutation_rate if cfg.mutation_rate is not None else 1.0 / np.maximum(active_choices, 1)
        rate = np.broadcast_to(np.asarray(rate, dtype=float).reshape(-1, 1, 1), child.shape)
        flip = rng.random(child.shape) < rate
        shift = np.floor(rng.random(child.shape) * (self.sizes - 1)).astype(np.int64) + 1
        child = np.where(flip & (child >= 0), (child + shift) % self.sizes, child)

        # Layers that became active (depth grew, or both parents lacked them) get random choices.
        fresh = np.floor(rng.random(child.shape) * self.sizes).astype(np.int64)
        child = np.where((child < 0) & ~beyond[..., None], fresh, child)
        child[beyond] = -1
        return child, child_depth

    @staticmethod
    def _survivors(Y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ranks = non_dominated_sort(Y)
        crowding = crowding_distance(Y, ranks)
        order = np.lexsort((-crowding, ranks))[:n]
        return order, ranks[order], crowding[order]

    def _seeds(self, n_pop: int) -> tuple[np.ndarray, np.ndarray]:
        """Seeds of the first population: the caller's (at most ``n_pop``, in their order), then
        homogeneous subnets (at most half a population, drawn at random if there are more)."""
        empty = (np.empty((0, self.space.max_depth, len(self.sizes)), np.int64), np.empty(0, np.int64))
        given_c, given_d = self.initial if self.initial is not None else empty
        given_c, given_d = np.asarray(given_c, np.int64)[:n_pop], np.asarray(given_d, np.int64)[:n_pop]
        homog_c, homog_d = homogeneous_codes(self.space) if self.config.homogeneous_seeds else empty
        if len(homog_c) > n_pop // 2:
            pick = self.rng.choice(len(homog_c), size=n_pop // 2, replace=False)
            homog_c, homog_d = homog_c[pick], homog_d[pick]
        return np.concatenate([given_c, homog_c]), np.concatenate([given_d, homog_d])

    # -------------------------------------------------------------- main loop
    def run(self) -> Archive:
        cfg, start = self.config, time.perf_counter()
        n_pop = cfg.population_size
        limit = min(cfg.max_evaluations, self.space.cardinality)

        seeds_c, seeds_d = self._seeds(n_pop)
        rand_c, rand_d = random_codes(self.space, 4 * n_pop, self.rng)
        pop_c, pop_d = self._new_only(
            np.concatenate([seeds_c, rand_c]), np.concatenate([seeds_d, rand_d]), min(n_pop, limit)
        )
        pop_y = self._evaluate(pop_c, pop_d)
        order, ranks, crowding = self._survivors(pop_y, n_pop)

        generations, stalls = 0, 0
        while self.n_evaluated < limit and stalls < 10:
            if cfg.max_generations is not None and generations >= cfg.max_generations:
                break
            if cfg.time_limit_s is not None and time.perf_counter() - start >= cfg.time_limit_s:
                break
            want = min(n_pop, limit - self.n_evaluated)
            child_c, child_d = self._offspring(pop_c, pop_d, ranks, crowding, 2 * want)
            child_c, child_d = self._new_only(child_c, child_d, want)
            if len(child_c) == 0:
                stalls += 1  # the neighbourhood of the population is exhausted
                continue
            stalls = 0
            child_y = self._evaluate(child_c, child_d)
            all_c = np.concatenate([pop_c, child_c])
            all_d = np.concatenate([pop_d, child_d])
            all_y = np.concatenate([pop_y, child_y])
            order, ranks, crowding = self._survivors(all_y, n_pop)
            pop_c, pop_d, pop_y = all_c[order], all_d[order], all_y[order]
            generations += 1

        return Archive(
            codes=np.concatenate(self.codes),
            depths=np.concatenate(self.depths),
            objectives=np.concatenate(self.objectives),
            generations=generations,
            elapsed_s=time.perf_counter() - start,
        )


def evolve(
    space: SearchSpace,
    objective: Objective,
    *,
    config: EvolutionConfig | None = None,
    seed: int = 0,
    initial: tuple[np.ndarray, np.ndarray] | None = None,
) -> Archive:
    """Run NSGA-II on ``space``, maximising every column of ``objective``.

    The first population holds homogeneous subnets (see :class:`EvolutionConfig`) and uniform
    draws; each generation breeds ``population_size`` new, never-seen children by binary
    tournaments on (front, crowding), layer-wise uniform crossover and per-choice and depth
    mutation, then keeps the best ``population_size`` of parents and children.

    Args:
        space: The search space.
        objective: Maps ``(codes, depths)`` of a batch to its ``n x m`` objectives (maximised).
        config: Budget and operator settings.
        seed: Seed of the random generator; equal seeds and inputs give equal archives.
        initial: Subnets to put first into the first population, as ``(codes m x max_depth x
            n_dims, depths m)`` (e.g. a previous front, for a warm start); at most
            ``population_size`` of them are used.

    Returns:
        The archive of every evaluated subnet.
    """
    return _Evolution(space, objective, config or EvolutionConfig(), seed, initial).run()
