"""The UFO supernet: weight-sliced paths equal their extracted dense subnets, parameter and MAC
counts equal the analytic formulas of the spaces, bad input is refused."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from supernet import (
    MULTIPATH_TASKS,
    TRACK2_TASKS,
    Subnet,
    SubnetViT,
    UFOSupernet,
    ViTGeometry,
    build_supernet,
    get_space,
)

UFO = ["ufo-track2", "ufo2-multipath"]


def extremes(space) -> list[Subnet]:
    """The smallest and the largest subnet (min / max depth, heads and FFN width; both FFN paths)."""
    dims = {d.name: d for d in space.dimensions}

    def index(name: str, pick) -> int:
        values = dims[name].values
        return values.index(pick(values))

    def layer(pick, path: int) -> tuple[int, ...]:
        choice = {
            "num_heads": index("num_heads", pick),
            "mlp_ratio": index("mlp_ratio", pick),
            "ffn_path": path,
        }
        return tuple(choice[d.name] for d in space.dimensions)

    lo, hi = space.depths[0], space.depths[-1]
    # Without an ffn_path dimension the two largest subnets coincide: keep distinct ones only.
    subs = [
        Subnet(space.name, lo, (layer(min, 0),) * lo),
        Subnet(space.name, hi, (layer(max, 1),) * hi),
        Subnet(space.name, hi, (layer(max, 0),) * hi),
    ]
    return list(dict.fromkeys(subs))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", UFO)
def test_extracted_subnets_equal_supernet_paths(name: str, make_supernet) -> None:
    net = make_supernet(name)
    space = net.space
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    subs = extremes(space) + space.sample(20, seed=3)
    outputs = []
    for i, sub in enumerate(subs):
        task = space.tasks[i % len(space.tasks)]
        dense = net.extract(sub, task=task)
        with torch.no_grad():
            expected = net(x, sub, task=task)
            got = dense(x)
        width = MULTIPATH_TASKS[task] if name == "ufo2-multipath" else 32
        assert got.shape == expected.shape == (3, width)
        assert (got - expected).abs().max().item() <= 1e-5
        assert n_params(dense) == space.param_count(sub, task)
        assert dense.arch == space.format(sub) and dense.task == task
        outputs.append(expected)
    # Different subnets compute different functions (the comparison above is not vacuous).
    assert all((a - b).abs().max() > 1e-3 for a, b in zip(outputs, outputs[1:], strict=False))


def test_extracted_model_is_standalone_and_dense(make_supernet) -> None:
    net = make_supernet("ufo2-multipath")
    sub = net.space.sample(1, seed=5)[0]
    dense = net.extract(sub, task="vehicle")
    assert isinstance(dense, SubnetViT) and len(dense.blocks) == sub.depth
    kinds = {type(m) for m in dense.modules() if not list(m.children())}
    assert kinds <= {nn.Conv2d, nn.Linear, nn.LayerNorm}
    super_storage = {p.untyped_storage().data_ptr() for p in net.parameters()}
    assert not super_storage & {p.untyped_storage().data_ptr() for p in dense.parameters()}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = dense(x)
        for p in net.parameters():
            p.zero_()
        assert torch.equal(dense(x), before)  # changing the supernet leaves the copy alone


def test_slices_take_the_first_heads_of_q_k_and_v(make_supernet) -> None:
    net = make_supernet("ufo-track2")
    space = net.space
    sub = space.parse("j" + "311" * 10 + "000" * 2)  # 10 of 12 heads: 40 of 48 q/k/v channels each
    dense = net.extract(sub)
    full, part = net.blocks[0].attn.qkv, dense.blocks[0].attn.qkv
    a, big = 10 * 4, 12 * 4
    rows = torch.cat([torch.arange(0, a), torch.arange(big, big + a), torch.arange(2 * big, 2 * big + a)])
    assert torch.equal(part.weight, full.weight[rows]) and torch.equal(part.bias, full.bias[rows])
    assert torch.equal(dense.blocks[0].attn.proj.weight, net.blocks[0].attn.proj.weight[:, :a])
    assert torch.equal(dense.blocks[0].ffn.fc1.weight, net.blocks[0].ffn.fc1.weight[: 4 * 32])


def test_attention_matches_torch_multihead_attention(make_supernet) -> None:
    # The max-heads path (8 heads x 4 = E) is standard multi-head attention: check it against
    # torch's own implementation with the same weights.
    space = get_space("ufo-track2").with_geometry(embed_dim=48, head_dim=4, patch_size=8, image_size=32)
    dense = build_supernet(space, seed=1).extract(space.parse("l" + "111" * 12))
    attn = dense.blocks[0].attn
    mha = nn.MultiheadAttention(48, 12, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.qkv.weight)
        mha.in_proj_bias.copy_(attn.qkv.bias)
        mha.out_proj.weight.copy_(attn.proj.weight)
        mha.out_proj.bias.copy_(attn.proj.bias)
        x = torch.randn(2, 17, 48)
        expected, _ = mha(x, x, x, need_weights=False)
        assert (attn(x) - expected).abs().max() <= 1e-5


@pytest.mark.parametrize(
    ("name", "task"), [("ufo-track2", None), ("ufo-track2", "veri"), ("ufo2-multipath", "face")]
)
def test_flops_equal_counted_macs(name: str, task, make_supernet) -> None:
    net = make_supernet(name)
    for sub in extremes(net.space)[:2] + net.space.sample(3, seed=9):
        dense = net.extract(sub, task=task)
        # The math SDPA backend decomposes attention into matmuls the counter can see.
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
            dense(torch.randn(1, 3, 32, 32))
        assert counter.get_total_flops() == 2 * net.space.flops(sub, task)


def test_supernet_holds_the_largest_weights_and_experts(tiny) -> None:
    track2 = build_supernet("ufo-track2", seed=0, **tiny)
    multipath = build_supernet("ufo2-multipath", seed=0, **tiny)
    assert track2.space.geometry == ViTGeometry(in_chans=3, **tiny)
    assert get_space("ufo-track2").geometry == ViTGeometry()  # the preset itself is unchanged
    assert len(track2.blocks) == 12 and not track2.heads and not track2.multipath
    block = track2.blocks[0]
    assert block.attn.qkv.weight.shape == (3 * 12 * 4, 32) and block.ffn.fc1.weight.shape == (128, 32)
    assert not block.experts
    assert multipath.multipath and set(multipath.blocks[0].experts) == set(MULTIPATH_TASKS)
    assert {t: h.out_features for t, h in multipath.heads.items()} == MULTIPATH_TASKS
    # Same seed, same weights; a global RNG draw in between does not matter.
    torch.rand(5)
    again = build_supernet("ufo-track2", seed=0, **tiny)
    assert all(
        torch.equal(a, b)
        for a, b in zip(track2.state_dict().values(), again.state_dict().values(), strict=True)
    )


def test_multipath_task_and_shared_paths(make_supernet) -> None:
    net = make_supernet("ufo2-multipath")
    space = net.space
    shared = space.parse("10" + "s11" * 10 + "000" * 2)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        # All-shared layers give every task the same embedding; only the heads differ.
        face, person = net.extract(shared, task="face"), net.extract(shared, task="person")
        assert torch.equal(face.blocks[3].ffn.fc1.weight, person.blocks[3].ffn.fc1.weight)
        assert not torch.equal(face.head.weight, person.head.weight)
        own = space.parse("10" + "t11" * 10 + "000" * 2)
        face_own = net.extract(own, task="face")
        assert torch.equal(face_own.blocks[3].ffn.fc1.weight, net.blocks[3].experts["face"].fc1.weight)
        assert (face_own(x) - face(x)).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda net, x: net(x, get_space("fbnet").sample(1, seed=0)[0]), "belongs to space 'fbnet'"),
        (lambda net, x: net(x, "10" + "s11" * 10 + "000" * 2), "task is required"),
        (lambda net, x: net(x, "10" + "s11" * 10 + "000" * 2, task="cat"), "unknown task 'cat'"),
        (lambda net, x: net.extract("10" + "s11" * 10 + "000" * 2), "task is required"),
        (lambda net, x: net.extract("10" + "s11" * 10 + "00", task="face"), "38-character"),
        (
            lambda net, x: net(x[:, :2], "10" + "s11" * 10 + "000" * 2, task="face"),
            r"input must be B x 3 x 32 x 32",
        ),
    ],
)
def test_bad_input_is_refused(call, message: str, make_supernet) -> None:
    net = make_supernet("ufo2-multipath")
    with pytest.raises(ValueError, match=message):
        call(net, torch.randn(1, 3, 32, 32))


def test_bad_spaces_and_geometry_are_refused() -> None:
    with pytest.raises(ValueError, match="'fbnet' has no supernet"):
        build_supernet("fbnet")
    with pytest.raises(ValueError, match="unknown space 'vit'"):
        build_supernet("vit")
    with pytest.raises(ValueError, match=r"unknown geometry field\(s\) \['depth'\]"):
        build_supernet("ufo-track2", depth=3)
    with pytest.raises(ValueError, match="embed_dim must be a positive integer"):
        build_supernet("ufo-track2", embed_dim=0)
    with pytest.raises(ValueError, match="patch_size 64 exceeds image_size 32"):
        build_supernet("ufo-track2", patch_size=64, image_size=32)
    with pytest.raises(ValueError, match="needs a UFO space"):
        UFOSupernet(get_space("nasbench201"))


def test_track2_task_without_head_gives_the_embedding(make_supernet) -> None:
    net = make_supernet("ufo-track2")
    sub = net.space.sample(1, seed=2)[0]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x, sub, task="sop"), net(x, sub))
    assert net.space.tasks == list(TRACK2_TASKS)


@pytest.mark.slow
def test_vit_base_geometry_of_track2() -> None:
    # The real ViT-Base supernet (~340 MB of float32): max-subnet parameters and one path.
    start = time.perf_counter()
    net = build_supernet("ufo-track2", seed=0).eval()
    space = net.space
    largest = space.parse("l" + "111" * 12)
    assert space.param_count(largest) == 85_798_656
    dense = net.extract(largest)
    assert n_params(dense) == 85_798_656
    del dense
    sub = space.parse("j" + "331" * 3 + "121" * 7 + "000" * 2)
    dense = net.extract(sub)
    assert n_params(dense) == space.param_count(sub)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (dense(x) - net(x, sub)).abs().max() <= 1e-5
    assert time.perf_counter() - start < 60
