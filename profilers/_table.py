"""Replay profilers: known latencies or scores read from a file instead of measured."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from supernet import SearchSpace, Subnet

from ._base import AccuracyProfiler, LatencyProfiler, ProfileResult, Setting
from ._local import LocalConfig


def _read_table(path: str, mtime: float) -> tuple[tuple[str, ...], dict[str, dict[str, float]]]:
    """Columns and ``{arch: {column: value}}`` of a CSV (``arch`` + numeric columns) or of a JSON
    object ``{key: {"arch": str, column: number, ...}}`` (the ufo_track2 format). Empty cells are
    left out. ``mtime`` is only part of the cache key, so an edited file is re-read.

    Raises:
        ValueError: The file is not such a table (bad JSON or CSV, not UTF-8, a record without
            ``arch``, a non-numeric cell), naming the file and where.
    """
    try:
        return _parse_table(path)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    except csv.Error as error:  # e.g. a field over csv.field_size_limit()
        raise ValueError(f"{path}: not a readable CSV ({error})") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply") from None


_read_table_cached = lru_cache(maxsize=16)(_read_table)


def _parse_table(path: str) -> tuple[tuple[str, ...], dict[str, dict[str, float]]]:
    rows: dict[str, dict[str, float]] = {}
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if isinstance(data, dict):
            records = list(data.values())
        elif isinstance(data, list):
            records = data
        else:
            raise ValueError(
                f"{path}: a JSON table is an object or a list of records, not {type(data).__name__}"
            )
        columns: set[str] = set()
        for record in records:
            if not isinstance(record, dict) or "arch" not in record:
                raise ValueError(f"{path}: every record needs an 'arch' field")
            values = {
                k: float(v)
                for k, v in record.items()
                if k != "arch" and isinstance(v, int | float) and not isinstance(v, bool)
            }
            rows[str(record["arch"])] = values
            columns.update(values)
        return tuple(sorted(columns)), rows
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "arch" not in reader.fieldnames:
            raise ValueError(f"{path}: the CSV needs an 'arch' column")
        header = tuple(c for c in reader.fieldnames if c != "arch")
        for line, row in enumerate(reader, start=2):
            values = {}
            for column in header:
                cell = (row.get(column) or "").strip()
                if cell:
                    try:
                        values[column] = float(cell)
                    except ValueError:
                        raise ValueError(
                            f"{path}:{line}: column {column!r} is not a number: {cell!r}"
                        ) from None
            rows[row["arch"]] = values
    return header, rows


class _TableMixin:
    """Loads the file named by the ``path`` setting and looks subnets up by canonical arch."""

    name: ClassVar[str]
    space: SearchSpace
    settings: dict[str, Any]

    def _load(self) -> None:
        path = self.resolve_file("path")  # type: ignore[attr-defined]
        if not Path(path).is_file():
            raise ValueError(
                f"setting 'path' of profiler {self.name!r}: no such file {self.settings['path']!r}"
            )
        try:
            self.columns, raw = _read_table_cached(path, Path(path).stat().st_mtime)
        except ValueError as error:
            # Name the file as the settings do: where the machine keeps its data is its own.
            raise ValueError(str(error).replace(path, self.settings["path"])) from None
        # Canonical keys, so e.g. differently spelled but equal NB201 strings still match.
        self.rows: dict[str, dict[str, float]] = {}
        for arch, values in raw.items():
            try:
                self.rows[self.space.format(self.space.parse(arch))] = values
            except ValueError as error:
                raise ValueError(
                    f"{self.settings['path']}: arch {arch!r} is not in space {self.space.name!r}: {error}"
                ) from None

    def known_subnets(self) -> list[Subnet]:
        """The table's subnets, in file order."""
        return [self.space.parse(arch) for arch in self.rows]

    @classmethod
    def listed_subnets(
        cls, space: SearchSpace, settings: Mapping[str, Any], local: LocalConfig
    ) -> list[Subnet] | None:
        """The table's subnets, read from ``local``'s data directory (ValueError if not there)."""
        profiler = cls(space, local=local, **settings)  # type: ignore[call-arg]
        try:
            return profiler.known_subnets()
        finally:
            profiler.close()  # type: ignore[attr-defined]

    def _lookup(self, sub: Subnet, column: str) -> float:
        arch = self.space.format(sub)
        if arch not in self.rows:
            raise ValueError(f"arch {arch!r} is not in table {self.settings['path']!r}")
        value = self.rows[arch].get(column)
        if value is None or math.isnan(value):
            raise ValueError(f"arch {arch!r} has no value in column {column!r} of {self.settings['path']!r}")
        return value

    def _environment(self, column: str) -> dict[str, Any]:
        # The setting as given, not the resolved path: where the agent keeps its files is its own.
        return {"source": self.settings["path"], "column": column}


class TableLatencyProfiler(_TableMixin, LatencyProfiler):
    """Replays measured latencies from a CSV: column ``arch`` plus one column per device
    (e.g. ``../shared/data/device_latency/fbnet.csv`` with ``column=gold_6226``).

    Settings:
        path: The CSV (or JSON) file, relative to the measuring machine's data directory.
        column: The device column to replay.
    """

    name: ClassVar[str] = "table"
    version: ClassVar[str] = "1"
    settings_spec: ClassVar[dict[str, Setting]] = {
        "path": Setting(
            str, required=True, kind="file", help="CSV with column 'arch' and one column per device"
        ),
        "column": Setting(str, required=True, help="device column to replay"),
    }

    def __init__(self, space: SearchSpace, **settings: Any) -> None:
        super().__init__(space, **settings)
        self._load()
        if self.settings["column"] not in self.columns:
            raise ValueError(
                f"setting 'column' of profiler 'table': {self.settings['column']!r} is not a column of "
                f"{self.settings['path']!r}; columns: {', '.join(self.columns)}"
            )

    def measure(self, sub: Subnet | str) -> ProfileResult:
        column = self.settings["column"]
        value = self._lookup(self.subnet(sub), column)
        return ProfileResult(value, 0.0, 1, value, value, 0.0, self._environment(column))


class TableScoreProfiler(_TableMixin, AccuracyProfiler):
    """Replays known scores (higher is better) from a file with one value per task.

    The file is a CSV (``arch`` plus one column per task) or the ufo_track2 JSON
    (``{"archN": {"arch": ..., "<task>_rank": int}}``). A task's column is ``<task>``, or
    ``<task>_rank`` when only that exists.

    Settings:
        path: The CSV or JSON file, relative to the measuring machine's data directory.
    """

    name: ClassVar[str] = "table-score"
    version: ClassVar[str] = "1"
    settings_spec: ClassVar[dict[str, Setting]] = {
        "path": Setting(str, required=True, kind="file", help="CSV/JSON with 'arch' and one value per task"),
    }

    def __init__(self, space: SearchSpace, **settings: Any) -> None:
        super().__init__(space, **settings)
        self._load()

    def column_for(self, task: str) -> str:
        """The file's column holding ``task``'s scores."""
        for column in (task, f"{task}_rank"):
            if column in self.columns:
                return column
        tasks = sorted({c.removesuffix("_rank") for c in self.columns})
        raise ValueError(
            f"task {task!r} has no column in {self.settings['path']!r}; tasks: {', '.join(tasks)}"
        )

    def score(self, sub: Subnet | str, task: str) -> ProfileResult:
        column = self.column_for(task)
        value = self._lookup(self.subnet(sub), column)
        return ProfileResult(value, 0.0, 1, value, value, 0.0, self._environment(column))
