"""The work layer on both backends: what a scheduling pass orders (once), idempotent task
functions, posterior updates between full fits, and failures every process can see."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from service_helpers import SPACE, make_settings, measurements, register, work_context
from sqlalchemy import func, select

from predictors import predictor_class
from search_service import create_app
from search_service import repositories as repo
from search_service.domain import Metric, Target, WorkKind, WorkStatus
from search_service.models import Front, PredictorVersion, WorkItem
from search_service.work import WorkContext, fit_target, items, run_order, schedule

LATENCY = Target(SPACE, Metric.LATENCY, "dev1")


@pytest.fixture
def ctx(db_url: str) -> Iterator[WorkContext]:
    """A database with device dev1, 20 latencies and 20 market1501 scores."""
    settings = make_settings(db_url, front_max_evaluations=200)
    with TestClient(create_app(settings)) as client:
        register(client)
        data = measurements(20) + measurements(20, device=None, task="market1501", seed=1)
        assert client.post("/v1/measurements", json={"measurements": data}).status_code == 200
    with work_context(settings) as ctx:
        yield ctx


def _post(ctx: WorkContext, data: list[dict[str, object]]) -> None:
    with TestClient(create_app(ctx.settings)) as client:
        assert client.post("/v1/measurements", json={"measurements": data}).status_code == 200


def _count(ctx: WorkContext, model: type[PredictorVersion] | type[Front]) -> int:
    with ctx.read_sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_pass_orders_each_stale_fit_once_and_fronts_after_their_fits(ctx: WorkContext) -> None:
    first = schedule(ctx)
    assert sorted((o.kind, o.target) for o in first) == [(WorkKind.FIT, "dev1"), (WorkKind.FIT, "market1501")]
    # Dispatched and not finished: a second pass (another process, say) orders nothing again.
    assert schedule(ctx) == []
    for order in first:
        run_order(ctx, order)
    fronts = schedule(ctx)
    assert [(o.kind, o.task, o.device) for o in fronts] == [(WorkKind.FRONT, "market1501", "dev1")]
    run_order(ctx, fronts[0])
    assert schedule(ctx) == [] and _count(ctx, Front) == 1


def test_work_dispatched_long_ago_or_broken_is_ordered_again(ctx: WorkContext) -> None:
    now = dt.datetime.now(dt.UTC)
    item = WorkItem(key="k", kind=WorkKind.FIT, space=SPACE, status=WorkStatus.QUEUED, dispatched_at=now)
    assert not items.due(item, now + dt.timedelta(seconds=899), 900)
    assert items.due(item, now + dt.timedelta(seconds=901), 900)
    item.status = WorkStatus.ERROR
    assert items.due(item, now, 900)
    item.status = WorkStatus.FAILED
    assert not items.due(item, now + dt.timedelta(days=1), 900)


def test_a_fit_is_stored_once_however_often_it_runs(ctx: WorkContext) -> None:
    first = fit_target(ctx, LATENCY)
    again = fit_target(ctx, LATENCY)
    assert first.stored is not None and again.stored is None and again.existing == first.stored
    assert _count(ctx, PredictorVersion) == 1


def test_concurrent_fits_of_one_data_version_store_one_version(ctx: WorkContext) -> None:
    outcomes, errors = [], []

    def fit() -> None:
        try:
            outcomes.append(fit_target(ctx, LATENCY))
        except Exception as error:  # noqa: BLE001 - the assertion below names it
            errors.append(error)

    threads = [threading.Thread(target=fit) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Each starts the same work item: the losers of its insert use the winner's row.
    assert errors == []
    assert sum(o.stored is not None for o in outcomes) == 1
    assert _count(ctx, PredictorVersion) == 1


def test_new_data_updates_the_posterior_until_it_grows_past_full_refit_growth(ctx: WorkContext) -> None:
    full = fit_target(ctx, LATENCY).stored
    _post(ctx, measurements(4, seed=7))  # 24 subnets: within 25% of 20
    updated = fit_target(ctx, LATENCY).stored
    _post(ctx, measurements(6, seed=8))  # 30 subnets: past it
    refitted = fit_target(ctx, LATENCY).stored
    with ctx.read_sessions() as session:
        rows = {pid: session.get(PredictorVersion, pid) for pid in (full, updated, refitted)}
    assert rows[full].update_of is None  # type: ignore[union-attr]
    assert rows[updated].update_of == full and rows[updated].n_train == 24  # type: ignore[union-attr]
    assert rows[refitted].update_of is None and rows[refitted].n_train == 30  # type: ignore[union-attr]


def test_full_refit_growth_zero_always_fits_anew(db_url: str) -> None:
    settings = make_settings(db_url, full_refit_growth=0.0)
    with TestClient(create_app(settings)) as client:
        register(client)
        assert client.post("/v1/measurements", json={"measurements": measurements(10)}).status_code == 200
    with work_context(settings) as ctx:
        fit_target(ctx, LATENCY)
        _post(ctx, measurements(1, seed=3))
        second = fit_target(ctx, LATENCY)
        with ctx.read_sessions() as session:
            assert session.get(PredictorVersion, second.stored).update_of is None  # type: ignore[union-attr]


def test_a_failed_fit_is_known_to_every_process_and_not_retried_until_the_data_changes(db_url: str) -> None:
    settings = make_settings(db_url)
    with TestClient(create_app(settings)) as client:
        register(client)
        # Three subnets, one impossible: two remain, fewer than min_train.
        data = measurements(3)
        data[0]["value"] = 1e308
        assert client.post("/v1/measurements", json={"measurements": data}).status_code == 200
    with work_context(settings) as ctx:
        outcome = fit_target(ctx, LATENCY)
        assert outcome.error is not None and "fits need at least 3" in outcome.error
        with ctx.read_sessions() as session:
            version = repo.data_version(session, SPACE, Metric.LATENCY, "dev1")
            assert (
                items.failure(session, items.fit_key(SPACE, Metric.LATENCY, "dev1", version)) == outcome.error
            )
        assert [o for o in schedule(ctx) if o.kind is WorkKind.FIT and o.target == "dev1"] == []
        _post(ctx, measurements(1, seed=4))
        assert [o.target for o in schedule(ctx) if o.kind is WorkKind.FIT] == ["dev1"]


def test_an_update_the_predictor_refuses_becomes_a_full_fit(
    ctx: WorkContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = fit_target(ctx, LATENCY).stored

    def refuse(*_: object, **__: object) -> None:
        raise ValueError("the related columns changed since the fit")

    # The latency default's own update (gpnas-transfer's conditions its target stage itself).
    monkeypatch.setattr(predictor_class(ctx.settings.predictor_latency), "update", refuse)
    _post(ctx, measurements(1, seed=5))
    outcome = fit_target(ctx, LATENCY)
    assert outcome.error is None and outcome.stored not in (None, full)
    with ctx.read_sessions() as session:
        assert session.get(PredictorVersion, outcome.stored).update_of is None  # type: ignore[union-attr]
