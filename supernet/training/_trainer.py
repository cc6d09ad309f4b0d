"""Multi-task supernet training: UFO's gated sandwich rule, checkpoints and exact resume.

Every step takes one batch of every trained task. Per task, the sandwich rule runs the largest
path, the smallest and ``random_paths`` uniformly drawn ones (depth, heads and FFN widths; gated
layers draw the shared FFN's and the expert's width separately); the largest path's loss is the
task loss, the others add in-place distillation towards its detached outputs. Gradients of all
tasks accumulate before one AdamW step, so the shared parameters learn from every task's batch and
a task's expert, head and stem only from its own (they are not on any other task's forward).
The learning rate warms up linearly for ``warmup_steps`` and then follows a cosine to
``min_lr_ratio * lr``; the gates' temperature anneals geometrically from ``tau_start`` to
``tau_end`` over the run. On CUDA, ``amp`` autocasts the forward (float16 with a gradient scaler,
or bfloat16); losses are computed in float32.

Three stages, as UFO trains:

* ``multi``: all tasks, with per-task gates on spaces that have an ``ffn_path`` choice;
* ``chip``: one task's supernet over depth and widths only, its ``ffn_path`` fixed per layer to
  the gates' argmax (the supernet one searches for that task's chips);
* ``new-task``: a task added to a trained supernet: only the shared branch (stem, norms,
  attention, shared FFNs) and the new task's head, expert and gates learn; the other tasks'
  experts, heads, stems and gates do not change.

:class:`SupernetTrainer` writes ``last.pt`` (supernet, gates, optimizer, scheduler, scaler, step
and every RNG state) after each epoch; :meth:`SupernetTrainer.resume` continues from it to the
same weights as an uninterrupted run. At the end it writes ``supernet.pt`` (the supernet's state
dict only: what ``supernet-eval`` loads) and ``gates.json``.

**Training data.** ``data`` maps each trained task to an iterable of batches, each an
``(inputs, labels)`` pair, a mapping with ``inputs`` and ``labels`` or an object with those
attributes (an :class:`~profilers.EvalBatch`). A list or tuple of batches is held in memory:
its items are pooled and re-batched at ``batch_size`` in a fresh seeded order every pass. Any
other iterable (a ``torch.utils.data.DataLoader``) is iterated as it is, once per pass, and must
have a ``len()`` unless ``steps_per_epoch`` is set. An epoch is ``steps_per_epoch`` steps
(default: the longest task's batch count); shorter tasks start another pass when they run out,
and every epoch starts a fresh pass of every task.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from .._supernet import UFOSupernet, _SuperFFN, build_supernet, ufo_space
from .._ufo import UFOSpace
from ._gates import LearnedGates, TaskGates, gated_definition, gates_from_report
from ._losses import distill_loss, task_loss
from ._paths import PathSampler, TrainPath, gated_forward

Stage = Literal["multi", "chip", "new-task"]
STAGES: tuple[Stage, ...] = ("multi", "chip", "new-task")
CHECKPOINT_FORMAT = "gpnas-train/1"
LAST, SUPERNET, GATES, GATED_SPACE = "last.pt", "supernet.pt", "gates.json", "space-gated.yaml"
_AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
# Config fields that may differ between a run and its resumption (they do not change the math).
_RESUMABLE_CHANGES = frozenset({"device"})
Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a training run (all stored in the checkpoint).

    Attributes:
        epochs: Passes over the data (see the module docstring for what an epoch is).
        batch_size: Items per batch of in-memory data (lists of batches are re-batched).
        lr: Peak AdamW learning rate.
        weight_decay: AdamW weight decay of matrices (biases, norms, tokens and gates get none).
        warmup_steps: Linear warm-up steps before the cosine decay.
        min_lr_ratio: The cosine ends at ``min_lr_ratio * lr``.
        random_paths: Random paths per task and step besides the largest and the smallest.
        tau_start: Gate temperature at the first step.
        tau_end: Gate temperature at the last step (geometric annealing in between).
        gate_lr_scale: The gates' learning rate is ``gate_lr_scale * lr`` (a gate is 2 numbers
            per layer that must move by O(1), the weights by O(lr)).
        distill_weight: Loss of a smaller path: ``(1 - w) * task loss + w * distillation``.
        supcon_temperature: Temperature of the contrastive loss of tasks without a head.
        grad_clip: Clip the global gradient norm to this (``None``: no clipping).
        amp: Autocast the forward on CUDA.
        amp_dtype: ``float16`` (with a gradient scaler) or ``bfloat16``.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        seed: Seeds path sampling, Gumbel noise and data order (the supernet's initial weights
            are the caller's; :func:`train_supernet` builds them from this seed too).
        stage: ``multi``, ``chip`` or ``new-task``.
        task: The task of a ``chip`` or ``new-task`` stage.
        steps_per_epoch: Steps per epoch (default: the longest task's batch count).
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    random_paths: int = 2
    tau_start: float = 5.0
    tau_end: float = 0.5
    gate_lr_scale: float = 10.0
    distill_weight: float = 0.5
    supcon_temperature: float = 0.1
    grad_clip: float | None = 1.0
    amp: bool = False
    amp_dtype: str = "float16"
    device: str = "cpu"
    seed: int = 0
    stage: Stage = "multi"
    task: str | None = None
    steps_per_epoch: int | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0 and self.gate_lr_scale >= 0, "lr must be > 0 and gate_lr_scale >= 0"),
            (self.warmup_steps >= 0 and self.random_paths >= 0, "warmup_steps and random_paths must be >= 0"),
            (0 < self.tau_end <= self.tau_start, "temperatures need 0 < tau_end <= tau_start"),
            (0.0 <= self.distill_weight <= 1.0, "distill_weight must be in [0, 1]"),
            (0.0 <= self.min_lr_ratio <= 1.0, "min_lr_ratio must be in [0, 1]"),
            (self.grad_clip is None or self.grad_clip > 0, "grad_clip must be > 0 (or None)"),
            (self.supcon_temperature > 0, "supcon_temperature must be > 0"),
            (self.amp_dtype in _AMP_DTYPES, f"amp_dtype must be one of {list(_AMP_DTYPES)}"),
            (self.stage in STAGES, f"stage must be one of {list(STAGES)}"),
            (
                (self.stage == "multi") == (self.task is None),
                "a chip or new-task stage needs a task (multi none)",
            ),
            (self.steps_per_epoch is None or self.steps_per_epoch >= 1, "steps_per_epoch must be >= 1"),
            (not (self.amp and self.device == "cpu"), "amp needs a CUDA device; device is 'cpu'"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"training config: {message}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training config field(s) {unknown}")
        return cls(**values)


@dataclass
class TrainResult:
    """What :meth:`SupernetTrainer.fit` returns.

    Attributes:
        net: The supernet (trained, in eval mode, on the training device).
        gates: The learned gates (``None`` for spaces without ``ffn_path`` and for chip stages).
        history: Per finished epoch, task -> mean loss of the largest path.
        epochs: Finished epochs (``config.epochs`` unless stopped early by ``max_epochs``).
        steps: Optimizer steps taken.
        files: What was written: ``last``, and at the end ``supernet`` and ``gates``.
    """

    net: UFOSupernet
    gates: LearnedGates | None
    history: list[dict[str, float]]
    epochs: int
    steps: int
    files: dict[str, Path] = field(default_factory=dict)


def torch_device(value: str) -> torch.device:
    """The device ``value`` names (``cpu``, ``cuda``, ``cuda:N``), checked against this machine."""
    if value == "cpu":
        return torch.device("cpu")
    if not (value == "cuda" or value.startswith("cuda:")):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {value!r}")
    if not torch.cuda.is_available():
        raise ValueError(
            f"device {value!r}: CUDA is not available on this machine (torch {torch.__version__})"
        )
    device = torch.device(value)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {value!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


# ---------------------------------------------------------------------- data
def as_pair(batch: Any, where: str = "training data") -> Batch:
    """``(inputs, labels)`` of a batch: a pair, a mapping or an object with those fields.

    Raises:
        ValueError: Neither form, or the fields are not tensors.
    """
    if isinstance(batch, Mapping):
        x, y = batch.get("inputs"), batch.get("labels")
    elif isinstance(batch, tuple | list) and len(batch) == 2:
        x, y = batch
    else:
        x, y = getattr(batch, "inputs", None), getattr(batch, "labels", None)
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise ValueError(
            f"{where}: a training batch must be an (inputs, labels) pair of tensors, a mapping or an "
            f"object with 'inputs' and 'labels' tensors; got {type(batch).__name__}"
        )
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"{where}: a batch has {x.shape[0]} inputs and {y.shape[0]} labels")
    return x, y.long()


class _TaskData:
    """One task's training batches: pooled and reshuffled if in memory, else iterated as given."""

    def __init__(self, task: str, source: Any, batch_size: int) -> None:
        self.where = f"training data of task {task!r}"
        self.batch_size = batch_size
        self.pooled: Batch | None = None
        self.source = source
        if isinstance(source, list | tuple):
            pairs = [as_pair(b, self.where) for b in source]
            if not pairs:
                raise ValueError(f"{self.where} is empty")
            self.pooled = (torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs]))
        elif not hasattr(source, "__iter__"):
            raise ValueError(f"{self.where} is a {type(source).__name__}, not an iterable of batches")

    def __len__(self) -> int:
        if self.pooled is not None:
            return math.ceil(len(self.pooled[1]) / self.batch_size)
        if isinstance(self.source, Sized):
            return len(self.source)
        raise ValueError(f"{self.where} has no len(); set steps_per_epoch")

    def batches(self, generator: torch.Generator) -> Iterator[Batch]:
        if self.pooled is None:
            for batch in self.source:
                yield as_pair(batch, self.where)
            return
        x, y = self.pooled
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), self.batch_size):
            index = order[start : start + self.batch_size]
            yield x[index], y[index]


