"""What an import found: the experts' gates and the import report."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .._definition import SpaceDefinition
from .._space import Subnet
from .._ufo import UFOSpace


@dataclass(frozen=True)
class ExpertGates:
    """UFO's gate, per task and layer, between the shared FFN and the task's own expert.

    Attributes:
        tasks: Task names: the order of the first axis.
        logits: ``tasks x layers x 2`` logits (``expert_weight``: shared, specific).
    """

    tasks: tuple[str, ...]
    logits: Tensor

    def p_specific(self) -> Tensor:
        """``tasks x layers``: the probability that training's hard Gumbel gate picks the task's
        expert, ``softmax(logits)[..., 1]`` (whatever the temperature ``tau``)."""
        return torch.softmax(self.logits.double(), dim=-1)[..., 1].float()

    def paths(self) -> dict[str, list[str]]:
        """Task -> per layer ``"shared"`` or ``"task"``: the FFN UFO's evaluation forward runs,
        that of the larger logit (a tie: the task's, as ``argsort`` and UFO's extraction tool
        break it)."""
        specific = (self.logits[..., 1] >= self.logits[..., 0]).tolist()
        return {
            t: ["task" if s else "shared" for s in row] for t, row in zip(self.tasks, specific, strict=True)
        }


@dataclass
class ImportReport:
    """What :func:`convert_ufo_state_dict` did.

    Attributes:
        definition: The space definition the converted state fits.
        gates: The gate logits of the checkpoint (gpnas' supernet has no gate parameters).
        mapping: ``(UFO key(s), gpnas keys, transform)`` per use of the checkpoint's keys.
        skipped: UFO key -> why it was left out (training-only parameters).
        notes: Other things the conversion did (zero qkv biases, a shared stem part copied ...).
    """

    definition: SpaceDefinition
    gates: ExpertGates
    mapping: list[tuple[str, tuple[str, ...], str]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def eval_arch(self, space: UFOSpace, task: str) -> str:
        """Arch string (in ``space``) of the path UFO's evaluation forward runs for ``task``:
        every layer with the most heads and the widest FFN, the FFN its gate picks."""
        layers = []
        for path in self.gates.paths()[task]:
            choice = []
            for dim in space.dimensions:
                values = list(dim.values)
                choice.append(values.index(path) if dim.name == "ffn_path" else values.index(max(values)))
            layers.append(tuple(choice))
        return space.format(Subnet(space.name, len(layers), tuple(layers)))
