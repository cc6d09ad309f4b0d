"""The web page: the Pareto front plot and the latency-budget slider, served from package files."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

router = APIRouter(include_in_schema=False)
_WEB = resources.files("search_service") / "web"
_TYPES = {"app.js": "text/javascript", "style.css": "text/css"}


@router.get("/")
def index() -> FileResponse:
    return FileResponse(str(_WEB / "index.html"), media_type="text/html")


@router.get("/web/{name}")
def asset(name: str) -> Response:
    # Only the page's own files: no path from the request reaches the file system.
    if name not in _TYPES:
        return Response(status_code=404)
    return FileResponse(str(_WEB / name), media_type=_TYPES[name])
