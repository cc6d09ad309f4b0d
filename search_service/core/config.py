"""Service settings, read from ``GPNAS_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    auth: bool = Field(
        True, description="Require a Bearer token on writes; off only for local single-user use."
    )
    refit_worker: bool = Field(True, description="Run the background refit thread inside the app.")
    refit_delay_s: float = Field(
        2.0, ge=0.0, description="Wait this long after new data before refitting, to batch arrivals."
    )
    refit_poll_s: float = Field(
        30.0, gt=0.0, description="Also look for unfitted data this often (other processes may ingest)."
    )
    max_job_attempts: int = Field(3, ge=1, description="A job fails for good after this many leases.")
    max_lease_seconds: int = Field(3600, ge=1, description="Upper bound on a requested lease duration.")
    max_batch: int = Field(10_000, ge=1, description="Most measurements accepted in one POST.")
    predictor: str = Field(
        "gpnas",
        description="Predictor fitted per device and task (predictors registry). With gpnas-transfer "
        "each device (task) uses the other devices (tasks) as related outputs, so a new chip with a "
        "few measurements borrows from those measured before; a target is refitted when its own "
        "data changes.",
    )
    min_train: int = Field(
        3, ge=2, description="Fit a target once it has this many distinct measured subnets."
    )
    front_max_evaluations: int = Field(20_000, ge=10, description="Most subnets one front search predicts.")
    front_time_limit_s: float = Field(25.0, gt=0.0, description="Wall-clock limit of one front search.")
    front_cache_s: float = Field(
        1.0, ge=0.0, description="How long /v1/query trusts its cached 'latest front' before re-checking."
    )


def get_settings() -> Settings:
    """Settings read from the environment now (not cached: tests change the environment)."""
    return Settings()
