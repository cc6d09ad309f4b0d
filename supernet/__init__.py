"""Search spaces and the UFO weight-sharing supernet."""

from ._cells import FBNET_OPS, NB201_OPS, FBNetSpace, NASBench201Space
from ._registry import get_space, list_spaces
from ._space import Dimension, SearchSpace, Subnet
from ._ufo import MULTIPATH_TASKS, TRACK2_TASKS, MultipathSpace, Track2Space, UFOSpace, ViTGeometry

__all__ = [
    "FBNET_OPS",
    "MULTIPATH_TASKS",
    "NB201_OPS",
    "TRACK2_TASKS",
    "Dimension",
    "FBNetSpace",
    "MultipathSpace",
    "NASBench201Space",
    "SearchSpace",
    "Subnet",
    "Track2Space",
    "UFOSpace",
    "ViTGeometry",
    "get_space",
    "list_spaces",
]
