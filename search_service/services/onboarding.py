"""A chip onboarded in one call: its device registered, a cost-stratified latency campaign started
for it and a device token made for its agent (``gpnas device add``).

Every step is a request of the typed client, so each one meets exactly the rules of its route
(profiler and settings validated as ``POST /v1/devices`` does, the campaign planned as
``POST /v1/campaigns`` plans it, an admin token required) whether the client talks to a running
server or to the app built in process on a database. The steps are ordered so that a refusal
leaves nothing half-done where that can be avoided: everything that can be checked without
writing is checked first, and the token, which could not be shown again, is made last.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from profilers import get_profiler_class
from supernet import Metric

from ..client import Conflict, GpnasClient, NotFound
from ..errors import ConflictError, InvalidError
from ..schemas import CampaignCreate, CampaignPublic, DeviceCreate, DevicePublic, TokenCreate, TokenCreated

__all__ = ["ONBOARDING_STRATEGY", "TOKEN_LABEL", "Onboarded", "onboard_device"]

ONBOARDING_STRATEGY = "cost-stratified"
"""A new chip's first subnets span the space's analytic cost range (uniform UFO subnets all cost
about the same), so its first fit sees its cheapest and costliest subnets."""

TOKEN_LABEL = "gpnas device add"
"""The label of the tokens made here (``gpnas token list`` shows it beside the device)."""


@dataclass(frozen=True)
class Onboarded:
    """What :func:`onboard_device` did.

    Attributes:
        device: The device as registered.
        device_created: False when it was registered before with the same profiler and settings.
        campaign: The chip's latency campaign on the space.
        campaign_created: False when the device had one on the space already (it is not doubled).
        token: The new device token; its secret is shown only here.
    """

    device: DevicePublic
    device_created: bool
    campaign: CampaignPublic
    campaign_created: bool
    token: TokenCreated


def _normalised(profiler: str, settings: Mapping[str, Any]) -> Mapping[str, Any]:
    """``settings`` as the profiler reads them (types converted, defaults filled in), so that
    ``threads=1`` typed on a command line equals ``{"threads": 1}`` stored from JSON; unchanged
    when the profiler is not installed here or refuses them (then only an equal spelling matches)."""
    try:
        return get_profiler_class(profiler).validate_settings(settings)
    except ValueError:
        return settings


def _check_same(existing: DevicePublic, wanted: DeviceCreate) -> None:
    """Raise unless ``existing`` has ``wanted``'s profiler and settings.

    Raises:
        ConflictError: The profiler or the settings differ, naming both.
    """
    if existing.profiler != wanted.profiler:
        raise ConflictError(
            f"device {wanted.name!r} exists with profiler {existing.profiler!r}, not {wanted.profiler!r}; "
            "a device's profiler and settings never change (its measurements depend on them): "
            "add the chip under another name",
            ["body", "profiler"],
        )
    stored = existing.settings or {}
    if _normalised(existing.profiler, stored) != _normalised(wanted.profiler, wanted.settings):
        raise ConflictError(
            f"device {wanted.name!r} exists with other settings ({stored} stored, {wanted.settings} "
            "given); a device's settings never change (its measurements depend on them): "
            "add the chip under another name",
            ["body", "settings"],
        )


def _check_times_latency(profiler: str) -> None:
    """Raise if ``profiler`` is installed here and scores tasks: its jobs could not time the
    latency campaign. (One installed only on the server is left to the server and the agent.)

    Raises:
        InvalidError: The profiler's metric is not latency, naming ``profiler``.
    """
    try:
        metric = get_profiler_class(profiler).metric
    except ValueError:
        return
    if metric != Metric.LATENCY:
        raise InvalidError(
            f"profiler {profiler!r} measures {metric}, not latency: a chip's device times subnets "
            "(register a scoring device with POST /v1/devices and start its campaigns with a task)",
            ["body", "profiler"],
        )


def _registered(api: GpnasClient, name: str) -> DevicePublic | None:
    try:
        return api.get_device(name)
    except NotFound:
        return None


def _existing_campaign(api: GpnasClient, campaign: CampaignCreate) -> CampaignPublic | None:
    """The newest latency campaign of ``campaign``'s device on its space, if any."""
    same = [
        c
        for c in api.list_campaigns()
        if c.device == campaign.device and c.space == campaign.space and c.task is None
    ]
    return max(same, key=lambda c: c.id, default=None)


def onboard_device(api: GpnasClient, device: DeviceCreate, space: str, campaign_size: int) -> Onboarded:
    """Register ``device``, start its latency campaign of ``campaign_size`` subnets of ``space``
    (strategy :data:`ONBOARDING_STRATEGY`) and make a device token for its agent.

    Idempotent where it can be: a device registered before with the same profiler and settings is
    kept (``device_created`` False), and so is its campaign on ``space``, whatever its size (a
    second call would otherwise queue another ``campaign_size`` jobs); only the token is new each
    time, since a token's secret is never shown twice.

    Before anything is written, the campaign's fields are validated, the caller's token is checked
    for admin rights, the space must exist and a registered device must match. A campaign the
    server refuses (too few subnets left, a table it cannot read) leaves the device registered
    but makes no token; calling again with the same settings then goes on from there.

    Args:
        api: A client with an admin token (or of an in-process app with authentication off).
        device: The chip: name, profiler and settings.
        space: The space the campaign measures.
        campaign_size: How many subnets the campaign measures.

    Raises:
        pydantic.ValidationError: ``space`` or ``campaign_size`` is not a valid campaign field.
        ConflictError: The device exists with another profiler or other settings.
        InvalidError: The profiler, installed here, scores tasks instead of timing subnets.
        search_service.client.ClientError: A step was refused (its route's 4xx, e.g. 403 for a
            device token, 404 for an unknown space, 422 naming a bad setting) or the server was
            unreachable.
    """
    campaign = CampaignCreate(space=space, device=device.name, n=campaign_size, strategy=ONBOARDING_STRATEGY)
    _check_times_latency(device.profiler)
    api.list_tokens()  # an admin-only read: a token that may not do the rest is refused here
    api.get_space(space)
    registered, created = _registered(api, device.name), False
    if registered is None:
        try:
            registered, created = api.create_device(device), True
        except Conflict:  # registered by someone else since the look-up
            registered = api.get_device(device.name)
    if not created:
        _check_same(registered, device)
    started = None if created else _existing_campaign(api, campaign)
    campaign_created = started is None
    if started is None:
        started = api.create_campaign(campaign)
    token = api.create_token(TokenCreate(label=TOKEN_LABEL, device=device.name))
    return Onboarded(registered, created, started, campaign_created, token)
