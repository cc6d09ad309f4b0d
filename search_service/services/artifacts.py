"""Artifacts (``POST /v1/artifacts``, ``gpnas export --server``): deployable files of a subnet or
a multi-task deployment, built with named weights.

A build extracts the subnet (or the deployment) from the space's supernet, exports it to ONNX
with a dynamic batch axis, converts it to fp16 when asked, runs it under onnxruntime against
torch on a fixed input (the largest absolute difference is recorded, and a build beyond
:data:`TOLERANCE` is refused), and stores the file once under its SHA-256 at
``<data_dir>/artifacts/<digest>.onnx``. It is written to a temporary file beside its final place
and moved there only once checked, so nothing of a refused build is kept.

A build is heavy work (seconds, a supernet in memory): it runs where the service runs heavy work
(this process without a broker, a worker with one), through the process's bounded queue, keyed
by the request, so equal requests at the same time share one build and later ones find the row.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from safetensors.torch import load_file
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from supernet import (
    Deployment,
    UFOSpace,
    UFOSupernet,
    build_supernet,
    deployment_params,
    example_input,
    export_deployment_onnx,
    export_onnx,
    get_space,
    resolve_path,
)

from .. import repositories as repo
from ..admission import Admission, Connection
from ..core.config import Settings
from ..domain import WorkKind, WorkStatus
from ..errors import InvalidError, NotFoundError, ServiceError, TooLargeError
from ..models import ArtifactRow
from ..schemas import ArtifactCreate, ArtifactPublic, ArtifactWeights
from ..work import Outcome, WorkContext, items, record_failure, request_outcome
from ..work._schedule import Runner
from ._files import file_sha256, store_folder
from .supernets import stored_supernet, supernets_dir

VERIFY_BATCH = 2
"""The batch of the check against torch: not the exported one (1), so it checks the dynamic axis."""

TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2}
"""Largest accepted |onnxruntime - torch|, relative to the largest |torch output| (at least 1):
float32 outputs agree to ~1e-6 in practice, float16 ones to ~1e-3."""

BYTES_PER_WEIGHT = {"fp32": 4, "fp16": 2}

# The weights the artifact bodies of query answers name: explicit in the body the client posts,
# which may name a registered supernet version instead.
RANDOM_WEIGHTS = ArtifactWeights(random_seed=0)


def artifacts_dir(data_dir: Path | None) -> Path:
    """Where built artifacts are stored: ``<data_dir>/artifacts`` (created if missing).

    Raises:
        ConflictError: The server has no data directory, so it cannot store artifacts.
    """
    return store_folder(data_dir, "artifacts", "artifacts")


def stored_artifact(folder: Path, digest: str) -> Path:
    """The stored file of the artifact ``digest`` in :func:`artifacts_dir`'s ``folder``."""
    return folder / f"{digest}.onnx"


def request_key(body: ArtifactCreate) -> str:
    """The SHA-256 of ``body``'s canonical JSON: equal requests (archs in canonical spelling, as
    the route's checks leave them) have equal keys."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def public(row: ArtifactRow) -> ArtifactPublic:
    """The wire form of a stored artifact."""
    request = ArtifactCreate.model_validate_json(row.request)
    return ArtifactPublic(
        digest=row.digest,
        size_bytes=row.size_bytes,
        precision=request.precision,
        space=request.space,
        arch=request.arch,
        task=request.task,
        tasks=request.tasks,
        input=request.input,
        weights=request.weights,
        max_abs_diff=row.max_abs_diff,
        url=f"/v1/artifacts/{row.digest}",
        created_at=row.created_at,
    )


def subnet_artifact(space: str, arch: str, task: str | None) -> ArtifactCreate | None:
    """The artifact request of a query's answer: ``arch`` on ``task``; None for a space without a
    supernet (only UFO spaces have one)."""
    if not isinstance(get_space(space), UFOSpace):
        return None
    return ArtifactCreate(space=space, arch=arch, task=task, weights=RANDOM_WEIGHTS)


def deployment_artifact(space: str, tasks: dict[str, str], input: str) -> ArtifactCreate:
    """The artifact request of a deployment answer: its tasks' archs, deployed together."""
    return ArtifactCreate.model_validate(
        {"space": space, "tasks": tasks, "input": input, "weights": RANDOM_WEIGHTS.model_dump()}
    )


def _weight_count(space: UFOSpace, body: ArtifactCreate) -> int:
    """Parameters of the model ``body`` asks for (cheap: no weights are made).

    Raises:
        InvalidError: The subnet needs a task it does not name, or names one it cannot take.
    """
    if body.arch is not None:
        try:
            sub, _ = resolve_path(space, body.arch, body.task)
        except ValueError as error:
            raise InvalidError(str(error), ["body", "task"]) from None
        return space.param_count(sub, body.task)
    assert body.tasks is not None  # the schema admits arch or tasks
    dep = Deployment.of(space.name, {task: space.parse(arch) for task, arch in body.tasks.items()})
    return deployment_params(space, dep)


