"""Search spaces and the UFO weight-sharing supernet.

Two layers live here. The search spaces (:mod:`supernet.spaces`: definitions, arch parsing, the
registry) import without torch, so that the wire schemas, the client and the device agent run
on machines that have none. The torch layer (the supernet modules, extraction, ONNX export,
checkpoint import, training) is imported on first use of one of its names: ``from supernet
import UFOSupernet`` works as before and only then loads torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import spaces
from .lazy import lazy_attributes
from .spaces import *  # noqa: F403 (the torch-free layer, re-exported as it is)

if TYPE_CHECKING:
    from ._checkpoint import (
        CheckpointError,
        ExpertGates,
        ImportReport,
        convert_ufo_state_dict,
        import_ufo_checkpoint,
        merge_rank_states,
        read_pdparams,
        ufo_space_of,
    )
    from ._deployment import (
        DTYPE_BYTES,
        INPUT_MODES,
        Deployment,
        DeploymentViT,
        InputMode,
        LayerChoices,
        SharedLayer,
        deployment_choice_params,
        deployment_choices,
        deployment_macs,
        deployment_params,
        deployment_tree,
        deployment_weight_mb,
        export_deployment_onnx,
        extract_deployment,
        reused_layers,
    )
    from ._export import ONNX_INPUT, ONNX_OUTPUT, example_input, export_onnx
    from ._supernet import LayerSpec, SubnetViT, UFOSupernet, build_supernet, resolve_path, ufo_space
    from .training import (
        LearnedGates,
        SupernetTrainer,
        TaskGates,
        TrainConfig,
        TrainResult,
        ffn_path_log_prior,
        fix_ffn_paths,
        sample_with_gates,
        train_supernet,
    )

# Where __getattr__ looks for the torch layer's names (those imported under TYPE_CHECKING above;
# tests/test_layers.py checks that they are the names of __all__ that supernet.spaces does not give).
_TORCH_MODULES = ("._supernet", "._deployment", "._export", "._checkpoint", ".training")

__all__ = [
    "DTYPE_BYTES",
    "INPUT_MODES",
    "ONNX_INPUT",
    "ONNX_OUTPUT",
    "CheckpointError",
    "Deployment",
    "DeploymentViT",
    "ExpertGates",
    "ImportReport",
    "InputMode",
    "LayerChoices",
    "LayerSpec",
    "LearnedGates",
    "SharedLayer",
    "SubnetViT",
    "SupernetTrainer",
    "TaskGates",
    "TrainConfig",
    "TrainResult",
    "UFOSupernet",
    "build_supernet",
    "convert_ufo_state_dict",
    "deployment_choice_params",
    "deployment_choices",
    "deployment_macs",
    "deployment_params",
    "deployment_tree",
    "deployment_weight_mb",
    "example_input",
    "export_deployment_onnx",
    "export_onnx",
    "extract_deployment",
    "ffn_path_log_prior",
    "fix_ffn_paths",
    "import_ufo_checkpoint",
    "merge_rank_states",
    "read_pdparams",
    "resolve_path",
    "reused_layers",
    "sample_with_gates",
    "train_supernet",
    "ufo_space",
    "ufo_space_of",
]
__all__ += spaces.__all__

if not TYPE_CHECKING:  # type checkers read the imports above instead
    __getattr__ = lazy_attributes(__name__, _TORCH_MODULES, __all__)
