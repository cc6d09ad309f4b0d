"""Latency-benchmark spaces of HW-NAS-Bench / HELP: FBNet and NAS-Bench-201."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._space import Dimension, SearchSpace, Subnet

FBNET_OPS = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

# FBNet macro-architecture as HW-NAS-Bench builds and measures it for ImageNet (github.com/
# GATECH-EIC/HW-NAS-Bench, hw_nas_bench_api/fbnet_models/model_infer.py, FBNet_Infer, and
# hw_nas_bench_api.py, fbnet_get_metrics; HELP's fbnet latencies come from HW-NAS-Bench):
# 224x224 input, stem 3x3 conv 3 -> 16 with stride 2, seven stages of 1, 4, 4, 4, 4, 4, 1 layers
# with 16, 24, 32, 64, 112, 184, 352 output channels and first-layer strides 1, 2, 2, 2, 1, 2, 1,
# then a 1x1 header conv 352 -> 1984, global average pooling and a 1984 -> 1000 classifier.
_FBNET_IMAGE, _FBNET_STEM = 224, 16
_FBNET_STAGES = ((16, 1, 1), (24, 4, 2), (32, 4, 2), (64, 4, 2), (112, 4, 1), (184, 4, 2), (352, 1, 1))
_FBNET_HEADER, _FBNET_CLASSES = 1984, 1000
# (kernel, expansion, groups) of the eight ConvBlock ops, in FBNET_OPS order; index 8 is skip.
_FBNET_BLOCKS = ((3, 1, 1), (3, 1, 2), (3, 3, 1), (3, 6, 1), (5, 1, 1), (5, 1, 2), (5, 3, 1), (5, 6, 1))
#: :meth:`FBNetSpace.costs` columns: MACs of the three convolution kinds, activation elements
#: written per stage (memory traffic; its cost per element depends on the tensor size, so one
#: column per stage: a non-negative fit on all 5,000 archs reaches a mean Spearman of 0.91 over
#: the 23 devices of ../shared/data/device_latency with them, 0.86 with one total), the number
#: of ConvBlocks and of grouped ones (channel shuffle).
FBNET_COSTS = (
    "expand_macs",
    "depthwise_macs",
    "project_macs",
    *(f"activation_elements_stage{i + 1}" for i in range(len(_FBNET_STAGES))),
    "blocks",
    "grouped_blocks",
)

# NAS-Bench-201 macro-architecture (CIFAR, as in HW-NAS-Bench's nas_201_models): stem 3x3 conv
# 3 -> 16 on 32x32, then 5 cells at C = 16 (32x32), a residual reduction block, 5 cells at 32
# (16x16), another reduction block, 5 cells at 64 (8x8), global pooling and a 10-way classifier.
_NB201_STAGES = ((16, 32), (32, 16), (64, 8))  # (channels, side)
_NB201_CELLS = 5
_NB201_EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))  # (from, to), in arch-string order
_NB201_CLASSES = 10
#: :meth:`NASBench201Space.costs` columns: live-op components, then ops on dead edges.
NB201_COSTS = (
    "conv3x3_macs",
    "conv1x1_macs",
    "pool_elements",
    "skips",
    "convs",
    "dead_conv3x3_macs",
    "dead_conv1x1_macs",
    "dead_pool_elements",
    "dead_ops",
)


def _fbnet_layers() -> list[tuple[int, int, int, int, int]]:
    """Shapes of FBNet's 22 searchable layers: ``(stage, C_in, C_out, stride, input side)``."""
    layers = []
    side = _FBNET_IMAGE // 2  # after the stride-2 stem
    c_in = _FBNET_STEM
    for stage, (c_out, n_layers, first_stride) in enumerate(_FBNET_STAGES):
        for i in range(n_layers):
            stride = first_stride if i == 0 else 1
            layers.append((stage, c_in, c_out, stride, side))
            c_in, side = c_out, side // stride
    return layers


