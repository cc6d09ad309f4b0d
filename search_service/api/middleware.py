"""Pure-ASGI middlewares that guard every request before any route sees it.

* :class:`BodyLimitMiddleware` caps the request body while it is being received, so an oversized
  upload is answered (413) without ever being held in memory or parsed.
* :class:`NestingGuardMiddleware` answers 400, not 500, to bodies nested so deeply that handling
  them overflows Python's recursion limit.
* :class:`TrustedHostMiddleware` rejects ``Host`` headers outside an allow-list (DNS rebinding).
* :class:`SecurityHeadersMiddleware` adds browser hardening headers to every response.

They are plain ASGI callables rather than Starlette ``BaseHTTPMiddleware`` subclasses: those see
the request before the app runs and the response after, but not the body's messages one by one,
so they could not answer in the middle of an upload.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("gpnas.api")

# Only the page's own files: no inline scripts or styles, no framing (clickjacking), no <base>
# tricks. ``data:`` images are allowed for the page's empty favicon link.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


async def send_json(send: Send, status: int, detail: str, *, close: bool = False) -> None:
    """Answer ``{"detail": detail}`` with ``status`` straight through ASGI ``send``.

    Args:
        send: The ASGI send callable of the request.
        status: HTTP status code.
        detail: The error message.
        close: Add ``Connection: close``; used when the rest of the request body is left unread,
            so that the server does not try to reuse a connection that is mid-upload.
    """
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Reject request bodies over ``max_body_bytes`` with 413 while they arrive.

    A declared ``Content-Length`` over the limit is answered before the app runs. Otherwise (a
    chunked body, or one without ``Content-Length``) the bytes of each ``http.request`` message
    are counted as the app receives them; once the count passes the limit the 413 is sent at
    once and the app is told the client disconnected, so nothing buffers the remainder. FastAPI
    reads (and parses) the body before it checks the Bearer token, so without this an anonymous
    client can make the server hold and parse any amount of JSON.
    """

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, path_limits: Mapping[str, tuple[int, str]] | None = None
    ) -> None:
        """Wrap ``app``.

        Args:
            app: The ASGI app to protect.
            max_body_bytes: The largest accepted request body, in bytes.
            path_limits: Another limit for the bodies of some paths (uploads of files larger than
                any JSON request): ``{path: (bytes, setting that raises it)}``.
        """
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.path_limits = dict(path_limits or {})

    @property
    def detail(self) -> str:
        """The 413's message, naming the limit and the setting that raises it."""
        return self._detail(self.max_body_bytes, "GPNAS_MAX_BODY_BYTES")

    @staticmethod
    def _detail(limit: int, setting: str) -> str:
        return f"request body over {limit} bytes ({setting})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.path_limits.get(scope["path"], (self.max_body_bytes, "GPNAS_MAX_BODY_BYTES"))
        detail = self._detail(limit, setting)
        declared = _content_length(scope["headers"])
        if declared is not None and declared > limit:
            await send_json(send, 413, detail, close=True)
            return

        received = 0
        app_started = False  # the app's own response began: too late for a 413
        rejected = False  # our 413 went out: the app's response must be dropped

        async def limited_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] != "http.request":
                return message
            received += len(message.get("body", b""))
            if received <= limit:
                return message
            if not app_started:
                rejected = True
                await send_json(send, 413, detail, close=True)
            # To the app this looks like a client that went away, which every ASGI app handles.
            return {"type": "http.disconnect"}

        async def guarded_send(message: Message) -> None:
            nonlocal app_started
            if rejected:
                return
            if message["type"] == "http.response.start":
                app_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            # After our 413 the request is over; what the app raises about its cut-off body
            # (e.g. Starlette's ClientDisconnect) is a consequence, not an error to report.
            if not rejected:
                raise


class NestingGuardMiddleware:
    """Answer 400 instead of 500 when a request's nesting overflows Python's recursion limit.

    Python's JSON parser refuses a body nested deeper than about 1000 levels (FastAPI answers 400),
    but one a little shallower parses, and then whatever walks it a few frames deeper (a recursive
    validator, the 422 answer echoing the input back as JSON) raises RecursionError. While a
    request is handled that comes from input nested like this, so it is answered as the client's
    error (and logged); the stack has unwound by the time the error gets here, so answering is safe.
    """

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except RecursionError:
            if started:
                raise
            log.info("%s %s: request nested too deeply (RecursionError)", scope["method"], scope["path"])
            await send_json(send, 400, "request body nested too deeply")


class TrustedHostMiddleware:
    """Answer 400 to requests whose ``Host`` is not in ``allowed_hosts`` (any port).

    Against DNS rebinding: a web page on ``evil.example`` whose name is re-pointed at 127.0.0.1
    can send requests to a server on localhost, but they still say ``Host: evil.example``.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        """Wrap ``app``.

        Args:
            app: The ASGI app to protect.
            allowed_hosts: Host names or IP addresses (IPv6 with or without brackets), ``*`` for
                any host, or ``*.example.com`` for every subdomain of example.com.
        """
        self.app = app
        patterns = [_bare_host(host) for host in allowed_hosts]
        self.allow_any = "*" in patterns
        self.exact = {host for host in patterns if not host.startswith("*.")}
        self.suffixes = tuple(host[1:] for host in patterns if host.startswith("*."))

    def allows(self, host: str) -> bool:
        """Whether the host name ``host`` (no port, lower case) is allowed."""
        return self.allow_any or host in self.exact or host.endswith(self.suffixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.allow_any:
            await self.app(scope, receive, send)
            return
        host = _host_name(_header(scope["headers"], b"host") or "")
        if self.allows(host):
            await self.app(scope, receive, send)
            return
        await send_json(send, 400, f"host {host!r} is not allowed (GPNAS_ALLOWED_HOSTS)")


class SecurityHeadersMiddleware:
    """Add the :data:`SECURITY_HEADERS` to every response that does not set them itself.

    A route's own header wins: the API docs page sends its own ``Content-Security-Policy`` (with
    the hash of its inline script), which this policy would block.
    """

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in SECURITY_HEADERS if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    value = _header(headers, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None  # the server's HTTP parser answers a malformed length itself


def _bare_host(host: str) -> str:
    """``host`` in lower case, without the brackets of an IPv6 literal."""
    host = host.strip().lower()
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _host_name(header: str) -> str:
    """The host of a ``Host`` header value, without port: ``[::1]:8000`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header
