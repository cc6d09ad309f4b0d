"""Fronts from choice matrices: direct encodings, the predictor fast path and warm starts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import predictors.experimental  # noqa: F401  (registers ridge-summary)
from predictors import create_predictor, encode_choices, encode_subnets
from search_service.search import compute_front, hypervolume
from supernet import get_space, list_spaces


def _reference_encoding(space, subnets, kind):
    """The per-subnet encoding :meth:`SearchSpace.encode` documents, written out by loops."""
    rows = []
    for sub in subnets:
        row: list[float] = []
        for layer in range(space.max_depth):
            active = layer < sub.depth
            if kind == "onehot":
                for k, dim in enumerate(space.dimensions):
                    block = [0.0] * (len(dim) + (1 if space.variable_depth else 0))
                    block[sub.layers[layer][k] if active else len(dim)] = 1.0
                    row += block
            else:
                row += [
                    sub.layers[layer][k] / max(len(d) - 1, 1) if active else 0.0
                    for k, d in enumerate(space.dimensions)
                ]
                if space.variable_depth:
                    row.append(1.0 if active else 0.0)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("name", list_spaces())
def test_encode_choices_equals_the_per_subnet_encoding(name):
    space = get_space(name)
    subnets = space.sample(300, seed=7)
    codes = space.choice_matrix(subnets)
    for kind in ("onehot", "ordinal"):
        expected = _reference_encoding(space, subnets, kind)
        assert torch.equal(space.encode_choices(codes, kind), expected)
        assert torch.equal(space.encode(subnets, kind), expected)
        assert space.encode_choices(codes[:0], kind).shape == (0, space.encoding_dim(kind))
    assert torch.equal(
        encode_choices(space, codes, "onehot+ordinal"), encode_subnets(space, subnets, "onehot+ordinal")
    )
    # Predictors encode matrices like subnets, also those with their own encode (ridge-summary).
    for predictor in ("gpnas", "ridge-summary"):
        model = create_predictor(predictor, space)
        assert torch.equal(model.encode_choices(codes), model.encode(subnets))
    assert space.from_choice_matrix(codes, space.validate_choices(codes)) == subnets


def test_validate_choices_names_the_bad_row():
    space = get_space("ufo-track2")
    codes = space.choice_matrix(space.sample(4, seed=0))
    assert space.validate_choices(codes).tolist() == [int((row[:, 0] >= 0).sum()) for row in codes]
    # reason -> (row, index within the row, value written there)
    cases = {
        "out of range": (2, (0, 0), 3),
        "partly absent": (1, (0, 1), -1),
        "absent layer precedes": (3, (0,), -1),
        "depth is not one of": (0, (slice(9, None),), -1),
    }
    for reason, (row, index, value) in cases.items():
        bad = codes.copy()
        bad[row][index] = value
        with pytest.raises(ValueError, match=f"row {row} .*{reason}"):
            space.validate_choices(bad)
    depths = space.validate_choices(codes)
    depths[1] = 10 if depths[1] != 10 else 11
    with pytest.raises(ValueError, match="row 1 .*differs"):
        space.validate_choices(codes, depths)
    with pytest.raises(ValueError, match="integer"):
        space.validate_choices(codes.astype(float))
    # from_choice_matrix ignores entries at or beyond the given depth, as before.
    filled = np.where(codes < 0, 0, codes)
    assert [s.depth for s in space.from_choice_matrix(filled, [10] * 4)] == [10] * 4


class _SubnetsOnly:
    """Hides a predictor's fast path: the search must build subnets and call predict()."""

    def __init__(self, model):
        self.model = model

    def predict(self, subnets):
        return self.model.predict(subnets)


@pytest.fixture(scope="module")
def nb201_latency_gps(nb201, nb201_models):
    """GP-NAS latency models of nasbench201 on pixel2: on 40 measured cells, and on 10 more."""
    table = nb201_models[1].table  # the measured pixel2 latencies
    train = nb201.sample(50, seed=0)
    y = torch.tensor([table[s] for s in train])
    old = create_predictor("gpnas", nb201, metric="latency_ms", maxiter=10).fit(train[:40], y[:40])
    new = create_predictor("gpnas", nb201, metric="latency_ms", maxiter=10).fit(train, y)
    return old, new


def _front(result):
    return np.array([[p.score, p.latency_ms] for p in result.points])


def test_fast_path_gives_the_same_front_and_restores_torch_threads(nb201, nb201_models, nb201_latency_gps):
    score_model, (latency_model, _) = nb201_models[0], nb201_latency_gps
    options = {"seed": 4, "exact_limit": 0, "max_evaluations": 600, "population_size": 100}
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the search runs on one thread, then puts this back
    try:
        fast = compute_front(nb201, score_model, latency_model, **options)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    slow = compute_front(nb201, score_model, _SubnetsOnly(latency_model), torch_threads=None, **options)
    assert fast.points == slow.points and fast.candidates.archs == slow.candidates.archs
    assert fast.evaluations == slow.evaluations == 600


def test_warm_start_after_a_small_update_nearly_matches_a_full_run(nb201, nb201_models, nb201_latency_gps):
    score_model, (old, new) = nb201_models[0], nb201_latency_gps
    options = {"exact_limit": 0, "population_size": 100}
    previous = compute_front(nb201, score_model, old, seed=0, max_evaluations=1500, **options)
    full = compute_front(nb201, score_model, new, seed=2, max_evaluations=1500, **options)
    warm = compute_front(nb201, score_model, new, seed=1, max_evaluations=200, warm_start=previous, **options)
    cold = compute_front(nb201, score_model, new, seed=1, max_evaluations=200, **options)
    union = np.concatenate([_front(r) for r in (full, warm, cold)])
    ref = (union[:, 0].min(), union[:, 1].max())
    ratio = {
        name: hypervolume(_front(r), ref) / hypervolume(_front(full), ref)
        for name, r in (("warm", warm), ("cold", cold))
    }
    assert warm.evaluations == 200
    assert ratio["warm"] >= 0.99, ratio
    assert ratio["warm"] > ratio["cold"], ratio
    # The previous front's subnets were re-predicted by the new model, not copied.
    new_latency = new.predict([p.subnet for p in previous.points])[0].numpy()
    warm_latency = {p.arch: p.latency_ms for p in warm.candidates.points()}
    assert set(warm_latency) & {p.arch for p in previous.points}
    for point, latency in zip(previous.points, new_latency, strict=True):
        if point.arch in warm_latency:
            assert warm_latency[point.arch] == pytest.approx(float(latency))


def test_warm_start_must_be_of_the_same_space(track2_models, nb201_front):
    with pytest.raises(ValueError, match="warm_start is a front of space 'nasbench201'"):
        compute_front(get_space("ufo-track2"), *track2_models, max_evaluations=50, warm_start=nb201_front)


@pytest.fixture(scope="module")
def nb201_front(nb201, nb201_models):
    return compute_front(nb201, *nb201_models, exact_limit=0, max_evaluations=100, population_size=50)
