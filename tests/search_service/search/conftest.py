"""Real, simple predictors for the search tests.

* NAS-Bench-201 latency: the measured pixel2 latencies of the reference data's device_latency (a table
  lookup), with a std that grows with the number of 3x3 convolutions, so that high-confidence
  budget queries prefer different subnets than mean-latency ones.
* NAS-Bench-201 score: an analytic capacity proxy (conv weights on edges that lie on an
  input-to-output path). It is not accuracy; it only has to be a fixed, non-additive objective.
* ufo-track2: a BayesianRidge fitted on the real veri ranks of train.json (posterior std from the
  model) and a latency proportional to the analytic FLOPs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import BayesianRidge

from supernet import get_space

# NB201 edge order of Subnet.layers: (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2).
_EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
_CONV_WEIGHT = {2: 1.0, 3: 9.0}  # nor_conv_1x1, nor_conv_3x3 (weights per C^2)


def nb201_capacity(layers: tuple[tuple[int, ...], ...]) -> float:
    ops = [layer[0] for layer in layers]
    live = [op != 0 for op in ops]  # 'none' cuts the edge
    reach_from_input = {0}
    for src, dst in _EDGES:  # edges are in topological order
        if live[_EDGES.index((src, dst))] and src in reach_from_input:
            reach_from_input.add(dst)
    reach_output = {3}
    for src, dst in reversed(_EDGES):
        if live[_EDGES.index((src, dst))] and dst in reach_output:
            reach_output.add(src)
    total = 0.0
    for (src, dst), op in zip(_EDGES, ops, strict=True):
        if src in reach_from_input and dst in reach_output:
            total += _CONV_WEIGHT.get(op, 0.0)
    # Diminishing returns, as accuracy saturates with capacity.
    return float(np.log1p(total))


class NB201Score:
    def predict(self, subnets):
        mean = torch.tensor([nb201_capacity(s.layers) for s in subnets], dtype=torch.float64)
        return mean, torch.full_like(mean, 0.05)


class NB201Latency:
    def __init__(self, data_dir: Path, device: str = "pixel2") -> None:
        space = get_space("nasbench201")
        with open(data_dir / "device_latency" / "nasbench201.csv") as f:
            self.table = {space.parse(row["arch"]): float(row[device]) for row in csv.DictReader(f)}

    def predict(self, subnets):
        mean = torch.tensor([self.table[s] for s in subnets], dtype=torch.float64)
        n_conv3 = torch.tensor([sum(op == (3,) for op in s.layers) for s in subnets], dtype=torch.float64)
        return mean, 0.02 * mean * (1.0 + n_conv3)


class Track2Score:
    def __init__(self, data_dir: Path, task: str = "veri_rank") -> None:
        self.space = get_space("ufo-track2")
        data = json.loads((data_dir / "ufo_track2" / "train.json").read_text())
        subs = self.space.parse_many([v["arch"] for v in data.values()])
        y = np.array([v[task] for v in data.values()], dtype=float)
        self.model = BayesianRidge().fit(self.space.encode(subs).numpy(), y)

    def predict(self, subnets):
        mean, std = self.model.predict(self.space.encode(subnets).numpy(), return_std=True)
        return torch.from_numpy(mean), torch.from_numpy(std)


class FlopsLatency:
    def __init__(self, space) -> None:
        self.space = space

    def predict(self, subnets):
        gmacs = torch.tensor([self.space.flops(s) / 1e9 for s in subnets], dtype=torch.float64)
        mean = 2.0 * gmacs + 1.0
        return mean, 0.03 * mean


@pytest.fixture(scope="session")
def nb201():
    return get_space("nasbench201")


@pytest.fixture(scope="session")
def nb201_models(data_dir):
    return NB201Score(), NB201Latency(data_dir)


@pytest.fixture(scope="session")
def track2_models(data_dir):
    space = get_space("ufo-track2")
    return Track2Score(data_dir), FlopsLatency(space)
