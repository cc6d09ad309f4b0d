"""Bounded fits: a wide code costs n x n systems, not d x d; every fit and selection stops at its
wall-time limit, and at a stop request (SIGTERM) in any thread."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch

from predictors import (
    StopRequestedError,
    TimeLimitError,
    clear_stop,
    create_predictor,
    create_strategy,
    request_stop,
    time_limit,
)
from predictors._multitask import _ColumnStats, posterior_coefficients
from supernet import space_from_definition

# Within the documented limits, 4 choices of each of 3 dimensions at every one of 40 layers: a
# one-hot code of 40 x (2 + 20 + 20) + depths = 1,720 columns, far more than rows.
WIDE: dict[str, Any] = {
    "name": "wide-vit",
    "tasks": [{"name": "face"}, {"name": "person"}],
    "depths": [38, 39, 40],
    "choices": {
        "ffn_path": ["shared", "task"],
        "mlp_ratio": [0.5 + 0.25 * i for i in range(20)],
        "num_heads": list(range(1, 21)),
    },
    "per_task": ["ffn"],
    "geometry": {"embed_dim": 240, "patch_size": 8, "image_size": 16, "head_dim": 4},
}


def _largest_factorised(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    cholesky, solve = torch.linalg.cholesky, torch.linalg.solve

    def recording_cholesky(A: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        sizes.append(A.shape[-1])
        return cholesky(A, *args, **kwargs)

    def recording_solve(A: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        sizes.append(A.shape[-1])
        return solve(A, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "cholesky", recording_cholesky)
    monkeypatch.setattr(torch.linalg, "solve", recording_solve)
    return sizes


def test_a_wide_code_is_fitted_through_row_sized_systems(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 25: one iteration of the multi-task fit on a 7,128-wide code took over 600 s and
    5.5 GB (a d x d Cholesky per column per step). With fewer rows than columns every system is
    n x n: here 60 rows against a 1,720-wide code."""
    space = space_from_definition(WIDE)
    subnets = space.sample(60, seed=0)
    X = space.encode(subnets)
    assert X.shape[1] > 1_500
    generator = torch.Generator().manual_seed(0)
    Y = X @ torch.rand(X.shape[1], 2, generator=generator, dtype=X.dtype) + 0.1 * torch.randn(
        60, 2, generator=generator, dtype=X.dtype
    )
    Y[40:, 0] = float("nan")  # the target measured on 40 subnets, the related task on 60
    sizes = _largest_factorised(monkeypatch)
    model = create_predictor("gpnas-multitask", space, metric="score").fit_multi(subnets, Y, 0)
    assert sizes and max(sizes) <= 60
    mean, std = model.predict(subnets[40:])
    assert torch.isfinite(mean).all() and (std > 0).all()


def test_the_row_form_equals_the_column_form() -> None:
    """Woodbury and Sylvester: the n x n marginal likelihood and posterior mean equal the d x d ones."""
    generator = torch.Generator().manual_seed(1)
    X = torch.randint(0, 2, (8, 12), generator=generator).double()
    z = torch.randn(8, generator=generator, dtype=torch.float64)
    Xc, zc = X - X.mean(0), z - z.mean()
    root = torch.rand(12, generator=generator, dtype=torch.float64) + 0.5
    ratio, log_noise = torch.tensor(0.7, dtype=torch.float64), torch.tensor(-1.0, dtype=torch.float64)
    rows = _ColumnStats(Xc, zc)
    assert rows.dual  # 8 rows < 12 columns
    columns = _ColumnStats(
        torch.cat([Xc, torch.zeros(12, 12, dtype=torch.float64)]),
        torch.cat([zc, torch.zeros(12, dtype=torch.float64)]),
    )
    assert not columns.dual  # zero rows add nothing but make the column form the cheaper one
    torch.testing.assert_close(
        rows.nll(root, ratio, log_noise), columns.nll(root, ratio, log_noise) - 0.5 * 12 * log_noise
    )
    weights = root**2
    b_rows, _, _ = posterior_coefficients(X, z, weights, 1.3, 0.2)
    A = root[:, None] * (Xc.T @ Xc) * root[None, :] + (0.2 / 1.3) * torch.eye(12, dtype=torch.float64)
    torch.testing.assert_close(b_rows, root * torch.linalg.solve(A, root * (Xc.T @ zc)))


def test_a_fit_past_its_time_limit_raises_naming_it() -> None:
    space = space_from_definition(WIDE)
    subnets = space.sample(30, seed=0)
    y = torch.rand(30, dtype=torch.float64)
    message = "the fit of latency/x ran past its time limit of 0 s"
    with pytest.raises(TimeLimitError, match=message), time_limit(0.0, "the fit of latency/x"):
        create_predictor("gpnas-multitask", space, metric="score").fit(subnets, y)
    with pytest.raises(TimeLimitError, match="ran past"), time_limit(0.0):
        create_predictor("gpnas", space, metric="latency_ms").fit(subnets, y + 1.0)
    # Without a limit the same fit runs.
    create_predictor("gpnas", space, metric="latency_ms").fit(subnets, y + 1.0)


def test_a_selection_past_its_time_limit_raises() -> None:
    space = space_from_definition(WIDE)
    with pytest.raises(TimeLimitError), time_limit(0.0, "the selection"):
        create_strategy("cost-stratified").select(space, None, [], 20, seed=0)


def test_a_stop_request_ends_work_in_every_thread() -> None:
    space = space_from_definition(WIDE)
    subnets = space.sample(30, seed=0)
    y = torch.rand(30, dtype=torch.float64) + 1.0
    raised: list[BaseException] = []

    def fit() -> None:
        try:
            create_predictor("gpnas", space, metric="latency_ms").fit(subnets, y)
        except BaseException as error:  # noqa: BLE001 - the test looks at what was raised
            raised.append(error)

    request_stop()
    try:
        thread = threading.Thread(target=fit)
        thread.start()
        thread.join(60)
    finally:
        clear_stop()
    assert len(raised) == 1 and isinstance(raised[0], StopRequestedError)
