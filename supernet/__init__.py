"""Search spaces and the UFO weight-sharing supernet."""

from ._cells import FBNET_COSTS, FBNET_OPS, NB201_COSTS, NB201_OPS, FBNetSpace, NASBench201Space
from ._definition import (
    DefinitionError,
    GeometryDefinition,
    IndexUFOSpace,
    SpaceDefinition,
    TaskDefinition,
    space_from_definition,
)
from ._export import ONNX_INPUT, ONNX_OUTPUT, example_input, export_onnx
from ._metric import Metric
from ._registry import (
    SpaceSource,
    get_space,
    is_preset,
    list_spaces,
    preset_names,
    register_space,
    reload_space,
    set_space_source,
    space_source,
    space_with_task,
    unregister_space,
)
from ._space import Dimension, SearchSpace, Subnet
from ._supernet import LayerSpec, SubnetViT, UFOSupernet, build_supernet, resolve_path, ufo_space
from ._ufo import MULTIPATH_TASKS, TRACK2_TASKS, UFO_COSTS, MultipathSpace, Track2Space, UFOSpace, ViTGeometry

__all__ = [
    "FBNET_COSTS",
    "FBNET_OPS",
    "MULTIPATH_TASKS",
    "NB201_COSTS",
    "NB201_OPS",
    "ONNX_INPUT",
    "ONNX_OUTPUT",
    "TRACK2_TASKS",
    "UFO_COSTS",
    "DefinitionError",
    "Dimension",
    "FBNetSpace",
    "GeometryDefinition",
    "IndexUFOSpace",
    "LayerSpec",
    "Metric",
    "MultipathSpace",
    "NASBench201Space",
    "SearchSpace",
    "SpaceDefinition",
    "SpaceSource",
    "Subnet",
    "SubnetViT",
    "TaskDefinition",
    "Track2Space",
    "UFOSpace",
    "UFOSupernet",
    "ViTGeometry",
    "build_supernet",
    "example_input",
    "export_onnx",
    "get_space",
    "is_preset",
    "list_spaces",
    "preset_names",
    "register_space",
    "reload_space",
    "resolve_path",
    "set_space_source",
    "space_from_definition",
    "space_source",
    "space_with_task",
    "ufo_space",
    "unregister_space",
]
