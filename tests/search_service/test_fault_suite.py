"""The fast part of the fault suite (benchmarks/faults.py) on a real stack: a deployment-query
flood, a killed API and a broker outage lose nothing acknowledged and answer no 500."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN = os.environ.get("GPNAS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="the suite runs a private redis-server")
def test_faults_lose_nothing_and_answer_no_500(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks.faults",
        "--admin-url",
        PG_ADMIN,
        "--scenarios",
        "quiet,flood,api-kill,broker-outage",
        "--phase-s",
        "4",
        "--jobs",
        "6",
        "--agents",
        "2",
        "--seed-subnets",
        "30",
        "--stale-timeout-s",
        "90",
        "--json",
        str(out),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = {r["scenario"]: r for r in json.loads(out.read_text())}
    assert set(results) == {"quiet", "flood", "api-kill", "broker-outage"}
    for r in results.values():
        assert (r["lost"], r["duplicated"], r["errors_500"]) == (0, 0, 0), r
        assert r["acked"] == 6, r
    assert results["api-kill"]["unanswered"] > 0  # the API really was down
    # Work posted while the broker was down runs within a minute of its return.
    stale = results["broker-outage"]["stale_s"]
    assert stale is not None and stale <= 60, results["broker-outage"]
    assert "503" in results["broker-outage"]["note"]
