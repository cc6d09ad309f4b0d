"""Shared fixtures of the supernet tests: tiny supernets (real data: ``data_dir``, tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch

from supernet import UFOSupernet, build_supernet

# Small enough that a forward takes milliseconds, large enough for several heads and FFN widths
# (ViT geometry of the presets otherwise: head counts 10-12, ratios 3.0-4.0).
TINY = {"embed_dim": 32, "head_dim": 4, "patch_size": 8, "image_size": 32}


@pytest.fixture(scope="session", autouse=True)
def _few_threads() -> None:
    # The CI box has 2 cores shared with other jobs; intra-op threading only adds contention here.
    torch.set_num_threads(1)


def perturbed_supernet(space: str, seed: int = 0) -> UFOSupernet:
    """A tiny supernet whose every parameter (LayerNorm scales, all biases) is perturbed.

    The default init zeroes biases and sets LayerNorms to identity, which would hide a wrong
    bias slice or a missed norm copy; random values make every parameter matter.
    """
    net = build_supernet(space, seed=seed, **TINY).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in net.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return net


@pytest.fixture(scope="session")
def tiny() -> dict[str, int]:
    """Geometry overrides of the tiny test supernets."""
    return dict(TINY)


@pytest.fixture(scope="session")
def make_supernet():
    """:func:`perturbed_supernet`, as a fixture (test modules do not import conftest)."""
    return perturbed_supernet
