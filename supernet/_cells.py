"""Latency-benchmark spaces of HW-NAS-Bench / HELP: FBNet and NAS-Bench-201."""

from __future__ import annotations

from ._space import Dimension, SearchSpace, Subnet

FBNET_OPS = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


class FBNetSpace(SearchSpace):
    """FBNet: 22 searchable layers, 9 ops each; arch = 22 digits, the op index of each layer.

    Cardinality ``9**22``.
    """

    def __init__(self) -> None:
        super().__init__("fbnet", [], [Dimension("op", FBNET_OPS)], [22])

    def parse(self, arch: str) -> Subnet:
        if not isinstance(arch, str) or len(arch) != 22:
            raise ValueError(f"fbnet arch must be a 22-digit string, got {arch!r}")
        for pos, char in enumerate(arch):
            if char not in "012345678":
                raise ValueError(f"fbnet arch position {pos} is {char!r}; allowed: 0-8")
        return Subnet(self.name, 22, tuple((int(c),) for c in arch))

    def format(self, sub: Subnet) -> str:
        self.validate(sub)
        return "".join(str(layer[0]) for layer in sub.layers)


class NASBench201Space(SearchSpace):
    """NAS-Bench-201: a 4-node cell with 6 edges, 5 ops each (15,625 cells).

    Arch strings are the standard ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.
    """

    def __init__(self) -> None:
        super().__init__("nasbench201", [], [Dimension("op", NB201_OPS)], [6])

    def parse(self, arch: str) -> Subnet:
        if not isinstance(arch, str):
            raise ValueError(f"nasbench201 arch must be a string, got {arch!r}")
        nodes = arch.split("+")
        if len(nodes) != 3:
            raise ValueError(f"nasbench201 arch must have 3 '+'-separated nodes, got {len(nodes)}: {arch!r}")
        ops = []
        for node_index, node in enumerate(nodes, start=1):
            if not (node.startswith("|") and node.endswith("|")):
                raise ValueError(f"nasbench201 arch node {node_index} must be wrapped in '|': {node!r}")
            edges = node[1:-1].split("|")
            if len(edges) != node_index:
                raise ValueError(f"nasbench201 arch node {node_index} needs {node_index} edges, got {node!r}")
            for source, edge in enumerate(edges):
                op, _, src = edge.partition("~")
                if op not in NB201_OPS:
                    raise ValueError(
                        f"nasbench201 arch edge {node_index}<-{source} op {op!r}; "
                        f"allowed: {', '.join(NB201_OPS)}"
                    )
                if src != str(source):
                    raise ValueError(f"nasbench201 arch edge {edge!r} must come from node {source}")
                ops.append((NB201_OPS.index(op),))
        return Subnet(self.name, 6, tuple(ops))

    def format(self, sub: Subnet) -> str:
        self.validate(sub)
        names = [NB201_OPS[layer[0]] for layer in sub.layers]
        nodes, i = [], 0
        for node_index in (1, 2, 3):
            nodes.append("|" + "|".join(f"{names[i + s]}~{s}" for s in range(node_index)) + "|")
            i += node_index
        return "+".join(nodes)
