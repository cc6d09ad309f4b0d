"""Campaign planning: which subnets a campaign measures, chosen by its sampling strategy from the
stored data and predictors, and the campaign with its jobs stored. The API route is a thin
adapter over :func:`create_campaign`, which runs :func:`store_campaign` where the work runs (in
process, or on a Celery worker)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sqlalchemy.orm import Session, sessionmaker

from predictors import (
    Predictor,
    TimeLimitError,
    TransferPredictor,
    create_strategy,
    list_strategies,
    time_limit,
    transfer_prior,
)
from profilers import LocalConfig, get_profiler_class
from supernet import SearchSpace, Subnet, get_space

from .. import repositories as repo
from ..domain import Metric, Target, WorkKind, WorkStatus
from ..errors import InvalidError, ServiceError
from ..models import Campaign, Device
from ..schemas import CampaignCreate, CampaignPublic
from ..space_checks import known_arch
from ..work import Outcome, Runner, WorkContext, record_failure, request_outcome
from ..work import items as work_items

__all__ = [
    "MAX_CONDITIONING",
    "campaign_public",
    "canonical_candidates",
    "create_campaign",
    "plan_and_store_campaign",
    "plan_campaign",
    "store_campaign",
]


def campaign_public(session: Session, campaign: Campaign) -> CampaignPublic:
    return CampaignPublic(
        id=campaign.id,
        space=campaign.space,
        device=campaign.device,
        task=campaign.task,
        metric=campaign.metric,
        strategy=campaign.strategy,
        n=campaign.n,
        seed=campaign.seed,
        jobs=repo.campaign_counts(session, campaign.id),
        created_at=campaign.created_at,
    )


def _predictors(session: Session, body: CampaignCreate) -> Predictor | tuple[Predictor, Predictor] | None:
    """The newest fitted predictors the strategy uses (None before any fit: a cold start).

    ``qlognehvi`` improves the (score of ``task``, latency on ``device``) front and needs both;
    the other model-based strategies use the predictor of what the campaign measures.
    """
    space = get_space(body.space)

    def load(metric: str, target: str | None) -> Predictor | None:
        row = repo.latest_predictor(session, body.space, metric, target) if target else None
        return None if row is None else Predictor.from_bytes(row.blob, space)

    if body.strategy == "random":
        return None
    if body.strategy == "qlognehvi":
        score, latency = load(Metric.SCORE, body.task), load(Metric.LATENCY, body.device)
        return None if score is None or latency is None else (score, latency)
    return load(*_measured_quantity(body))


def _measured_quantity(body: CampaignCreate) -> tuple[Metric, str]:
    """(metric, target) a campaign measures: a task's score if it names one, else latency."""
    target = Target.of(body.space, body.device, body.task)
    return target.metric, target.name


def _transfer_prior(
    session: Session, space: SearchSpace, metric: Metric, target: str
) -> tuple[TransferPredictor | None, list[Subnet]]:
    """Sources-only transfer model of a target with no predictor yet, and the subnets it knows.

    The related targets are the other devices for a latency campaign, the other tasks for a
    score campaign; ``(None, [])`` when none has enough measurements.
    """
    archs, _, rows = repo.training_matrix(session, space.name, metric, exclude=target)
    if not archs:
        return None, []
    subnets = space.parse_many(archs)
    prior = transfer_prior(space, metric, subnets, torch.tensor(rows, dtype=torch.float64))
    return (prior, subnets) if prior is not None else (None, [])


# The model-based strategies build a joint covariance over the measured subnets and the pool, so
# both are capped (the pool at the strategy's pool size) whatever a target has accumulated.
MAX_CONDITIONING = 2000


def _measurable(
    body: CampaignCreate, device: Device, space: SearchSpace, data_dir: Path | None
) -> list[Subnet] | None:
    """The only subnets the campaign may pick: ``body.candidates`` if given, else the rows of a
    replay device's table when the server can read it under its own data directory, else
    ``None`` (any subnet).

    The server never constructs the device's profiler: it asks the class for the subnets a
    profiler with these settings lists, with a local config holding only its data directory.

    Raises:
        InvalidError: The device replays a table this server cannot read, and no candidates were
            given.
    """
    if body.candidates is not None:
        return space.parse_many(body.candidates)
    profiler_class = get_profiler_class(device.profiler)
    try:
        return profiler_class.listed_subnets(space, device.settings, LocalConfig(data_dir=data_dir))
    except (ValueError, OSError) as error:
        raise InvalidError(
            f"device {device.name!r} measures only the rows of its table, which this server cannot read "
            f"({error}); put the table under GPNAS_DATA_DIR or pass its archs as candidates",
            ["body", "candidates"],
        ) from None


