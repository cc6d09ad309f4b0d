"""supernet-eval is real: a sandwich-trained ufo2-multipath supernet on two digits tasks ranks
its large subnets above its smallest ones on average."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from profilers import (
    DIGITS_TASKS,
    LocalConfig,
    create_profiler,
    digits_batches,
    digits_space,
    extreme_subnet,
    train_sandwich,
    validate_settings,
)
from supernet import build_supernet

DATA = "digits"  # the built-in gpnas.datasets entry point


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.set_num_threads(1)
    space = digits_space()
    net = build_supernet(space, seed=0)
    train = {task: digits_batches(task, "train", batch_size=32) for task in DIGITS_TASKS}
    history = train_sandwich(net, space, train, epochs=8, lr=5e-3, seed=0)
    assert history[-1] < 0.5 * history[0]  # the largest subnet's loss fell
    path = tmp_path_factory.mktemp("ckpt") / "digits.pt"
    torch.save(net.state_dict(), path)
    return path


def test_digits_tasks_are_disjoint_real_data():
    low, high = (digits_batches(t, "val") for t in ("low", "high"))
    n_low, n_high = sum(len(y) for _, y in low), sum(len(y) for _, y in high)
    assert 200 < n_low < 260 and 200 < n_high < 260  # 25% of ~900 images per task
    x, y = low[0]
    assert x.shape[1:] == (1, 8, 8) and set(y.tolist()) <= set(range(5))
    with pytest.raises(ValueError, match="unknown digits task 'cats'"):
        digits_batches("cats")


def test_larger_subnets_evaluate_better_than_the_smallest(checkpoint):
    space = digits_space()
    local = LocalConfig(data_dir=checkpoint.parent)
    profiler = create_profiler("supernet-eval", space, local=local, checkpoint=checkpoint.name, data=DATA)
    rng = np.random.default_rng(1)
    means = {}
    for task in DIGITS_TASKS:
        large = [profiler.score(extreme_subnet(space, True, rng), task) for _ in range(3)]
        small = [profiler.score(extreme_subnet(space, False, rng), task) for _ in range(3)]
        means[task] = (np.mean([r.value for r in large]), np.mean([r.value for r in small]))
        # Digits 0-4 are easy enough that the smallest subnet can match the largest (0.886 vs
        # 0.877 on one machine): per task, the largest must not be clearly worse.
        assert means[task][0] > means[task][1] - 0.02, (task, means[task])
        result = large[0]
        assert result.repeats == sum(len(y) for _, y in digits_batches(task))
        assert result.std == pytest.approx(np.sqrt(result.value * (1 - result.value) / result.repeats))
    large_mean = np.mean([m[0] for m in means.values()])
    small_mean = np.mean([m[1] for m in means.values()])
    assert large_mean > 0.8  # chance is 0.2 (five classes per task)
    assert large_mean > small_mean + 0.03, means
    assert max(m[0] - m[1] for m in means.values()) > 0.05, means  # capacity matters on some task


def test_score_matches_the_supernet_forward(checkpoint):
    space = digits_space()
    net = build_supernet(space)
    net.load_state_dict(torch.load(checkpoint, weights_only=True))
    net.eval()
    sub = space.sample(1, seed=5)[0]
    with torch.no_grad():
        x, y = (torch.cat(parts) for parts in zip(*digits_batches("high"), strict=True))
        expected = float((net(x, sub, task="high").argmax(-1) == y).float().mean())
    local = LocalConfig(data_dir=checkpoint.parent)
    profiler = create_profiler("supernet-eval", space, local=local, checkpoint=checkpoint.name, data=DATA)
    result = profiler.score(space.format(sub), "high")
    assert result.value == pytest.approx(expected)
    # Every score says which weights it was measured with: the checkpoint file's sha256.
    assert result.environment["weights"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()


def test_supernet_eval_scores_named_weights_only(tmp_path):
    """No silent random weights: gpnas' supernet needs 'checkpoint' or 'random_weights': true,
    checked by validate_settings (what a server runs when a device is registered)."""
    for settings in ({"data": DATA}, {"data": DATA, "random_weights": True, "checkpoint": "w.pt"}):
        with pytest.raises(ValueError, match="'checkpoint'.*'random_weights'"):
            validate_settings("supernet-eval", settings)
    space = digits_space()
    random = create_profiler("supernet-eval", space, random_weights=True, data=DATA)
    assert random.score(space.sample(1, seed=0)[0], "low").environment["weights"] == "random"
    # A supernet callable of the machine's own may return trained weights: it names them.
    local = LocalConfig(supernets={"trained": "supernet:build_supernet"})
    named = create_profiler("supernet-eval", space, local=local, data=DATA, supernet="trained")
    assert named.score(space.sample(1, seed=0)[0], "low").environment["weights"] == "supernet trained"


def test_bad_supernet_eval_settings(tmp_path):
    space = digits_space()
    with pytest.raises(ValueError, match="no dataset 'no_such_loader' on this machine.*known: .*digits"):
        create_profiler("supernet-eval", space, random_weights=True, data="no_such_loader")
    # Import paths are not names: settings that a server stores cannot choose the code to run.
    with pytest.raises(ValueError, match="setting 'data' .*import paths and file names are not accepted"):
        create_profiler("supernet-eval", space, random_weights=True, data="profilers:digits_batches")
    with pytest.raises(ValueError, match="setting 'supernet' .*import paths"):
        create_profiler("supernet-eval", space, data=DATA, supernet="os:system")
    with pytest.raises(ValueError, match="absolute paths are refused"):
        create_profiler("supernet-eval", space, data=DATA, checkpoint="/etc/passwd")
    with pytest.raises(ValueError, match="no data directory"):
        create_profiler("supernet-eval", space, data=DATA, checkpoint="ckpt.pt")
    local = LocalConfig(data_dir=tmp_path)
    with pytest.raises(ValueError, match="'..' is refused"):
        create_profiler("supernet-eval", space, local=local, data=DATA, checkpoint="../x.pt")
    profiler = create_profiler("supernet-eval", space, local=local, data=DATA, checkpoint="nonexistent.pt")
    with pytest.raises(ValueError, match="no such file"):
        profiler.score(space.sample(1, seed=0)[0], "low")
    with pytest.raises(ValueError, match="unknown task 'cats'"):
        create_profiler("supernet-eval", space, random_weights=True, data=DATA).score(
            space.sample(1, seed=0)[0], "cats"
        )
