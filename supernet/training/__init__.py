"""Training UFO supernets: gated multi-task sandwich training, chip stages, new-task extension.

* :func:`train_supernet` / :class:`SupernetTrainer`: what ``gpnas train`` runs (see
  :mod:`supernet.training._trainer` for the recipe, the data contract and the checkpoints);
* :class:`TaskGates`, :func:`straight_through_gumbel`: UFO's hard-policy gates between the shared
  FFN and each task's expert;
* :class:`LearnedGates` (``gates.json``) and :func:`fix_ffn_paths`, :func:`ffn_path_log_prior`,
  :func:`sample_with_gates`: what the gates learned, and how a search fixes or biases
  ``ffn_path`` with it; :func:`gated_definition`: the space with each task's ``ffn_path`` fixed
  as its gates chose (``space-gated.yaml``), which the service's fronts and deployment queries
  then keep;
* :class:`TrainPath`, :class:`PathSampler`, :func:`gated_forward`: the paths of the sandwich rule.
"""

from ._gates import (
    GATES_FORMAT,
    LearnedGates,
    TaskGates,
    ffn_path_log_prior,
    fix_ffn_paths,
    gate_table,
    gated_definition,
    gates_from_report,
    gumbel_noise,
    sample_with_gates,
    straight_through_gumbel,
)
from ._losses import distill_loss, supcon_loss, task_loss
from ._paths import PathSampler, TrainPath, gated_forward
from ._trainer import (
    CHECKPOINT_FORMAT,
    STAGES,
    Stage,
    SupernetTrainer,
    TrainConfig,
    TrainResult,
    as_pair,
    load_for_new_task,
    read_training_state,
    task_owner,
    torch_device,
    train_supernet,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "GATES_FORMAT",
    "STAGES",
    "LearnedGates",
    "PathSampler",
    "Stage",
    "SupernetTrainer",
    "TaskGates",
    "TrainConfig",
    "TrainPath",
    "TrainResult",
    "as_pair",
    "distill_loss",
    "ffn_path_log_prior",
    "fix_ffn_paths",
    "gate_table",
    "gated_definition",
    "gated_forward",
    "gates_from_report",
    "gumbel_noise",
    "load_for_new_task",
    "read_training_state",
    "sample_with_gates",
    "straight_through_gumbel",
    "supcon_loss",
    "task_loss",
    "task_owner",
    "torch_device",
    "train_supernet",
]
