"""Data builders shared by the service tests."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from search_service import Settings
from search_service.work import WorkContext
from supernet import get_space

SPACE = "ufo-track2"


def latency_of(arch: str) -> float:
    """A deterministic stand-in latency in ms, proportional to the subnet's FLOPs."""
    space = get_space(SPACE)
    return space.flops(space.parse(arch)) / 1e9


def score_of(arch: str, rng: np.random.Generator) -> float:
    """A stand-in score that grows with size (so the front is a real trade-off), with noise."""
    return 50.0 * math.log(latency_of(arch)) + float(rng.normal(0.0, 0.5))


def measurements(
    n: int, device: str | None = "dev1", task: str | None = None, seed: int = 0, space: str = SPACE
) -> list[dict[str, Any]]:
    """``n`` measurement items of distinct random subnets with fresh ids."""
    rng = np.random.default_rng(seed)
    archs = [get_space(space).format(s) for s in get_space(space).sample(n, seed)]
    items = []
    for arch in archs:
        item: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "space": space,
            "arch": arch,
            "device": device,
            "task": task,
        }
        if task is None:
            item.update(
                metric="latency_ms", value=latency_of(arch) * float(rng.uniform(0.98, 1.02)), std=0.01
            )
        else:
            item.update(metric="score", value=score_of(arch, rng))
        items.append(item)
    return items


def post_scored_tasks(client: Any, tasks: Sequence[str], n: int = 30, device: str = "dev1") -> None:
    """Latencies of ``n`` random subnets on ``device`` and a score of each on every task (the
    i-th task's scores are ``score_of`` times ``i + 1``, so tasks differ in scale)."""
    latencies = measurements(n, device=device, seed=0)
    rng = np.random.default_rng(1)
    scores = [
        {
            **m,
            "id": f"{m['id']}-{task}",
            "device": None,
            "task": task,
            "metric": "score",
            "std": None,
            "value": score_of(m["arch"], rng) * (1 + i),
        }
        for i, task in enumerate(tasks)
        for m in latencies
    ]
    response = client.post("/v1/measurements", json={"measurements": latencies + scores})
    assert response.status_code == 200, response.text


def register(client: Any, name: str = "dev1", headers: dict[str, str] | None = None) -> None:
    response = client.post(
        "/v1/devices", json={"name": name, "profiler": "torch-cpu", "settings": {}}, headers=headers
    )
    assert response.status_code == 201, response.text


# Settings of tests that need a fit but not a good one: ridge for latency and scores (fast).
RIDGE: dict[str, object] = {"predictor_latency": "ridge", "predictor_score": "ridge"}


def make_settings(db_url: str, **overrides: object) -> Settings:
    """Test settings: no background worker unless asked, small front searches."""
    values: dict[str, object] = {
        "database_url": db_url,
        "auth": False,
        "refit_worker": False,
        "front_max_evaluations": 600,
        "front_time_limit_s": 20.0,
        "front_cache_s": 0.0,
    }
    values.update(overrides)
    return Settings(**values)


@contextmanager
def work_context(settings: Settings) -> Iterator[WorkContext]:
    """What task functions run with, on a new engine for ``settings`` (disposed after)."""
    ctx, engine = WorkContext.open(settings)
    try:
        yield ctx
    finally:
        engine.dispose()
