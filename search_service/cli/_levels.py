"""``gpnas profile``'s local long-run reference levels: a small JSON file per user.

Without a server, ``gpnas profile`` writes every value already rescaled to the device's long-run
level (see :mod:`search_service.levels`). A device here is what sets the reference's level: the
profiler, the space, the reference subnet and the settings that change the timed work (batch
size, image size, threads, clock, dtype ...), but not those that only decide how long to time
(rounds, warm-up, thresholds, seed).

The long-run level is fixed by the device's first batch and never moves afterwards. A running
median would be the better estimate of the machine's typical level, but these values are
rescaled when written: a level that moved between two passes would leave the first pass's file
on the old level and the second on the new one, apart by part of exactly the shift rescaling
removes. (The service rescales when it reads, so there every stored value follows its running
median.) Delete the file, or pass another ``--levels``, to start a new level.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError

#: Settings that only decide how long or how a batch is timed, not how long the reference takes.
TIMING_ONLY_SETTINGS = frozenset(
    {
        "protocol",
        "reference",
        "estimator",
        "warmup",
        "min_repeats",
        "max_repeats",
        "target_rse",
        "max_seconds",
        "drift_threshold",
        "memory_mb",
        "seed",
    }
)
_FORMAT = 1


def default_levels_path() -> Path:
    """``$XDG_CACHE_HOME/gpnas/levels.json`` (``~/.cache/gpnas/levels.json`` by default): a level
    belongs to the machine, not to one output directory."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "gpnas" / "levels.json"


def device_key(profiler: str, space: str, reference_arch: str, settings: dict[str, Any]) -> dict[str, Any]:
    """What identifies a device's level in the file, as the file gives it back (a JSON round trip:
    a tuple setting would otherwise never match its stored list)."""
    kept = {k: settings[k] for k in sorted(settings) if k not in TIMING_ONLY_SETTINGS}
    key = {"profiler": profiler, "space": space, "reference_arch": reference_arch, "settings": kept}
    return dict(json.loads(json.dumps(key)))


@dataclass(frozen=True)
class Recorded:
    """A batch's level against the device's long-run level.

    Attributes:
        batch_ms: The batch's reference level (ms).
        long_run_ms: The device's long-run level (ms); equal to ``batch_ms`` for its first batch.
        batches: Batches of the device recorded so far, this one included.
    """

    batch_ms: float
    long_run_ms: float
    batches: int


class LevelFile:
    """The JSON file of long-run levels (``{"format": 1, "devices": [...]}``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("format") != _FORMAT or not isinstance(data.get("devices"), list):
                raise UserError(f"expected format {_FORMAT} with a 'devices' list")
            return list(data["devices"])
        except (ValueError, AttributeError) as error:
            raise UserError(
                f"--levels {self.path}: not a gpnas level file ({error}); delete it or pass another"
            ) from None

    def record(self, key: dict[str, Any], batch_ms: float) -> Recorded:
        """Count a batch of ``key``'s device; its first batch sets the long-run level.

        The file is read again and replaced atomically, so that a pass running in another
        process is not overwritten with an older copy.

        Raises:
            UserError: If the file exists but is not a level file, or ``batch_ms`` is not positive.
        """
        if not batch_ms > 0:
            raise UserError(f"a reference level must be positive, got {batch_ms!r}")
        devices = self._read()
        entry = next((d for d in devices if {k: d.get(k) for k in key} == key), None)
        if entry is None:
            entry = {**key, "long_run_ms": batch_ms, "batches": 0, "since": _now()}
            devices.append(entry)
        entry["batches"] = int(entry["batches"]) + 1
        self._write(devices)
        return Recorded(batch_ms, float(entry["long_run_ms"]), entry["batches"])

    def _write(self, devices: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"format": _FORMAT, "devices": devices}, indent=1)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".levels-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
