"""The layers of docs/DESIGN.md at run time: what a process that needs only the lower layers
actually loads. ``lint-imports`` checks the import graph; these tests check the imports that
happen (lazy ones included) in a fresh interpreter."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import supernet
from supernet import spaces

# What the client, the wire schemas and the space layer must run without: the torch stack, the
# server stack and the broker.
SERVER_AND_TORCH = ("torch", "gpytorch", "botorch", "linear_operator", "fastapi", "starlette")
SERVER_AND_TORCH += ("sqlalchemy", "alembic", "celery", "psycopg", "uvicorn", "sklearn", "matplotlib")


def loaded_packages(code: str) -> list[str]:
    """The top-level packages of ``SERVER_AND_TORCH`` that running ``code`` in a fresh interpreter
    imports."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.splitlines()[-1])
    return [name for name in SERVER_AND_TORCH if name in loaded]


def test_spaces_parse_and_format_without_torch() -> None:
    code = """
import supernet
from supernet import spaces
for name in supernet.preset_names():
    space = supernet.get_space(name)
    for sub in space.sample(3, seed=0):
        assert space.parse(space.format(sub)) == sub
"""
    assert loaded_packages(code) == []


def test_the_client_and_every_request_schema_without_torch_or_server() -> None:
    # A client process builds every request for any space the server knows: the registry is the
    # server's to check (search_service.space_checks), and this process has no database.
    code = """
import search_service.client
from search_service import schemas as s

space, task = "my-space", "my-task"  # registered on the server, unknown to this process
s.QueryRequest(space=space, task=task, device="cpu", latency_budget_ms=5)
s.DeploymentQueryRequest(space=space, device="cpu", tasks=[{"task": task, "latency_budget_ms": 5}])
s.CampaignCreate(space=space, device="cpu", task=task, n=4, candidates=["any-arch"])
s.RefitRequest(space=space)
s.MeasurementBatch(measurements=[
    {"id": "1", "space": space, "arch": "any-arch", "device": "cpu", "metric": "latency_ms", "value": 1.0},
    {"id": "2", "space": space, "arch": "any-arch", "task": task, "metric": "score", "value": 0.5},
])
s.ResultRequest(lease_token="t", value=1.0, reference_arch="any-arch", reference_ms=1.0)
"""
    assert loaded_packages(code) == []


def test_the_torch_layer_loads_on_first_use() -> None:
    assert loaded_packages("import supernet; supernet.UFOSupernet") == ["torch"]


def test_the_public_names_are_the_spaces_and_the_torch_layers() -> None:
    # supernet/__init__.py imports the torch layer's names only for type checkers; at run time
    # __getattr__ finds them. Its __all__ must be exactly those and supernet.spaces' names.
    tree = ast.parse(Path(supernet.__file__).read_text())
    torch_layer: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            torch_layer |= {alias.name for statement in node.body for alias in statement.names}
    assert not torch_layer & set(spaces.__all__)
    assert sorted(supernet.__all__) == sorted(torch_layer | set(spaces.__all__))


@pytest.mark.parametrize("name", supernet.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(supernet, name) is not None


def test_the_agent_and_its_command_without_torch_or_server() -> None:
    # What `gpnas-agent` imports, and the profilers it can run without torch (tables, plug-ins
    # built on profilers' bases).
    code = """
import search_service.cli._agent
import profilers
profilers.create_profiler, profilers.TableLatencyProfiler, profilers.LatencyProfiler
"""
    assert loaded_packages(code) == []


def test_the_torch_profilers_load_on_first_use() -> None:
    assert "torch" in loaded_packages("import profilers; profilers.TorchCPUProfiler")


def test_gpnas_agent_is_gpnas_agents_command_alone() -> None:
    import typer
    from typer.core import TyperGroup

    from search_service.cli import app
    from search_service.cli._agent import agent_app

    gpnas = typer.main.get_command(app)
    assert isinstance(gpnas, TyperGroup)
    options = [sorted(p.opts) for p in typer.main.get_command(agent_app()).params]
    assert options == [sorted(p.opts) for p in gpnas.commands["agent"].params]
