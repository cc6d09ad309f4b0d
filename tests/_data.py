"""Where the tests find the real reference data, and the one rule when it is missing.

``DATA_DIR`` is ``$GPNAS_TEST_DATA`` when that is set, else ``../shared/data`` beside the checkout
(the measurements described by its README: ``ufo_track2/``, ``device_latency/``).

The rule: the data is required, never optional. CI always runs with ``../shared`` beside the
checkout, so a missing directory means a broken setup, and every test that reads the data fails
(pytest ``error`` at setup) with a message saying how to provide it, instead of skipping silently
and letting a green run hide untested code. Tests that read the data ask for the ``data_dir``
fixture of ``tests/conftest.py``, directly or with ``@pytest.mark.usefixtures("data_dir")``, and
reach files through it (or through ``DATA_DIR`` where a module-level constant needs the path).

``tests`` is a package (``tests/__init__.py``): loading ``tests/conftest.py`` puts the repository
root on sys.path, so every test directory imports this module as ``from tests._data import ...``.
(``tests/`` itself must not go on sys.path: ``tests/supernet`` and its siblings, namespace
directories there, would shadow the real packages of the editable install.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_ENV = "GPNAS_TEST_DATA"
REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else REPO.parent / "shared" / "data"


def require_data() -> Path:
    """``DATA_DIR``, or fail the calling test saying how to provide the data."""
    if not DATA_DIR.is_dir():
        source = f"${DATA_ENV}" if os.environ.get(DATA_ENV) else "../shared/data beside the checkout"
        pytest.fail(
            f"reference data not found at {DATA_DIR} ({source}). The tests need the shared data "
            f"(ufo_track2/, device_latency/, see its README): put it at {REPO.parent / 'shared' / 'data'} "
            f"or run with {DATA_ENV}=/path/to/shared/data",
            pytrace=False,
        )
    return DATA_DIR