def _fbnet_layer_table() -> tuple[np.ndarray, float]:
    """Costs of every (layer, op) of FBNet, ``22 x 9 x len(FBNET_COSTS)``, and the fixed MACs.

    Each ConvBlock (HW-NAS-Bench ``ConvBlock``) expands its *input* channels: 1x1 conv
    ``C_in -> e C_in`` (``g`` groups), depthwise ``k x k`` with the layer's stride, 1x1 conv
    ``e C_in -> C_out`` (``g`` groups), plus a residual add when the shape is kept. ``skip`` is
    the identity where the shape is kept, and where the layer changes the channels or the stride
    it is (as in HW-NAS-Bench's ``Skip``) a strided 1x1 conv ``C_in -> C_out`` with BN and ReLU:
    its MACs count as projection MACs and it is not a ConvBlock.
    """
    rows = []
    fixed = 3 * _FBNET_STEM * 9 * (_FBNET_IMAGE // 2) ** 2
    n_stages = len(_FBNET_STAGES)
    for stage, c_in, c_out, stride, side in _fbnet_layers():
        out_side = side // stride
        keeps_shape = c_in == c_out and stride == 1
        ops = []
        for block in (*_FBNET_BLOCKS, None):
            activation = np.zeros(n_stages)
            if block is None:  # skip: identity, or a strided 1x1 conv where the shape changes
                macs = (0.0, 0.0, 0.0 if keeps_shape else c_in * c_out * out_side**2)
                activation[stage] = 0.0 if keeps_shape else c_out * out_side**2
                counts = (0.0, 0.0)
            else:
                kernel, expansion, groups = block
                hidden = c_in * expansion
                macs = (
                    c_in * hidden * side**2 / groups,
                    hidden * kernel**2 * out_side**2,
                    hidden * c_out * out_side**2 / groups,
                )
                activation[stage] = (
                    hidden * side**2 + hidden * out_side**2 + c_out * out_side**2 * (1 + keeps_shape)
                )
                counts = (1.0, float(groups > 1))
            ops.append((*macs, *activation, *counts))
        rows.append(ops)
    # The header reads the last layer's output (c_out x out_side^2).
    fixed += c_out * _FBNET_HEADER * out_side**2 + _FBNET_HEADER * _FBNET_CLASSES
    return np.array(rows, dtype=np.float64), float(fixed)


def _fbnet_param_table() -> tuple[np.ndarray, int]:
    """Trainable parameters of every (layer, op) of FBNet, ``22 x 9`` int64, and of the fixed parts.

    As HW-NAS-Bench's ``FBNet_Infer`` holds them: convolutions without bias, each followed by a
    BatchNorm (weight and bias; running statistics are buffers, not counted). A ConvBlock has
    its 1x1 expansion ``C_in -> e C_in`` (``g`` groups), depthwise ``k x k`` and 1x1 projection
    ``e C_in -> C_out`` (``g`` groups), three BNs; ``skip`` has none where it is the identity and a
    1x1 conv ``C_in -> C_out`` with BN where the layer changes the shape. Fixed: the stem 3x3
    conv ``3 -> 16`` with BN, the 1x1 header conv ``352 -> 1984`` with BN and the
    ``1984 -> 1000`` classifier (weight and bias).
    """
    rows = []
    for _, c_in, c_out, stride, _ in _fbnet_layers():
        ops = []
        for kernel, expansion, groups in _FBNET_BLOCKS:
            hidden = c_in * expansion
            expand = c_in * hidden // groups + 2 * hidden
            depthwise = hidden * kernel**2 + 2 * hidden
            project = hidden * c_out // groups + 2 * c_out
            ops.append(expand + depthwise + project)
        ops.append(0 if c_in == c_out and stride == 1 else c_in * c_out + 2 * c_out)  # skip
        rows.append(ops)
    fixed = 3 * _FBNET_STEM * 9 + 2 * _FBNET_STEM
    fixed += _FBNET_STAGES[-1][0] * _FBNET_HEADER + 2 * _FBNET_HEADER
    fixed += _FBNET_HEADER * _FBNET_CLASSES + _FBNET_CLASSES
    return np.array(rows, dtype=np.int64), fixed


class FBNetSpace(SearchSpace):
    """FBNet: 22 searchable layers, 9 ops each; arch = 22 digits, the op index of each layer.

    Cardinality ``9**22``.
    """

    def __init__(self, name: str = "fbnet", tasks: Sequence[str] = ()) -> None:
        # name and tasks: a space defined as data on this macro-architecture (with scored tasks).
        super().__init__(name, tasks, [Dimension("op", FBNET_OPS)], [22])
        self._table, self._fixed_macs = _fbnet_layer_table()
        self._param_table, self._fixed_params = _fbnet_param_table()

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

    @property
    def cost_names(self) -> tuple[str, ...]:
        return FBNET_COSTS

    def choice_costs(self, codes: np.ndarray) -> np.ndarray:
        """Columns of :data:`FBNET_COSTS` (see :func:`_fbnet_layer_table`), summed over the layers.

        Every layer's input and output shapes are fixed by its stage, so costs add up per layer.
        """
        ops = np.asarray(codes)[:, :, 0]
        result: np.ndarray = self._table[np.arange(ops.shape[1])[None, :], ops].sum(1)
        return result

    def choice_macs(self, codes: np.ndarray) -> np.ndarray:
        result: np.ndarray = self._fixed_macs + self.choice_costs(codes)[:, :3].sum(1)
        return result

    def choice_params(self, codes: np.ndarray, task: str | None = None) -> np.ndarray:
        """Parameters of HW-NAS-Bench's ImageNet ``FBNet_Infer`` (see :func:`_fbnet_param_table`).

        Args:
            codes: Valid choice indices, shape ``n x 22 x 1``.
            task: Ignored: every task is scored on the same network, classifier included.

        Returns:
            int64 array of shape ``n``.
        """
        ops = np.asarray(codes)[:, :, 0]
        per_op = self._param_table[np.arange(ops.shape[1])[None, :], ops]
        params: np.ndarray = self._fixed_params + per_op.sum(1)
        return params


class NASBench201Space(SearchSpace):
    """NAS-Bench-201: a 4-node cell with 6 edges, 5 ops each (15,625 cells).

    Arch strings are the standard ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.
    """

    def __init__(self, name: str = "nasbench201", tasks: Sequence[str] = ()) -> None:
        # name and tasks: a space defined as data on this macro-architecture (with scored tasks).
        super().__init__(name, tasks, [Dimension("op", NB201_OPS)], [6])
        # Stem 3x3 conv 3 -> 16 at 32x32; per reduction block (C -> 2C, output side s): 3x3 conv
        # with stride 2, 3x3 conv, and a 2x2 avg-pool + 1x1 conv shortcut; the classifier.
        reductions = sum(
            9 * c * 2 * c * s * s + 9 * (2 * c) ** 2 * s * s + c * 2 * c * s * s
            for (c, _), (_, s) in zip(_NB201_STAGES[:-1], _NB201_STAGES[1:], strict=True)
        )
        self._fixed_macs = float(3 * 16 * 9 * 32 * 32 + reductions + 64 * _NB201_CLASSES)
        # Parameters (see choice_params): stem conv + BN; per reduction block C -> 2C two 3x3
        # ReLU-conv-BNs and the shortcut's 1x1 conv (no BN); the final BN and the classifier.
        reduction_params = sum(
            (9 * c * 2 * c + 4 * c) + (9 * (2 * c) ** 2 + 4 * c) + c * 2 * c for c, _ in _NB201_STAGES[:-1]
        )
        last = _NB201_STAGES[-1][0]
        head_params = 2 * last + last * _NB201_CLASSES + _NB201_CLASSES
        self._fixed_params = 3 * 16 * 9 + 2 * 16 + reduction_params + head_params
        # Per op (NB201_OPS order), summed over the 15 cells: ReLU-conv-BN for the convolutions.
        self._op_params = np.array(
            [
                sum(_NB201_CELLS * (k * c * c + 2 * c) for c, _ in _NB201_STAGES) if k else 0
                for k in (0, 0, 1, 9, 0)  # none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3
            ],
            dtype=np.int64,
        )

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

    @property
    def cost_names(self) -> tuple[str, ...]:
        return NB201_COSTS

    @staticmethod
    def live_edges(codes: np.ndarray) -> np.ndarray:
        """Which of the 6 edges lie on a path from the cell input to its output, ``n x 6`` bool.

        An edge costs nothing when its source node is unreachable (all in-edges ``none``, so the
        node is constant zero) or its target node never reaches node 3 (its result is unused);
        compiled runtimes drop such ops, and cells without any input->output path run in ~0 ms.
        """
        ops = np.asarray(codes)[:, :, 0]
        on = ops != NB201_OPS.index("none")
        reach = {0: np.ones(len(ops), bool)}  # node reachable from the input
        for node in (1, 2, 3):
            reach[node] = np.any(
                [on[:, e] & reach[a] for e, (a, b) in enumerate(_NB201_EDGES) if b == node], axis=0
            )
        used = {3: np.ones(len(ops), bool)}  # node's value reaches the output
        for node in (2, 1, 0):
            used[node] = np.any(
                [on[:, e] & used[b] for e, (a, b) in enumerate(_NB201_EDGES) if a == node], axis=0
            )
        return np.stack([on[:, e] & reach[a] & used[b] for e, (a, b) in enumerate(_NB201_EDGES)], 1)

    def choice_costs(self, codes: np.ndarray) -> np.ndarray:
        """Columns of :data:`NB201_COSTS` over the 15 cells.

        Per edge and cell at ``C`` channels on ``s x s``: ``nor_conv_3x3`` (ReLU-conv-BN)
        ``9 C^2 s^2`` MACs, ``nor_conv_1x1`` ``C^2 s^2``, ``avg_pool_3x3`` ``9 C s^2`` element ops;
        ``skips`` and ``convs`` count the ops executed (per-op overheads). The first five columns
        count only :meth:`live_edges`; the ``dead_*`` columns count the other non-``none`` edges,
        which eager runtimes still execute: on 22 of the 23 devices of
        ../shared/data/device_latency a non-negative fit on live-only costs reaches a mean
        Spearman of 0.81 with latency, with the dead columns 0.97 (raspi4 is the one runtime
        that drops dead ops).
        """
        ops = np.asarray(codes)[:, :, 0]
        on = ops != NB201_OPS.index("none")
        live = self.live_edges(codes)
        dead = on & ~live

        def count(mask: np.ndarray, *names: str) -> np.ndarray:
            result: np.ndarray = sum((mask & (ops == NB201_OPS.index(n))).sum(1) for n in names) * 1.0
            return result

        conv = sum(_NB201_CELLS * c * c * s * s for c, s in _NB201_STAGES)
        pool = sum(_NB201_CELLS * 9 * c * s * s for c, s in _NB201_STAGES)
        cells = 3 * _NB201_CELLS
        columns = [
            9 * conv * count(live, "nor_conv_3x3"),
            conv * count(live, "nor_conv_1x1"),
            pool * count(live, "avg_pool_3x3"),
            cells * count(live, "skip_connect"),
            cells * count(live, "nor_conv_3x3", "nor_conv_1x1"),
            9 * conv * count(dead, "nor_conv_3x3"),
            conv * count(dead, "nor_conv_1x1"),
            pool * count(dead, "avg_pool_3x3"),
            cells * dead.sum(1),
        ]
        return np.stack(columns, 1)

    def choice_macs(self, codes: np.ndarray) -> np.ndarray:
        """MACs of the stem, the reduction blocks, the classifier and the live convolutions."""
        result: np.ndarray = self._fixed_macs + self.choice_costs(codes)[:, :2].sum(1)
        return result

    def choice_params(self, codes: np.ndarray, task: str | None = None) -> np.ndarray:
        """Parameters of the NAS-Bench-201 CIFAR-10 network (``TinyNetwork``, C = 16, N = 5).

        Counted: the stem 3x3 conv ``3 -> 16`` (no bias) and its BN; per cell edge at ``C``
        channels, ``nor_conv_3x3`` ``9 C^2 + 2 C`` and ``nor_conv_1x1`` ``C^2 + 2 C`` (ReLU-conv-BN,
        BN weight and bias), other ops none; per reduction block ``C -> 2C`` two 3x3 ReLU-conv-BNs
        and a 1x1 shortcut conv; the final BN and the ``64 -> 10`` classifier. Edges off every
        input-to-output path count too: their weights are in the model. The range is NAS-Bench-201's
        own, 0.073306 M to 1.531546 M.

        Args:
            codes: Valid choice indices, shape ``n x 6 x 1``.
            task: Ignored: every task is scored on the same network, classifier included.

        Returns:
            int64 array of shape ``n``.
        """
        result: np.ndarray = self._fixed_params + self._op_params[np.asarray(codes)[:, :, 0]].sum(1)
        return result

    def cost_extremes(self) -> tuple[Subnet, Subnet]:
        """Cheapest and costliest cell by :meth:`macs`, by exhaustive search (dead edges make the
        costs non-additive per edge)."""
        cells = list(self.enumerate())
        macs = self.macs(cells)
        return cells[int(np.argmin(macs))], cells[int(np.argmax(macs))]
