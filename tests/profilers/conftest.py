"""Shared fixtures: tiny UFO geometries so real extraction and timing stay fast on 2 cores."""

from __future__ import annotations

import pytest
import torch

from supernet import MULTIPATH_TASKS, MultipathSpace, Track2Space, UFOSpace, ViTGeometry

TINY = ViTGeometry(embed_dim=64, patch_size=8, image_size=32, head_dim=8, in_chans=3)


@pytest.fixture(autouse=True)
def _few_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_track2() -> UFOSpace:
    """ufo-track2's choices (same arch strings) on a tiny ViT."""
    return Track2Space(geometry=TINY)


@pytest.fixture
def tiny_multipath() -> UFOSpace:
    return MultipathSpace(MULTIPATH_TASKS, geometry=TINY)
