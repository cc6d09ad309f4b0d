"""Campaigns: choose subnets to measure on a device (or score on a task) and queue them as jobs."""

from typing import Annotated

import numpy as np
import torch
from fastapi import APIRouter, Path, status
from sqlalchemy.orm import Session

from predictors import Predictor, TransferPredictor, create_strategy, list_strategies
from profilers import ProfilerUnavailableError, create_profiler
from supernet import SearchSpace, Subnet, get_space

from ... import repositories as repo
from ...errors import InvalidError
from ...models import Campaign, Device
from ...schemas import INT32, CampaignCreate, CampaignPublic
from ..deps import PrincipalDep, SessionDep, WriteSessionDep

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


def _public(session: Session, campaign: Campaign) -> CampaignPublic:
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
        score, latency = load("score", body.task), load("latency_ms", body.device)
        return None if score is None or latency is None else (score, latency)
    return load(*_measured_quantity(body))


def _measured_quantity(body: CampaignCreate) -> tuple[str, str]:
    """(metric, target) a campaign measures: a task's score if it names one, else latency."""
    return ("score", body.task) if body.task is not None else ("latency_ms", body.device)


def _transfer_prior(
    session: Session, space: SearchSpace, metric: str, target: str
) -> tuple[TransferPredictor | None, list[Subnet]]:
    """Sources-only transfer model of a target with no predictor yet, and the subnets it knows.

    The related targets are the other devices for a latency campaign, the other tasks for a
    score campaign; ``(None, [])`` when none has enough measurements.
    """
    archs, _, rows = repo.training_matrix(session, space.name, metric, exclude=target)
    if not archs:
        return None, []
    subnets = space.parse_many(archs)
    try:
        prior = TransferPredictor(space, metric=metric).fit_sources(
            subnets, torch.tensor(rows, dtype=torch.float64)
        )
    except ValueError:  # no related target with enough values yet
        return None, []
    return prior, subnets


def _measurable(device: Device, space: SearchSpace) -> list[Subnet] | None:
    """The only subnets the device's profiler can measure (a ``table`` device: its table's rows),
    or ``None`` when it can measure any subnet or the server cannot tell (e.g. the table lives on
    the agent's machine)."""
    try:
        profiler = create_profiler(device.profiler, space, **device.settings)
    except (ValueError, OSError, ProfilerUnavailableError):
        return None
    try:
        return profiler.known_subnets()
    finally:
        profiler.close()


def choose(session: Session, body: CampaignCreate, device: Device) -> list[str]:
    """``n`` subnets picked by the campaign's strategy among those neither measured nor queued."""
    if body.strategy not in list_strategies():
        raise InvalidError(
            f"unknown strategy {body.strategy!r}; known: {', '.join(list_strategies())}", ["body", "strategy"]
        )
    strategy = create_strategy(body.strategy)
    space = get_space(body.space)
    metric, target = _measured_quantity(body)
    taken = repo.measured_archs(session, body.space, metric, target) | repo.pending_archs(
        session, body.space, body.device, body.task
    )
    candidates = _measurable(device, space)
    try:
        predictors = _predictors(session, body)
        if predictors is None and strategy.uses_transfer_prior:
            predictors, related = _transfer_prior(session, space, metric, target)
            fresh = [s for s in related if space.format(s) not in taken]
            if candidates is None and len(fresh) >= body.n:
                # Subnets the related targets measured have the best-known embedding, and measuring
                # them on this target too is what lets transfer compare it with the others. A
                # strategy-sized sample of them bounds the design's n x n covariance.
                keep = np.random.default_rng(body.seed).permutation(len(fresh))
                candidates = [fresh[i] for i in sorted(keep[: max(strategy.pool_size, body.n)])]
    except (ValueError, RuntimeError) as error:
        raise InvalidError(
            f"the campaign's model could not be loaded or fitted: {error}", ["body", "strategy"]
        ) from None
    available = space.cardinality if candidates is None else len(set(candidates))
    taken_here = len(taken) if candidates is None else len({space.format(c) for c in candidates} & taken)
    if body.n > available - taken_here:
        raise InvalidError(
            f"only {available - taken_here} subnets of {body.space!r} that device {body.device!r} can "
            "measure are neither measured nor queued",
            ["body", "n"],
        )
    try:
        picks = strategy.select(
            space,
            predictors,
            space.parse_many(sorted(taken)),
            body.n,
            candidates=candidates,
            seed=body.seed,
        )
    except ValueError as error:
        raise InvalidError(str(error), ["body", "strategy"]) from None
    return [space.format(s) for s in picks]


@router.post("", response_model=CampaignPublic, status_code=status.HTTP_201_CREATED)
def create_campaign(
    body: CampaignCreate, session: WriteSessionDep, principal: PrincipalDep
) -> CampaignPublic:
    """Choose ``n`` subnets with ``strategy`` and queue one job per subnet for ``device``'s agent.

    Without ``task`` the jobs time the subnets on the device (metric ``latency_ms``); with
    ``task`` the device's profiler scores them on that task (metric ``score``).
    """
    principal.require_admin("create campaigns")
    archs = choose(session, body, repo.get_device(session, body.device))
    campaign = repo.create_campaign(
        session, body.space, body.device, body.task, body.strategy, body.seed, archs
    )
    out = _public(session, campaign)
    session.commit()
    return out


@router.get("", response_model=list[CampaignPublic])
def list_campaigns(session: SessionDep) -> list[CampaignPublic]:
    return [_public(session, c) for c in repo.list_campaigns(session)]


@router.get("/{campaign_id}", response_model=CampaignPublic)
def get_campaign(session: SessionDep, campaign_id: Annotated[int, Path(ge=1, le=INT32)]) -> CampaignPublic:
    """A campaign with the number of its jobs per status."""
    return _public(session, repo.get_campaign(session, campaign_id))
