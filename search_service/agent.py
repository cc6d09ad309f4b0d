"""The device agent: runs next to a chip, leases batches of profiling jobs from the service,
measures each batch together (interleaved timing needs the whole batch) and posts every result.

Guarantees, with the service's job API (lease / heartbeat / result / fail):

* never lost: a job is only ever *leased*; if the agent dies, its lease expires and the service
  hands the job to another agent. Network errors are retried with exponential backoff.
* never counted twice: the result is posted with the lease token and the service treats a
  re-post of the same result as the same measurement, so a retry after a lost response is safe;
  a 409 (another agent now holds the job) means this agent's measurement is dropped.

Every request goes through :class:`search_service.client.GpnasClient`, which does the retries:
the agent is a client of the service like any other and imports none of the server's modules.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
from pydantic import ValidationError

from profilers import LocalConfig, Profiler, ProfileResult, ProfilerUnavailableError, create_profiler
from supernet.spaces import SearchSpace, get_space, is_preset, space_from_definition

from .client import (
    ApiError,
    ClientError,
    Conflict,
    GpnasClient,
    NotFound,
    ServerUnreachable,
    Unauthorized,
)
from .schemas import (
    DevicePublic,
    FailRequest,
    HeartbeatRequest,
    JobLease,
    LeaseRequest,
    ResultRequest,
)

logger = logging.getLogger("gpnas.agent")
T = TypeVar("T")


class AgentError(RuntimeError):
    """The agent cannot go on: bad token, unknown device, or the server stayed unreachable."""


@dataclass
class AgentStats:
    """What one :meth:`DeviceAgent.run` did.

    Attributes:
        done: Jobs whose result the service accepted.
        failed: Jobs reported as failed (the profiler raised).
        lost: Jobs whose lease another agent held by the time the result was posted.
    """

    done: int = 0
    failed: int = 0
    lost: int = 0

    @property
    def processed(self) -> int:
        return self.done + self.failed + self.lost


class DeviceAgent:
    """Lease, measure, heartbeat, post; repeat.

    Args:
        server: Base URL of the service, e.g. ``http://127.0.0.1:8000``.
        device: Registered device name; its profiler and settings come from
            ``GET /v1/devices/{device}`` unless ``profiler`` is given.
        token: API token, sent as ``Authorization: Bearer <token>``.
        profiler: Use this profiler for every job instead of the device's registered one (its
            space must match the jobs').
        local: What the file and callable names in the device's settings refer to on this
            machine (see :class:`profilers.LocalConfig`; default: ``$GPNAS_LOCAL_CONFIG`` or
            nothing). The settings come from the server, so they are never trusted: files are
            confined to ``local.data_dir`` and code is only what this machine defines.
        max_jobs: Stop after this many processed jobs (``None``: run until stopped).
        lease_size: Jobs leased (and measured as one batch) at a time.
        exit_when_idle: Stop as soon as the queue has no job for this device.
        lease_seconds: Lease length asked for; heartbeats are sent every third of it.
        poll_interval: Seconds between lease attempts while the queue is empty.
        max_retries: Retries per request on network errors, 429 and 5xx answers before giving up
            with :class:`AgentError` (every endpoint is safe to repeat: results are idempotent).
        backoff: First retry delay in seconds; doubled per attempt (with jitter) up to
            ``max_backoff``.
        max_backoff: Longest delay between two retries, in seconds.
        client: HTTP client to send with (e.g. a test's, with a faulty transport); by default one
            is created. Requests go to ``server`` + the route's path.
        sleep: Function used to wait between polls and retries (tests pass a fake).

    Attributes:
        api: The :class:`search_service.client.GpnasClient` every request goes through (it does
            the retries); its errors reach the caller as :class:`AgentError`.
    """

    def __init__(
        self,
        server: str,
        device: str,
        token: str,
        profiler: Profiler | None = None,
        local: LocalConfig | None = None,
        max_jobs: int | None = None,
        lease_size: int = 8,
        exit_when_idle: bool = False,
        lease_seconds: int = 60,
        poll_interval: float = 5.0,
        max_retries: int = 8,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
        if max_jobs is not None and max_jobs < 1:
            raise ValueError(f"max_jobs must be >= 1, got {max_jobs}")
        if lease_size < 1:
            raise ValueError(f"lease_size must be >= 1, got {lease_size}")
        try:  # what the service accepts: a device name, at most a day's lease, 64 jobs per lease
            LeaseRequest(device=device, lease_seconds=lease_seconds, count=lease_size)
        except ValidationError as error:
            names: dict[int | str, str] = {"count": "lease_size"}
            problems = "; ".join(
                f"{names.get(e['loc'][-1], e['loc'][-1])}: {e['msg']}" for e in error.errors()
            )
            raise ValueError(f"invalid agent settings: {problems}") from None
        self.device = device
        self.max_jobs = max_jobs
        self.lease_size = lease_size
        self.exit_when_idle = exit_when_idle
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self.api = GpnasClient(
            server,
            token,
            http=client,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
            sleep=sleep,
        )
        self.client = self.api.http
        # A heartbeat is sent once: a lost one is simply sent again at the next beat.
        self._beat_api = self.api.with_retries(0)
        self._fixed_profiler = profiler
        self.local = dataclasses.replace(local or LocalConfig.load(), trusted=False)
        self._profilers: dict[str, Profiler] = {}
        self._spaces: dict[str, SearchSpace] = {}
        self._device_info: DevicePublic | None = None
        self._stop = threading.Event()
        self.stats = AgentStats()

    # ------------------------------------------------------------------ the service's answers
    def _call(self, what: str, call: Callable[[], T], passthrough: tuple[type[ApiError], ...] = ()) -> T:
        """``call()`` (a request of :attr:`api`), its client errors as :class:`AgentError`.

        Args:
            what: The request, for the error message (e.g. ``POST /v1/jobs/lease``).
            call: Sends it.
            passthrough: Error answers raised as they are, for the caller to handle (never
                401/403: those always stop the agent).

        Raises:
            AgentError: On 401/403, when the server stayed unreachable, or on another error answer.
        """
        try:
            return call()
        except Unauthorized as error:
            raise AgentError(
                f"{what}: the server rejected the token ({error.status_code}: {error.message[:200]})"
            ) from None
        except ServerUnreachable as error:
            raise AgentError(str(error)) from None
        except passthrough:
            raise
        except ApiError as error:
            raise AgentError(f"{what} failed: HTTP {error.status_code}: {error.message[:300]}") from None

    # ------------------------------------------------------------------ device and profilers
    def device_info(self) -> DevicePublic:
        """The device's name, profiler and settings, fetched once."""
        if self._device_info is None:
            what = f"GET /v1/devices/{self.device}"
            try:
                self._device_info = self._call(
                    what, lambda: self.api.get_device(self.device), passthrough=(NotFound,)
                )
            except NotFound:
                raise AgentError(f"device {self.device!r} is not registered on the server") from None
        return self._device_info

    def space(self, name: str, task: str | None = None) -> SearchSpace:
        """The space ``name``: a preset, or a space registered on the server, whose definition is
        fetched once (and again when a job names a ``task`` it lacks: tasks are added later).

        Raises:
            AgentError: The server does not know the space (or refuses the token).
        """
        if is_preset(name):
            return get_space(name)
        known = self._spaces.get(name)
        if known is None or (task is not None and task not in known.tasks):
            what = f"GET /v1/spaces/{name}/definition"
            try:
                definition = self._call(
                    what, lambda: self.api.get_space_definition(name), passthrough=(NotFound,)
                )
            except NotFound:
                raise AgentError(f"space {name!r} is not registered on the server") from None
            known = self._spaces[name] = space_from_definition(definition)
            self._profilers.pop(name, None)  # built on the old definition
        return known

    def profiler_for(self, space_name: str) -> Profiler:
        """The profiler measuring jobs of ``space_name`` (created once per space)."""
        if self._fixed_profiler is not None:
            if self._fixed_profiler.space.name != space_name:
                raise ValueError(
                    f"this agent's profiler measures space {self._fixed_profiler.space.name!r}, "
                    f"not {space_name!r}"
                )
            return self._fixed_profiler
        if space_name not in self._profilers:
            info = self.device_info()
            self._profilers[space_name] = create_profiler(
                info.profiler, self.space(space_name), local=self.local, **(info.settings or {})
            )
        return self._profilers[space_name]

    # ------------------------------------------------------------------ the loop
    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in hand (safe from another thread)."""
        self._stop.set()

    def run(self) -> AgentStats:
        """Process jobs until ``max_jobs``, an empty queue with ``exit_when_idle``, or :meth:`stop`.

        Returns:
            Counts of done, failed and lost jobs.
        """
        self.device_info()  # fail fast on a bad token or an unknown device
        while not self._stop.is_set():
            if self.max_jobs is not None and self.stats.processed >= self.max_jobs:
                break
            if not self.run_one():
                if self.exit_when_idle:
                    break
                self.sleep(self.poll_interval)
        return self.stats

    def run_one(self) -> bool:
        """Lease a batch of up to ``lease_size`` jobs, measure it and post every result.

        Jobs of one space and task are measured together (:meth:`Profiler.profile_many`: a
        latency profiler times them in interleaved rounds); every leased job is heartbeaten
        until its own result or failure is posted.

        Returns:
            ``False`` if the queue had no job for this device.
        """
        request = LeaseRequest(
            device=self.device, lease_seconds=self.lease_seconds, count=self._lease_count()
        )
        jobs = self._call("POST /v1/jobs/lease", lambda: self.api.lease_jobs(request)).jobs
        if not jobs:
            return False
        held = {job.id: job for job in jobs}
        lock = threading.Lock()
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(held, lock, done), daemon=True)
        beat.start()
        try:
            groups: dict[tuple[str, str | None], list[JobLease]] = {}
            for job in jobs:
                groups.setdefault((job.space, job.task), []).append(job)
            for (space, task), group in groups.items():
                logger.info(
                    "jobs %s: %d x %s on %s",
                    ",".join(str(j.id) for j in group),
                    len(group),
                    group[0].metric,
                    task or self.device,
                )
                outcomes = self._measure(space, task, group)
                for job, outcome in zip(group, outcomes, strict=True):
                    if isinstance(outcome, Exception):
                        self._fail(job, f"{type(outcome).__name__}: {outcome}")
                    else:
                        self._post(job, outcome)
                    with lock:
                        held.pop(job.id, None)
        except ProfilerUnavailableError as error:
            # This machine lacks the device's hardware: hand every job in hand back and stop,
            # rather than drain the queue by failing every job.
            for job in list(held.values()):
                self._fail(job, f"ProfilerUnavailableError: {error}")
            raise AgentError(f"device {self.device!r} cannot be measured here: {error}") from None
        finally:
            done.set()
            beat.join()
        return True

    def _lease_count(self) -> int:
        if self.max_jobs is None:
            return self.lease_size
        return max(1, min(self.lease_size, self.max_jobs - self.stats.processed))

    def _measure(self, space: str, task: str | None, jobs: list[JobLease]) -> list[ProfileResult | Exception]:
        """One outcome per job; a profiler that cannot be set up fails every job of the group."""
        try:
            if self._fixed_profiler is None:
                self.space(space, task)  # a task added to the space since it was fetched
            profiler = self.profiler_for(space)
            if profiler.metric != jobs[0].metric:
                raise ValueError(
                    f"job wants {str(jobs[0].metric)!r} but profiler {profiler.name!r} measures "
                    f"{str(profiler.metric)!r}"
                )
            return profiler.profile_many([job.arch for job in jobs], task)
        except ProfilerUnavailableError:
            raise
        except Exception as error:  # the group's failure, not the agent's
            return [error] * len(jobs)

    def _post(self, job: JobLease, result: ProfileResult) -> None:
        profiler = self.profiler_for(job.space)
        try:
            request = ResultRequest(
                lease_token=job.lease_token,
                **result.measurement_fields(),
                profiler=profiler.name,
                profiler_version=profiler.version,
            )
        except ValidationError as error:
            # E.g. a NaN in the environment: the service could not store it; the job fails instead.
            self._fail(job, f"the profiler's result is not storable: {error}")
            return
        what = f"POST /v1/jobs/{job.id}/result"
        try:
            self._call(what, lambda: self.api.post_job_result(job.id, request), passthrough=(Conflict,))
        except Conflict:
            logger.warning("job %s: another agent holds it now; result dropped", job.id)
            self.stats.lost += 1
        else:
            self.stats.done += 1
            logger.info(
                "job %s: %s %s = %.6g (spread %.3g, %d repeats)",
                job.id,
                job.arch,
                job.metric,
                result.value,
                result.std,
                result.repeats,
            )

    def _fail(self, job: JobLease, message: str) -> None:
        """Give ``job`` back with ``message`` (the service re-queues it or fails it for good).

        An error answer other than 401/403 (e.g. 409: the lease is gone) is only logged: the
        job is back in the queue, or done by another agent, either way.
        """
        logger.warning("job %s failed: %s", job.id, message)
        # NUL and lone surrogates cannot be stored; the service keeps at most 4000 characters.
        text = message.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")[:2000]
        request = FailRequest(lease_token=job.lease_token, error=text)
        try:
            self._call(
                f"POST /v1/jobs/{job.id}/fail",
                lambda: self.api.fail_job(job.id, request),
                passthrough=(ApiError,),
            )
        except ApiError as error:
            logger.warning("job %s: the failure was not recorded (%s)", job.id, error)
        self.stats.failed += 1

    def _heartbeat(self, held: dict[int, JobLease], lock: threading.Lock, done: threading.Event) -> None:
        """Extend the lease of every job in ``held`` every third of its length until ``done``.

        A job leaves ``held`` when its result or failure is posted. On a 409 its lease is gone;
        the measurement still finishes and its post decides (the service answers 409 again if
        another agent holds the job). Each beat is sent once: a failed one is retried at the next.
        """
        interval = self.lease_seconds / 3
        while not done.wait(interval):
            with lock:
                jobs = list(held.values())
            for job in jobs:
                request = HeartbeatRequest(lease_token=job.lease_token, lease_seconds=self.lease_seconds)
                try:
                    self._beat_api.heartbeat_job(job.id, request)
                except Conflict:
                    logger.warning("job %s: lease lost", job.id)
                    with lock:
                        held.pop(job.id, None)
                except ClientError as error:
                    logger.warning("job %s: heartbeat failed (%s); retrying next beat", job.id, error)
