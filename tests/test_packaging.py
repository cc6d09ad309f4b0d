"""What `pip install` puts into site-packages: the four packages, the Alembic scripts inside the
service's package, and no top-level `migrations` to collide with other projects'."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("supernet", "profilers", "predictors", "search_service")


def _configured() -> tuple[list[str], dict[str, str]]:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return setuptools["packages"], setuptools["package-dir"]


def test_every_folder_of_code_or_data_is_a_listed_package() -> None:
    packages, package_dir = _configured()
    folders = {
        path.relative_to(ROOT).as_posix()
        for top in (*TOP_LEVEL, "migrations")
        for path in [ROOT / top, *(ROOT / top).rglob("*")]
        if path.is_dir() and path.name != "__pycache__" and any(p.is_file() for p in path.iterdir())
    }
    listed = {package_dir.get(name, name.replace(".", "/")) for name in packages}
    assert folders == listed


def test_the_wheel_installs_the_migrations_inside_the_service(tmp_path: Path) -> None:
    # Built from a copy: setuptools writes build/ beside the sources.
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for top in (*TOP_LEVEL, "migrations"):
        shutil.copytree(ROOT / top, source / top, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(tmp_path),
    ]
    subprocess.run([*command, str(source)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == set(TOP_LEVEL)
    assert "search_service/migrations/env.py" in names
    assert "search_service/migrations/versions/0001_initial.py" in names


def test_outside_the_repository_only_the_service_finds_the_migrations(tmp_path: Path) -> None:
    probe = (
        "import importlib.util as u; print(u.find_spec('migrations') is None, "
        "u.find_spec('search_service.migrations.versions') is not None)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, check=True, capture_output=True, text=True
    )
    assert out.stdout.split() == ["True", "True"]
