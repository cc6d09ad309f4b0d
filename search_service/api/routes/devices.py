"""Registered devices: a chip + runtime + settings, measured by a named profiler."""

from fastapi import APIRouter, Path, status

from profilers import available_profilers, validate_settings

from ... import repositories as repo
from ...errors import InvalidError
from ...schemas import DeviceCreate, DevicePublic
from ..deps import PrincipalDep, SessionDep, WriteSessionDep

router = APIRouter(prefix="/v1/devices", tags=["devices"])


@router.post("", response_model=DevicePublic, status_code=status.HTTP_201_CREATED)
def create_device(body: DeviceCreate, session: WriteSessionDep, principal: PrincipalDep) -> DevicePublic:
    """Register a device; its profiler must be installed here and accept the settings.

    409 if the name exists.
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
    out = DevicePublic.model_validate(device, from_attributes=True)
    session.commit()
    return out


@router.get("", response_model=list[DevicePublic])
def list_devices(session: SessionDep) -> list[DevicePublic]:
    return [DevicePublic.model_validate(d, from_attributes=True) for d in repo.list_devices(session)]


@router.get("/{name}", response_model=DevicePublic)
def get_device(session: SessionDep, name: str = Path(max_length=128)) -> DevicePublic:
    """One device, as the device agent reads it: name, profiler and settings."""
    return DevicePublic.model_validate(repo.get_device(session, name), from_attributes=True)
