"""The search spaces without torch: definitions, arch parsing and formatting, the registry.

This is the layer that the wire schemas, the typed client and the device agent stand on, so it
imports neither torch nor anything above it (``tests/test_layers.py`` imports it in a fresh
process and lists what got loaded). :meth:`SearchSpace.encode`, which builds a tensor for the
predictors, loads torch when it is called.
"""

from ._cells import FBNET_COSTS, FBNET_OPS, NB201_COSTS, NB201_OPS, FBNetSpace, NASBench201Space
from ._definition import (
    DefinitionError,
    GeometryDefinition,
    IndexUFOSpace,
    SpaceDefinition,
    TaskDefinition,
    space_from_definition,
)
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
from ._ufo import (
    DEFAULT_NORM_EPS,
    MULTIPATH_TASKS,
    TRACK2_TASKS,
    UFO_COSTS,
    MultipathSpace,
    Track2Space,
    UFOSpace,
    ViTGeometry,
)

__all__ = [
    "DEFAULT_NORM_EPS",
    "FBNET_COSTS",
    "FBNET_OPS",
    "MULTIPATH_TASKS",
    "NB201_COSTS",
    "NB201_OPS",
    "TRACK2_TASKS",
    "UFO_COSTS",
    "DefinitionError",
    "Dimension",
    "FBNetSpace",
    "GeometryDefinition",
    "IndexUFOSpace",
    "Metric",
    "MultipathSpace",
    "NASBench201Space",
    "SearchSpace",
    "SpaceDefinition",
    "SpaceSource",
    "Subnet",
    "TaskDefinition",
    "Track2Space",
    "UFOSpace",
    "ViTGeometry",
    "get_space",
    "is_preset",
    "list_spaces",
    "preset_names",
    "register_space",
    "reload_space",
    "set_space_source",
    "space_from_definition",
    "space_source",
    "space_with_task",
    "unregister_space",
]
