"""Property-based requests generated from /openapi.json never get a 5xx (SQLite and PostgreSQL)."""

from __future__ import annotations

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from service_helpers import RIDGE, make_settings, measurements, register

from search_service import create_app

EXAMPLES = 25  # per operation: ~20 operations x 25 x 2 backends keeps this file near a minute


def test_no_server_errors(db_url: str) -> None:
    app = create_app(make_settings(db_url, **RIDGE))
    # Some state, so that generated requests also reach the paths behind "exists" checks.
    with TestClient(app) as client:
        register(client)
        client.post("/v1/measurements", json={"measurements": measurements(3)})
        client.post("/v1/campaigns", json={"space": "fbnet", "device": "dev1", "n": 3})
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        check()
