"""One router per resource; :data:`api_router` mounts them all."""

from fastapi import APIRouter

from . import campaigns, devices, health, jobs, measurements, refit, search, spaces

api_router = APIRouter()
for _module in (health, spaces, devices, measurements, campaigns, jobs, search, refit):
    api_router.include_router(_module.router)

__all__ = ["api_router"]
