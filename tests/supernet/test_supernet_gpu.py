"""The supernet on a CUDA device: extraction keeps device and dtype, paths still agree."""

from __future__ import annotations

import pytest
import torch

from supernet import build_supernet

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(autouse=True)
def _exact_float32():
    # TF32 matmuls would make the two paths differ by ~1e-3 for reasons unrelated to slicing.
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


@pytest.mark.parametrize(("name", "task"), [("ufo-track2", None), ("ufo2-multipath", "person")])
def test_extract_on_cuda_matches_supernet(name: str, task, make_supernet) -> None:
    net = make_supernet(name).cuda()
    x = torch.randn(4, 3, 32, 32, device="cuda")
    for sub in net.space.sample(20, seed=2):
        dense = net.extract(sub, task=task)
        assert {p.device.type for p in dense.parameters()} == {"cuda"}
        with torch.no_grad():
            assert (dense(x) - net(x, sub, task=task)).abs().max().item() <= 1e-5
        assert sum(p.numel() for p in dense.parameters()) == net.space.param_count(sub, task)


def test_vit_base_multipath_on_cuda() -> None:
    # The full UFO 2.0 supernet: 12 layers x (shared FFN + 4 experts) + 4 heads, ~1.3 GB float32.
    net = build_supernet("ufo2-multipath", seed=0).cuda().eval()
    space = net.space
    x = torch.randn(2, 3, 224, 224, device="cuda")
    for sub in space.sample(3, seed=1):
        dense = net.extract(sub, task="vehicle")
        assert sum(p.numel() for p in dense.parameters()) == space.param_count(sub, "vehicle")
        with torch.no_grad():
            assert (dense(x) - net(x, sub, task="vehicle")).abs().max().item() <= 1e-4
