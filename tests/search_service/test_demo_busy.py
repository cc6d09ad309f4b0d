"""``gpnas demo`` warns before timing on a busy machine (issue 21.4)."""

from __future__ import annotations

from search_service.cli._demo import busy_warning


def test_busy_warning():
    assert busy_warning(0.3, 2) is None
    assert busy_warning(0.9, 2) is None  # below one busy core
    warning = busy_warning(2.4, 2)
    assert warning is not None and "load 2.4 on 2 cores" in warning and "--database-url" in warning
    # Half the cores busy on a large machine, not one process among 16.
    assert busy_warning(1.5, 16) is None
    assert busy_warning(8.0, 16) is not None
    assert busy_warning(5.0, None) is None
