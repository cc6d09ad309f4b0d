"""supernet-eval at scale: data from a DataLoader factory named in the machine's local config,
batched, on CPU or CUDA, with a progress bar, and a subnet's outputs computed once per task."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from profilers import (
    DIGITS_TASKS,
    DeviceUnavailableError,
    EvalOutputs,
    LocalConfig,
    ProfilerUnavailableError,
    SupernetEvalProfiler,
    create_profiler,
    digits_batches,
    digits_eval_batches,
    digits_space,
    validate_settings,
)
from profilers._supernet_eval import OutputCache
from supernet import Track2Space, UFOSpace, ViTGeometry, build_supernet

# ufo-track2's choices on the digits images (1 x 8 x 8), as in test_metrics.py.
DIGITS_GEOMETRY = ViTGeometry(embed_dim=32, patch_size=4, image_size=8, head_dim=8, in_chans=1)
FIELDS = ("inputs", "labels", "cameras", "is_query", "pair_inputs", "same")
#: Per task: how many times the dataset factory was called and the extracted model ran.
CALLS: dict[str, Counter[str]] = {"data": Counter(), "forward": Counter()}


class _DigitsSamples(Dataset):
    """One sample per digits image, as a real re-id / retrieval / face dataset returns them:
    a dict with a tensor image and plain Python ints and bools (a DataLoader collates them)."""

    def __init__(self, task: str) -> None:
        (whole,) = digits_eval_batches(task, batch_size=1 << 30)
        self.fields = {name: getattr(whole, name) for name in FIELDS}

    def __len__(self) -> int:
        return len(self.fields["inputs"])

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: v[i] if v.dim() > 1 else v[i].item() for k, v in self.fields.items()}


class _DigitsPairs(Dataset):
    """``(image, label)`` samples of a digits classification task."""

    def __init__(self, task: str) -> None:
        self.x, self.y = (torch.cat(parts) for parts in zip(*digits_batches(task), strict=True))

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])


def digits_loader(task: str, batch_size: int = 256) -> DataLoader:
    """The data factory under test: a DataLoader over dict samples (track2's tasks) or over
    ``(image, label)`` samples (the digits space's classification tasks)."""
    CALLS["data"][task] += 1
    dataset = _DigitsPairs(task) if task in DIGITS_TASKS else _DigitsSamples(task)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)


def task_only_loader(task: str) -> DataLoader:
    return DataLoader(_DigitsSamples(task), batch_size=100)


def ignores_batch_size(task: str, **options: Any) -> list[Any]:
    return digits_eval_batches(task, batch_size=256)


def not_batches(task: str, batch_size: int = 1) -> int:
    return 3


def counting_supernet(space: UFOSpace) -> torch.nn.Module:
    """The supernet of ``space`` (seed 0) whose extracted subnets count their forward passes."""
    net = build_supernet(space, seed=0)
    extract = net.extract

    def counted(sub: Any, task: str | None = None) -> torch.nn.Module:
        model = extract(sub, task=task)
        model.register_forward_hook(lambda *_: CALLS["forward"].update([str(task)]))
        return model

    net.extract = counted  # type: ignore[method-assign,assignment]
    return net


@pytest.fixture(autouse=True)
def _reset_counts():
    for counter in CALLS.values():
        counter.clear()


@pytest.fixture
def track2() -> Track2Space:
    return Track2Space(geometry=DIGITS_GEOMETRY)


@pytest.fixture
def local(tmp_path, track2) -> LocalConfig:
    """A machine whose local config names the DataLoader factories and the counting supernet, and
    whose data directory holds checkpoints of both test spaces."""
    torch.save(build_supernet(track2, seed=0).state_dict(), tmp_path / "track2.pt")
    torch.save(build_supernet(digits_space(), seed=0).state_dict(), tmp_path / "digits.pt")
    config = tmp_path / "local.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\n[datasets]\n'
        f'digits-loader = "{__name__}:digits_loader"\n'
        f'task-only = "{__name__}:task_only_loader"\n'
        f'ignores-batch-size = "{__name__}:ignores_batch_size"\n'
        f'not-batches = "{__name__}:not_batches"\n'
        f'[supernets]\ncounting = "{__name__}:counting_supernet"\n'
    )
    return LocalConfig.load(config)