def plan_campaign(session: Session, body: CampaignCreate, device: Device, data_dir: Path | None) -> list[str]:
    """``n`` subnets picked by the campaign's strategy among those neither measured nor queued."""
    if body.strategy not in list_strategies():
        raise InvalidError(
            f"unknown strategy {body.strategy!r}; known: {', '.join(list_strategies())}", ["body", "strategy"]
        )
    strategy = create_strategy(body.strategy)
    space = get_space(body.space)
    metric, target = _measured_quantity(body)
    measured = repo.measured_archs(session, body.space, metric, target)
    taken = measured | repo.pending_archs(session, body.space, body.device, body.task)
    candidates = _measurable(body, device, space, data_dir)
    rng = np.random.default_rng(body.seed)
    try:
        predictors = _predictors(session, body)
        if predictors is None and strategy.uses_transfer_prior:
            predictors, related = _transfer_prior(session, space, metric, target)
            fresh = [s for s in related if space.format(s) not in taken]
            if candidates is None and len(fresh) >= body.n:
                # Subnets the related targets measured have the best-known embedding, and measuring
                # them on this target too is what lets transfer compare it with the others.
                candidates = fresh
    except (ValueError, RuntimeError) as error:
        raise InvalidError(
            f"the campaign's model could not be loaded or fitted: {error}", ["body", "strategy"]
        ) from None
    if candidates is None:
        size = min(space.cardinality, max(strategy.pool_size, body.n) + len(taken))
        candidates = strategy.default_pool(space, size, body.seed)
    pool = [c for c in dict.fromkeys(candidates) if space.format(c) not in taken]
    if body.n > len(pool):
        raise InvalidError(
            f"only {len(pool)} subnets of {body.space!r} that device {body.device!r} can measure "
            "are neither measured nor queued",
            ["body", "n"],
        )
    if len(pool) > max(strategy.pool_size, body.n):
        keep = rng.permutation(len(pool))[: max(strategy.pool_size, body.n)]
        pool = [pool[i] for i in sorted(keep)]
    conditioning = sorted(measured)
    if len(conditioning) > MAX_CONDITIONING:
        conditioning = [
            conditioning[i] for i in sorted(rng.permutation(len(conditioning))[:MAX_CONDITIONING])
        ]
    try:
        picks = strategy.select(
            space, predictors, space.parse_many(conditioning), body.n, candidates=pool, seed=body.seed
        )
    except ValueError as error:
        raise InvalidError(str(error), ["body", "strategy"]) from None
    return [space.format(s) for s in picks]


def store_campaign(
    read_sessions: sessionmaker[Session],
    write_sessions: sessionmaker[Session],
    body: CampaignCreate,
    data_dir: Path | None,
    key: str | None = None,
) -> int:
    """Plan ``body``'s campaign and store it with one queued job per chosen subnet; its id.

    The selection (seconds for the model-based strategies) reads a snapshot; only the insert
    takes the write lock, so a campaign never holds SQLite's single writer while it computes.

    Args:
        read_sessions: Sessions for the selection.
        write_sessions: Sessions for the insert.
        body: The campaign.
        data_dir: Where this machine's tables lie (``GPNAS_DATA_DIR``).
        key: The work item to mark done with the insert (a campaign planned by a worker).

    Raises:
        NotFoundError: Unknown device.
        InvalidError: Unknown strategy, too few subnets left, or candidates this machine cannot
            list, naming the field.
    """
    with read_sessions() as session:
        archs = plan_campaign(session, body, repo.get_device(session, body.device), data_dir)
    with write_sessions() as session:
        repo.get_device(session, body.device)
        # Another campaign may have queued some of the picks meanwhile: they are not queued twice.
        pending = repo.pending_archs(session, body.space, body.device, body.task)
        campaign = repo.create_campaign(
            session,
            body.space,
            body.device,
            body.task,
            body.strategy_name,
            body.seed,
            [a for a in archs if a not in pending],
        )
        if key is not None:
            work_items.finished(
                session, key, WorkKind.CAMPAIGN, body.space, WorkStatus.DONE, result_id=campaign.id
            )
        session.commit()
        return campaign.id


def canonical_candidates(body: CampaignCreate) -> CampaignCreate:
    """``body`` with its candidates in their space's canonical spelling. Done here, in the heavy
    work's thread, rather than when the request is read: 100,000 of them take seconds.

    Raises:
        InvalidError: A candidate is not a subnet of the space, naming its index.
    """
    if body.candidates is None:
        return body
    canonical = [
        known_arch(body.space, arch, ["body", "candidates", i]) for i, arch in enumerate(body.candidates)
    ]
    return body.model_copy(update={"candidates": canonical})


def create_campaign(
    read_sessions: sessionmaker[Session], body: CampaignCreate, runner: Runner
) -> CampaignPublic:
    """Plan and store ``body``'s campaign where ``runner`` runs work (here, or on a worker, which
    reads its tables under its own data directory); the stored campaign.

    Raises:
        NotFoundError: Unknown device.
        InvalidError: Unknown strategy, too few subnets left, or candidates that cannot be
            listed, naming the field.
        UnavailableError: With a broker, no worker planned it within ``task_wait_s``.
    """
    with read_sessions() as session:
        repo.get_device(session, body.device)
    campaign_id = runner.campaign(canonical_candidates(body))
    with read_sessions() as session:
        return campaign_public(session, repo.get_campaign(session, campaign_id))


def plan_and_store_campaign(ctx: WorkContext, body: CampaignCreate, key: str) -> Outcome:
    """The campaign request's task function: plan ``body``'s campaign and store it (see
    :func:`create_campaign`), once per ``key``, within ``selection_time_limit_s``; a
    :class:`ServiceError` is recorded as the item's error for the waiting API process to raise."""
    outcome = request_outcome(ctx, key)
    if outcome.existing is not None or outcome.error is not None:
        return outcome
    try:
        limit = ctx.settings.selection_time_limit_s
        with time_limit(limit, f"the selection of {body.n} subnets by {body.strategy_name}"):
            outcome.stored = store_campaign(
                ctx.read_sessions, ctx.write_sessions, body, ctx.settings.data_dir, key=key
            )
    except TimeLimitError as error:
        too_long = InvalidError(
            f"{error} (selection_time_limit_s): ask for fewer subnets, or use a cheaper strategy",
            ["body", "n"],
        )
        outcome.error = record_failure(ctx, key, WorkKind.CAMPAIGN, body.space, too_long)
    except ServiceError as error:
        outcome.error = record_failure(ctx, key, WorkKind.CAMPAIGN, body.space, error)
    return outcome
