"""Starting a gpnas server for a test or a benchmark: a free port, the ``gpnas`` command, waiting
until ``/healthz`` answers, and an app served by uvicorn in a thread.

It lives in the installed package, not in ``tests/`` or ``benchmarks/``, because both need it and
neither should import the other: the tests must run without the benchmark scripts, and the
benchmarks against an installed gpnas without its test tree. It imports only the standard
library, httpx and uvicorn (dependencies of the service already), never pytest.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now (closed again on return)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def gpnas_command(*args: str) -> list[str]:
    """The ``gpnas`` command line with ``args``, run by this interpreter (a virtual environment's
    ``gpnas`` script need not be on ``PATH``)."""
    return [sys.executable, "-c", "from search_service.cli import main; main()", *args]


def wait_until_healthy(
    url: str,
    *,
    process: subprocess.Popen[bytes] | None = None,
    timeout_s: float = 60.0,
    explain: Callable[[], str] = lambda: "",
) -> None:
    """Return once ``GET {url}/healthz`` answers 200.

    Args:
        url: The server's base URL.
        process: The server's process: its exit ends the wait at once.
        timeout_s: How long to wait.
        explain: What to add to the error (e.g. the tail of the server's log).

    Raises:
        RuntimeError: The process exited or ``timeout_s`` passed first.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server at {url} exited with status {process.returncode}: {explain()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server at {url} did not answer within {timeout_s:g} s: {explain()}")
        time.sleep(0.1)


@contextmanager
def serving(app: FastAPI, timeout_s: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1 in a daemon thread; yields its base URL
    once it listens, and stops it on exit.

    Raises:
        RuntimeError: uvicorn did not start within ``timeout_s``.
    """
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on port {port}")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
