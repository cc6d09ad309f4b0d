"""One router per resource, in :data:`routers` (the app includes each)."""

from . import (
    artifacts,
    campaigns,
    deployments,
    devices,
    docs,
    health,
    jobs,
    measurements,
    refit,
    search,
    spaces,
    supernets,
    tokens,
    web,
)

# Routes are matched in order: the hot /v1/query route goes first. Included one by one on the app
# rather than through a parent router, which would add a level of matching to every request.
routers = [
    m.router
    for m in (
        search,
        measurements,
        jobs,
        health,
        spaces,
        devices,
        campaigns,
        deployments,
        artifacts,
        refit,
        supernets,
        tokens,
        web,
        docs,
    )
]

__all__ = ["routers"]
