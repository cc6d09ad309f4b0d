"""The interactive API docs at ``/docs``: Swagger UI served from package files, so it works offline.

FastAPI's built-in page (turned off in :func:`search_service.create_app`) loads Swagger UI from a
CDN and is blank without internet access; this one serves the copy of Swagger UI 5 in the pinned
``fastapi-offline`` package (``swagger-ui-bundle`` ships Swagger UI 4, which cannot read the
OpenAPI 3.1 schemas FastAPI writes).
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response

router = APIRouter(include_in_schema=False)
_STATIC = resources.files("fastapi_offline") / "static"

# Only the files the page loads, with their types: no path from the request reaches the file system.
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def content_security_policy(html: str) -> str:
    """The docs page's Content-Security-Policy: files of this origin only, plus its inline scripts.

    The service's policy forbids inline scripts, but Swagger UI is started by one in the page
    that :func:`get_swagger_ui_html` writes. Allowing that script by its hash, rather than with
    ``'unsafe-inline'``, keeps any other injected script blocked.

    Args:
        html: The page as sent.

    Returns:
        The header value, with a ``'sha256-...'`` source per inline ``<script>`` of ``html``.
    """
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in _INLINE_SCRIPT.findall(html)
    )
    # ``data:`` images: Swagger UI's stylesheet embeds its icons as data: URLs.
    return (
        f"default-src 'self'; script-src 'self'{hashes}; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI for the app's OpenAPI schema, loading nothing from another host."""
    # Behind a proxy that mounts the app under a prefix, every URL of the page needs that prefix.
    root = request.scope.get("root_path", "").rstrip("/")
    static = f"{root}/docs/static"
    page = get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{static}/swagger-ui-bundle.js",
        swagger_css_url=f"{static}/swagger-ui.css",
        swagger_favicon_url=f"{static}/favicon.png",
    )
    page.headers["Content-Security-Policy"] = content_security_policy(bytes(page.body).decode())
    return page


@router.get("/docs/static/{name}")
def swagger_ui_asset(name: str) -> Response:
    """One of the Swagger UI files the docs page loads; 404 for any other name."""
    if name not in _ASSETS:
        return Response(status_code=404)
    return FileResponse(str(_STATIC / name), media_type=_ASSETS[name])
