"""Fits and selections past their wall-time limits: recorded and not retried on the same data, or
answered 422 naming what to change; SIGTERM reaches the work before the graceful shutdown."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from service_helpers import SPACE, make_settings, measurements, register, work_context

from predictors import StopRequestedError, check_time, clear_stop
from search_service import create_app
from search_service.domain import Metric, Target, WorkStatus
from search_service.main import stop_work_on_sigterm
from search_service.models import PredictorVersion
from search_service.work import WorkContext, fit_target, items, schedule
from supernet import get_space


@pytest.fixture
def ctx(db_url: str) -> Iterator[WorkContext]:
    """dev1 with 20 latencies; fits limited to no time at all, selections likewise."""
    settings = make_settings(db_url, fit_time_limit_s=1e-9, selection_time_limit_s=1e-9)
    with TestClient(create_app(settings)) as client:
        register(client)
        assert client.post("/v1/measurements", json={"measurements": measurements(20)}).status_code == 200
    with work_context(settings) as ctx:
        yield ctx


def test_a_fit_past_its_limit_is_recorded_and_not_ordered_again(ctx: WorkContext) -> None:
    outcome = fit_target(ctx, Target(SPACE, Metric.LATENCY, "dev1"))
    assert outcome.stored is None
    assert outcome.error is not None and "ran past its time limit" in outcome.error
    assert "fit_time_limit_s" in outcome.error
    with ctx.read_sessions() as session:
        item = items.get(session, outcome.key)
    assert item is not None and item.status == WorkStatus.FAILED
    # Not retried forever: the next pass orders nothing until the data changes.
    assert [o for o in schedule(ctx) if o.target == "dev1"] == []


def test_a_selection_past_its_limit_is_a_422_naming_n(ctx: WorkContext) -> None:
    with TestClient(create_app(ctx.settings)) as client:
        answer = client.post("/v1/campaigns", json={"space": SPACE, "device": "dev1", "n": 5, "seed": 0})
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"][0]
    assert detail["loc"] == ["body", "n"] and "selection_time_limit_s" in detail["msg"]


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_sigterm_stops_the_work_before_the_servers_own_handler_runs() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        stop_work_on_sigterm()
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(StopRequestedError):
            check_time()
        assert seen == [signal.SIGTERM]  # the server's handler (uvicorn's) still runs
    finally:
        clear_stop()
        signal.signal(signal.SIGTERM, previous)


def test_a_refit_of_one_space_does_not_wait_for_a_fit_of_another(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow fit of one space (here held until released) used to hold the refitter's lock, so a
    waited-for refit of any other space queued behind it."""
    from search_service.work import _functions

    settings = make_settings(db_url)
    other = [
        {**m, "space": "nasbench201", "arch": arch, "id": f"{m['id']}-nb"}
        for m, arch in zip(
            measurements(12, seed=3),
            [get_space("nasbench201").format(s) for s in get_space("nasbench201").sample(12, seed=3)],
            strict=True,
        )
    ]
    app = create_app(settings)
    with TestClient(app) as client:
        register(client)
        data = measurements(12) + other
        assert client.post("/v1/measurements", json={"measurements": data}).status_code == 200
    release = threading.Event()
    train = _functions._train

    def slow_train(space, *args, **kwargs):  # type: ignore[no-untyped-def]
        if space.name == SPACE:
            assert release.wait(60)
        return train(space, *args, **kwargs)

    monkeypatch.setattr(_functions, "_train", slow_train)
    refitter = app.state.refitter
    held = threading.Thread(target=refitter.refit, args=(SPACE,))
    held.start()
    try:
        done = threading.Thread(target=refitter.refit, args=("nasbench201",))
        done.start()
        done.join(50)
        assert not done.is_alive(), "the refit of nasbench201 waited for ufo-track2's fit"
        assert held.is_alive()  # ufo-track2's fit is still held
    finally:
        release.set()
        held.join(60)


def test_a_fit_estimated_over_its_budget_uses_the_fallback_and_says_so(db_url: str) -> None:
    settings = make_settings(db_url, predictor_latency="gpnas-transfer", fit_max_gflop=1e-6)
    with TestClient(create_app(settings)) as client:
        register(client)
        register(client, "dev2")
        data = measurements(12) + measurements(12, device="dev2", seed=1)
        assert client.post("/v1/measurements", json={"measurements": data}).status_code == 200
    with work_context(settings) as ctx:
        outcome = fit_target(ctx, Target(SPACE, Metric.LATENCY, "dev1"))
        with ctx.read_sessions() as session:
            row = session.get(PredictorVersion, outcome.stored)
            assert row is not None and row.kind == "gpnas"
    assert any(
        "fitted with gpnas instead of gpnas-transfer" in n and "fit_max_gflop" in n for n in outcome.notes
    )


def test_work_interrupted_by_sigterm_is_a_503_not_a_500(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(make_settings(db_url))

    def interrupted(space: str | None = None) -> None:
        raise StopRequestedError("stopped: the process is shutting down")

    monkeypatch.setattr(app.state.refitter, "refit", interrupted)
    with TestClient(app) as client:
        answer = client.post("/v1/refit", json={"wait": True})
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5", answer.text
    assert "shutting down" in answer.text
