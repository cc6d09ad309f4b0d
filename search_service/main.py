"""The FastAPI application factory."""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from predictors import StopRequestedError, request_stop

from .admission import Admission
from .api.middleware import (
    BodyLimitMiddleware,
    NestingGuardMiddleware,
    SecurityHeadersMiddleware,
    TrustedHostMiddleware,
)
from .api.routes import routers
from .api.routes.health import SCHEMA_RETRY_AFTER_S
from .core import Settings, check_schema, make_engine, make_sessionmaker, require_database, schema_problem
from .errors import ServiceError
from .models import Base
from .refit import Refitter
from .search import FrontCache
from .services.spaces import SqlSpaceSource, install_space_source, uninstall_space_source
from .work import use_threads

log = logging.getLogger("gpnas.api")

DESCRIPTION = """Hardware-aware subnet search: measurements in, predicted Pareto fronts and
latency-budget queries out. Reads are open; writes need `Authorization: Bearer <token>`
(`gpnas token create`) unless the server runs with `GPNAS_AUTH=off`."""


def _utf8_safe(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udXXX`` escapes, so an answer can encode it."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def operation_id(route: APIRoute) -> str:
    """The OpenAPI operation id of ``route``: its function's name (``query``, ``lease_jobs``), so
    that generated clients name their methods after the routes. Route functions are named
    verb_noun and are unique across the routers (tests/search_service/test_openapi_ids.py)."""
    return route.name


def stop_work_on_sigterm() -> None:
    """Make SIGTERM interrupt this process's fits and searches at their next step (see
    :func:`predictors.request_stop`) before the server's own handler begins its graceful
    shutdown, which waits for the requests in flight: a waited-for refit must not hold it for
    minutes. Only the main thread can install handlers (uvicorn's serve runs there; test
    clients do not)."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handle(signum: int, frame: FrameType | None) -> None:
        request_stop()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, handle)


def _lacks_schema(error: DBAPIError) -> bool:
    """Whether ``error`` is a statement on a table or column the database does not have."""
    if getattr(error.orig, "sqlstate", None) in ("42P01", "42703"):  # PostgreSQL: undefined table, column
        return True
    text = str(error.orig)
    return "no such table" in text or "no such column" in text  # SQLite


async def _schema_unavailable(request: Request, error: DBAPIError) -> JSONResponse:
    """503 naming the revision the database is at and the one this gpnas needs."""
    try:
        problem = await run_in_threadpool(schema_problem, request.app.state.engine, Base.metadata.tables)
    except Exception:  # the database may be failing in other ways too
        problem = None
    detail = problem or f"the database lacks a table this gpnas needs ({error.orig}): run `gpnas db upgrade`"
    log.error("database schema: %s", detail)
    return JSONResponse(
        {"detail": detail}, status_code=503, headers={"Retry-After": str(SCHEMA_RETRY_AFTER_S)}
    )


def _database_unavailable_handlers(app: FastAPI, settings: Settings) -> None:
    """Answer 503 with Retry-After, never 500, when the database cannot serve a request now."""

    @app.exception_handler(ProgrammingError)
    async def _programming(request: Request, error: ProgrammingError) -> JSONResponse:
        if _lacks_schema(error):
            return await _schema_unavailable(request, error)
        raise error  # a bug: the server's 500

    @app.exception_handler(OperationalError)
    async def _unavailable(request: Request, error: OperationalError) -> JSONResponse:
        if _lacks_schema(error):
            return await _schema_unavailable(request, error)
        log.warning("database unavailable: %s", error.orig)
        return JSONResponse(
            {"detail": "database temporarily unavailable; retry"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(PoolTimeoutError)
    async def _pool_exhausted(_: Request, error: PoolTimeoutError) -> JSONResponse:
        # Every pooled connection is taken (slow requests, or more at once than the pool holds):
        # answer now rather than after SQLAlchemy's 30 s; the client's retry finds one free.
        log.warning("database connection pool exhausted: %s", error)
        return JSONResponse(
            {
                "detail": f"no database connection free within {settings.db_pool_timeout_s:g} s "
                "(all in use by other requests); retry"
            },
            status_code=503,
            headers={"Retry-After": "1"},
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for ``settings`` (default: from the ``GPNAS_*`` environment).

    Raises:
        SchemaOutdatedError: If the database does not exist or is not at the newest migration;
            its message says to run ``gpnas db upgrade``.
    """
    settings = settings or Settings()
    require_database(settings.database_url)
    engine = make_engine(settings.database_url, pool_timeout_s=settings.db_pool_timeout_s)
    try:
        check_schema(engine)
    except Exception:
        engine.dispose()
        raise
    read_sessions = make_sessionmaker(engine)
    write_sessions = make_sessionmaker(engine, write=True)
    refitter = Refitter(read_sessions, write_sessions, settings)
    admission = Admission(
        concurrency=settings.heavy_slots(),
        queue_size=settings.heavy_queue,
        per_token=settings.heavy_per_token,
        anonymous=settings.heavy_anonymous,
        queue_wait_s=settings.heavy_queue_wait_s,
    )
    # Spaces registered as data (by this process, another API process or `gpnas spaces add`) are
    # found by supernet.get_space everywhere: schema validators, fits, fronts, campaigns.
    space_source = install_space_source(SqlSpaceSource(read_sessions))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop_work_on_sigterm()
        if settings.refit_worker:
            if refitter.runner.in_process:
                use_threads(settings.torch_threads)
            refitter.start()
        try:
            yield
        finally:
            admission.close()
            refitter.stop()
            uninstall_space_source(space_source)
            engine.dispose()

    # No built-in /docs or /redoc: they load their scripts from a CDN. routes/docs.py serves /docs.
    app = FastAPI(
        title="gpnas",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.read_sessions = read_sessions
    app.state.write_sessions = write_sessions
    app.state.refitter = refitter
    app.state.admission = admission
    app.state.front_cache = FrontCache(settings.front_cache_s)

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, error: ServiceError) -> JSONResponse:
        detail = {"detail": error.detail()}
        return JSONResponse(detail, status_code=error.status_code, headers=error.headers())

    @app.exception_handler(StopRequestedError)
    async def _stopping(_: Request, error: StopRequestedError) -> JSONResponse:
        # SIGTERM interrupted the request's fit or search: another process (or this one, restarted)
        # can do it.
        return JSONResponse(
            {"detail": "the server is shutting down; retry"}, status_code=503, headers={"Retry-After": "5"}
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each offending input, which fails on NaN, infinities and
        # lone surrogates (not JSON, not UTF-8): keep loc, msg and type as UTF-8-safe text, and the
        # input only where JSON can carry it.
        detail = []
        for item in error.errors():
            out = {
                "loc": [_utf8_safe(part) if isinstance(part, str) else part for part in item["loc"]],
                "msg": _utf8_safe(str(item["msg"])),
                "type": item["type"],
            }
            try:
                json.dumps(item.get("input"), allow_nan=False, ensure_ascii=False).encode("utf-8")
                out["input"] = item.get("input")
            except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
                pass
            detail.append(out)
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, error: IntegrityError) -> JSONResponse:
        # Two requests raced for the same unique key (e.g. one device name); the loser retries.
        log.info("integrity conflict: %s", error.orig)
        return JSONResponse({"detail": "conflicting concurrent write; retry the request"}, status_code=409)

    _database_unavailable_handlers(app, settings)

    # add_middleware wraps what was added before, so the last one added sees requests first.
    app.add_middleware(NestingGuardMiddleware)
    trusted_hosts = settings.trusted_hosts()
    if trusted_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=trusted_hosts)
    # The outermost that touches the body, so nothing can read (or parse) one over the limit. The
    # headers middleware around it only amends responses, so the 413 and 400 carry them too.
    # Checkpoint uploads stream to disk and have their own, larger limit.
    upload_limits = {"/v1/supernets": (settings.max_supernet_mb * 2**20, "GPNAS_MAX_SUPERNET_MB")}
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes, path_limits=upload_limits)
    app.add_middleware(SecurityHeadersMiddleware)

    for router in routers:
        app.include_router(router)
    return app
