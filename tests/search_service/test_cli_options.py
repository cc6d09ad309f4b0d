"""Every ``gpnas`` command names where its data lives the same way: one ``--database-url``
(GPNAS_DATABASE_URL), one ``--server`` (GPNAS_SERVER) and one ``--token`` (GPNAS_TOKEN)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from search_service.cli import app
from search_service.cli._options import DEFAULT_DATABASE_URL
from search_service.core.config import Settings
from search_service.testing import free_port

runner = CliRunner()

# What each shared option must look like wherever it appears: (param name, opts, envvar, default).
SHARED = {
    "database_url": (["--database-url"], "GPNAS_DATABASE_URL", DEFAULT_DATABASE_URL),
    "server": (["--server"], "GPNAS_SERVER", None),
    "token": (["--token"], "GPNAS_TOKEN", None),
}
ENVVARS = {envvar: name for name, (_, envvar, _) in SHARED.items()}


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    for name, command in group.commands.items():
        path = (*prefix, name)
        if hasattr(command, "commands"):
            yield from _commands(command, path)
        else:
            yield " ".join(path), command


COMMANDS = dict(_commands(typer.main.get_command(app)))


def _shared_params(name: str) -> dict[str, Any]:
    """Command path -> its parameter ``name``, for every command that has one (by name, option or
    environment variable: a command with its own look-alike is caught too)."""
    opts, envvar, _ = SHARED[name]
    found = {}
    for path, command in COMMANDS.items():
        for param in command.params:
            if param.name == name or set(param.opts) & set(opts) or param.envvar == envvar:
                assert path not in found, f"{path}: two parameters for {name}"
                found[path] = param
    return found


def test_the_default_database_is_the_services():
    assert Settings.model_fields["database_url"].default == DEFAULT_DATABASE_URL


@pytest.mark.parametrize("name", sorted(SHARED))
def test_each_shared_option_is_declared_identically_everywhere(name):
    opts, envvar, default = SHARED[name]
    params = _shared_params(name)
    assert params
    for path, param in params.items():
        assert param.name == name, path
        assert param.opts == opts and not param.secondary_opts, path
        assert param.envvar == envvar, path
        assert param.default == default, path
        assert not param.required and not param.hidden, path
    helps = {param.help for param in params.values()}
    assert len(helps) == 1, helps


def test_the_commands_that_need_them_take_the_shared_options():
    database = set(_shared_params("database_url"))
    server = set(_shared_params("server"))
    token = set(_shared_params("token"))
    assert {
        "db upgrade",
        "db current",
        "token create",
        "token list",
        "token revoke",
        "serve",
        "demo",
        "pareto",
    } <= database
    assert {"agent", "profile", "pareto"} <= server
    assert {"agent", "profile"} <= token <= server  # a token is only ever sent to a server


def test_no_command_reads_a_shared_environment_variable_under_another_name():
    for path, command in COMMANDS.items():
        for param in command.params:
            if param.envvar in ENVVARS:
                assert param.name == ENVVARS[param.envvar], (path, param.name)


def test_the_old_pareto_database_option_is_a_hidden_alias():
    (alias,) = [p for p in COMMANDS["pareto"].params if "--database" in p.opts]
    assert alias.hidden
    help_text = runner.invoke(app, ["pareto", "--help"], env={"COLUMNS": "200"}).output
    assert "--database-url" in help_text and "--database " not in help_text


def test_the_old_pareto_database_option_still_reads_a_database_with_a_warning(tmp_path):
    db = f"sqlite:///{tmp_path}/empty.db"
    args = ["pareto", "--space", "ufo-track2", "--task", "veri", "--device", "x", "--database", db]
    out = runner.invoke(app, args, env={"GPNAS_SERVER": None, "GPNAS_DATABASE_URL": None})
    assert "--database is deprecated; use --database-url" in out.output
    # It read that database, which is not migrated: the error says so (no server was asked).
    assert isinstance(out.exception, ValueError) and "gpnas db upgrade" in str(out.exception)


def test_gpnas_database_url_from_the_environment_is_honoured(tmp_path):
    url = f"sqlite:///{tmp_path}/env.db"
    upgraded = runner.invoke(app, ["db", "upgrade"], env={"GPNAS_DATABASE_URL": url})
    assert upgraded.exit_code == 0, upgraded.output
    assert (tmp_path / "env.db").is_file()
    current = runner.invoke(app, ["db", "current"], env={"GPNAS_DATABASE_URL": url})
    assert current.exit_code == 0 and "current: none" not in current.output
    # The option beats the variable: another file is not migrated.
    other = f"sqlite:///{tmp_path}/other.db"
    current = runner.invoke(app, ["db", "current", "--database-url", other], env={"GPNAS_DATABASE_URL": url})
    assert current.exit_code == 0 and "current: none" in current.output


def test_gpnas_server_from_the_environment_is_honoured():
    url = f"http://127.0.0.1:{free_port()}"
    args = ["pareto", "--space", "ufo-track2", "--task", "veri", "--device", "x"]
    out = runner.invoke(app, args, env={"GPNAS_SERVER": url, "GPNAS_DATABASE_URL": None})
    assert isinstance(out.exception, ValueError)
    assert f"cannot reach the gpnas server at {url}" in str(out.exception)


def test_gpnas_server_from_the_environment_reaches_the_typed_client(monkeypatch):
    from search_service.client import GpnasClient

    # The look-up retries twice with backoff; sleeping is not what is tested here.
    monkeypatch.setitem(GpnasClient.__init__.__kwdefaults__, "sleep", lambda seconds: None)
    url = f"http://127.0.0.1:{free_port()}"
    args = ["profile", "--space", "ufo-track2", "--device", "some-chip", "--samples", "1"]
    out = runner.invoke(app, args, env={"GPNAS_SERVER": url})
    assert isinstance(out.exception, ValueError)
    assert f"GPNAS_SERVER {url}: unreachable" in str(out.exception)
    assert "ConnectError" in str(out.exception)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--server", "http://x", "--database-url", "sqlite://"], {}, "not both"),
        (["--server", "http://x", "--database", "sqlite://"], {}, "not both"),
        (
            [],
            {"GPNAS_SERVER": "http://x", "GPNAS_DATABASE_URL": "sqlite://"},
            "both GPNAS_SERVER and GPNAS_DATABASE_URL are set",
        ),
        ([], {}, "say where the data is: --server URL"),
    ],
)
def test_pareto_says_when_both_or_neither_apply(args, env, message):
    env = {"GPNAS_SERVER": None, "GPNAS_DATABASE_URL": None, **env}
    base = ["pareto", "--space", "ufo-track2", "--task", "veri", "--device", "x"]
    out = runner.invoke(app, base + args, env=env)
    assert isinstance(out.exception, ValueError), out.output
    assert message in str(out.exception)


def test_an_option_on_the_command_line_beats_the_other_kinds_variable(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    base = ["pareto", "--space", "ufo-track2", "--task", "veri", "--device", "x"]
    # --server wins over GPNAS_DATABASE_URL (set for `gpnas serve` on the same machine) ...
    out = runner.invoke(app, [*base, "--server", url], env={"GPNAS_DATABASE_URL": "sqlite://"})
    assert "cannot reach the gpnas server" in str(out.exception)
    # ... and --database-url over GPNAS_SERVER: a database that is not migrated is the error.
    db = f"sqlite:///{tmp_path}/empty.db"
    out = runner.invoke(app, [*base, "--database-url", db], env={"GPNAS_SERVER": url})
    assert isinstance(out.exception, ValueError) and "gpnas db upgrade" in str(out.exception)


def test_the_agent_names_what_is_missing():
    env = {"GPNAS_SERVER": None, "GPNAS_TOKEN": None}
    out = runner.invoke(app, ["agent", "--device", "chip"], env=env)
    assert isinstance(out.exception, ValueError)
    assert str(out.exception) == "--server is required: pass --server or set GPNAS_SERVER"
    out = runner.invoke(app, ["agent", "--device", "chip"], env={**env, "GPNAS_SERVER": "http://x"})
    assert str(out.exception) == "--token is required: pass --token or set GPNAS_TOKEN"


def test_only_commands_with_a_server_option_mention_one() -> None:
    """`gpnas export --help` advertised a --server it does not have."""
    servers = set(_shared_params("server"))
    for path, command in COMMANDS.items():
        texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
        if path not in servers:
            assert not any("--server" in text for text in texts), path
