"""The docs a newcomer reads: their examples run, and the benchmark tables match their results.

Every ```bash / ```python / ```console block of README.md and docs/*.md carries a marker in the
HTML comment line above it:

- ``<!-- docs-test: run -->``: run against a live ``gpnas serve``-equivalent server (uvicorn on a
  free port) on a demo database: the shipped UFO task scores, device ``local-cpu`` with
  stand-in latencies (the demo times them live, which takes minutes), fitted and searched.
  ``http://127.0.0.1:8000`` becomes the live server, ``"gpnas_..."`` a live write token, and with
  ``budget=N`` the number N becomes a budget that the served front meets (not a hard-coded one).
  Bash blocks run with ``set -e`` and ``curl --fail-with-body``, so a 4xx fails the test.
- ``<!-- docs-test: file=NAME -->``: the block (any language) is written to NAME in the working
  directory of the blocks that run, e.g. a space definition that a later block registers.
- ``<!-- docs-test: skip: REASON -->``: not run here (Docker, a GPU, minutes of training, a
  server-less snippet); the reason is the skip reason pytest reports.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks import tables  # the package, or benchmarks/ on sys.path as the root's folder
from search_service.testing import serving

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SPACE, TASK, DEVICE = "ufo-track2", "market1501", "local-cpu"
DEMO_URL = "http://127.0.0.1:8000"
MARKER = re.compile(r"<!--\s*docs-test:\s*(?P<what>.*?)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")
CHECKED = {"bash", "sh", "console", "python"}


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    marker: str | None
    text: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _blocks(path: Path) -> list[Block]:
    """The fenced blocks of ``path`` with the marker of the line above each (if any)."""
    found: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, language = i, match.group(1)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        above = lines[start - 1] if start else ""
        marker = MARKER.search(above)
        found.append(
            Block(
                page=str(path.relative_to(ROOT)),
                line=start + 1,
                language=language,
                marker=marker.group("what") if marker else None,
                text="\n".join(lines[start + 1 : end]) + "\n",
            )
        )
        i = end + 1
    return found


BLOCKS = [block for page in PAGES for block in _blocks(page)]
RUN = [b for b in BLOCKS if b.language in CHECKED and b.marker is not None]


def test_every_command_block_is_marked() -> None:
    """A new shell or Python block must say whether it runs here, and if not, why."""
    unmarked = [b.id for b in BLOCKS if b.language in CHECKED and b.marker is None]
    assert not unmarked, f"blocks without a <!-- docs-test: ... --> marker: {unmarked}"
    for block in BLOCKS:
        if block.marker and block.marker.startswith("skip"):
            assert re.match(r"skip:\s*\S", block.marker), f"{block.id}: a skip needs a reason"


def test_benchmark_tables_are_generated() -> None:
    """benchmarks/README.md is exactly what benchmarks/tables.py makes of the result files."""
    assert (ROOT / "benchmarks" / "README.md").read_text() == tables.render(), (
        "benchmarks/README.md is out of date: run python benchmarks/tables.py"
    )


def test_readme_stays_short() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 12 * 1024
    first_screen = "\n".join(readme.splitlines()[:20])
    for needed in ("make demo", "make test", "API", "Limitations"):
        assert needed in first_screen


def test_no_internal_issue_numbers() -> None:
    """User-facing text carries no issue numbers: CHANGELOG.md keeps the history."""
    for path in [*PAGES, ROOT / "benchmarks" / "README.md"]:
        text = path.read_text()
        hits = re.findall(r"\bissues? \d+|(?<![\w&/])#\d+\b", text)
        assert not hits, f"{path.relative_to(ROOT)}: {hits}"


# --- a live server on a demo database --------------------------------------------------------


@dataclass
class Live:
    url: str
    database_url: str
    token: str
    budget: float
    workdir: Path


def _stand_in_latency(arch: str) -> float:
    """Milliseconds proportional to the subnet's MACs, at this CPU's demo scale (~200 ms)."""
    from supernet import get_space

    space = get_space(SPACE)
    return 13.0 * space.flops(space.parse(arch)) / 1e9


def _demo_data(client: Any) -> None:
    """What ``gpnas demo`` stores, with stand-in latencies instead of minutes of live timing."""
    import json

    from predictors import create_strategy
    from supernet import get_space

    space = get_space(SPACE)
    device = {"name": DEVICE, "profiler": "torch-cpu", "settings": {"batch_size": 1, "threads": 1}}
    assert client.post("/v1/devices", json=device).status_code == 201
    shipped = resources.files("search_service").joinpath("demo_data/ufo_track2_train.json").read_text()
    scores = [
        {"id": str(uuid.uuid4()), "space": SPACE, "arch": r["arch"], "task": TASK, "device": None}
        | {"metric": "score", "value": float(r[f"{TASK}_rank"])}
        for r in json.loads(shipped).values()
    ]
    design = create_strategy("cost-stratified").select(space, None, [], 30, seed=0)
    latencies = [
        {"id": str(uuid.uuid4()), "space": SPACE, "arch": space.format(s), "device": DEVICE, "task": None}
        | {"metric": "latency_ms", "value": _stand_in_latency(space.format(s)), "std": 1.0, "repeats": 10}
        for s in design
    ]
    response = client.post("/v1/measurements", json={"measurements": scores + latencies})
    assert response.status_code == 200, response.text
    refit = client.post("/v1/refit", json={"space": SPACE, "wait": True})
    assert refit.status_code == 200 and refit.json()["fronts"], refit.text


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    from fastapi.testclient import TestClient

    from search_service import create_app
    from search_service import repositories as repo
    from search_service.core import make_engine, make_sessionmaker, upgrade
    from tests.search_service.service_helpers import RIDGE, make_settings

    workdir = tmp_path_factory.mktemp("docs")
    database_url = f"sqlite:///{workdir / 'gpnas.db'}"
    upgrade(database_url)
    # Ridge fits and small front searches: the examples test the docs, not the predictors.
    settings = make_settings(database_url, auth=True, **RIDGE)
    engine = make_engine(database_url)
    with make_sessionmaker(engine, write=True)() as session:
        _, token = repo.create_token(session, label="docs test")
        session.commit()
    engine.dispose()
    app = create_app(settings)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        _demo_data(client)
    with serving(app) as url:
        front = httpx.get(
            f"{url}/v1/pareto", params={"space": SPACE, "task": TASK, "device": DEVICE, "limit": 1000}
        ).json()
        # The demo's own rule for its example budget: the middle point + 2 std, rounded up.
        middle = front["points"][len(front["points"]) // 2]
        budget = float(math.ceil(middle["latency_ms"] + 2 * middle["latency_std"]))
        for block in BLOCKS:
            if block.marker and block.marker.startswith("file="):
                (workdir / block.marker.removeprefix("file=").strip()).write_text(block.text)
        yield Live(url, database_url, token, budget, workdir)


def _filled(block: Block, live: Live) -> str:
    text = block.text.replace(DEMO_URL, live.url).replace('"gpnas_..."', repr(live.token))
    budget = re.search(r"\bbudget=(\S+)", block.marker or "")
    if budget:
        text = re.sub(rf"(?<![\w.]){re.escape(budget.group(1))}(?![\w.])", f"{live.budget:g}", text)
    return text


@pytest.mark.parametrize("block", RUN, ids=[b.id for b in RUN])
def test_block_runs(block: Block, request: pytest.FixtureRequest) -> None:
    what = block.marker or ""
    if what.startswith("skip"):
        pytest.skip(what.partition(":")[2].strip())
    if what.startswith("file="):
        return  # written by the fixture; a later block uses it
    assert what.startswith("run"), f"{block.id}: unknown marker {what!r}"
    live: Live = request.getfixturevalue("live")
    code = _filled(block, live)
    if block.language == "python":
        exec(compile(code, block.id, "exec"), {"__name__": "__docs__"})
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPNAS_")}
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        GPNAS_DATABASE_URL=live.database_url,
        SERVER=live.url,
        TOKEN=live.token,
        ADMIN=live.token,
    )
    prelude = 'set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; }\n'
    result = subprocess.run(
        ["bash", "-c", prelude + code],
        cwd=live.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{block.id} failed:\n{code}\n{result.stdout}\n{result.stderr}"


def test_curl_is_installed() -> None:
    assert shutil.which("curl"), "the docs' examples use curl"
