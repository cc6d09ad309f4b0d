"""Real reference data for the predictor tests (``data_dir``, tests/_data.py; see the data's README)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from supernet import TRACK2_TASKS, get_space


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ufo(data_dir: Path) -> tuple[list, torch.Tensor]:
    """The 400 real UFO track-2 subnets and their 8 task ranks (400 x 8)."""
    space = get_space("ufo-track2")
    rows = list(json.loads((data_dir / "ufo_track2" / "train.json").read_text()).values())
    subs = [space.parse(r["arch"]) for r in rows]
    Y = torch.tensor([[r[f"{t}_rank"] for t in TRACK2_TASKS] for r in rows], dtype=torch.float64)
    return subs, Y


@pytest.fixture(scope="session")
def nb201(data_dir: Path) -> pd.DataFrame:
    """A fixed random 1,200 rows of the NAS-Bench-201 latency table (all devices)."""
    df = pd.read_csv(data_dir / "device_latency" / "nasbench201.csv")
    return df.iloc[np.random.default_rng(0).permutation(len(df))[:1200]].reset_index(drop=True)
