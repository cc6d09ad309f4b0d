"""The device agent: runs next to a chip, leases profiling jobs from the service, measures them
and posts the results back.

Guarantees, with the service's job API (lease / heartbeat / result / fail):

* never lost: a job is only ever *leased*; if the agent dies, its lease expires and the service
  hands the job to another agent. Network errors are retried with exponential backoff.
* never counted twice: the result is posted with the lease token and the service treats a
  re-post of the same result as the same measurement, so a retry after a lost response is safe;
  a 409 (another agent now holds the job) means this agent's measurement is dropped.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from supernet import get_space

from ._base import Profiler, ProfilerUnavailableError
from ._registry import create_profiler

logger = logging.getLogger("gpnas.agent")


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
        max_jobs: Stop after this many processed jobs (``None``: run until stopped).
        exit_when_idle: Stop as soon as the queue has no job for this device.
        lease_seconds: Lease length asked for; heartbeats are sent every third of it.
        poll_interval: Seconds between lease attempts while the queue is empty.
        max_retries: Retries per request on network errors, 429 and 5xx answers before giving up
            with :class:`AgentError` (every endpoint is safe to repeat: results are idempotent).
        backoff: First retry delay in seconds; doubled per attempt (with jitter) up to
            ``max_backoff``.
        client: HTTP client to use (e.g. a test's); by default an ``httpx.Client`` on ``server``.
        sleep: Function used to wait between polls and retries (tests pass a fake).
    """

    def __init__(
        self,
        server: str,
        device: str,
        token: str,
        profiler: Profiler | None = None,
        max_jobs: int | None = None,
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
        self.device = device
        self.max_jobs = max_jobs
        self.exit_when_idle = exit_when_idle
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self.client = client or httpx.Client(base_url=server.rstrip("/"), timeout=30.0)
        self.headers = {"Authorization": f"Bearer {token}"}
        self._fixed_profiler = profiler
        self._profilers: dict[str, Profiler] = {}
        self._device_info: dict[str, Any] | None = None
        self._stop = threading.Event()
        self.stats = AgentStats()

    # ------------------------------------------------------------------ HTTP with retries
    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """Send one request, retrying network errors, 429 and 5xx answers with backoff.

        Returns:
            The response, whose status is < 400 or a 4xx other than 401/403 and 429.

        Raises:
            AgentError: On 401/403, or when every retry failed.
        """
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                response = self.client.request(method, path, json=body, headers=self.headers)
            except httpx.TransportError as error:
                last = f"{type(error).__name__}: {error}"
            else:
                if response.status_code in (401, 403):
                    raise AgentError(
                        f"{method} {path}: the server rejected the token "
                        f"({response.status_code}: {response.text[:200]})"
                    )
                if response.status_code < 500 and response.status_code != 429:
                    return response
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            if attempt < self.max_retries:
                delay = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random() / 2)
                logger.warning("%s %s failed (%s); retry %d in %.1fs", method, path, last, attempt + 1, delay)
                self.sleep(delay)
        raise AgentError(
            f"{method} {path}: server unreachable after {self.max_retries + 1} attempts ({last})"
        )

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        if response.status_code >= 400:
            raise AgentError(f"{what} failed: HTTP {response.status_code}: {response.text[:300]}")
        return response.json()

    # ------------------------------------------------------------------ device and profilers
    def device_info(self) -> dict[str, Any]:
        """``{"name", "profiler", "settings"}`` of the device, fetched once."""
        if self._device_info is None:
            response = self._request("GET", f"/v1/devices/{self.device}")
            if response.status_code == 404:
                raise AgentError(f"device {self.device!r} is not registered on the server")
            self._device_info = self._json(response, f"GET /v1/devices/{self.device}")
        return self._device_info

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
                info["profiler"], get_space(space_name), **(info.get("settings") or {})
            )
        return self._profilers[space_name]

    # ------------------------------------------------------------------ the loop
    def stop(self) -> None:
        """Ask :meth:`run` to return after the job in hand (safe from another thread)."""
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
        """Lease one job and process it.

        Returns:
            ``False`` if the queue had no job for this device.
        """
        body = {"device": self.device, "lease_seconds": self.lease_seconds}
        job = self._json(self._request("POST", "/v1/jobs/lease", body), "POST /v1/jobs/lease").get("job")
        if not job:
            return False
        logger.info(
            "job %s: %s %s on %s", job["id"], job["metric"], job["arch"], job.get("task") or self.device
        )
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job, done), daemon=True)
        beat.start()
        try:
            profiler = self.profiler_for(job["space"])
            if profiler.metric != job["metric"]:
                raise ValueError(
                    f"job wants {job['metric']!r} but profiler {profiler.name!r} measures {profiler.metric!r}"
                )
            result = profiler.profile(job["arch"], job.get("task"))
        except ProfilerUnavailableError as error:
            # This machine lacks the device's hardware: hand the job back and stop, rather than
            # drain the queue by failing every job.
            done.set()
            beat.join()
            self._fail(job, f"ProfilerUnavailableError: {error}")
            raise AgentError(f"device {self.device!r} cannot be measured here: {error}") from None
        except Exception as error:  # any other profiler failure is the job's, not the agent's
            done.set()
            beat.join()
            self._fail(job, f"{type(error).__name__}: {error}")
            return True
        done.set()
        beat.join()
        environment = {**result.environment, "p10": result.p10, "p90": result.p90, "rse": result.rse}
        payload = {
            "lease_token": job["lease_token"],
            "value": result.value,
            "std": result.std,
            "repeats": result.repeats,
            "profiler": profiler.name,
            "profiler_version": profiler.version,
            "environment": environment,
        }
        response = self._request("POST", f"/v1/jobs/{job['id']}/result", payload)
        if response.status_code == 409:
            logger.warning("job %s: another agent holds it now; result dropped", job["id"])
            self.stats.lost += 1
        else:
            self._json(response, f"POST /v1/jobs/{job['id']}/result")
            self.stats.done += 1
        return True

    def _fail(self, job: dict[str, Any], message: str) -> None:
        """Give ``job`` back with ``message`` (the service re-queues it or fails it for good)."""
        logger.warning("job %s failed: %s", job["id"], message)
        body = {"lease_token": job["lease_token"], "error": message.replace("\x00", "")[:2000]}
        self._request("POST", f"/v1/jobs/{job['id']}/fail", body)
        self.stats.failed += 1

    def _heartbeat(self, job: dict[str, Any], done: threading.Event) -> None:
        """Extend the lease every third of its length until ``done``.

        On a 409 the lease is gone; the measurement still finishes and its post decides (the
        service answers 409 again if another agent holds the job).
        """
        interval = self.lease_seconds / 3
        body = {"lease_token": job["lease_token"], "lease_seconds": self.lease_seconds}
        while not done.wait(interval):
            try:
                response = self.client.post(
                    f"/v1/jobs/{job['id']}/heartbeat", json=body, headers=self.headers
                )
            except httpx.TransportError as error:
                logger.warning("job %s: heartbeat failed (%s); retrying next beat", job["id"], error)
                continue
            if response.status_code == 409:
                logger.warning("job %s: lease lost", job["id"])
                return
