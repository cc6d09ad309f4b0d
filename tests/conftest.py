"""Fixtures of every test directory: the real reference data (see ``tests/_data.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._data import DATA_DIR, DATA_ENV, require_data


def pytest_report_header() -> str:
    found = "" if DATA_DIR.is_dir() else " (MISSING: tests that read it will fail)"
    return f"reference data: {DATA_DIR}{found} (set {DATA_ENV} to use another copy)"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The reference data directory; fails (never skips) when it is missing."""
    return require_data()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own cache directory: ``gpnas profile`` keeps long-run reference levels
    there (``~/.cache/gpnas/levels.json``), and a level left by another test or by the user's own
    runs would rescale what a test measures."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
