"""Service settings, read from ``GPNAS_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ..levels import DEFAULT_SHIFT_THRESHOLD

# Host names that only ever mean this machine: the default allow-list on a loopback bind.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


class Settings(BaseSettings):
    """Runtime configuration of the API and its background refit worker.

    Every field can be set from the environment with the ``GPNAS_`` prefix, e.g.
    ``GPNAS_DATABASE_URL=postgresql+psycopg://user@host/db`` or ``GPNAS_AUTH=off``.
    """

    model_config = SettingsConfigDict(env_prefix="GPNAS_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./gpnas.db",
        description="SQLAlchemy URL; SQLite file by default, postgresql:// for production.",
    )
    data_dir: Path | None = Field(
        None,
        description="Directory of the tables the server itself may read (to plan campaigns on 'table' "
        "devices); a device's file settings are relative to it. Unset: the server opens no file named "
        "in settings. Registered supernet checkpoints are stored under its supernets/ folder "
        "(<data_dir>/supernets/<sha256>.safetensors); unset, the server registers none.",
    )
    auth: bool = Field(
        True, description="Require a Bearer token on writes; off only for local single-user use."
    )
    refit_worker: bool = Field(
        True,
        description="Run the scheduling thread inside the app: it looks for stale targets and fronts "
        "after new data and every refit_poll_s, and runs their fits in process (no broker) or sends "
        "them to the workers (broker_url set).",
    )
    broker_url: str | None = Field(
        None,
        description="Celery broker for fits, fronts and campaign selection, e.g. redis://host:6379/0 or "
        "amqp://guest:guest@host:5672//. Set: API processes compute none of them; `gpnas worker` "
        "processes (any number, any machine) do. Unset: the same task functions run in process.",
    )
    torch_threads: int = Field(
        1,
        ge=1,
        description="Threads torch uses for fits and front searches in a process that runs them (an API "
        "process without a broker, each worker process). 1: on a shared machine a fit on two threads "
        "stalls whenever another process holds a core (7.7-28 s against 1.8-3.0 s for the same "
        "300-point fit here); scale out with more worker processes instead.",
    )
    task_queue: str = Field(
        "gpnas",
        description="The broker queue the API sends work to and `gpnas worker` consumes; separate "
        "deployments on one broker use separate queues.",
    )
    broker_visibility_timeout_s: float = Field(
        3600.0,
        gt=0.0,
        description="Redis broker: a task taken by a worker that died unacknowledged is delivered again "
        "after this long (RabbitMQ redelivers as soon as the worker's connection drops). Tasks are "
        "idempotent, so a shorter timeout only costs duplicate work on tasks that run longer.",
    )
    dispatch_timeout_s: float = Field(
        900.0,
        gt=0.0,
        description="Work dispatched this long ago and still not finished is dispatched again (its "
        "worker may be gone); longer than the slowest fit.",
    )
    task_wait_s: float = Field(
        600.0,
        gt=0.0,
        description="How long campaign selection and POST /v1/refit wait for the workers (they report "
        "through the database: no Celery result backend is needed).",
    )
    full_refit_growth: float = Field(
        0.25,
        ge=0.0,
        description="New data conditions the newest predictor's posterior, keeping its hyperparameters "
        "(seconds instead of a full fit), until the target has this fraction more measurements than "
        "the full fit used; then the hyperparameters are fitted again. 0: always a full fit.",
    )
    full_refit_after_s: float = Field(
        600.0,
        ge=0.0,
        description="Also fit the hyperparameters again when the newest full fit is older than this "
        "and the data changed.",
    )
    refit_delay_s: float = Field(
        2.0, ge=0.0, description="Wait this long after new data before refitting, to batch arrivals."
    )
    refit_poll_s: float = Field(
        30.0, gt=0.0, description="Also look for unfitted data this often (other processes may ingest)."
    )
    max_job_attempts: int = Field(3, ge=1, description="A job fails for good after this many leases.")
    max_lease_seconds: int = Field(3600, ge=1, description="Upper bound on a requested lease duration.")
    max_batch: int = Field(10_000, ge=1, description="Most measurements accepted in one POST.")
    level_shift_threshold: float = Field(
        DEFAULT_SHIFT_THRESHOLD,
        ge=0.0,
        description="Report a latency batch whose reference level lies further than this (relative) "
        "from its device's long-run level: in the POST /v1/measurements answer and the device's "
        "levels. It is stored and rescaled all the same.",
    )
    predictor_latency: str = Field(
        "gpnas-transfer",
        description="Predictor fitted per device for latency (predictors registry; env "
        "GPNAS_PREDICTOR_LATENCY). The default, gpnas-transfer, makes every other device of the space "
        "a related output, so a new chip with a few measurements borrows from those measured before; "
        "chosen by the held-out-chip table of benchmarks/results/new_chip.md (leave-one-device-out "
        "over the HELP devices: mean and worst device).",
    )
    predictor_score: str = Field(
        "gpnas-multitask",
        description="Predictor fitted per task for scores (env GPNAS_PREDICTOR_SCORE). The default, "
        "gpnas-multitask, learns per-layer weights shared by all tasks and fits a GP head per task; "
        "chosen by the 5-fold CV table of benchmarks/results/accuracy_models.md.",
    )
    min_train: int = Field(
        3, ge=2, description="Fit a target once it has this many distinct measured subnets."
    )
    front_max_evaluations: int = Field(20_000, ge=10, description="Most subnets one front search predicts.")
    front_resolution: float = Field(
        0.5,
        ge=0.0,
        description="A front lists as distinct only subnets whose predicted mean latencies differ by "
        "more than this many latency stds (the larger of the two); of points closer than that the "
        "better-scored one stays. 0 shows the plain Pareto set, where a flat or noisy latency model "
        "shows a column of 'optimal' points a fraction of a std apart. Budget queries are unaffected.",
    )
    front_time_limit_s: float = Field(
        5.0,
        gt=0.0,
        description="Wall-clock limit of one front search. 5 s (was 25 s): since fronts encode choice "
        "matrices directly and predict on one torch thread, a ufo-track2 front reaches the 25 s "
        "front's hypervolume well within 5 s on 2 shared cores, and usually stops at "
        "front_max_evaluations first (benchmarks/results/fronts.md).",
    )
    front_update_time_limit_s: float = Field(
        2.0,
        gt=0.0,
        description="Wall-clock limit of a front search warm-started from the previous front after a "
        "posterior update (no new hyperparameters).",
    )
    deployment_time_limit_s: float = Field(
        5.0,
        gt=0.0,
        description="Wall-clock limit of the search behind one deployment query (POST "
        "/v1/deployments/query) that is too large to compare every combination.",
    )
    max_encoding_width: int = Field(
        2048,
        ge=1,
        description="Widest one-hot code of a space registered here (POST /v1/spaces, gpnas spaces "
        "add); a wider one is refused with 422. Fits cost n^2 d per step and front searches keep "
        "n x d codes: the presets need 30-198 columns; a 99-layer space with 35 values per choice "
        "needs about 7,200.",
    )
    fit_max_gflop: float = Field(
        1000.0,
        gt=0.0,
        description="Estimated work (GFLOP: code width, rows and related columns; "
        "predictors.fit_gflop) above which a target is fitted with fit_fallback instead of its "
        "metric's predictor. The presets' largest fit (fbnet, 46 devices) is about 300.",
    )
    fit_fallback: str = Field(
        "gpnas",
        description="The single-target predictor fitted when the configured one would cost more than "
        "fit_max_gflop (it fits the target's own column only).",
    )
    fit_time_limit_s: float = Field(
        300.0,
        gt=0.0,
        description="Wall-clock limit of one fit (checked at every optimiser step); a fit past it is "
        "recorded as failed and not tried again until the target's data changes.",
    )
    selection_time_limit_s: float = Field(
        60.0,
        gt=0.0,
        description="Wall-clock limit of a campaign's selection; past it the request is answered 422 "
        "(ask for fewer subnets or a cheaper strategy).",
    )
    heavy_concurrency: int | None = Field(
        None,
        ge=1,
        description="Heavy requests (deployment searches, campaign selection, POST /v1/refit with "
        "wait) run at once per API process, on threads of their own: cheap reads never wait for "
        "them. Default: 1 without a broker (the search runs in this process: a second one beside it "
        "took the API's core; during a flood of deployment queries /healthz p99 was 4.0x quiet with "
        "2, 2.2x with 1, benchmarks/results/faults_embedded.md), 4 with one (the process only waits "
        "for the workers).",
    )
    heavy_queue: int = Field(
        16,
        ge=0,
        description="Heavy requests waiting to run, at most, per API process; one more is answered 503 "
        "with Retry-After at once.",
    )
    heavy_per_token: int = Field(
        8, ge=1, description="Heavy requests in flight (queued or running) per token; one more gets 429."
    )
    heavy_anonymous: int = Field(
        4,
        ge=0,
        description="Heavy requests in flight of all anonymous callers together (deployment queries "
        "are open to them); one more gets 429. 0: anonymous callers get none.",
    )
    heavy_queue_wait_s: float = Field(
        60.0,
        gt=0.0,
        description="A heavy request that has not started after this long is answered 503 (and "
        "dropped unless another caller waits for the same work).",
    )
    max_artifact_mb: int = Field(
        2048,
        ge=1,
        le=10**6,
        description="Largest artifact POST /v1/artifacts builds, in MiB: a subnet whose weights alone "
        "exceed it is refused before it is built, a built file over it is deleted; both a 413, and "
        "nothing is stored. ufo-track2's largest subnet is about 350 MB in fp32.",
    )
    front_cache_s: float = Field(
        1.0, ge=0.0, description="How long /v1/query trusts its cached 'latest front' before re-checking."
    )
    max_body_bytes: int = Field(
        16 * 2**20,
        ge=1024,
        description="Largest accepted request body in bytes; a larger one gets 413 while it arrives. "
        "The largest legitimate request is a measurement batch of max_batch (10,000) items of up to "
        "about 1 KB each (with their environment), ~10 MB; 16 MiB leaves room for larger "
        "environments. Raise it together with max_batch.",
    )
    max_supernet_mb: int = Field(
        4096,
        ge=1,
        le=10**6,
        description="Largest supernet checkpoint POST /v1/supernets accepts, in MiB (its own limit: "
        "max_body_bytes bounds every other body); a larger upload gets 413 while it arrives and "
        "nothing of it is kept. ufo-track2's ViT-Base supernet is about 1 GiB in float32.",
    )
    bind_host: str | None = Field(
        None,
        description="The address the server listens on; `gpnas serve --host` sets it. Only used to "
        "choose the default of allowed_hosts.",
    )
    # NoDecode: pydantic-settings would otherwise insist on JSON for a list from the environment.
    allowed_hosts: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="Host names (or IPs) that requests may name in their Host header, any port; "
        "others get 400 (against DNS rebinding). From the environment comma-separated or a JSON "
        "list; '*' admits any host, '*.example.com' its subdomains. Default: on a loopback "
        "bind_host only localhost, 127.0.0.1 and [::1]; otherwise no check.",
    )

    # Failing fast when a dependency is out of reach (issue 25.3, 25.5).
    db_pool_timeout_s: float = Field(
        5.0,
        gt=0.0,
        description="How long an API request waits for one of the database pool's connections (all "
        "in use by other requests) before it is answered 503 with Retry-After; SQLAlchemy's default "
        "is 30 s.",
    )
    broker_timeout_s: float = Field(
        2.0,
        gt=0.0,
        description="How long sending work waits for the broker to connect and to answer (one retry "
        "after a failure): a broker that refuses, resets or never answers fails the send within about "
        "twice this, and the request is answered 503 with Retry-After; the work is left due, so the "
        "next scheduling pass after the broker is back sends it.",
    )
    heartbeat_interval_s: float = Field(
        5.0,
        gt=0.0,
        description="A worker running a fit, front, campaign or deployment task stamps the task's work "
        "item this often, so that work lost with a killed worker is seen as lost within "
        "heartbeat_timeout_s instead of dispatch_timeout_s.",
    )
    heartbeat_timeout_s: float = Field(
        20.0,
        gt=0.0,
        description="Running work whose worker's last heartbeat is older than this is dispatched again "
        "(its worker is gone); a few heartbeat_interval_s, so that a worker busy for a moment is not "
        "taken for dead. With refit_poll_s (30 s) lost work is sent again within about 50 s.",
    )

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            # A JSON list starts '["' (or is '[]'); '[::1]' alone is an IPv6 literal, not JSON.
            if re.match(r"\s*\[\s*[\"\]]", value):
                value = json.loads(value)
            else:
                value = [host.strip() for host in value.split(",") if host.strip()]
        # An empty list would refuse every request; like an empty variable it means unset.
        return None if value == [] else value

    def heavy_slots(self) -> int:
        """Heavy requests admitted to run at once (``heavy_concurrency`` or its default)."""
        if self.heavy_concurrency is not None:
            return self.heavy_concurrency
        return 4 if self.broker_url else 1

    def predictor_for(self, metric: str) -> str:
        """The predictor name fitted for targets of ``metric`` (``latency_ms`` or ``score``)."""
        return self.predictor_latency if metric == "latency_ms" else self.predictor_score

    def trusted_hosts(self) -> list[str] | None:
        """The Host allow-list to enforce, or None for no check (see ``allowed_hosts``)."""
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        if self.bind_host is not None and is_loopback(self.bind_host):
            return list(LOOPBACK_HOSTS)
        return None


def is_loopback(host: str) -> bool:
    """Whether the bind address ``host`` only accepts connections from this machine."""
    host = host.strip().lower().removeprefix("[").removesuffix("]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def get_settings() -> Settings:
    """Settings read from the environment now (not cached: tests change the environment)."""
    return Settings()
