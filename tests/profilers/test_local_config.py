"""The measuring machine's local config: what dataset, supernet and file names mean there."""

from __future__ import annotations

from pathlib import Path

import pytest

from profilers import LocalConfig, create_profiler, digits_space


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_local_config_defines_datasets_supernets_and_the_data_directory(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    config = _write(
        tmp_path / "local.toml",
        f'data_dir = "{tmp_path / "data"}"\n'
        '[datasets]\nmy-digits = "profilers:digits_batches"\n'
        '[supernets]\nmy-net = "supernet:build_supernet"\n',
    )
    local = LocalConfig.load(config)
    assert local.data_dir == (tmp_path / "data").resolve() and not local.trusted
    profiler = create_profiler(
        "supernet-eval", digits_space(), local=local, data="my-digits", supernet="my-net"
    )
    sub = digits_space().sample(1, seed=0)[0]
    assert 0.0 <= profiler.score(sub, "low").value <= 1.0
    # --data-dir overrides the file's directory.
    assert LocalConfig.load(config, data_dir=tmp_path).data_dir == tmp_path.resolve()


def test_the_environment_variable_names_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _write(tmp_path / "local.toml", '[datasets]\nx = "profilers:digits_batches"\n')
    monkeypatch.setenv("GPNAS_LOCAL_CONFIG", str(config))
    assert LocalConfig.load().datasets == {"x": "profilers:digits_batches"}
    monkeypatch.delenv("GPNAS_LOCAL_CONFIG")
    assert LocalConfig.load() == LocalConfig()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("data_dir = 3\n", "data_dir must be a string"),
        ('data_dir = "/no/such/dir"\n', "does not exist"),
        ('secrets = "x"\n', "unknown key 'secrets'"),
        ('[datasets]\n"a:b" = "m:f"\n', "import paths and file names are not accepted"),
        ("[datasets]\nx = 1\n", r"\[datasets\] must map names to strings"),
        ("[datasets\n", "not valid TOML"),
    ],
)
def test_bad_local_configs_name_the_problem(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        LocalConfig.load(_write(tmp_path / "local.toml", text))


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="local config .*missing.toml"):
        LocalConfig.load(tmp_path / "missing.toml")


def test_a_configured_import_path_that_does_not_resolve_names_the_entry(tmp_path: Path) -> None:
    local = LocalConfig(datasets={"broken": "profilers:no_such_loader"})
    with pytest.raises(ValueError, match="'broken' in the local config.*does not resolve"):
        create_profiler("supernet-eval", digits_space(), local=local, data="broken", random_weights=True)
