"""What the predictor benchmarks share: the real ufo-track2 scores, and one torch thread per worker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from supernet import TRACK2_TASKS, Subnet, get_space


def load_track2(data: Path) -> tuple[list[Subnet], np.ndarray]:
    """The 400 subnets of ``data``/ufo_track2/train.json and their ranks, ``400 x 8`` in
    ``TRACK2_TASKS`` order."""
    space = get_space("ufo-track2")
    rows = list(json.loads((data / "ufo_track2" / "train.json").read_text()).values())
    subs = [space.parse(r["arch"]) for r in rows]
    Y = np.array([[r[f"{t}_rank"] for t in TRACK2_TASKS] for r in rows], dtype=float)
    return subs, Y


def one_torch_thread() -> None:
    """Process-pool initializer: the jobs run in parallel processes, each on one thread."""
    torch.set_num_threads(1)
