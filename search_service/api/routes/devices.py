"""Registered devices: a chip + runtime + settings, measured by a named profiler."""

from typing import Annotated

from fastapi import APIRouter, Path, status

from profilers import available_profilers, validate_settings

from ... import repositories as repo
from ...errors import InvalidError
from ...models import Device
from ...schemas import DeviceCreate, DeviceLevel, DevicePublic, Name
from ...services.levels import device_levels
from ..deps import Principal, PrincipalDep, ReaderDep, SessionDep, SettingsDep, WriteSessionDep

router = APIRouter(prefix="/v1/devices", tags=["devices"])


@router.post("", response_model=DevicePublic, status_code=status.HTTP_201_CREATED)
def create_device(body: DeviceCreate, session: WriteSessionDep, principal: PrincipalDep) -> DevicePublic:
    """Register a device; its profiler must be installed here and accept the settings.

    Settings are plain data: files are paths relative to the measuring machine's data directory
    and code is named (datasets, supernets defined on that machine), so a 422 answers absolute
    paths, ``..`` and import paths. 409 if the name exists.
    """
    principal.require_admin("register devices")
    known = available_profilers()
    if body.profiler not in known:
        raise InvalidError(
            f"unknown profiler {body.profiler!r}; installed: {', '.join(known)}", ["body", "profiler"]
        )
    try:
        validate_settings(body.profiler, body.settings)
    except ValueError as error:
        raise InvalidError(str(error), ["body", "settings"]) from None
    device = repo.create_device(session, body)
    out = _public(device, principal)
    session.commit()
    return out


def _public(device: Device, reader: Principal | None) -> DevicePublic:
    settings = device.settings if reader is not None else None
    return DevicePublic(name=device.name, profiler=device.profiler, settings=settings)


@router.get("", response_model=list[DevicePublic])
def list_devices(session: SessionDep, reader: ReaderDep) -> list[DevicePublic]:
    """Every device; ``settings`` only for callers with a token (null for anonymous readers)."""
    return [_public(d, reader) for d in repo.list_devices(session)]


@router.get("/{name}", response_model=DevicePublic)
def get_device(session: SessionDep, reader: ReaderDep, name: Annotated[Name, Path()]) -> DevicePublic:
    """One device, as the device agent reads it: name, profiler and settings (null without a token)."""
    return _public(repo.get_device(session, name), reader)


@router.get("/{name}/levels", response_model=list[DeviceLevel])
def get_device_levels(
    session: SessionDep, settings: SettingsDep, name: Annotated[Name, Path()]
) -> list[DeviceLevel]:
    """The device's long-run reference levels, one per space and reference subnet: the median of
    its latency batches' levels, to which fits rescale every batch's values. ``shifted`` lists the
    batches whose level lies beyond ``level_shift_threshold`` from it (measured in a slow or fast
    phase of the machine)."""
    repo.get_device(session, name)  # 404 for an unknown device
    return device_levels(session, name, settings.level_shift_threshold)
