"""What the names in a device's settings refer to on the machine that measures.

A device's settings are plain data stored by the server and read by every agent of the device,
so whoever registers a device would otherwise choose the code its agents run and the files they
open. Settings therefore never hold import paths or absolute file names. A setting declared with a
:class:`~profilers.Setting` ``kind`` other than ``"value"`` holds a *name*, resolved here, on the
chip's machine:

* ``file``: a path relative to the machine's data directory (``data_dir``); absolute paths and
  paths that leave the directory (``..``, symlinks) are refused.
  Checkpoints and tables are such files.
* ``dataset``, ``supernet``, ``metric``: a name defined in the machine's local configuration file
  (sections ``[datasets]``, ``[supernets]``, ``[metrics]``) or registered by an installed package
  under the entry-point groups ``gpnas.datasets`` / ``gpnas.supernets`` / ``gpnas.metrics`` (built
  in: datasets ``digits`` and ``digits-ufo``, supernet ``ufo``, metrics ``top1``, ``reid``,
  ``verification``, ``retrieval``).

The local configuration is a TOML file (``gpnas agent --config FILE`` or ``GPNAS_LOCAL_CONFIG``)::

    data_dir = "/srv/gpnas-data"            # tables and checkpoints named in settings live here

    [datasets]                              # callable(task) -> iterable of (inputs, labels)
    market1501 = "mylab.data:market1501_val"

    [supernets]                             # callable(space) -> supernet module
    ufo-base = "mylab.nets:build_ufo"

    [metrics]                               # profilers.TaskMetric subclass
    my-reid = "mylab.metrics:MyReID"
"""

from __future__ import annotations

import importlib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

SettingKind = Literal["value", "file", "dataset", "supernet", "metric"]
#: The kinds of setting that name code defined on the measuring machine.
ReferenceKind = Literal["dataset", "supernet", "metric"]
ENTRY_POINT_GROUPS = {"dataset": "gpnas.datasets", "supernet": "gpnas.supernets", "metric": "gpnas.metrics"}
LOCAL_CONFIG_ENV = "GPNAS_LOCAL_CONFIG"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
_SECTIONS: dict[SettingKind, str] = {"dataset": "datasets", "supernet": "supernets", "metric": "metrics"}


def check_reference_name(value: str, kind: SettingKind, where: str) -> str:
    """``value`` if it is a well-formed name of a ``kind``; ValueError otherwise.

    Import paths (``pkg.module:attr``) and file names are refused here, so that they cannot be
    stored in a device's settings.
    """
    if not _NAME.match(value):
        raise ValueError(
            f"{where} must be the name of a {kind} defined on the measuring machine ([{_SECTIONS[kind]}] "
            f"of its local config or a {ENTRY_POINT_GROUPS[kind]} entry point); "
            f"import paths and file names are not accepted, got {value!r}"
        )
    return value


def check_relative_path(value: str, where: str) -> str:
    """``value`` if it is a relative path that stays inside a directory; ValueError otherwise."""
    posix, windows = PurePosixPath(value), PureWindowsPath(value)
    if "\x00" in value or not value.strip():
        raise ValueError(f"{where} must be a non-empty path without NUL characters")
    if posix.is_absolute() or windows.is_absolute() or windows.drive or value.startswith("~"):
        raise ValueError(
            f"{where} must be a path relative to the data directory of the machine that reads it; "
            f"absolute paths are refused, got {value!r}"
        )
    if ".." in posix.parts or ".." in windows.parts:
        raise ValueError(f"{where} must stay inside the data directory; '..' is refused, got {value!r}")
    return value


