"""Importing UFO's released supernet checkpoint (PaddlePaddle) into gpnas' supernet.

The checkpoint is synthetic but has the released layout, key order and shapes
(PaddlePaddle/VIMER ``UFO/OneForAll``: ``VisionTransformerTaskMoE`` under ``backbone.``,
``EmbeddingHead``s under ``heads.<task>.``; Paddle ``Linear.weight`` ``[in, out]``) at a tiny
geometry, pickled as ``paddle.save`` does. What proves the mapping: gpnas' supernet forward of a
path equals an independent numpy re-implementation of UFO's evaluation forward on the same arrays.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import sys
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from search_service.cli import app, main
from supernet import (
    DEFAULT_NORM_EPS,
    CheckpointError,
    Subnet,
    UFOSpace,
    UFOSupernet,
    ViTGeometry,
    build_supernet,
    convert_ufo_state_dict,
    get_space,
    import_ufo_checkpoint,
    merge_rank_states,
    preset_names,
    read_pdparams,
    space_from_definition,
    ufo_space_of,
)

TASKS = ("face", "person", "task6")
E, HEADS, HEAD_DIM, DEPTH, IMAGE, PATCH, RATIO, CHANS = 16, 2, 8, 3, 16, 8, 4.0, 3
HIDDEN = int(E * RATIO)
GRID = IMAGE // PATCH
B = "backbone."


# ---------------------------------------------------------------------- a checkpoint of UFO's layout
def _model_state(
    rng: np.random.Generator,
    tasks: Sequence[str] = TASKS,
    *,
    sep_list: Sequence[str] = ("patch_embed", "pos_embed", "cls_token"),
    qkv_bias: bool = True,
    experts: int | None = None,
) -> OrderedDict[str, np.ndarray]:
    """``MultiTaskBatchFuse.state_dict()`` of UFO's task-MoE ViT, in Paddle's key order.

    ``experts``: None = the merged layout (``specific_experts.<i>`` for every task, gate logits
    ``[tasks, 2]``); 1 = one training rank's file (``specific_experts.0``, logits ``[1, 2]``).
    """

    def w(*shape: int, std: float = 0.3) -> np.ndarray:
        return (std * rng.standard_normal(shape)).astype(np.float32)

    def norm() -> list[np.ndarray]:
        return [(1 + 0.1 * rng.standard_normal(E)).astype(np.float32), w(E, std=0.1)]

    n_experts = len(tasks) if experts is None else experts
    s: OrderedDict[str, np.ndarray] = OrderedDict()
    for i, task in enumerate(tasks):  # LayerDict patch_embeds: only tasks[0] unless separated
        if "patch_embed" in sep_list or i == 0:
            s[f"{B}patch_embeds.{task}.proj.weight"] = w(E, CHANS, PATCH, PATCH, std=0.1)
            s[f"{B}patch_embeds.{task}.proj.bias"] = w(E, std=0.1)
    for kind, part in (("cls_tokens", "cls_token"), ("pos_embeds", "pos_embed")):
        for i in range(len(tasks) if part in sep_list else 1):
            s[f"{B}{kind}.{i}"] = (
                w(1, 1, E, std=0.5) if part == "cls_token" else w(1, GRID * GRID + 1, E, std=0.5)
            )
    for n in range(DEPTH):
        p = f"{B}blocks.{n}."
        s[p + "norm1.weight"], s[p + "norm1.bias"] = norm()
        s[p + "attn.qkv.weight"] = w(E, 3 * HEADS * HEAD_DIM, std=0.25)
        if qkv_bias:
            s[p + "attn.qkv.bias"] = w(3 * HEADS * HEAD_DIM, std=0.1)
        s[p + "attn.proj.weight"] = w(HEADS * HEAD_DIM, E, std=0.25)
        s[p + "attn.proj.bias"] = w(E, std=0.1)
        s[p + "norm2.weight"], s[p + "norm2.bias"] = norm()
        s[p + "mlp.moe_mlp.expert_weight"] = w(n_experts, 2, std=1.0)  # MoeLayer's own parameter first
        for expert in [f"specific_experts.{i}" for i in range(n_experts)] + ["common_expert"]:
            q = p + f"mlp.moe_mlp.{expert}."
            s[q + "fc1.weight"], s[q + "fc1.bias"] = w(E, HIDDEN, std=0.25), w(HIDDEN, std=0.1)
            s[q + "fc2.weight"], s[q + "fc2.bias"] = w(HIDDEN, E, std=0.125), w(E, std=0.1)
    s[f"{B}norm.weight"], s[f"{B}norm.bias"] = norm()
    # face: with_bnneck (a BatchNorm), the margin classifier of training (own parameter, first).
    s["heads.face.weight"] = w(E, 7)
    _batchnorm(s, "heads.face.bottleneck.0.", E, rng)
    # person: embedding_dim 12 (a bias-free 1x1 conv), then a BatchNorm.
    if "person" in tasks:
        s["heads.person.weight"] = w(12, 5)
        s["heads.person.bottleneck.0.weight"] = w(12, E, 1, 1)
        _batchnorm(s, "heads.person.bottleneck.1.", 12, rng)
    # task6: classification, Linear(E, 5) ([in, out]); no bottleneck.
    if "task6" in tasks:
        s["heads.task6.linear.weight"], s["heads.task6.linear.bias"] = w(E, 5), w(5, std=0.1)
    return s


def _batchnorm(s: dict[str, np.ndarray], prefix: str, width: int, rng: np.random.Generator) -> None:
    s[prefix + "weight"] = (1 + 0.2 * rng.standard_normal(width)).astype(np.float32)
    s[prefix + "bias"] = (0.1 * rng.standard_normal(width)).astype(np.float32)
    s[prefix + "_mean"] = (0.2 * rng.standard_normal(width)).astype(np.float32)
    s[prefix + "_variance"] = rng.uniform(0.5, 1.5, width).astype(np.float32)


def _rank_states(
    rng: np.random.Generator, tasks: Sequence[str] = TASKS
) -> list[OrderedDict[str, np.ndarray]]:
    """The files UFO's training ranks save, one per task: the same shared weights, each rank's own
    expert as ``specific_experts.0`` and its own ``[1, 2]`` gate logits."""
    merged = _model_state(rng, tasks)
    files = []
    for t in range(len(tasks)):
        own: OrderedDict[str, np.ndarray] = OrderedDict()
        for key, value in merged.items():
            if ".specific_experts." in key:
                head, _, rest = key.partition(".specific_experts.")
                index, _, tail = rest.partition(".")
                if int(index) == t:
                    own[f"{head}.specific_experts.0.{tail}"] = value
            elif key.endswith("expert_weight"):
                own[key] = value[t : t + 1]
            else:
                own[key] = value
        files.append(own)
    return files


def _paddle_save(state: dict[str, np.ndarray], path: Path, protocol: int = 4) -> Path:
    """What ``paddle.save(model.state_dict(), path)`` writes: a pickle of the arrays and the
    structured-name table."""
    saved: dict[str, object] = dict(state)
    saved["StructuredToParameterName@@"] = {k: f"param_{i}" for i, k in enumerate(state)}
    with open(path, "wb") as handle:
        pickle.dump(saved, handle, protocol=protocol)
    return path


# ---------------------------------------------------------------------- UFO's forward, in numpy
def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf)(x)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _mlp(x: np.ndarray, state: dict[str, np.ndarray], prefix: str, hidden: int) -> np.ndarray:
    """``Mlp`` with ``LinearSuper`` slices: fc1 ``weight[:E, :hidden]``, fc2 ``weight[:hidden, :E]``."""
    h = x @ state[prefix + "fc1.weight"][:, :hidden] + state[prefix + "fc1.bias"][:hidden]
    h = 0.5 * h * (1 + _erf(h / math.sqrt(2)))  # nn.GELU(), exact
    return h @ state[prefix + "fc2.weight"][:hidden, :] + state[prefix + "fc2.bias"]


def _attention(x: np.ndarray, state: dict[str, np.ndarray], prefix: str, heads: int) -> np.ndarray:
    """``AttentionSuper`` (change_qkv): ``QkvSuper.sample_weight`` keeps the first ``heads *
    head_dim`` columns of each third of qkv; scale ``head_dim ** -0.5``."""
    b, n, _ = x.shape
    weight, bias = state[prefix + "qkv.weight"], state[prefix + "qkv.bias"]
    third, a = weight.shape[1] // 3, heads * HEAD_DIM
    cols = np.concatenate([np.arange(i * third, i * third + a) for i in range(3)])
    qkv = (x @ weight[:, cols] + bias[cols]).reshape(b, n, 3, heads, -1).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = q @ k.transpose(0, 1, 3, 2) * (a // heads) ** -0.5
    attn = np.exp(attn - attn.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    out = (attn @ v).transpose(0, 2, 1, 3).reshape(b, n, -1)
    return out @ state[prefix + "proj.weight"][:a, :] + state[prefix + "proj.bias"]


def ufo_forward(
    state: dict[str, np.ndarray],
    tasks: Sequence[str],
    task: str,
    images: np.ndarray,
    layers: Sequence[tuple[int, int, str]],
    *,
    sep_list: Sequence[str] = ("patch_embed", "pos_embed", "cls_token"),
) -> np.ndarray:
    """UFO's evaluation forward of ``task`` (merged layout), float64.

    ``layers``: per active layer ``(num_heads, ffn_hidden, "shared" | "task")``; the later blocks
    are identity (``set_sample_config``'s ``is_identity_layer``).
    """
    s = {k: v.astype(np.float64) for k, v in state.items() if not k.startswith("StructuredToParameterName")}
    t = tasks.index(task)
    # tokenize: the task's patch embedding (tasks[0]'s if not separated), cls token, position embedding
    patch_task = task if "patch_embed" in sep_list else tasks[0]
    weight, bias = (
        s[f"{B}patch_embeds.{patch_task}.proj.weight"],
        s[f"{B}patch_embeds.{patch_task}.proj.bias"],
    )
    n_img, c = images.shape[:2]
    grid = images.shape[2] // PATCH
    patches = images.reshape(n_img, c, grid, PATCH, grid, PATCH)
    x = np.einsum("bcipjq,ocpq->bijo", patches, weight).reshape(n_img, grid * grid, -1) + bias
    cls = np.broadcast_to(s[f"{B}cls_tokens.{t}"], (n_img, 1, x.shape[-1]))
    x = np.concatenate([cls, x], axis=1) + s[f"{B}pos_embeds.{t}"]
    for n, (heads, hidden, path) in enumerate(layers):
        p = f"{B}blocks.{n}."
        x = x + _attention(_layer_norm(x, s[p + "norm1.weight"], s[p + "norm1.bias"]), s, p + "attn.", heads)
        y = _layer_norm(x, s[p + "norm2.weight"], s[p + "norm2.bias"])
        common = _mlp(y, s, p + "mlp.moe_mlp.common_expert.", hidden)
        specific = _mlp(y, s, p + f"mlp.moe_mlp.specific_experts.{t}.", hidden)
        gate = np.array([1.0, 0.0]) if path == "shared" else np.array([0.0, 1.0])  # the hard policy
        x = x + common * gate[0] + specific * gate[1]
    feat = _layer_norm(x, s[f"{B}norm.weight"], s[f"{B}norm.bias"])[:, 0]
    # EmbeddingHead at evaluation: pool (identity on 1x1), bottleneck, then linear if classification
    h = f"heads.{task}."
    if h + "bottleneck.0.weight" in s and s[h + "bottleneck.0.weight"].ndim == 4:
        feat = feat @ s[h + "bottleneck.0.weight"][:, :, 0, 0].T
    for bn in (h + "bottleneck.0.", h + "bottleneck.1."):
        if bn + "_mean" in s:
            feat = (feat - s[bn + "_mean"]) / np.sqrt(s[bn + "_variance"] + 1e-5) * s[bn + "weight"] + s[
                bn + "bias"
            ]
    if h + "linear.weight" in s:
        feat = feat @ s[h + "linear.weight"] + s[h + "linear.bias"]
    return feat


# ---------------------------------------------------------------------- helpers
def _arch(space: UFOSpace, layers: Sequence[tuple[int, int, str]]) -> str:
    dims = {d.name: list(d.values) for d in space.dimensions}
    codes = []
    for heads, hidden, path in layers:
        code = {
            "ffn_path": dims["ffn_path"].index(path),
            "mlp_ratio": dims["mlp_ratio"].index(hidden / E),
            "num_heads": dims["num_heads"].index(heads),
        }
        codes.append(tuple(code[d.name] for d in space.dimensions))
    return space.format(Subnet(space.name, len(codes), tuple(codes)))


def _loaded(state_dict: dict[str, torch.Tensor], space: UFOSpace) -> UFOSupernet:
    net = build_supernet(space, seed=0).eval()
    net.load_state_dict(state_dict)  # strict: every key, every shape
    return net


def _ufo(definition: object) -> UFOSpace:
    space = space_from_definition(definition)  # type: ignore[arg-type]  # a definition or its data
    assert isinstance(space, UFOSpace)
    return space


def _images(rng: np.random.Generator, n: int = 2) -> np.ndarray:
    return rng.standard_normal((n, CHANS, IMAGE, IMAGE))


def _assert_matches_ufo(net, space, state, tasks, paths, rng, **ufo_kwargs) -> None:
    images = _images(rng)
    x = torch.from_numpy(images).float()
    with torch.no_grad():
        for task, layers in paths:
            arch = _arch(space, layers)
            got = net(x, arch, task).double().numpy()
            want = ufo_forward(state, tasks, task, images, layers, **ufo_kwargs)
            assert got.shape == want.shape, (task, arch)
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=f"{task} {arch}")


FULL = [(HEADS, HIDDEN, "task")] * DEPTH


# ---------------------------------------------------------------------- reading
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_read_pdparams_reads_what_paddle_save_writes(tmp_path, protocol):
    state = _model_state(np.random.default_rng(0))
    path = _paddle_save(state, tmp_path / "model.pdparams", protocol)
    read = read_pdparams(path)
    assert list(read) == list(state)  # the file's order, the name table dropped
    assert all(np.array_equal(read[k], state[k]) and read[k].dtype == state[k].dtype for k in state)


def test_read_pdparams_reads_a_training_checkpoint_and_sliced_arrays(tmp_path):
    rng = np.random.default_rng(1)
    big = rng.standard_normal((4, 6)).astype(np.float32)
    # Checkpointer.save: {"model": ..., "optimizer": ..., "iteration": ...}; paddle.save's
    # _pickle_save writes every Tensor as a (name, array) tuple.
    model = {
        "backbone.norm.weight": ("layer_norm_0.w_0", big[0]),
        "backbone.big@@.0": big.ravel()[:10],
        "backbone.big@@.1": big.ravel()[10:],
        "UnpackBigParamInfor@@": {
            "backbone.big": {"OriginShape": (4, 6), "slices": ["backbone.big@@.0", "backbone.big@@.1"]}
        },
    }
    checkpoint = {"model": model, "optimizer": {"lr": np.float64(0.1), "m": ("moment", big)}, "iteration": 7}
    path = tmp_path / "model_final.pdmodel"
    path.write_bytes(pickle.dumps(checkpoint, protocol=2))
    read = read_pdparams(path)
    assert list(read) == ["backbone.norm.weight", "backbone.big"]
    np.testing.assert_array_equal(read["backbone.big"], big)
    np.savez(tmp_path / "model.npz", **{"backbone.norm.weight": big[0]})
    assert list(read_pdparams(tmp_path / "model.npz")) == ["backbone.norm.weight"]


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    "payload",
    [
        lambda marker: {"backbone.norm.weight": _Evil(marker)},
        lambda marker: {"model": {"x": np.zeros(2)}, "hook": _Evil(marker)},  # outside the model state too
        lambda marker: _Evil(marker),
    ],
)
def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path, payload):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps(payload(marker), protocol=2))
    with pytest.raises(CheckpointError, match=r"refusing to load (posix|nt|os)\.system"):
        read_pdparams(path)
    assert not marker.exists()


def test_eval_globals_objects_and_junk_are_refused(tmp_path):
    path = tmp_path / "x.pdparams"
    # paddle's reducer of a static LoDTensor is (eval, ...): refused, never called.
    path.write_bytes(b"cbuiltins\neval\n(V__import__('os').system('true')\ntR.")
    with pytest.raises(CheckpointError, match=r"refusing to load builtins\.eval"):
        read_pdparams(path)
    path.write_bytes(pickle.dumps({"a": np.array([{"x": 1}], dtype=object)}))
    with pytest.raises(CheckpointError, match="a has dtype object, not a numeric array"):
        read_pdparams(path)
    path.write_bytes(pickle.dumps({"a": [1.0, 2.0]}))
    with pytest.raises(CheckpointError, match="a is a list, not an array"):
        read_pdparams(path)
    path.write_bytes(b"PK\x03\x04 a torch zip file")
    with pytest.raises(CheckpointError, match="not a Paddle checkpoint"):
        read_pdparams(path)
    with pytest.raises(CheckpointError, match="cannot read"):
        read_pdparams(tmp_path / "missing.pdparams")


# ---------------------------------------------------------------------- the space of a checkpoint
def test_the_space_of_a_checkpoint_has_its_geometry_stems_and_heads():
    state = _model_state(np.random.default_rng(2))
    # head_dim defaults to UFO's 64, which 48 qkv channels are not 3 x heads x 64 of
    with pytest.raises(CheckpointError, match="48 output channels are not 3 x heads x head_dim 64") as caught:
        ufo_space_of(state, TASKS)
    assert caught.value.key == f"{B}blocks.0.attn.qkv.weight"
    definition = ufo_space_of(state, head_dim=HEAD_DIM)  # the tasks default to the patch_embeds' names
    g = definition.geometry
    assert g is not None and (g.embed_dim, g.patch_size, g.image_size, g.head_dim, g.in_chans) == (
        E,
        PATCH,
        IMAGE,
        HEAD_DIM,
        CHANS,
    )
    assert g.norm_eps == 1e-6
    assert definition.task_names == list(TASKS)
    assert {t.name: t.head for t in definition.tasks} == {"face": E, "person": 12, "task6": 5}
    assert {t.name: t.metric for t in definition.tasks} == {
        "face": "verification",
        "person": "reid",
        "task6": "top1",
    }
    assert definition.per_task == ["ffn", "stem"] and definition.arch_format == "multipath"
    assert definition.depths == [1, 2, 3]
    assert definition.choices == {
        "ffn_path": ["shared", "task"],
        "mlp_ratio": [4.0, 3.5, 3.0],
        "num_heads": [2, 1],
    }
    space = space_from_definition(definition)
    assert isinstance(space, UFOSpace) and space.per_task_stem and space.geometry.norm_eps == 1e-6
    # the definition round-trips through YAML, norm_eps included
    again = type(definition).from_text(definition.to_yaml())
    assert again == definition and "norm_eps: 1.0e-06" in definition.to_yaml()


def test_choices_must_end_at_the_checkpoints_shapes():
    state = _model_state(np.random.default_rng(3))
    with pytest.raises(ValueError, match="num_heads \\[1\\]: the largest must be the checkpoint's 2"):
        ufo_space_of(state, head_dim=HEAD_DIM, num_heads=[1])
    with pytest.raises(ValueError, match="FFN width 64"):
        ufo_space_of(state, head_dim=HEAD_DIM, mlp_ratios=[3.0])
    with pytest.raises(ValueError, match="depths \\[2, 4\\]"):
        ufo_space_of(state, head_dim=HEAD_DIM, depths=[2, 4])
    with pytest.raises(CheckpointError, match="not 3 x heads x head_dim 12"):
        ufo_space_of(state, head_dim=12)
    custom = ufo_space_of(state, head_dim=HEAD_DIM, depths=[3], num_heads=[2], mlp_ratios=[4.0, 2.0])
    assert custom.depths == [3] and custom.choices["mlp_ratio"] == [4.0, 2.0]


# ---------------------------------------------------------------------- the mapping, proved by the forward
def test_the_converted_supernet_computes_ufos_forward(tmp_path):
    rng = np.random.default_rng(4)
    state = _model_state(rng)
    read = read_pdparams(_paddle_save(state, tmp_path / "ufo.pdparams"))
    converted, report = convert_ufo_state_dict(read, task_names=TASKS, head_dim=HEAD_DIM)
    space = space_from_definition(report.definition)
    assert isinstance(space, UFOSpace)
    net = _loaded(converted, space)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 * DEPTH + 1 and all(m.eps == 1e-6 for m in norms)  # UFO's epsilon
    paths = []
    for task in TASKS:
        paths.append((task, FULL))  # the largest path, every layer on the task's expert
        paths.append((task, [(HEADS, HIDDEN, "shared")] * DEPTH))  # ... on the shared FFN
        paths.append((task, [(1, 48, "task"), (2, 56, "shared")]))  # fewer heads, narrower, shallower
        paths.append((task, [(1, 56, "shared")]))
    _assert_matches_ufo(net, space, state, TASKS, paths, rng)
    # the dense extracted subnet computes it too (its LayerNorms take the geometry's epsilon)
    images = _images(rng)
    layers = [(2, 48, "task"), (1, 64, "shared"), (2, 56, "task")]
    dense = net.extract(_arch(space, layers), "person")
    with torch.no_grad():
        got = dense(torch.from_numpy(images).float()).double().numpy()
    np.testing.assert_allclose(got, ufo_forward(state, TASKS, "person", images, layers), atol=1e-5, rtol=0)


def test_the_gates_come_out_per_task_and_layer(tmp_path):
    state = _model_state(np.random.default_rng(5))
    converted, report = convert_ufo_state_dict(state, head_dim=HEAD_DIM)
    gates = report.gates
    assert gates.tasks == TASKS and tuple(gates.logits.shape) == (len(TASKS), DEPTH, 2)
    logits = np.stack([state[f"{B}blocks.{n}.mlp.moe_mlp.expert_weight"] for n in range(DEPTH)], axis=1)
    np.testing.assert_array_equal(gates.logits.numpy(), logits)  # row t of each layer: task t's
    p = 1 / (1 + np.exp(logits[..., 0] - logits[..., 1]))
    np.testing.assert_allclose(gates.p_specific().numpy(), p, rtol=1e-6)
    paths = gates.paths()
    assert paths == {t: ["task" if a <= b else "shared" for a, b in logits[i]] for i, t in enumerate(TASKS)}
    space = space_from_definition(report.definition)
    assert isinstance(space, UFOSpace)
    # The path UFO's evaluation runs (hard gate = argmax) is the eval arch; gpnas computes it.
    net = _loaded(converted, space)
    rng = np.random.default_rng(6)
    images = _images(rng)
    for task in TASKS:
        arch = report.eval_arch(space, task)
        layers = [(HEADS, HIDDEN, path) for path in paths[task]]
        assert arch == _arch(space, layers)
        with torch.no_grad():
            got = net(torch.from_numpy(images).float(), arch, task).double().numpy()
        np.testing.assert_allclose(got, ufo_forward(state, TASKS, task, images, layers), atol=1e-5, rtol=0)
    # the conversion says what it left out and why
    assert set(report.skipped) == {"heads.face.weight", "heads.person.weight"}
    used = {k for keys, _, _ in report.mapping for k in keys.split(", ")}
    assert used | set(report.skipped) == set(state)


def test_a_shared_patch_embedding_is_copied_into_every_stem():
    rng = np.random.default_rng(7)
    sep = ("pos_embed", "cls_token")  # sep_list without patch_embed: only tasks[0]'s patch embedding
    state = _model_state(rng, sep_list=sep)
    converted, report = convert_ufo_state_dict(state, task_names=TASKS, head_dim=HEAD_DIM)
    space = space_from_definition(report.definition)
    assert isinstance(space, UFOSpace) and space.per_task_stem
    assert any("patch_embed copied into every task's stem" in note for note in report.notes)
    net = _loaded(converted, space)
    _assert_matches_ufo(net, space, state, TASKS, [(t, FULL) for t in TASKS], rng, sep_list=sep)


def test_one_task_and_no_qkv_bias():
    rng = np.random.default_rng(8)
    state = _model_state(rng, ("face",), qkv_bias=False)
    converted, report = convert_ufo_state_dict(state, task_names=["face"], head_dim=HEAD_DIM)
    assert report.definition.per_task == ["ffn"]  # one task: its stem is the shared one
    assert any("no qkv biases" in note for note in report.notes)
    assert all(float(converted[f"blocks.{n}.attn.qkv.bias"].abs().max()) == 0 for n in range(DEPTH))
    space = space_from_definition(report.definition)
    assert isinstance(space, UFOSpace)
    net = _loaded(converted, space)
    for n in range(DEPTH):  # the reference reads qkv.bias: zeros are what UFO computes without one
        state[f"{B}blocks.{n}.attn.qkv.bias"] = np.zeros(3 * HEADS * HEAD_DIM, np.float32)
    _assert_matches_ufo(net, space, state, ("face",), [("face", FULL), ("face", [(1, 48, "shared")])], rng)


def test_experts_named_by_task_are_accepted():
    rng = np.random.default_rng(9)
    state = _model_state(rng)
    renamed: OrderedDict[str, np.ndarray] = OrderedDict()
    for key, value in state.items():  # specific_experts.<task>, as the 17B release names them
        for i, task in enumerate(TASKS):
            key = key.replace(f".specific_experts.{i}.", f".specific_experts.{task}.")
        renamed[key] = value
    assert any(".specific_experts.person." in k for k in renamed)
    converted, _ = convert_ufo_state_dict(renamed, task_names=TASKS, head_dim=HEAD_DIM)
    reference, _ = convert_ufo_state_dict(state, task_names=TASKS, head_dim=HEAD_DIM)
    assert all(torch.equal(converted[k], reference[k]) for k in reference)


# ---------------------------------------------------------------------- the first key that does not fit
def _first_error(state, **kwargs) -> CheckpointError:
    with pytest.raises(CheckpointError) as caught:
        convert_ufo_state_dict(state, task_names=TASKS, head_dim=HEAD_DIM, **kwargs)
    return caught.value


def test_the_first_bad_key_is_named():
    state = _model_state(np.random.default_rng(10))
    # a renamed key: unknown (the first in the file's order)
    renamed = OrderedDict(
        (k.replace("blocks.1.attn.qkv.weight", "blocks.1.attn.qkvv.weight"), v) for k, v in state.items()
    )
    renamed[f"{B}blocks.2.attn.projj.weight"] = renamed.pop(f"{B}blocks.2.attn.proj.weight")
    error = _first_error(renamed)
    assert error.key == f"{B}blocks.1.attn.qkvv.weight" and str(error).startswith(f"unknown key {error.key}")
    # a dropped key: missing, named as UFO spells it
    dropped = OrderedDict(state)
    del dropped[f"{B}blocks.2.mlp.moe_mlp.specific_experts.1.fc2.bias"]
    error = _first_error(dropped)
    assert error.key == f"{B}blocks.2.mlp.moe_mlp.specific_experts.1.fc2.bias"
    assert "missing key" in str(error) and "blocks.2.experts.person.fc2.bias" in str(error)
    for key in (
        f"{B}cls_tokens.2",
        "heads.person.bottleneck.1._variance",
        f"{B}blocks.0.mlp.moe_mlp.expert_weight",
    ):
        dropped = OrderedDict(state)
        del dropped[key]
        assert _first_error(dropped).key == key
    # a wrong shape: expected and found, in UFO's layout
    wrong = OrderedDict(state)
    wrong[f"{B}blocks.1.mlp.moe_mlp.common_expert.fc1.weight"] = np.zeros((E, 60), np.float32)
    wrong[f"{B}blocks.2.norm1.weight"] = np.zeros(E + 1, np.float32)
    error = _first_error(wrong)
    assert error.key == f"{B}blocks.1.mlp.moe_mlp.common_expert.fc1.weight"
    assert "shape [16, 60]" in str(error) and "expected [16, 64]" in str(error)
    # a task expert narrower than the shared FFN: UFO builds both as Mlp(E, E * mlp_ratio), and
    # gpnas' experts share the widest FFN width, so a different one is refused, named
    wrong = OrderedDict(state)
    wrong[f"{B}blocks.0.mlp.moe_mlp.specific_experts.2.fc1.weight"] = np.zeros((E, 48), np.float32)
    error = _first_error(wrong)
    assert error.key == f"{B}blocks.0.mlp.moe_mlp.specific_experts.2.fc1.weight"
    assert "blocks.0.experts.task6.fc1.weight" in str(error) and "expected [16, 64]" in str(error)
    wrong = OrderedDict(state)
    wrong["heads.task6.linear.bias"] = np.zeros(6, np.float32)
    assert _first_error(wrong).key == "heads.task6.linear.bias"
    # a key of a task that is not named; an unknown head part
    extra = OrderedDict(state)
    extra["heads.vehicle.linear.weight"] = np.zeros((E, 2), np.float32)
    assert _first_error(extra).key == "heads.vehicle.linear.weight"
    extra = OrderedDict(state)
    extra["heads.face.neck.weight"] = np.zeros(E, np.float32)
    assert _first_error(extra).key == "heads.face.neck.weight"


def test_a_space_that_does_not_fit_is_refused():
    state = _model_state(np.random.default_rng(11))
    _, report = convert_ufo_state_dict(state, task_names=TASKS, head_dim=HEAD_DIM)
    data = report.definition.model_dump(mode="json")
    data["tasks"][2]["head"] = 7  # task6's head is 5 wide in the checkpoint
    error = _first_error(state, space=_ufo(data))
    assert error.key == "heads.task6.linear.weight" and "width 5" in str(error) and "width 7" in str(error)
    data = report.definition.model_dump(mode="json")
    data["tasks"][0]["head"] = None
    with pytest.raises(CheckpointError, match="task face's head has width 16.*gives it none"):
        convert_ufo_state_dict(state, _ufo(data))
    data = report.definition.model_dump(mode="json")
    data["per_task"] = ["ffn"]
    with pytest.raises(CheckpointError, match="stem per task"):
        convert_ufo_state_dict(state, _ufo(data))
    data = report.definition.model_dump(mode="json")
    data["geometry"]["embed_dim"] = 24
    assert _first_error(state, space=_ufo(data)).key == f"{B}patch_embeds.face.proj.weight"
    # the task order numbers cls_tokens / pos_embeds: a different one is refused, not guessed
    with pytest.raises(CheckpointError, match="not in the checkpoint's order"):
        convert_ufo_state_dict(state, task_names=["person", "face", "task6"], head_dim=HEAD_DIM)


# ---------------------------------------------------------------------- one file per training rank
def test_the_ranks_files_merge_into_the_multi_task_supernet(tmp_path):
    rng = np.random.default_rng(12)
    files = _rank_states(rng)
    merged = merge_rank_states(files, TASKS)
    reference = _model_state(np.random.default_rng(12))  # the same draws: the merged layout itself
    assert list(merged) == list(reference)
    assert all(np.array_equal(merged[k], reference[k]) for k in reference)
    paths = [_paddle_save(f, tmp_path / f"task{i}.pdmodel") for i, f in enumerate(files)]
    converted, report = import_ufo_checkpoint(paths, TASKS, head_dim=HEAD_DIM)
    expected, _ = convert_ufo_state_dict(reference, task_names=TASKS, head_dim=HEAD_DIM)
    assert all(torch.equal(converted[k], expected[k]) for k in expected)
    # one rank's file alone holds one task's expert: refused with the hint
    with pytest.raises(CheckpointError, match="one training rank's file holds one task's expert"):
        import_ufo_checkpoint(paths[:1], TASKS, head_dim=HEAD_DIM)
    # files of different steps: a shared weight differs
    files[2][f"{B}blocks.0.norm1.weight"] = files[2][f"{B}blocks.0.norm1.weight"] + 1e-3
    with pytest.raises(CheckpointError, match=r"blocks\.0\.norm1\.weight: file 3 differs from file 1"):
        merge_rank_states(files, TASKS)
    with pytest.raises(CheckpointError, match="give one file per task"):
        merge_rank_states(files[:2], TASKS)


# ---------------------------------------------------------------------- gpnas import-checkpoint
def test_the_cli_writes_a_state_dict_and_space_that_load(tmp_path):
    rng = np.random.default_rng(13)
    state = _model_state(rng)
    src = _paddle_save(state, tmp_path / "ufo.pdparams")
    out, space_out, gates_out = tmp_path / "supernet.pt", tmp_path / "space.yaml", tmp_path / "gates.json"
    args = ["import-checkpoint", str(src), "--tasks", ",".join(TASKS), "--out", str(out)]
    args += ["--space-out", str(space_out), "--head-dim", str(HEAD_DIM), "--name", "ufo-tiny"]
    args += ["--gates-out", str(gates_out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    definition = yaml.safe_load(space_out.read_text())
    assert definition["name"] == "ufo-tiny" and definition["per_task"] == ["ffn", "stem"]
    space = space_from_definition(definition)
    assert isinstance(space, UFOSpace)
    net = build_supernet(space)
    net.load_state_dict(torch.load(out, map_location="cpu", weights_only=True))  # as supernet-eval loads it
    assert "P(specific expert)" in result.output and "skipped heads.face.weight" in result.output
    for task in TASKS:
        assert f"  {task}: " in result.output  # its row of gates and its evaluation path
    gates = json.loads(gates_out.read_text())
    assert set(gates["tasks"]) == set(TASKS) and len(gates["tasks"]["face"]["p_task"]) == DEPTH
    _assert_matches_ufo(net.eval(), space, state, TASKS, [("task6", FULL)], rng)


def test_the_cli_reports_a_bad_checkpoint_in_one_error_line(tmp_path, monkeypatch, capsys):
    state = _model_state(np.random.default_rng(14))
    state[f"{B}blocks.1.attn.proj.weight"] = np.zeros((E, E + 1), np.float32)
    src = _paddle_save(state, tmp_path / "bad.pdparams")
    out = tmp_path / "supernet.pt"
    argv = ["gpnas", "import-checkpoint", str(src), "--out", str(out), "--head-dim", str(HEAD_DIM)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as caught:
        main()
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {B}blocks.1.attn.proj.weight: shape [16, 17]")
    assert not out.exists()


def test_weights_of_another_dtype_are_widened_or_refused():
    state = _model_state(np.random.default_rng(15))
    half = OrderedDict((k, v.astype(np.float16)) for k, v in state.items())
    converted, _ = convert_ufo_state_dict(half, task_names=TASKS, head_dim=HEAD_DIM)
    assert all(t.dtype == torch.float32 for t in converted.values())
    bf16 = OrderedDict(state)
    bf16[f"{B}blocks.0.norm2.bias"] = np.zeros(E, np.uint16)  # how Paddle saves a bfloat16 tensor
    error = _first_error(bf16)
    assert error.key == f"{B}blocks.0.norm2.bias" and "bfloat16" in str(error)


def test_norm_eps_is_a_geometry_field_written_only_when_not_the_default():
    assert ViTGeometry().norm_eps == DEFAULT_NORM_EPS == 1e-5
    for bad in (0, 1, -1e-6, True, "1e-6"):
        with pytest.raises(ValueError, match="norm_eps"):
            ViTGeometry(norm_eps=bad)  # type: ignore[arg-type]
    for name in preset_names():
        space = get_space(name)
        if isinstance(space, UFOSpace):  # the presets' definitions read as before
            assert "norm_eps" not in space.to_definition().to_yaml()
            net = build_supernet(space, embed_dim=8, head_dim=2)
            assert all(m.eps == 1e-5 for m in net.modules() if isinstance(m, torch.nn.LayerNorm))
