"""``gpnas train``: UFO's straight-through gates, the gated sandwich rule on real digits data,
exact resume, chip and new-task stages, gates.json and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from profilers import digits_eval_batches
from search_service.cli import app
from supernet import (
    LearnedGates,
    SpaceDefinition,
    SupernetTrainer,
    TaskGates,
    TrainConfig,
    build_supernet,
    ffn_path_log_prior,
    fix_ffn_paths,
    sample_with_gates,
    space_from_definition,
    train_supernet,
)
from supernet.training import (
    PathSampler,
    TrainPath,
    gated_forward,
    read_training_state,
    straight_through_gumbel,
    supcon_loss,
    task_owner,
)

# Three tasks on scikit-learn's digits (digits-ufo: "low" = 0-4, "high" = 5-9, any other name =
# all ten digits), one of them an embedding (retrieval) task; a tiny ViT so a step takes ms.
TINY = {
    "name": "digits-tiny",
    "family": "ufo",
    "arch_format": "multipath",
    "tasks": [
        {"name": "low", "head": 5},
        {"name": "high", "head": 5},
        {"name": "retrieval", "head": None, "metric": "retrieval"},
    ],
    "depths": [1, 2],
    "choices": {"ffn_path": ["shared", "task"], "mlp_ratio": [2.0, 0.5], "num_heads": [2, 1]},
    "geometry": {"embed_dim": 16, "patch_size": 4, "image_size": 8, "head_dim": 8, "in_chans": 1},
}


def _space(**changes):
    return space_from_definition(SpaceDefinition.model_validate({**TINY, **changes}))


def _data(tasks, n=96):
    """The first ``n`` training items of each task (a list: pooled, reshuffled every pass)."""
    out = {}
    for task in tasks:
        batch = digits_eval_batches(task, "train", batch_size=n)[0]
        out[task] = [(batch.inputs, batch.labels)]
    return out


def _config(**changes):
    return TrainConfig(**{"epochs": 2, "batch_size": 32, "lr": 3e-3, "random_paths": 1, **changes})


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------------- gates
def test_straight_through_gate_is_one_hot_forward_with_soft_gradients():
    torch.manual_seed(0)
    logits = torch.randn(64, 2, requires_grad=True)
    noise = -torch.log(-torch.log(torch.rand(64, 2)))
    weights = torch.randn(64, 2)
    hard = straight_through_gumbel(logits, 2.0, noise=noise)
    assert set(hard.detach().flatten().tolist()) == {0.0, 1.0}
    assert torch.equal(hard.detach().argmax(1), (logits + noise).argmax(1))
    assert torch.equal(hard.detach().sum(1), torch.ones(64))
    (hard * weights).sum().backward()
    straight = logits.grad.clone()
    logits.grad = None
    (F.softmax((logits + noise) / 2.0, dim=1) * weights).sum().backward()
    assert torch.allclose(straight, logits.grad) and straight.abs().sum() > 0
    # Without noise (evaluation), the gate is the argmax of the logits; a tie picks the expert, as
    # UFO's argsort()[:, -1:] does (and so does the reported path).
    assert torch.equal(straight_through_gumbel(logits, 0.5).argmax(1), logits.argmax(1))
    assert straight_through_gumbel(torch.zeros(3, 2), 1.0).tolist() == [[0.0, 1.0]] * 3
    assert TaskGates(["a"], depth=2).report("s").ffn_paths("a") == ["task", "task"]


def test_task_gates_sample_per_sample_and_report_p_task():
    gates = TaskGates(["a", "b"], depth=3)
    assert gates.tasks == ["a", "b"] and gates.logits["a"].shape == (3, 2)
    generator = torch.Generator().manual_seed(0)
    g = gates.sample("a", 256, tau=5.0, generator=generator)
    assert g.shape == (3, 256, 2) and torch.equal(g.detach().sum(-1), torch.ones(3, 256))
    share = g.detach()[..., 1].mean().item()
    assert 0.4 < share < 0.6  # logits 0: both FFNs equally likely, drawn per sample
    with torch.no_grad():
        gates.logits["b"][:, 1] = torch.tensor([2.0, -2.0, 0.1])
    report = gates.report("space-x")
    assert report.ffn_paths("b") == ["task", "shared", "task"]
    assert report.p_task["b"][0] == pytest.approx(1 / (1 + np.exp(-2.0)))
    with pytest.raises(ValueError, match="no gates for task 'c'"):
        gates.sample("c", 1, 1.0)
    # UFO's expert_weight logits (tasks x layers x 2, e.g. of an imported checkpoint) read the same.
    logits = torch.stack([gates.logits[t].detach() for t in gates.tasks])
    assert LearnedGates.from_logits("space-x", gates.tasks, logits) == report


# ---------------------------------------------------------------------- forward
def test_gated_forward_runs_the_supernet_path_exactly():
    space = _space()
    net = build_supernet(space, seed=0).eval()
    x = digits_eval_batches("low", "val", batch_size=8)[0].inputs
    for sub in space.sample(6, seed=1):
        for task in space.tasks:
            path = TrainPath.of_subnet(space, sub, task)
            assert torch.allclose(gated_forward(net, x, task, path), net(x, sub, task), atol=1e-6)
    # A gated layer whose one-hot gate says "shared" (or "task") is that FFN at its width.
    gated = TrainPath((2, 1), (32, 8), (8, 32), ("gate", "gate"))
    for pick, paths in ((0, ("shared", "shared")), (1, ("task", "task"))):
        gates = F.one_hot(torch.full((2, len(x)), pick), 2).float()
        widths = gated.shared_hidden if pick == 0 else gated.expert_hidden
        plain = TrainPath(gated.num_heads, widths, widths, paths)
        assert torch.allclose(
            gated_forward(net, x, "high", gated, gates), gated_forward(net, x, "high", plain)
        )


def test_sandwich_paths_span_the_space():
    space = _space()
    sampler = PathSampler(space, gated=True)
    big, small = sampler.largest(), sampler.smallest()
    assert big.depth == 2 and big.num_heads == (2, 2) and big.shared_hidden == big.expert_hidden == (32, 32)
    assert small.depth == 1 and small.num_heads == (1,) and small.shared_hidden == (8,)
    assert big.ffn == ("gate", "gate")
    rng = np.random.default_rng(0)
    drawn = [sampler.random(rng) for _ in range(200)]
    assert {p.depth for p in drawn} == {1, 2}
    assert any(p.shared_hidden != p.expert_hidden for p in drawn)  # widths drawn separately
    fixed = PathSampler(space, ffn_paths=["task", "shared"])
    assert fixed.largest().ffn == ("task", "shared") and not fixed.largest().gated


def test_supervised_contrastive_loss_prefers_clustered_embeddings():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    centres = torch.eye(3)[labels] * 5
    clustered = supcon_loss(centres + 0.01 * torch.randn(6, 3), labels)
    mixed = supcon_loss(torch.randn(6, 3), labels)
    assert clustered < mixed
    assert supcon_loss(torch.randn(3, 4, requires_grad=True), torch.tensor([0, 1, 2])) == 0


# ---------------------------------------------------------------------- gradients
def test_each_task_updates_shared_weights_and_only_its_own_expert():
    torch.set_num_threads(1)
    space = _space()
    trainer = SupernetTrainer(build_supernet(space, seed=0), _data(space.tasks), _config())
    for task in space.tasks:
        trainer.optimizer.zero_grad(set_to_none=True)
        (x, y), *_ = trainer.data[task].batches(trainer.generator)
        trainer.accumulate(task, x, y)
        touched = {
            name
            for name, p in trainer.net.named_parameters()
            if p.grad is not None and p.grad.abs().sum() > 0
        }
        owners = {task_owner(name) for name in touched}
        assert owners == {None, task}, (task, owners)  # shared weights and this task's only
        assert "blocks.0.attn.qkv.weight" in touched and "blocks.0.ffn.fc1.weight" in touched
        assert any(f"experts.{task}." in name for name in touched)
        assert (task in trainer.net.heads) == (f"heads.{task}.weight" in touched)
        for other in space.tasks:
            grad = trainer.gates.logits[other].grad
            assert (grad is not None and grad.abs().sum() > 0) == (other == task)


def test_the_loss_falls_over_a_few_steps_on_digits():
    torch.set_num_threads(1)
    space = _space()
    result = train_supernet(space, _data(space.tasks, n=192), _config(epochs=6, lr=1e-2, warmup_steps=2))
    first, last = result.history[0], result.history[-1]
    assert result.steps == 6 * 6
    for task in space.tasks:
        assert last[task] < 0.9 * first[task], (task, first, last)
    assert result.gates is not None and set(result.gates.tasks) == set(space.tasks)


def test_a_space_without_ffn_path_trains_without_gates():
    torch.set_num_threads(1)
    space = _space(
        name="digits-plain",
        arch_format="indices",
        choices={"mlp_ratio": [2.0, 0.5], "num_heads": [2, 1]},
        per_task=[],
    )
    net = build_supernet(space, seed=0)
    assert not net.multipath
    result = train_supernet(space, _data(space.tasks), _config(epochs=1), net=net)
    assert result.gates is None and result.steps == 3


# ---------------------------------------------------------------------- checkpoints
def test_resume_reaches_the_weights_of_an_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    space = _space()
    data = _data(space.tasks)
    straight = train_supernet(space, data, _config(), checkpoint_dir=tmp_path / "a")
    first = SupernetTrainer(build_supernet(space, seed=0), data, _config(), checkpoint_dir=tmp_path / "b")
    half = first.fit(max_epochs=1)
    assert half.epochs == 1 and "supernet" not in half.files and (tmp_path / "b" / "last.pt").is_file()
    resumed = train_supernet(space, data, _config(), checkpoint_dir=tmp_path / "b", resume=True)
    assert resumed.epochs == 2 and resumed.steps == straight.steps == 6
    assert resumed.history == straight.history
    a, b = _state(straight.net), _state(resumed.net)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.gates == straight.gates
    saved, gates = read_training_state(tmp_path / "b" / "supernet.pt")
    assert gates is None and all(torch.equal(saved[k], a[k]) for k in a)
    # Resuming with other options, or training over a run without --resume, is refused.
    with pytest.raises(ValueError, match="lr: 0.003 in the checkpoint, 0.001 now"):
        train_supernet(space, data, _config(lr=1e-3), checkpoint_dir=tmp_path / "b", resume=True)
    with pytest.raises(ValueError, match="exists: resume it"):
        train_supernet(space, data, _config(), checkpoint_dir=tmp_path / "b")
    with pytest.raises(ValueError, match="nothing to resume"):
        train_supernet(space, data, _config(), checkpoint_dir=tmp_path / "c", resume=True)


def test_new_task_extension_trains_the_shared_branch_and_the_new_task_only(tmp_path):
    torch.set_num_threads(1)
    space = _space()
    base = train_supernet(space, _data(space.tasks), _config(epochs=1), checkpoint_dir=tmp_path / "base")
    before = _state(base.net)
    bigger = _space(tasks=[*TINY["tasks"], {"name": "all10", "head": 10}])
    result = train_supernet(
        bigger,
        _data(["all10"]),
        _config(epochs=1, stage="new-task", task="all10"),
        init=tmp_path / "base" / "last.pt",
        checkpoint_dir=tmp_path / "new",
    )
    after = _state(result.net)
    assert set(before) < set(after)
    for name, value in before.items():
        same = torch.equal(value, after[name])
        assert same == (task_owner(name) is not None), name  # others' experts/heads kept, shared trained
    assert all(task_owner(name) == "all10" for name in set(after) - set(before))
    assert result.gates is not None and result.gates.tasks == ["low", "high", "retrieval", "all10"]
    for task in space.tasks:
        assert result.gates.p_task[task] == base.gates.p_task[task]
    assert result.gates.p_task["all10"] != (0.5, 0.5)


def test_chip_stage_fixes_ffn_path_to_the_gates_and_trains_one_task(tmp_path):
    torch.set_num_threads(1)
    space = _space()
    gates = LearnedGates(space.name, {"low": (0.9, 0.2), "high": (0.1, 0.1), "retrieval": (0.5, 0.6)})
    net = build_supernet(space, seed=0)
    before = _state(net)
    result = train_supernet(
        space,
        _data(["low"]),
        _config(epochs=1, stage="chip", task="low"),
        gates=gates,
        net=net,
        checkpoint_dir=tmp_path,
    )
    after = _state(result.net)
    for name, value in before.items():
        changed = not torch.equal(value, after[name])
        owner = task_owner(name)
        if owner not in (None, "low"):
            assert not changed, name
    # Layer 0 runs low's expert and layer 1 the shared FFN, never the other.
    assert not torch.equal(
        before["blocks.0.experts.low.fc1.weight"], after["blocks.0.experts.low.fc1.weight"]
    )
    assert torch.equal(before["blocks.0.ffn.fc1.weight"], after["blocks.0.ffn.fc1.weight"])
    assert torch.equal(before["blocks.1.experts.low.fc1.weight"], after["blocks.1.experts.low.fc1.weight"])
    assert LearnedGates.load(tmp_path / "gates.json") == gates
    with pytest.raises(ValueError, match="give the gates.json"):
        train_supernet(space, _data(["low"]), _config(epochs=1, stage="chip", task="low"))


# ---------------------------------------------------------------------- gates.json and the search
def test_gates_json_round_trips_and_fixes_or_biases_the_search(tmp_path):
    space = _space()
    gates = LearnedGates(space.name, {"low": (0.8, 0.3), "high": (0.2, 0.4)}, tau=0.5)
    assert LearnedGates.load(gates.save(tmp_path / "gates.json")) == gates
    doc = json.loads((tmp_path / "gates.json").read_text())
    assert doc["tasks"]["low"]["ffn_path"] == ["task", "shared"]
    assert (
        gates.distance("low", "high") == pytest.approx(0.35) and gates.path_disagreements("low", "high") == 1
    )
    subs = space.sample(40, seed=0)
    fixed = fix_ffn_paths(space, subs, gates, "low")
    for before, after in zip(subs, fixed, strict=True):
        config = space.config(after)
        assert [layer["ffn_path"] for layer in config["layers"]] == ["task", "shared"][: after.depth]
        assert [(r, h) for _, r, h in after.layers] == [(r, h) for _, r, h in before.layers]
    codes = space.choice_matrix(fixed)
    prior = ffn_path_log_prior(space, space.choice_matrix(subs), gates, "low")
    assert np.all(ffn_path_log_prior(space, codes, gates, "low") >= prior - 1e-12)
    drawn = sample_with_gates(space, 10, gates, "high", seed=0)
    assert len(drawn) == 10 and all(
        all(layer["ffn_path"] == "shared" for layer in space.config(s)["layers"]) for s in drawn
    )
    with pytest.raises(ValueError, match="not a gpnas-gates/1 document"):
        LearnedGates.from_json('{"format": "x"}')
    with pytest.raises(ValueError, match="no gates for task 'retrieval'"):
        gates.ffn_paths("retrieval")


# ---------------------------------------------------------------------- the CLI
runner = CliRunner()


def test_gpnas_train_cli_trains_resumes_and_writes_what_supernet_eval_loads(tmp_path):
    torch.set_num_threads(1)
    definition = tmp_path / "digits-tiny.json"
    definition.write_text(json.dumps(TINY))
    out = tmp_path / "run"
    base = ["train", "--space", str(definition), "--data", "digits-ufo", "--epochs", "1"]
    args = [*base, "--batch-size", "512", "--checkpoint-dir", str(out), "--threads", "1", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "epoch 1/1: loss low=" in result.output and "retrieval=" in result.output
    assert "P(task expert) per layer" in result.output
    assert {p.name for p in out.iterdir()} == {"last.pt", "supernet.pt", "gates.json", "space-gated.yaml"}
    gated = space_from_definition(SpaceDefinition.read(out / "space-gated.yaml"))
    learned = LearnedGates.load(out / "gates.json")
    assert {t: list(p) for t, p in gated.fixed_ffn_paths.items()} == {
        t: learned.ffn_paths(t) for t in learned.tasks
    }
    net = build_supernet(space_from_definition(SpaceDefinition.model_validate(TINY)))
    net.load_state_dict(torch.load(out / "supernet.pt", weights_only=True))
    assert LearnedGates.load(out / "gates.json").tasks == ["low", "high", "retrieval"]
    again = runner.invoke(app, args)
    assert isinstance(again.exception, ValueError) and "resume" in str(again.exception)
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    bad = runner.invoke(app, ["train", "--space", str(definition), "--data", "digits", "--epochs", "1"])
    assert isinstance(bad.exception, ValueError) and "unknown digits task 'retrieval'" in str(bad.exception)
    chip = runner.invoke(app, [*base, "--stage", "chip", "--checkpoint-dir", str(tmp_path / "c")])
    assert isinstance(chip.exception, ValueError) and "give --task" in str(chip.exception)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_cuda_with_mixed_precision(tmp_path):
    space = _space()
    result = train_supernet(
        space, _data(space.tasks), _config(epochs=2, device="cuda", amp=True), checkpoint_dir=tmp_path
    )
    assert all(np.isfinite(v) for h in result.history for v in h.values())
    assert next(result.net.parameters()).is_cuda
    saved, _ = read_training_state(tmp_path / "supernet.pt")
    assert all(v.device.type == "cpu" for v in saved.values())
    resumed = SupernetTrainer(
        build_supernet(space, seed=0),
        _data(space.tasks),
        _config(epochs=2, amp=True, device="cuda"),
        checkpoint_dir=tmp_path,
    )
    resumed.resume()
    assert resumed.epoch == 2 and resumed.scaler.is_enabled()


def test_amp_and_devices_are_checked():
    with pytest.raises(ValueError, match="amp needs a CUDA device"):
        TrainConfig(amp=True)
    with pytest.raises(ValueError, match="a chip or new-task stage needs a task"):
        TrainConfig(stage="chip")
    if not torch.cuda.is_available():
        space = _space()
        with pytest.raises(ValueError, match="CUDA is not available"):
            SupernetTrainer(build_supernet(space), _data(space.tasks), TrainConfig(device="cuda"))
