"""Database operations (the "crud" layer), one module per aggregate: devices, spaces, tokens,
measurements, the training data fits read, reference levels, campaigns and jobs, predictor
versions and fronts. Functions take a Session and never commit on their own: the caller's
transaction makes each request all-or-nothing. What the application decides (job completion,
level shifts) lives in :mod:`search_service.services`."""

from __future__ import annotations

from ._artifacts import add_artifact, find_artifact, get_artifact, list_artifacts
from ._devices import create_device, get_device, list_devices
from ._fronts import StoredFronts, latest_front, latest_front_id, latest_front_key
from ._jobs import (
    campaign_counts,
    create_campaign,
    get_campaign,
    get_job,
    lease_job,
    lease_jobs,
    list_campaigns,
    list_jobs,
    pending_archs,
)
from ._levels import BatchLevel, batch_levels, levels_by_device, long_run_levels
from ._measurements import (
    COMPARED_FIELDS,
    DataVersion,
    MeasuredTarget,
    archs_measured_on_both,
    count_measured_subnets,
    data_version,
    get_measurement,
    insert_measurements,
    list_measurements,
    measured_archs,
    measured_targets,
    retract_measurement,
)
from ._predictors import latest_predictor, latest_predictors
from ._spaces import create_space_row, get_space_row, space_names, update_space_definition
from ._supernets import (
    add_supernet_version,
    find_supernet_version,
    get_supernet_version,
    list_supernet_versions,
)
from ._tokens import (
    authenticate,
    create_token,
    find_token,
    get_token,
    hash_token,
    list_tokens,
    revoke_token,
    token_status,
)
from ._training_data import Skipped, TrainingData, training_data, training_matrix

__all__ = [
    "add_artifact",
    "find_artifact",
    "get_artifact",
    "list_artifacts",
    "StoredFronts",
    "COMPARED_FIELDS",
    "BatchLevel",
    "DataVersion",
    "MeasuredTarget",
    "Skipped",
    "TrainingData",
    "archs_measured_on_both",
    "add_supernet_version",
    "authenticate",
    "batch_levels",
    "campaign_counts",
    "count_measured_subnets",
    "create_campaign",
    "create_device",
    "create_space_row",
    "create_token",
    "data_version",
    "find_supernet_version",
    "find_token",
    "get_campaign",
    "get_device",
    "get_job",
    "get_measurement",
    "get_space_row",
    "get_supernet_version",
    "get_token",
    "hash_token",
    "insert_measurements",
    "latest_front",
    "latest_front_id",
    "latest_front_key",
    "latest_predictor",
    "latest_predictors",
    "lease_job",
    "lease_jobs",
    "levels_by_device",
    "list_campaigns",
    "list_devices",
    "list_jobs",
    "list_measurements",
    "list_supernet_versions",
    "list_tokens",
    "long_run_levels",
    "measured_archs",
    "measured_targets",
    "pending_archs",
    "retract_measurement",
    "revoke_token",
    "space_names",
    "token_status",
    "training_data",
    "training_matrix",
    "update_space_definition",
]