@dataclass(frozen=True)
class LocalConfig:
    """This machine's answers to the names in device settings.

    Attributes:
        data_dir: Directory that ``file`` settings are relative to; ``None``: this machine opens
            no file named in settings.
        datasets: Dataset name -> import path of ``callable(task)`` returning validation batches.
        supernets: Supernet name -> import path of ``callable(space)`` returning the supernet.
        metrics: Metric name -> import path of a :class:`~profilers.TaskMetric` subclass.
        trusted: The settings come from this machine's own user (``gpnas profile`` on the command
            line), not from a server: ``file`` settings may then be any path. Never set for
            settings fetched from a server.
    """

    data_dir: Path | None = None
    datasets: Mapping[str, str] = field(default_factory=dict)
    supernets: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, str] = field(default_factory=dict)
    trusted: bool = False

    @classmethod
    def load(
        cls, path: str | os.PathLike[str] | None = None, data_dir: str | os.PathLike[str] | None = None
    ) -> LocalConfig:
        """Read a local config file (default: ``$GPNAS_LOCAL_CONFIG`` if set, else none).

        Args:
            path: The TOML file.
            data_dir: Overrides the file's ``data_dir``.

        Raises:
            ValueError: The file is missing, is not TOML, or has an unknown key or a bad value.
        """
        path = path or os.environ.get(LOCAL_CONFIG_ENV) or None
        raw: dict[str, Any] = {}
        if path is not None:
            try:
                raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
            except OSError as error:
                raise ValueError(f"local config {str(path)!r}: {error.strerror}") from None
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"local config {str(path)!r} is not valid TOML: {error}") from None
        unknown = sorted(set(raw) - {"data_dir", *_SECTIONS.values()})
        if unknown:
            raise ValueError(
                f"local config {str(path)!r}: unknown key {unknown[0]!r}; known: data_dir, "
                + ", ".join(_SECTIONS.values())
            )
        sections: dict[str, dict[str, str]] = {}
        for kind, section in _SECTIONS.items():
            table = raw.get(section, {})
            if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
                raise ValueError(f"local config {str(path)!r}: [{section}] must map names to strings")
            for name in table:
                check_reference_name(name, kind, f"local config [{section}] key")
            sections[section] = dict(table)
        directory = data_dir if data_dir is not None else raw.get("data_dir")
        if directory is not None and not isinstance(directory, str | os.PathLike):
            raise ValueError(f"local config {str(path)!r}: data_dir must be a string")
        resolved = None
        if directory is not None:
            resolved = Path(directory).expanduser().resolve()
            if not resolved.is_dir():
                raise ValueError(f"data directory {str(resolved)!r} does not exist")
        return cls(
            data_dir=resolved,
            datasets=sections["datasets"],
            supernets=sections["supernets"],
            metrics=sections["metrics"],
        )

    # ------------------------------------------------------------------ files
    def resolve_file(self, value: str, where: str) -> Path:
        """The file a ``file`` setting names here.

        Raises:
            ValueError: The path is absolute or leaves the data directory, or no data directory
                is configured (naming the setting in ``where``).
        """
        if self.trusted:
            return Path(value).expanduser()
        check_relative_path(value, where)
        if self.data_dir is None:
            raise ValueError(
                f"{where}: this machine has no data directory (set data_dir in its local config, "
                "GPNAS_DATA_DIR on a server, or --data-dir), so it opens no file named in settings"
            )
        root = self.data_dir.resolve()
        candidate = (root / value).resolve()
        if not candidate.is_relative_to(root):
            raise ValueError(f"{where}: {value!r} leads outside the data directory")
        return candidate

    # ------------------------------------------------------------------ references
    def resolve_callable(self, kind: ReferenceKind, value: str, where: str) -> Callable[..., Any]:
        """The callable a ``dataset``, ``supernet`` or ``metric`` setting names here: the local
        config's entry, else an installed entry point of that name.

        Raises:
            ValueError: The name is not defined here or does not load a callable.
        """
        configured: Mapping[str, str] = {
            "dataset": self.datasets,
            "supernet": self.supernets,
            "metric": self.metrics,
        }[kind]
        if value in configured:
            found = resolve_import_path(configured[value], f"{where} ({value!r} in the local config)")
        else:
            eps = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUPS[kind])}
            if value in eps:
                try:
                    found = eps[value].load()
                except (ImportError, AttributeError) as error:
                    raise ValueError(f"{where}: entry point {value!r} failed to load: {error}") from None
            else:
                known = ", ".join(sorted({*configured, *eps})) or "none"
                raise ValueError(
                    f"{where}: no {kind} {value!r} on this machine ([{_SECTIONS[kind]}] of the local "
                    f"config or {ENTRY_POINT_GROUPS[kind]} entry points); known: {known}"
                )
        if not callable(found):
            raise ValueError(f"{where}: {value!r} does not name a callable")
        return found


def resolve_import_path(path: str, what: str) -> Callable[..., Any] | Any:
    """The object named by ``"package.module:attribute"`` (dots after the colon walk attributes).

    Raises:
        ValueError: If ``path`` is malformed or does not resolve, naming ``what``.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{what} must be an import path 'package.module:attribute', got {path!r}")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"{what} {path!r} does not resolve: {error}") from None
    return obj
