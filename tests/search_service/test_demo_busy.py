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


def test_the_demo_refuses_a_taken_port_before_it_starts(tmp_path) -> None:
    """With port 8000 taken the demo printed its URLs and token as if ready, then died with
    Errno 98 after minutes of profiling."""
    import socket

    from typer.testing import CliRunner

    from search_service.cli import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        url = f"sqlite:///{tmp_path / 'demo.db'}"
        out = CliRunner().invoke(app, ["demo", "--port", str(port), "--database-url", url])
    assert out.exit_code != 0 and f"cannot serve on 127.0.0.1:{port}" in str(out.exception)
    assert f"make demo PORT={port + 1}" in str(out.exception)
    assert not (tmp_path / "demo.db").exists()  # nothing ran