def _eval(space: UFOSpace, **settings: Any) -> SupernetEvalProfiler:
    # Random weights unless the test names a checkpoint.
    profiler = create_profiler(
        "supernet-eval", space, **({"random_weights": "checkpoint" not in settings} | settings)
    )
    assert isinstance(profiler, SupernetEvalProfiler)
    return profiler


def _batches(task: str, batch_size: int) -> int:
    n = len(_DigitsPairs(task)) if task in DIGITS_TASKS else len(_DigitsSamples(task))
    return -(-n // batch_size)


# ---------------------------------------------------------------------- a DataLoader's scores
@pytest.mark.parametrize("task", ["market1501", "sop", "cplfw"])
def test_a_dataloader_factory_scores_as_the_list_of_batches_does(local, track2, task):
    sub = track2.sample(1, seed=3)[0]
    common = {"local": local, "checkpoint": "track2.pt", "distance": "euclidean"}
    listed = _eval(track2, data="digits-ufo", **common).score(sub, task)
    loaded = _eval(track2, data="digits-loader", **common).score(sub, task)
    # The same images in the same batches of 256: the same numbers, to the last bit.
    assert loaded.value == listed.value and loaded.std == listed.std and loaded.repeats == listed.repeats
    assert loaded.environment["metric_values"] == listed.environment["metric_values"]
    assert loaded.environment["task_metric"] == {"market1501": "reid", "sop": "retrieval"}.get(
        task, "verification"
    )
    assert loaded.environment["device"] == "cpu" and not loaded.environment["outputs_cached"]


def test_a_dataloader_of_image_label_samples_scores_top1(local):
    space = digits_space()
    sub = space.sample(1, seed=2)[0]
    common = {"local": local, "checkpoint": "digits.pt"}
    listed = _eval(space, data="digits", **common).score(sub, "high")
    loaded = _eval(space, data="digits-loader", **common).score(sub, "high")
    assert loaded.environment["task_metric"] == "top1"
    assert (loaded.value, loaded.repeats) == (listed.value, listed.repeats)


@pytest.mark.parametrize("task", ["market1501", "sop", "cplfw"])
def test_the_batch_size_reaches_the_factory_and_does_not_change_the_score(local, track2, task):
    sub = track2.sample(1, seed=4)[0]
    scored = {}
    for size in (7, 64, 1000):
        profiler = _eval(track2, local=local, data="digits-loader", supernet="counting", batch_size=size)
        out, _ = profiler.outputs(sub, task, pairs=task == "cplfw")
        scored[size] = (profiler.score(sub, task), out)
        assert scored[size][0].environment["batch_size"] == size
    assert CALLS["forward"][task] == sum(_batches(task, s) for s in (7, 64, 1000)) * (
        2 if task == "cplfw" else 1
    )
    (r7, o7), (r64, o64), (r1000, o1000) = scored.values()
    for result, out in ((r64, o64), (r1000, o1000)):
        assert torch.allclose(out.outputs, o7.outputs, atol=1e-5)
        assert result.value == pytest.approx(r7.value, abs=1e-6) and result.repeats == r7.repeats


def test_batch_size_needs_a_factory_that_takes_it(local, track2):
    sub = track2.sample(1, seed=0)[0]
    with pytest.raises(ValueError, match="setting 'batch_size' .*'task-only' takes no batch_size keyword"):
        _eval(track2, local=local, data="task-only", batch_size=32)
    # Without batch_size the factory is called with the task alone.
    result = _eval(track2, local=local, data="task-only").score(sub, "sop")
    assert result.environment["batch_size"] is None and result.repeats > 400
    # A factory that accepts the keyword but ignores it is caught at its first batch.
    ignoring = _eval(track2, local=local, data="ignores-batch-size", batch_size=32)
    with pytest.raises(ValueError, match="batch 1 holds 256 items, more than the batch_size=32"):
        ignoring.score(sub, "sop")
    with pytest.raises(ValueError, match="setting 'data' .*'not-batches' returned a int .*not an iterable"):
        _eval(track2, local=local, data="not-batches").score(sub, "sop")


# ---------------------------------------------------------------------- outputs once
def test_outputs_are_computed_once_per_subnet_and_task(local, track2):
    profiler = _eval(track2, local=local, data="digits-loader", supernet="counting", batch_size=100)
    sub, other = track2.sample(2, seed=5)
    first = profiler.score(sub, "market1501")
    # One pass gives every value of the metric: mAP and the CMC ranks.
    assert {"mAP", "rank1", "rank5", "rank10", "mINP"} <= set(first.environment["metric_values"])
    passes = _batches("market1501", 100)
    assert CALLS["forward"]["market1501"] == passes and CALLS["data"]["market1501"] == 1
    again = profiler.score(track2.format(sub), "market1501")  # the arch string: the same subnet
    assert CALLS["forward"]["market1501"] == passes and CALLS["data"]["market1501"] == 1
    assert again.environment["outputs_cached"] and again.environment["eval_seconds"] == 0.0
    assert again.value == first.value
    assert again.environment["metric_values"] == first.environment["metric_values"]
    # Another task, or another subnet: run once each.
    profiler.score(sub, "sop")
    profiler.score(sub, "sop")
    assert CALLS["forward"]["sop"] == _batches("sop", 100) and CALLS["data"]["sop"] == 1
    profiler.score(other, "market1501")
    assert CALLS["forward"]["market1501"] == 2 * passes
    # Verification runs both images of each pair, once.
    profiler.score(sub, "cplfw")
    profiler.score(sub, "cplfw")
    assert CALLS["forward"]["cplfw"] == 2 * _batches("cplfw", 100)
    profiler.close()  # drops the kept outputs
    profiler.score(sub, "sop")
    assert CALLS["forward"]["sop"] == 2 * _batches("sop", 100)


def test_the_cache_is_bounded_by_entries_and_bytes(local, track2):
    a, b = track2.sample(2, seed=6)
    common = {"local": local, "data": "digits-loader", "supernet": "counting", "batch_size": 1000}
    one = _eval(track2, cache_entries=1, **common)
    for sub in (a, b, a, a):
        one.score(sub, "sop")
    assert CALLS["forward"]["sop"] == 3  # a, b, a again (b evicted a); the last a was kept
    CALLS["forward"].clear()
    none = _eval(track2, cache_mb=0, **common)
    none.score(a, "sop")
    assert not none.score(a, "sop").environment["outputs_cached"] and CALLS["forward"]["sop"] == 2

    def outputs(n: int) -> EvalOutputs:
        return EvalOutputs(torch.zeros(n, 256))  # n KiB

    cache = OutputCache(max_entries=10, max_bytes=3 << 10)
    for key, n in (("x", 1), ("y", 2), ("z", 1)):
        cache.put(key, outputs(n))
    assert cache.get("x") is None and cache.get("y") is not None and cache.get("z") is not None
    assert cache.bytes == 3 << 10 and len(cache) == 2
    cache.put("big", outputs(4))  # larger than the whole cache: not kept, nothing evicted
    assert cache.get("big") is None and len(cache) == 2
    assert (cache.hits, cache.misses) == (2, 2)


def test_loader_tensors_are_not_inference_tensors(local, track2):
    """Batches are fetched outside inference mode: a loader that creates and keeps tensors while
    it is iterated can train on them later."""
    kept: list[torch.Tensor] = []

    def keeping(task: str) -> Any:
        for batch in digits_eval_batches(task, batch_size=128):
            kept.append(batch.inputs * 1.0)
            yield {"inputs": kept[-1], "labels": batch.labels}

    profiler = _eval(track2, local=local, data="digits-loader")
    profiler._data = keeping  # the factory as a generator function
    profiler.score(track2.sample(1, seed=0)[0], "sop")
    assert kept and not any(t.is_inference() for t in kept)
    kept[0].add_(1.0)  # in place, outside inference mode: refused for inference tensors


# ---------------------------------------------------------------------- progress
def test_the_progress_bar_shows_images_and_rate_only_when_asked(local, track2, capsys):
    sub = track2.sample(1, seed=7)[0]
    common = {"local": local, "data": "digits-loader", "batch_size": 100}
    _eval(track2, progress=True, **common).score(sub, "market1501")
    err = capsys.readouterr().err
    n = len(_DigitsSamples("market1501"))
    assert "supernet-eval market1501" in err and f"{n}/{n}" in err and "img/s" in err
    _eval(track2, progress=False, **common).score(sub, "sop")
    # The default shows a bar only on a terminal; the tests' stderr is none.
    _eval(track2, **common).score(sub, "cplfw")
    assert capsys.readouterr() == ("", "")


# ---------------------------------------------------------------------- devices
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error_naming_the_device_setting(local, track2):
    for device in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match="setting 'device' .*CUDA is not available on this machine"):
            _eval(track2, local=local, data="digits-ufo", device=device)
    # An agent hands the jobs back instead of failing them all.
    with pytest.raises(ProfilerUnavailableError):
        _eval(track2, local=local, data="digits-ufo", device="cuda")
    assert issubclass(DeviceUnavailableError, ValueError)