# ---------------------------------------------------------------------- parameters
def task_owner(name: str) -> str | None:
    """The task that owns supernet parameter ``name`` (its expert, head or stem), else ``None``
    (a shared parameter)."""
    parts = name.split(".")
    if parts[0] in ("heads", "stems") and len(parts) > 1:
        return parts[1]
    if parts[0] == "blocks" and len(parts) > 3 and parts[2] == "experts":
        return parts[3]
    return None


def _no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim < 2 or name.endswith(("cls_token", "pos_embed"))


def _space_fingerprint(space: UFOSpace) -> str:
    """What a checkpoint must agree on with the space it is resumed on."""
    described = space.describe()
    described.pop("cardinality", None)
    described.pop("score_label", None)
    described["geometry"] = dataclasses.asdict(space.geometry)
    described["per_task_stem"] = space.per_task_stem
    return json.dumps(described, sort_keys=True)


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------------- the trainer
class SupernetTrainer:
    """Trains a :class:`~supernet.UFOSupernet` (see the module docstring).

    Args:
        net: The supernet (moved to ``config.device``).
        data: Trained task -> its training batches (the module docstring says what a batch is).
        config: Hyper-parameters and the stage.
        gates: The gates (multi and new-task stages on spaces with ``ffn_path``); default: fresh
            gates (logits 0) for every task of the space. Tasks of the space they lack are added.
        ffn_paths: A chip stage's FFN per layer (``max_depth`` of ``shared``/``task``); required
            there when the space has ``ffn_path``.
        checkpoint_dir: Where ``last.pt``, ``supernet.pt`` and ``gates.json`` go (created);
            ``None``: nothing is written.
        progress: A progress bar on stderr with the loss per task (default: when stderr is a
            terminal).
        log: Called with one line per finished epoch (default: nothing).
        reference_gates: Gates to write as ``gates.json`` in a chip stage (the ones its
            ``ffn_paths`` came from).
    """

    def __init__(
        self,
        net: UFOSupernet,
        data: Mapping[str, Any],
        config: TrainConfig | None = None,
        *,
        gates: TaskGates | None = None,
        ffn_paths: Sequence[str] | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        progress: bool | None = None,
        log: Callable[[str], None] | None = None,
        reference_gates: LearnedGates | None = None,
    ) -> None:
        self.config = config = config or TrainConfig()
        self.space: UFOSpace = net.space
        self.device = torch_device(config.device)
        self.tasks = list(self.space.tasks) if config.stage == "multi" else [cast(str, config.task)]
        for task in self.tasks:
            self.space.check_task(task)
            if task not in data:
                raise ValueError(f"no training data for task {task!r}; given: {sorted(data)}")
        self.net = net.to(self.device)
        self.gates = self._setup_gates(gates, ffn_paths)
        gated = self.gates is not None
        self.sampler = PathSampler(self.space, gated=gated, ffn_paths=None if gated else ffn_paths)
        self.reference_gates = reference_gates
        self.data = {task: _TaskData(task, data[task], config.batch_size) for task in self.tasks}
        self.steps_per_epoch = config.steps_per_epoch or max(len(d) for d in self.data.values())
        self.total_steps = config.epochs * self.steps_per_epoch
        self.optimizer = torch.optim.AdamW(
            self._param_groups(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        use_scaler = config.amp and config.amp_dtype == "float16"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.rng = np.random.default_rng(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.log = log or (lambda line: None)
        self.epoch = self.step = 0
        self.history: list[dict[str, float]] = []
        self._checked: set[str] = set()

    # ------------------------------------------------------------------ setup
    def _setup_gates(self, gates: TaskGates | None, ffn_paths: Sequence[str] | None) -> TaskGates | None:
        gated = self.net.multipath and self.config.stage != "chip"
        if not gated:
            if gates is not None:
                raise ValueError("gates train only in multi and new-task stages of spaces with ffn_path")
            if self.config.stage == "chip" and self.net.multipath and ffn_paths is None:
                raise ValueError(
                    f"a chip stage of {self.space.name!r} needs the task's ffn_path per layer "
                    "(the gates' argmax)"
                )
            return None
        if ffn_paths is not None:
            raise ValueError("fixed ffn_paths are for chip stages; multi and new-task stages learn gates")
        gates = gates if gates is not None else TaskGates(self.space.tasks, self.space.max_depth)
        if gates.depth != self.space.max_depth:
            raise ValueError(f"gates have {gates.depth} layers, the space {self.space.max_depth}")
        for task in self.space.tasks:
            if task not in gates.logits:
                gates.add_task(task)
        return gates.to(self.device)

    def trainable(self) -> list[tuple[str, nn.Parameter]]:
        """The supernet and gate parameters this stage trains, by name (gates as ``gates.<task>``).

        Multi: everything. Chip and new-task: all but the other tasks' experts, heads, stems and
        gates.
        """
        out = [
            (name, p)
            for name, p in self.net.named_parameters()
            if self.config.stage == "multi" or task_owner(name) in (None, *self.tasks)
        ]
        if self.gates is not None:
            out += [(f"gates.{t}", p) for t, p in self.gates.logits.items() if t in self.tasks]
        return out

    def _param_groups(self) -> list[dict[str, Any]]:
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        gates: list[nn.Parameter] = []
        for name, param in self.trainable():
            if name.startswith("gates."):
                gates.append(param)
            else:
                (no_decay if _no_decay(name, param) else decay).append(param)
        groups: list[dict[str, Any]] = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        groups.append(
            {"params": gates, "weight_decay": 0.0, "lr": self.config.lr * self.config.gate_lr_scale}
        )
        return [g for g in groups if g["params"]]

    def _lr_factor(self, step: int) -> float:
        warmup, total, floor = self.config.warmup_steps, self.total_steps, self.config.min_lr_ratio
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def tau(self, step: int | None = None) -> float:
        """Gate temperature at ``step`` (default: the current one)."""
        step = self.step if step is None else step
        c = self.config
        fraction = min(step, self.total_steps - 1) / max(1, self.total_steps - 1)
        decay: float = (c.tau_end / c.tau_start) ** fraction  # a positive base: a float, not complex
        return c.tau_start * decay

    # ------------------------------------------------------------------ one step
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.config.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AMP_DTYPES[self.config.amp_dtype])

    def forward(self, task: str, x: Tensor, path: TrainPath, tau: float | None = None) -> Tensor:
        """One path's float32 outputs for ``task`` (gated layers draw fresh Gumbel noise)."""
        gates = None
        if path.gated:
            assert self.gates is not None
            gates = self.gates.sample(task, x.shape[0], self.tau() if tau is None else tau, self.generator)
            gates = gates.to(self.device)
        with self._autocast():
            out = gated_forward(self.net, x, task, path, gates)
        return out.float()

    def _check_labels(self, task: str, out: Tensor, y: Tensor) -> None:
        if task in self._checked:
            return
        self._checked.add(task)
        if task in self.net.heads and (int(y.min()) < 0 or int(y.max()) >= out.shape[1]):
            raise ValueError(
                f"training labels of task {task!r} must be class indices 0..{out.shape[1] - 1} (its head's "
                f"width), got {int(y.min())}..{int(y.max())}"
            )

    def accumulate(self, task: str, x: Tensor, y: Tensor, tau: float | None = None) -> float:
        """Forward and backward of one batch of ``task`` under the sandwich rule; gradients add up
        (no optimizer step). Returns the largest path's task loss."""
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        has_head = task in self.net.heads
        paths = self.sampler.sandwich(self.rng, self.config.random_paths)
        w, temperature = self.config.distill_weight, self.config.supcon_temperature
        teacher: Tensor | None = None
        largest = 0.0
        for path in paths:
            out = self.forward(task, x, path, tau)
            loss = task_loss(out, y, has_head, temperature)
            if teacher is None:
                self._check_labels(task, out, y)
                teacher, largest = out.detach(), float(loss.detach())
            elif w > 0:
                loss = (1.0 - w) * loss + w * distill_loss(out, teacher, has_head)
            self.scaler.scale(loss / len(paths)).backward()
        return largest

    def _optimizer_step(self) -> None:
        if self.config.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1

    def _next(self, iters: dict[str, Iterator[Batch]], task: str) -> Batch:
        try:
            return next(iters[task])
        except StopIteration:
            iters[task] = self.data[task].batches(self.generator)
            try:
                return next(iters[task])
            except StopIteration:
                raise ValueError(f"training data of task {task!r} yielded no batch") from None

    def _run_epoch(self) -> dict[str, float]:
        iters = {task: self.data[task].batches(self.generator) for task in self.tasks}
        sums = dict.fromkeys(self.tasks, 0.0)
        bar = tqdm(
            range(self.steps_per_epoch),
            desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
            unit="step",
            file=sys.stderr,
            disable=not self.progress,
            dynamic_ncols=True,
            leave=False,
        )
        for i in bar:
            tau = self.tau()
            self.optimizer.zero_grad(set_to_none=True)
            for task in self.tasks:
                x, y = self._next(iters, task)
                sums[task] += self.accumulate(task, x, y, tau)
            self._optimizer_step()
            bar.set_postfix({t: f"{s / (i + 1):.3f}" for t, s in sums.items()} | {"tau": f"{tau:.2f}"})
        bar.close()
        return {task: s / self.steps_per_epoch for task, s in sums.items()}

    # ------------------------------------------------------------------ the run
    def fit(self, max_epochs: int | None = None) -> TrainResult:
        """Train up to ``config.epochs`` (at most ``max_epochs`` more in this call, for a
        time-boxed job); ``last.pt`` after each epoch, the final files when the run is done."""
        stop = self.config.epochs if max_epochs is None else min(self.config.epochs, self.epoch + max_epochs)
        files: dict[str, Path] = {}
        self.net.train()
        try:
            while self.epoch < stop:
                losses = self._run_epoch()
                self.epoch += 1
                self.history.append(losses)
                if self.checkpoint_dir is not None:
                    files["last"] = self.save_checkpoint()
                lr = self.optimizer.param_groups[0]["lr"]
                parts = " ".join(f"{t}={v:.4f}" for t, v in losses.items())
                self.log(
                    f"epoch {self.epoch}/{self.config.epochs}: loss {parts} tau={self.tau():.3f} lr={lr:.2e}"
                )
        finally:
            self.net.eval()
        if self.epoch >= self.config.epochs and self.checkpoint_dir is not None:
            files.update(self._write_final())
        return TrainResult(self.net, self.learned_gates(), list(self.history), self.epoch, self.step, files)

    def learned_gates(self) -> LearnedGates | None:
        """The gates now (multi, new-task), the reference gates of a chip stage, else ``None``."""
        if self.gates is None:
            return self.reference_gates
        return self.gates.report(self.space.name, self.tau(max(0, self.step - 1)))

    def _write_final(self) -> dict[str, Path]:
        assert self.checkpoint_dir is not None
        out = {"supernet": self.checkpoint_dir / SUPERNET}
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        _save_atomic(state, out["supernet"])
        gates = self.learned_gates()
        if gates is not None:
            out["gates"] = gates.save(self.checkpoint_dir / GATES)
            # The space with every trained task's ffn_path fixed as its gates chose: registered
            # (`gpnas spaces add`), its fronts and deployment queries search only those paths.
            out["gated space"] = self.checkpoint_dir / GATED_SPACE
            out["gated space"].write_text(gated_definition(self.space, gates).to_yaml())
        return out

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`resume` needs (loadable with ``torch.load(weights_only=True)``)."""
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return {
            "format": CHECKPOINT_FORMAT,
            "space": _space_fingerprint(self.space),
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "supernet": self.net.state_dict(),
            "gates": self.gates.state_dict() if self.gates is not None else None,
            "ffn_paths": list(self.sampler.ffn),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {
                "numpy": self.rng.bit_generator.state,
                "torch": self.generator.get_state(),
                "torch_global": torch.get_rng_state(),
                "cuda": cuda,
            },
        }

    def save_checkpoint(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write :meth:`state_dict` to ``path`` (default ``checkpoint_dir/last.pt``), atomically."""
        if path is None:
            if self.checkpoint_dir is None:
                raise ValueError("no checkpoint_dir and no path given")
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            path = self.checkpoint_dir / LAST
        target = Path(path)
        _save_atomic(self.state_dict(), target)
        return target

    def _check_resumable(self, state: Mapping[str, Any], where: str) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{where} is not a {CHECKPOINT_FORMAT} training checkpoint")
        if state["space"] != _space_fingerprint(self.space):
            raise ValueError(f"{where} was trained on another space (or geometry) than {self.space.name!r}")
        saved, now = state["config"], self.config.to_dict()
        changed = [k for k in now if k not in _RESUMABLE_CHANGES and saved.get(k) != now[k]]
        if changed:
            diff = ", ".join(f"{k}: {saved.get(k)!r} in the checkpoint, {now[k]!r} now" for k in changed)
            raise ValueError(f"{where}: resume with the options of the interrupted run ({diff})")

    def resume(self, path: str | os.PathLike[str] | None = None) -> None:
        """Continue from a :meth:`save_checkpoint` file (default ``checkpoint_dir/last.pt``).

        Raises:
            ValueError: The file is missing, is no training checkpoint, or was written for another
                space or with other options (``device`` may differ).
        """
        if path is None:
            if self.checkpoint_dir is None:
                raise ValueError("no checkpoint_dir and no path given")
            path = self.checkpoint_dir / LAST
        where = f"checkpoint {str(path)!r}"
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ValueError(f"{where} does not exist (nothing to resume)") from None
        if not isinstance(state, dict):
            raise ValueError(f"{where} is not a {CHECKPOINT_FORMAT} training checkpoint")
        self._check_resumable(state, where)
        self.net.load_state_dict(state["supernet"])
        if self.gates is not None:
            self.gates.load_state_dict(state["gates"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        self.rng.bit_generator.state = rng["numpy"]
        self.generator.set_state(rng["torch"])
        torch.set_rng_state(rng["torch_global"])
        if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = [dict(h) for h in state["history"]]


# ---------------------------------------------------------------------- starting points
def read_training_state(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """``(supernet state dict, gates state dict or None)`` of ``supernet.pt`` or ``last.pt``.

    Raises:
        ValueError: The file is missing or holds neither.
    """
    where = f"checkpoint {str(path)!r}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{where} does not exist") from None
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        return state["supernet"], state.get("gates")
    if isinstance(state, dict) and all(isinstance(v, Tensor) for v in state.values()):
        return state, None
    raise ValueError(f"{where} is neither a supernet state dict nor a {CHECKPOINT_FORMAT} checkpoint")


@torch.no_grad()
def load_for_new_task(net: UFOSupernet, state: Mapping[str, Tensor], task: str) -> list[str]:
    """Load a supernet trained without ``task`` into ``net`` (whose space has it).

    The new task's expert of every layer starts as a copy of that layer's shared FFN (UFO loads
    one pretrained FFN into both), its stem (if stems are per task) as a copy of the first other
    task's, its head as ``net`` initialised it.

    Returns:
        The parameter names that were not in ``state`` (all owned by ``task``).

    Raises:
        ValueError: ``state`` lacks shared parameters or another task's, or holds unknown ones.
    """
    result = net.load_state_dict(dict(state), strict=False)
    foreign = [k for k in result.missing_keys if task_owner(k) != task]
    if foreign or result.unexpected_keys:
        raise ValueError(
            f"checkpoint does not fit {net.space.name!r} extended by task {task!r}: missing "
            f"{foreign[:5]}, unexpected {list(result.unexpected_keys)[:5]}"
        )
    missing = set(result.missing_keys)
    for i, block in enumerate(cast("Sequence[Any]", net.blocks)):
        if net.multipath and f"blocks.{i}.experts.{task}.fc1.weight" in missing:
            cast(_SuperFFN, block.experts[task]).load_state_dict(block.ffn.state_dict())
    if net.space.per_task_stem and any(k.startswith(f"stems.{task}.") for k in missing):
        donor = next(t for t in net.space.tasks if t != task)
        stems = net.stems
        stems[task].load_state_dict(stems[donor].state_dict())
    return sorted(missing)


def _gates_of_state(state: Mapping[str, Tensor], depth: int) -> TaskGates:
    tasks = [key.removeprefix("logits.") for key in state]
    gates = TaskGates(tasks, depth)
    gates.load_state_dict(dict(state))
    return gates


def _load_init(net: UFOSupernet, init: str | os.PathLike[str], config: TrainConfig) -> TaskGates | None:
    """Load ``init`` into ``net`` (a new-task stage tolerates the new task's parts missing);
    return the gates it holds, if it is a training checkpoint with gates."""
    state, gates_state = read_training_state(init)
    if config.stage == "new-task":
        load_for_new_task(net, state, cast(str, config.task))
    else:
        try:
            net.load_state_dict(state)
        except RuntimeError as error:
            detail = " ".join(str(error).split())
            raise ValueError(
                f"checkpoint {str(init)!r} does not fit the {net.space.name} supernet: {detail}"
            ) from None
    return _gates_of_state(gates_state, net.space.max_depth) if gates_state else None


def train_supernet(
    space: UFOSpace | str,
    data: Mapping[str, Any],
    config: TrainConfig | None = None,
    *,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    init: str | os.PathLike[str] | None = None,
    gates: LearnedGates | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    net: UFOSupernet | None = None,
) -> TrainResult:
    """Train a supernet of ``space`` on ``data`` (what ``gpnas train`` runs).

    Args:
        space: A UFO space or preset name.
        data: Trained task -> its training batches (see the module docstring).
        config: Hyper-parameters and the stage.
        checkpoint_dir: Where ``last.pt`` (every epoch), ``supernet.pt`` and ``gates.json`` (at
            the end) are written. A ``last.pt`` already there is continued with ``resume`` and
            refused without.
        resume: Continue the run of ``checkpoint_dir/last.pt``.
        init: Start from these weights: a ``supernet.pt`` or a ``last.pt`` (whose gates are then
            used too). Needed by ``new-task`` (the supernet trained without the task) and, in
            practice, by ``chip``.
        gates: Learned gates (``gates.json``): a chip stage's ``ffn_path`` per layer, or the
            starting gates of the other stages (default: those of ``init``, else fresh ones).
        progress: Progress bar on stderr (default: when stderr is a terminal).
        log: Called with one line per epoch.
        net: The supernet to train (default: ``build_supernet(space, seed=config.seed)``).

    Raises:
        ValueError: Bad config, data, checkpoint or gates (naming which).
    """
    config = config or TrainConfig()
    if net is None:
        net = build_supernet(ufo_space(space), seed=config.seed)
    last = Path(checkpoint_dir) / LAST if checkpoint_dir is not None else None
    if last is not None and last.exists() and not resume:
        raise ValueError(
            f"{str(last)!r} exists: resume it (--resume), or train into another checkpoint directory"
        )
    init_gates = _load_init(net, init, config) if init is not None else None
    task_gates, ffn_paths, reference = None, None, None
    if net.multipath and config.stage == "chip":
        if gates is None and init_gates is not None:
            gates = init_gates.report(net.space.name)
        if gates is None:
            raise ValueError(
                f"the chip stage of {net.space.name!r} fixes ffn_path to the learned gates: give the "
                "gates.json of the multi-task stage"
            )
        gates.check_space(net.space, cast(str, config.task))
        ffn_paths, reference = gates.ffn_paths(cast(str, config.task)), gates
    elif net.multipath:
        task_gates = gates_from_report(gates) if gates is not None else init_gates
    trainer = SupernetTrainer(
        net,
        data,
        config,
        gates=task_gates,
        ffn_paths=ffn_paths,
        checkpoint_dir=checkpoint_dir,
        progress=progress,
        log=log,
        reference_gates=reference,
    )
    if resume:
        trainer.resume()
    return trainer.fit()
