"""Level shifts: which latency batches lie too far from their device's long-run reference level,
judged as a batch is posted and in a device's level report."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from ..levels import check_shift, long_run_level
from ..repositories import BatchLevel, batch_levels, levels_by_device
from ..schemas import DeviceLevel, LevelShiftPublic, MeasurementCreate


def _shift_from(batch: BatchLevel, long_run: float | None, threshold: float) -> LevelShiftPublic | None:
    """``batch`` against the long-run level ``long_run``, if it moved beyond ``threshold``."""
    moved = check_shift(batch.reference_arch, batch.reference_ms, long_run, threshold)
    if moved is None:
        return None
    return LevelShiftPublic(
        space=batch.space,
        device=batch.device,
        reference_arch=moved.reference_arch,
        batch_ms=moved.batch_ms,
        long_run_ms=moved.long_run_ms,
        shift=moved.shift,
        measurements=batch.measurements,
    )


def level_shifts(
    session: Session, items: Sequence[MeasurementCreate], threshold: float
) -> list[LevelShiftPublic]:
    """The batches among ``items`` (stored already) whose reference level lies beyond ``threshold``
    from their device's long-run level, the median of the device's other batches' levels.

    Compared with the *other* batches, so that a batch does not pull the level it is judged by,
    and a re-posted batch is judged as it was the first time.
    """
    posted: dict[tuple[str, str, str, float], int] = {}
    for m in items:
        if m.device is not None and m.reference_arch is not None and m.reference_ms is not None:
            key = (m.space, m.device, m.reference_arch, m.reference_ms)
            posted[key] = posted.get(key, 0) + 1
    stored: dict[tuple[str, str], dict[tuple[str, str], list[BatchLevel]]] = {}
    out = []
    for (space, device, arch, level), count in posted.items():
        if (space, device) not in stored:
            stored[(space, device)] = levels_by_device(batch_levels(session, space, device))
        others = stored[(space, device)].get((device, arch), [])
        long_run = long_run_level(b.reference_ms for b in others if b.reference_ms != level)
        moved = _shift_from(BatchLevel(space, device, arch, level, count), long_run, threshold)
        if moved is not None:
            out.append(moved)
    return out


def device_levels(session: Session, device: str, threshold: float) -> list[DeviceLevel]:
    """A device's long-run levels (per space and reference arch), each with its batches that lie
    beyond ``threshold`` from it.

    Judged against the level of all batches, the one fits rescale to: against the others' median
    (as at ingest) the good batches of a device with few batches would look shifted too, pulled
    apart by the one bad batch among the others.
    """
    by_space: dict[tuple[str, str], list[BatchLevel]] = {}
    for b in batch_levels(session, device=device):
        by_space.setdefault((b.space, b.reference_arch), []).append(b)
    out = []
    for (space, arch), batches in by_space.items():
        level = long_run_level(b.reference_ms for b in batches)
        assert level is not None, "a group has at least one batch"
        shifted = [s for b in batches if (s := _shift_from(b, level, threshold)) is not None]
        out.append(
            DeviceLevel(
                space=space, reference_arch=arch, long_run_ms=level, batches=len(batches), shifted=shifted
            )
        )
    return out