def weights_file(session: Session, settings: Settings, body: ArtifactCreate) -> Path | None:
    """The stored checkpoint of ``body``'s supernet version; None for random weights.

    Raises:
        InvalidError: The space has no such version registered (naming the versions it has).
    """
    version = body.weights.supernet_version
    if version is None:
        return None
    row = repo.get_supernet_version(session, body.space, version)
    if row is None:
        known = [v.version for v in repo.list_supernet_versions(session, body.space)]
        raise InvalidError(
            f"unknown supernet version {version} of space {body.space!r}; its versions: "
            + (", ".join(map(str, known)) or "none (POST /v1/supernets registers one)"),
            ["body", "weights", "supernet_version"],
        )
    return stored_supernet(supernets_dir(settings.data_dir), row.sha256)


def check_buildable(body: ArtifactCreate, settings: Settings) -> None:
    """Refuse, before any build, what cannot be built: a missing task, a model whose weights
    alone exceed ``max_artifact_mb``, no data directory.

    Raises:
        InvalidError: A subnet without the task its space needs.
        TooLargeError: The weights alone exceed ``max_artifact_mb``.
        ConflictError: The server has no data directory.
    """
    # The route's checks admit UFO spaces only.
    space = cast(UFOSpace, get_space(body.space))
    weight_bytes = _weight_count(space, body) * BYTES_PER_WEIGHT[body.precision]
    _check_size(weight_bytes, settings, "its weights alone would take")
    artifacts_dir(settings.data_dir)


def _check_size(size_bytes: int, settings: Settings, what: str) -> None:
    limit_mib = settings.max_artifact_mb
    if size_bytes > limit_mib * 2**20:
        raise TooLargeError(
            f"this artifact is too large: {what} {size_bytes / 2**20:,.1f} MiB, over max_artifact_mb "
            f"({limit_mib} MiB)"
        )


@dataclass(frozen=True)
class BuiltFile:
    """A built, checked artifact in its temporary file."""

    path: Path
    digest: str
    size_bytes: int
    max_abs_diff: float


# The torch outputs a file must reproduce, in the graph's output order, for the input images.
Reference = Callable[[torch.Tensor], list[torch.Tensor]]


def _supernet(body: ArtifactCreate, weights: Path | None) -> UFOSupernet:
    """The space's supernet with ``body``'s weights: the registered checkpoint ``weights``, or
    random ones from its seed."""
    space = cast(UFOSpace, get_space(body.space))
    if weights is None:
        return build_supernet(space, seed=body.weights.random_seed)
    net = build_supernet(space)
    # Registration checked every name and shape; safetensors holds tensors only (no pickle).
    net.load_state_dict(load_file(str(weights)))
    return net


def _export(body: ArtifactCreate, path: Path, weights: Path | None) -> Reference:
    """Export ``body``'s model with ``weights`` (see :func:`_supernet`) to ``path`` (fp32, dynamic
    batch); the torch model it must match."""
    net = _supernet(body, weights)
    if body.arch is not None:
        model = net.extract(body.arch, task=body.task).eval()
        del net  # the supernet's weights are not needed any more: free them before exporting
        export_onnx(model, path, dynamic_batch=True)
        return lambda x: [model(x)]
    assert body.tasks is not None
    assert body.input is not None
    deployment = net.extract_deployment(body.tasks).eval()
    del net
    export_deployment_onnx(deployment, path, body.input, dynamic_batch=True)
    # One output per task, in the deployment's task order.
    return lambda x: [deployment(x, task) for task in deployment.tasks]


