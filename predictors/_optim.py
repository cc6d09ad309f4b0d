"""The L-BFGS minimisation that the small hand-written models of this package share."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch

from ._limits import check_time


def minimise_lbfgs(params: Sequence[torch.Tensor], loss: Callable[[], torch.Tensor], maxiter: int) -> None:
    """Minimise ``loss()`` over ``params`` (tensors with ``requires_grad``) in place, by L-BFGS with
    a strong-Wolfe line search.

    A wild line-search step can make a Cholesky inside ``loss`` fail: the parameters then keep
    the last good point instead of raising. Every evaluation checks the wall-time limit and the
    process's stop (:func:`~predictors._limits.check_time`).
    """
    optimiser = torch.optim.LBFGS(list(params), max_iter=maxiter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        check_time()
        optimiser.zero_grad()
        value = loss()
        value.backward()
        return value

    with contextlib.suppress(torch.linalg.LinAlgError):
        optimiser.step(closure)
