"""API tokens: labels, expiry, revocation, the admin routes and the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_helpers import measurements, register
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from search_service import repositories as repo
from search_service.cli import app as cli_app
from search_service.core import make_engine, make_sessionmaker
from search_service.errors import NotFoundError, UnauthorizedError
from search_service.models import utcnow

PUBLIC_KEYS = {"id", "label", "device", "created_at", "expires_at", "revoked_at", "status"}


@contextmanager
def _session(db_url: str) -> Iterator[Session]:
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine, write=True)() as session:
            yield session
    finally:
        engine.dispose()


def _stored_token(db_url: str, **fields: object) -> tuple[int, str]:
    """A token made through the repository (any expiry, even a past one): its id and secret."""
    with _session(db_url) as session:
        token, secret = repo.create_token(session, **fields)
        token_id = token.id
        session.commit()
    return token_id, secret


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_create_with_label_device_and_expiry(auth_client: TestClient, db_url: str) -> None:
    admin = _bearer(_stored_token(db_url, label="admin")[1])
    register(auth_client, "dev1", headers=admin)
    before = utcnow()
    created = auth_client.post(
        "/v1/tokens", json={"label": "lab agent", "device": "dev1", "expires_in_s": 3600}, headers=admin
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"id", "token", "label", "device", "expires_at", "created_at"}
    assert (body["label"], body["device"]) == ("lab agent", "dev1")
    lifetime = _when(body["expires_at"]) - before
    assert dt.timedelta(seconds=3600) <= lifetime < dt.timedelta(seconds=3660)

    # The new token works, and only for its device.
    agent = _bearer(body["token"])
    assert auth_client.post("/v1/jobs/lease", json={"device": "dev1"}, headers=agent).status_code == 200
    assert auth_client.post("/v1/jobs/lease", json={"device": "dev2"}, headers=agent).status_code == 403
    listed = {t["id"]: t for t in auth_client.get("/v1/tokens", headers=admin).json()}
    assert listed[body["id"]]["status"] == "active"
    assert _when(listed[body["id"]]["expires_at"]) == _when(body["expires_at"])
    assert listed[body["id"]]["revoked_at"] is None

    # Without an expiry or a device: unrestricted, never expiring.
    forever = auth_client.post("/v1/tokens", json={"label": "ci"}, headers=admin).json()
    assert forever["expires_at"] is None and forever["device"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "label"),
        ({"label": ""}, "label"),
        ({"label": "x" * 129}, "label"),
        ({"label": "a\x00b"}, "label"),
        ({"label": "x", "expires_in_s": 59}, "expires_in_s"),
        ({"label": "x", "expires_in_s": 5 * 365 * 86_400 + 1}, "expires_in_s"),
        ({"label": "x", "device": "no-such-device"}, "device"),
        ({"label": "x", "device": "not a name"}, "device"),
        ({"label": "x", "scope": "all"}, "scope"),
    ],
)
def test_invalid_creations_name_the_field_and_store_nothing(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    answer = client.post("/v1/tokens", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", field]
    assert client.get("/v1/tokens").json() == []


def test_unregistered_device_is_named_in_the_error(client: TestClient) -> None:
    answer = client.post("/v1/tokens", json={"label": "x", "device": "ghost"})
    assert answer.status_code == 422 and "unknown device 'ghost'" in answer.json()["detail"][0]["msg"]


def test_listing_never_contains_a_secret_or_its_hash(auth_client: TestClient, db_url: str) -> None:
    admin_secret = _stored_token(db_url, label="admin")[1]
    admin = _bearer(admin_secret)
    register(auth_client, "dev1", headers=admin)
    made = [
        auth_client.post("/v1/tokens", json={"label": "a", "device": "dev1"}, headers=admin).json(),
        auth_client.post("/v1/tokens", json={"label": "b", "expires_in_s": 60}, headers=admin).json(),
    ]
    listing = auth_client.get("/v1/tokens", headers=admin)
    assert listing.status_code == 200
    assert [t["label"] for t in listing.json()] == ["admin", "a", "b"]
    assert all(set(t) == PUBLIC_KEYS for t in listing.json())
    for secret in [admin_secret, *(m["token"] for m in made)]:
        assert secret not in listing.text and repo.hash_token(secret) not in listing.text


def test_revoked_token_gets_401_while_another_still_works(auth_client: TestClient, db_url: str) -> None:
    admin = _bearer(_stored_token(db_url, label="admin")[1])
    register(auth_client, "dev1", headers=admin)
    first = auth_client.post("/v1/tokens", json={"label": "one", "device": "dev1"}, headers=admin).json()
    second = auth_client.post("/v1/tokens", json={"label": "two", "device": "dev1"}, headers=admin).json()
    batch = {"measurements": measurements(1)}
    before = auth_client.post("/v1/measurements", json=batch, headers=_bearer(first["token"]))
    assert before.status_code == 200, before.text

    revoked = auth_client.delete(f"/v1/tokens/{first['id']}", headers=admin)
    assert revoked.status_code == 200, revoked.text
    assert set(revoked.json()) == PUBLIC_KEYS
    assert revoked.json()["status"] == "revoked" and revoked.json()["revoked_at"] is not None

    refused = auth_client.post(
        "/v1/measurements", json={"measurements": measurements(1, seed=1)}, headers=_bearer(first["token"])
    )
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert refused.headers["www-authenticate"] == "Bearer"
    still = auth_client.post(
        "/v1/measurements", json={"measurements": measurements(1, seed=2)}, headers=_bearer(second["token"])
    )
    assert still.status_code == 200, still.text

    # Idempotent: revoking again answers the same row with the first revocation time.
    again = auth_client.delete(f"/v1/tokens/{first['id']}", headers=admin)
    assert again.status_code == 200 and again.json() == revoked.json()
    statuses = {t["id"]: t["status"] for t in auth_client.get("/v1/tokens", headers=admin).json()}
    assert (statuses[first["id"]], statuses[second["id"]]) == ("revoked", "active")


def test_revoke_keeps_the_first_time_and_refuses_unknown_ids(db_url: str) -> None:
    token_id, _ = _stored_token(db_url, label="x")
    first, later = utcnow() - dt.timedelta(hours=1), utcnow()
    with _session(db_url) as session:
        assert repo.revoke_token(session, token_id, now=first).revoked_at == first
        session.commit()
    with _session(db_url) as session:
        assert repo.revoke_token(session, token_id, now=later).revoked_at == first
        with pytest.raises(NotFoundError, match="unknown token id 999"):
            repo.revoke_token(session, 999)


def test_expired_token_gets_401_expired(auth_client: TestClient, db_url: str) -> None:
    admin = _bearer(_stored_token(db_url, label="admin")[1])
    expired_id, expired = _stored_token(db_url, label="old", expires_at=utcnow() - dt.timedelta(seconds=1))
    body = {"name": "dev1", "profiler": "torch-cpu", "settings": {}}
    refused = auth_client.post("/v1/devices", json=body, headers=_bearer(expired))
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]
    unknown = auth_client.post("/v1/devices", json=body, headers=_bearer("gpnas_never-issued"))
    assert unknown.status_code == 401 and unknown.json()["detail"] == "unknown token"
    register(auth_client, "dev1", headers=admin)  # an unexpired admin token still works
    statuses = {t["id"]: t["status"] for t in auth_client.get("/v1/tokens", headers=admin).json()}
    assert statuses[expired_id] == "expired"


def test_expiry_is_judged_at_the_injected_time(db_url: str) -> None:
    now = utcnow()
    _, secret = _stored_token(db_url, label="day", expires_at=now + dt.timedelta(days=1))
    with _session(db_url) as session:
        assert repo.authenticate(session, secret, now=now).label == "day"
        with pytest.raises(UnauthorizedError, match="expired"):
            repo.authenticate(session, secret, now=now + dt.timedelta(days=1))
        with pytest.raises(UnauthorizedError, match="unknown token"):
            repo.authenticate(session, secret + "x", now=now)


def test_only_admin_tokens_manage_tokens(auth_client: TestClient, db_url: str) -> None:
    admin = _bearer(_stored_token(db_url, label="admin")[1])
    register(auth_client, "dev1", headers=admin)
    device_id, device_secret = _stored_token(db_url, device="dev1", label="agent")
    device = _bearer(device_secret)
    assert auth_client.post("/v1/tokens", json={"label": "x"}, headers=device).status_code == 403
    assert auth_client.get("/v1/tokens", headers=device).status_code == 403
    assert auth_client.delete(f"/v1/tokens/{device_id}", headers=device).status_code == 403
    assert auth_client.get("/v1/tokens").status_code == 401  # unlike other reads, the listing is closed
    statuses = {t["id"]: t["status"] for t in auth_client.get("/v1/tokens", headers=admin).json()}
    assert statuses[device_id] == "active"  # the refused revocation changed nothing


def test_unknown_token_id_is_404(client: TestClient) -> None:
    missing = client.delete("/v1/tokens/999")
    assert missing.status_code == 404 and "unknown token id 999" in missing.json()["detail"]
    assert client.delete("/v1/tokens/0").status_code == 422
    assert client.delete(f"/v1/tokens/{2**31}").status_code == 422


def test_cli_create_list_revoke(auth_client: TestClient, db_url: str) -> None:
    runner = CliRunner()

    def gpnas(*args: str) -> str:
        result = runner.invoke(cli_app, ["token", *args], env={"GPNAS_DATABASE_URL": db_url})
        assert result.exit_code == 0, result.output
        return result.output

    before = utcnow()
    made = gpnas("create", "--label", "lab bench", "--expires-in", "12h")
    secret = made.split()[-1]  # the documented contract: the token is the last word
    assert secret.startswith("gpnas_")
    plain = gpnas("create", "--device", "dev1").split()[-1]
    lines = gpnas("list").splitlines()
    assert lines[0].split() == ["id", "label", "device", "status", "created", "expires"]
    assert len(lines) == 3
    assert "lab bench" in lines[1] and "(any)" in lines[1] and "active" in lines[1]
    assert (before + dt.timedelta(hours=12)).strftime("%Y-%m-%d") in lines[1]
    assert "dev1" in lines[2] and lines[2].rstrip().endswith("-")  # no label shown as "-", never expires
    listing = "\n".join(lines)
    for value in (secret, plain):
        assert value not in listing and repo.hash_token(value) not in listing

    token_id = lines[1].split()[0]
    body = {"name": "dev1", "profiler": "torch-cpu", "settings": {}}
    assert "revoked" in gpnas("revoke", token_id)
    assert "revoked" in gpnas("revoke", token_id)  # idempotent
    assert "revoked" in gpnas("list").splitlines()[1]
    refused = auth_client.post("/v1/devices", json=body, headers=_bearer(secret))
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]

    unknown = runner.invoke(cli_app, ["token", "revoke", "999"], env={"GPNAS_DATABASE_URL": db_url})
    assert isinstance(unknown.exception, ValueError) and "unknown token id 999" in str(unknown.exception)
    for bad in (["--expires-in", "5y"], ["--expires-in", "30s"], ["--label", "x" * 129], ["--device", "a b"]):
        result = runner.invoke(cli_app, ["token", "create", *bad], env={"GPNAS_DATABASE_URL": db_url})
        assert isinstance(result.exception, ValueError), (bad, result.output)
    assert len(gpnas("list").splitlines()) == 3  # nothing stored by the refused commands


def test_cli_bad_input_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from search_service.cli import main; main()", "token", "create"]
        + ["--expires-in", "12 hours"],
        capture_output=True,
        text=True,
        env={"GPNAS_DATABASE_URL": f"sqlite:///{tmp_path}/unused.db", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: --expires-in '12 hours': give a whole number and a unit, e.g. 30d, 12h, 90m, 3600s"
    ]
