"""The typed client of the admin commands that write through the API's routes (``gpnas device
add``, ``gpnas measurements upload``): of a running server with an admin token, or of the app
built in process on a database, so that the routes' rules apply either way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    from search_service.client import GpnasClient


@contextmanager
def admin_client(server: str | None, token: str | None, database: str | None) -> Iterator[GpnasClient]:
    """A client of ``server`` sending ``token``, or of the app built in process on ``database``
    with authentication off: whoever opens the database holds every right already (as with
    ``gpnas token create``), and every other rule of the routes still applies.

    Raises:
        UserError: The database does not exist or is not migrated.
    """
    from search_service.client import GpnasClient

    if server is not None:
        # A couple of quick retries: a person is waiting, unlike a device agent.
        with GpnasClient(server, token, max_retries=2, backoff=0.25) as api:
            yield api
        return
    from fastapi.testclient import TestClient

    from search_service.core import SchemaOutdatedError, Settings
    from search_service.main import create_app

    assert database is not None
    try:
        app = create_app(Settings(database_url=database, refit_worker=False, auth=False))
    except SchemaOutdatedError as error:
        raise UserError(str(error)) from None
    try:
        with GpnasClient("http://gpnas.local", http=TestClient(app), max_retries=0) as api:
            yield api
    finally:
        app.state.engine.dispose()