def test_device_and_amp_settings_are_checked_without_hardware():
    # What a server checks at registration: the form, not this machine's GPUs.
    assert (
        validate_settings(
            "supernet-eval", {"data": "x", "random_weights": True, "device": "cuda:3", "amp": "true"}
        )["amp"]
        is True
    )
    with pytest.raises(ValueError, match="setting 'device' .*must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"):
        validate_settings("supernet-eval", {"data": "x", "random_weights": True, "device": "tpu"})
    with pytest.raises(ValueError, match="setting 'amp' .*autocast needs a CUDA device"):
        validate_settings("supernet-eval", {"data": "x", "random_weights": True, "amp": True})
    with pytest.raises(ValueError, match="setting 'amp_dtype' .*must be one of"):
        validate_settings(
            "supernet-eval",
            {"data": "x", "random_weights": True, "device": "cuda", "amp": True, "amp_dtype": "int8"},
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("task", ["market1501", "sop", "cplfw"])
def test_cpu_and_cuda_scores_agree(local, track2, task):
    sub = track2.sample(1, seed=8)[0]
    common = {"local": local, "checkpoint": "track2.pt", "data": "digits-loader", "batch_size": 64}
    pairs = task == "cplfw"
    cpu = _eval(track2, **common)
    cuda = _eval(track2, device="cuda", **common)
    amp = _eval(track2, device="cuda", amp=True, **common)
    cpu_out, cuda_out, amp_out = (p.outputs(sub, task, pairs)[0] for p in (cpu, cuda, amp))
    for out in (cuda_out, amp_out):  # gathered on the CPU, as float32
        assert out.outputs.device.type == "cpu" and out.outputs.dtype == torch.float32
    # cuDNN may use TF32 for the patch embedding; float16 autocast is looser still.
    assert torch.allclose(cuda_out.outputs, cpu_out.outputs, rtol=1e-2, atol=1e-2)
    assert torch.allclose(amp_out.outputs, cpu_out.outputs, rtol=5e-2, atol=5e-2)
    cpu_score, cuda_score, amp_score = (p.score(sub, task) for p in (cpu, cuda, amp))
    assert cuda_score.environment["device"] == "cuda" and cuda_score.environment["gpu"]
    assert amp_score.environment["amp"] == "float16"
    assert cuda_score.value == pytest.approx(cpu_score.value, abs=0.02)
    assert amp_score.value == pytest.approx(cpu_score.value, abs=0.05)
    assert cuda_score.repeats == cpu_score.repeats