def _to_fp16(path: Path) -> None:
    """Convert the ONNX file at ``path`` to float16 weights and compute, in place; its inputs and
    outputs stay float32, so it is fed and read like the fp32 file."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(path)), keep_io_types=True), str(path))


def _max_abs_diff(path: Path, reference: Reference, space: UFOSpace) -> tuple[float, float]:
    """The largest |onnxruntime - torch| over the outputs on a fixed input (every input of the
    graph gets the same images), and the largest |torch output|, the scale the tolerance is
    relative to."""
    import onnxruntime

    x = example_input(space.geometry, VERIFY_BATCH)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {graph_input.name: x.numpy() for graph_input in session.get_inputs()})
    with torch.no_grad():
        expected = [tensor.numpy() for tensor in reference(x)]
    diff = max(float(np.abs(value - want).max()) for value, want in zip(got, expected, strict=True))
    scale = max(float(np.abs(want).max()) for want in expected)
    return diff, scale


def build_file(body: ArtifactCreate, weights: Path | None, folder: Path, settings: Settings) -> BuiltFile:
    """Build ``body``'s artifact with ``weights`` (a checkpoint, or None for random ones) into a
    temporary file in ``folder`` and check it; the caller moves it into place
    (:func:`stored_artifact`) or removes it.

    Raises:
        InvalidError: The export, the conversion or the check against torch failed (naming why).
        TooLargeError: The file exceeds ``max_artifact_mb``.
    """
    handle, name = tempfile.mkstemp(dir=folder, prefix=".build-", suffix=".onnx")
    os.close(handle)
    path = Path(name)
    try:
        try:
            reference = _export(body, path, weights)
            if body.precision == "fp16":
                _to_fp16(path)
            diff, scale = _max_abs_diff(path, reference, cast(UFOSpace, get_space(body.space)))
        except (RuntimeError, ValueError, OSError) as error:  # torch, onnx and onnxruntime failures
            raise InvalidError(f"the artifact could not be built: {error}", ["body"]) from error
        tolerance = TOLERANCE[body.precision] * max(1.0, scale)
        if not diff <= tolerance:
            raise InvalidError(
                f"the artifact could not be built: onnxruntime differs from torch by {diff:.3g} "
                f"(at most {tolerance:.3g} is accepted for {body.precision})",
                ["body"],
            )
        size = path.stat().st_size
        _check_size(size, settings, "the built file takes")
        return BuiltFile(path, file_sha256(path), size, diff)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def build_and_store_artifact(ctx: WorkContext, body: ArtifactCreate, key: str) -> Outcome:
    """The artifact's task function: build ``body``'s file, store it by its digest and record its
    row under ``key``, once per key; a :class:`ServiceError` (too large, the check failed) is
    recorded as the item's error for the waiting API process to raise."""
    outcome = request_outcome(ctx, key)
    if outcome.existing is not None or outcome.error is not None:
        return outcome
    with ctx.write_sessions() as session:
        items.started(session, key, WorkKind.ARTIFACT, body.space)
        session.commit()
    try:
        with ctx.read_sessions() as session:
            weights = weights_file(session, ctx.settings, body)
        folder = artifacts_dir(ctx.settings.data_dir)
        built = build_file(body, weights, folder, ctx.settings)
    except ServiceError as error:
        outcome.error = record_failure(ctx, key, WorkKind.ARTIFACT, body.space, error)
        return outcome
    # Content-addressed: an equal file already there is the same bytes, so replacing it is harmless.
    os.replace(built.path, stored_artifact(folder, built.digest))
    with ctx.write_sessions() as session:
        row = repo.add_artifact(
            session,
            request_key(body),
            body.space,
            body.model_dump_json(),
            built.digest,
            built.size_bytes,
            built.max_abs_diff,
        )
        items.finished(session, key, WorkKind.ARTIFACT, body.space, WorkStatus.DONE, result_id=row.id)
        session.commit()
        outcome.stored = row.id
    return outcome


async def create_artifact(
    read_sessions: sessionmaker[Session],
    body: ArtifactCreate,
    settings: Settings,
    runner: Runner,
    admission: Admission,
    caller: str,
    connection: Connection | None = None,
) -> ArtifactPublic:
    """The stored artifact of ``body``; when there is none it is built first (where ``runner``
    runs work) once ``admission`` admits it. Equal requests share one build.

    Raises:
        InvalidError, TooLargeError, ConflictError: See :func:`weights_file`,
            :func:`check_buildable` and :func:`build_file`.
        TooManyRequestsError, UnavailableError, ClientDisconnectedError: See
            :meth:`~search_service.admission.Admission.run`.
    """
    key = request_key(body)

    def stored() -> ArtifactRow | None:
        with read_sessions() as session:
            weights_file(session, settings, body)  # an unknown version is a 422 before anything
            return repo.find_artifact(session, key)

    def load(artifact_id: int) -> ArtifactRow | None:
        with read_sessions() as session:
            return session.get(ArtifactRow, artifact_id)

    row = await run_in_threadpool(stored)
    if row is None:
        await run_in_threadpool(check_buildable, body, settings)
        work = items.artifact_key(key)
        artifact_id = await admission.run(
            caller, lambda: runner.artifact(body, work), key=work, connection=connection
        )
        row = await run_in_threadpool(load, artifact_id)
    assert row is not None
    return public(row)


def artifact_file(session: Session, settings: Settings, digest: str) -> Path:
    """The stored file of the artifact ``digest``.

    Raises:
        NotFoundError: No artifact has that digest (or its file is gone from the data directory).
    """
    repo.get_artifact(session, digest)
    path = stored_artifact(artifacts_dir(settings.data_dir), digest)
    if not path.is_file():
        raise NotFoundError(f"the file of artifact {digest!r} is missing from the data directory")
    return path


def list_page(
    session: Session, limit: int, offset: int, space: str | None
) -> tuple[int, list[ArtifactPublic]]:
    """A page of stored artifacts (of ``space``, if given) and how many there are."""
    total, rows = repo.list_artifacts(session, limit, offset, space)
    return total, [public(row) for row in rows]
