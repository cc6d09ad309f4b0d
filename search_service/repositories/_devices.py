"""Devices: the registered chips."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ConflictError, NotFoundError
from ..models import Device
from ..schemas import DeviceCreate


def get_device(session: Session, name: str) -> Device:
    device = session.scalar(select(Device).where(Device.name == name))
    if device is None:
        raise NotFoundError(f"unknown device {name!r}; register it with POST /v1/devices")
    return device


def list_devices(session: Session) -> list[Device]:
    return list(session.scalars(select(Device).order_by(Device.name)))


def create_device(session: Session, body: DeviceCreate) -> Device:
    if session.scalar(select(Device.id).where(Device.name == body.name)) is not None:
        raise ConflictError(f"device {body.name!r} already exists")
    device = Device(name=body.name, profiler=body.profiler, settings=body.settings)
    session.add(device)
    session.flush()
    return device
