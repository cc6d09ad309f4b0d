"""Freshness benchmark: seconds from an acknowledged measurement to an updated GET /v1/pareto.

Issue 14 part 3's target: median <= 10 s on this machine. For each mode the script

1. starts ``gpnas serve`` (uvicorn) on a fresh database: embedded SQLite (fits and fronts run in
   the API process), and with ``--broker`` also PostgreSQL with one ``gpnas worker`` on a queue of
   its own (the API only schedules; the worker fits and searches);
2. loads real ufo-track2 task scores (``--task``'s ranks from ../shared/data/ufo_track2/train.json
   as scores, higher is better; ``--initial`` of the 400 subnets, a seeded draw) and the latencies
   of all 400 subnets on one device from an **analytic proxy** (1 ms + 2 ms per GMAC + 0.05 ms per
   million parameters, as in benchmarks/search.py: no real device), then waits for the first front;
3. ``--trials`` times: posts ONE new score of a held-back subnet, starts the clock at the POST's
   200, polls GET /v1/pareto every ``--poll`` s until its ``version`` changes, and reads from the
   database whether the new score predictor was a posterior update (``update_of`` set) or a full
   fit, and when each step happened (work items: dispatched / finished);
4. the worst case: tops the scores up (one batch) to exactly the data a posterior update still
   covers (``full_refit_growth`` over the last full fit), then posts one more, which makes the
   next fit a full one (new hyperparameters, and a full-length front search).

    python -m benchmarks.freshness --broker redis://127.0.0.1:6379/14

Writes a Markdown report (``--out``, default benchmarks/results/freshness.md) and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from benchmarks import _report
from search_service.client import ClientError, Conflict, GpnasClient, NotFound
from search_service.core import Settings, make_engine, upgrade
from search_service.models import Front, PredictorVersion, WorkItem
from search_service.schemas import DeviceCreate, MeasurementBatch
from search_service.testing import free_port
from supernet import get_space

ROOT = Path(__file__).resolve().parents[1]

SPACE, DEVICE = "ufo-track2", "proxy-latency"
DATA = ROOT.parent / "shared" / "data" / "ufo_track2" / "train.json"
TARGET_S = 10.0

# The CLI, with the gpnas loggers at INFO and timestamps (uvicorn configures only its own).
_LOGGED_CLI = (
    "import logging, sys; "
    "h = logging.StreamHandler(sys.stderr); "
    "h.setFormatter(logging.Formatter("
    "'%(asctime)s.%(msecs)03d %(process)d %(name)s %(message)s', '%H:%M:%S')); "
    "g = logging.getLogger('gpnas'); g.setLevel(logging.INFO); g.addHandler(h); g.propagate = False; "
    "from search_service.cli import main; main()"
)


def proxy_latency_ms(space, sub) -> float:
    """The analytic latency proxy of benchmarks/search.py (no device is timed)."""
    return 1.0 + 2.0 * space.flops(sub) / 1e9 + 0.05 * space.param_count(sub) / 1e6


def load_rows(task: str, seed: int) -> list[tuple[str, float]]:
    """(arch, score) of the 400 subnets in a seeded random order; the score is the task's rank."""
    data = json.loads(DATA.read_text())
    rows = [(entry["arch"], float(entry[f"{task}_rank"])) for entry in data.values()]
    random.Random(seed).shuffle(rows)
    return rows


def score_item(arch: str, value: float, task: str) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "space": SPACE,
        "arch": arch,
        "task": task,
        "metric": "score",
        "value": value,
    }


def utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


@dataclass
class Trial:
    label: str
    seconds: float | None
    fit: str = "?"  # "update" or "full"
    n_train: int | None = None
    version: int | None = None
    # Seconds after the acknowledged POST: fit dispatched, fit stored, front dispatched, front stored.
    steps: dict[str, float] = field(default_factory=dict)


@dataclass
class ModeResult:
    name: str
    database: str
    first_front_s: float
    trials: list[Trial]
    worst: list[Trial]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    log_path: str


class Mode:
    """One server (and optionally one worker) on a fresh database."""

    def __init__(
        self, name: str, url: str, tmp: Path, broker: str | None, auth: bool, task: str, torch_threads: int
    ):
        self.name, self.url, self.tmp, self.broker, self.task = name, url, tmp, broker, task
        upgrade(url)
        self.engine = make_engine(url)
        self.port = free_port()
        self.env = {
            **os.environ,
            "GPNAS_DATABASE_URL": url,
            "GPNAS_AUTH": "on" if auth else "off",
        }
        self.env.pop("GPNAS_BROKER_URL", None)
        if torch_threads:
            # torch reads it at import: the API process's fits and fronts (embedded mode).
            self.env["OMP_NUM_THREADS"] = str(torch_threads)
        self.queue = ""
        if broker:
            self.queue = f"gpnas-freshness-{uuid.uuid4().hex[:12]}"
            self.env |= {"GPNAS_BROKER_URL": broker, "GPNAS_TASK_QUEUE": self.queue}
        self.token = None
        if auth:
            out = subprocess.run(
                [sys.executable, "-c", "from search_service.cli import main; main()", "token", "create"],
                cwd=ROOT,
                env=self.env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            self.token = out.split()[-1]
        self.log_path = tmp / f"{name}.log"
        self._log = self.log_path.open("w")
        self.procs: list[subprocess.Popen] = []
        if broker:
            self.procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        _LOGGED_CLI,
                        "worker",
                        "--queue",
                        self.queue,
                        "--log-level",
                        "warning",
                        *(["--torch-threads", str(torch_threads)] if torch_threads else []),
                    ],
                    cwd=ROOT,
                    env=self.env,
                    stdout=self._log,
                    stderr=subprocess.STDOUT,
                )
            )
        self.procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _LOGGED_CLI,
                    "serve",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
        )
        # No retries: an error answer should show, not be hidden by a retry.
        self.api = GpnasClient(f"http://127.0.0.1:{self.port}", self.token, timeout=120, max_retries=0)
        for _ in range(600):
            try:
                self.api.health()
                break
            except ClientError:
                if any(p.poll() is not None for p in self.procs):
                    raise RuntimeError(f"{name}: a process exited; see {self.log_path}") from None
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{name}: the server did not answer within 60 s; see {self.log_path}")

    def close(self) -> None:
        self.api.close()
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._log.close()
        self.engine.dispose()
        if self.broker and self.broker.startswith("redis"):
            # Kombu's bookkeeping of this run's queue: nothing else will consume it.
            import redis

            client = redis.Redis.from_url(self.broker)
            queue = self.queue
            client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
            client.close()

    # ------------------------------------------------------------------ observing
    def version(self) -> int | None:
        """The front version GET /v1/pareto answers, or None before the first front."""
        try:
            return self.api.pareto(SPACE, self.task, DEVICE, limit=1).version
        except (Conflict, NotFound):
            return None

    def wait_version(self, old: int | None, timeout_s: float, poll_s: float) -> tuple[int, float] | None:
        """Poll until the version differs from ``old``; (version, perf_counter when seen)."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            v = self.version()
            if v is not None and v != old:
                return v, time.perf_counter()
            time.sleep(poll_s)
        return None

    def post(self, items: list[dict]) -> tuple[float, float]:
        """POST a batch; (perf_counter, wall clock) at its 200."""
        answer = self.api.post_measurements(MeasurementBatch.model_validate({"measurements": items}))
        acked, wall = time.perf_counter(), time.time()
        assert answer.inserted == len(items), answer
        return acked, wall

    def explain(self, trial: Trial, version: int, acked_wall: float) -> None:
        """Fill ``trial`` from the database: the front's score predictor and the work items' times."""
        with Session(self.engine) as session:
            front = session.scalar(
                select(Front).where(
                    Front.space == SPACE,
                    Front.task == self.task,
                    Front.device == DEVICE,
                    Front.version == version,
                )
            )
            assert front is not None
            score = session.get(PredictorVersion, front.score_predictor_id)
            assert score is not None
            trial.fit = "update" if score.update_of is not None else "full"
            trial.n_train = score.n_train
            trial.version = version
            t0 = utc(acked_wall)

            def after(when: dt.datetime | None) -> float | None:
                return None if when is None else round((when - t0).total_seconds(), 2)

            fit_item = session.scalar(
                select(WorkItem)
                .where(
                    WorkItem.kind == "fit",
                    WorkItem.result_id == score.id,
                    WorkItem.key.like(f"fit/{SPACE}/score/{self.task}/%"),
                )
                .order_by(WorkItem.id.desc())
            )
            front_item = session.scalar(
                select(WorkItem).where(
                    WorkItem.key
                    == f"front/{SPACE}/{self.task}/{DEVICE}/{score.id}/{front.latency_predictor_id}"
                )
            )
            steps = {
                "fit dispatched": after(fit_item.dispatched_at) if fit_item else None,
                "fit stored": after(score.created_at),
                "front dispatched": after(front_item.dispatched_at) if front_item else None,
                "front stored": after(front.created_at),
            }
            trial.steps = {k: v for k, v in steps.items() if v is not None}

    def full_fit_n(self) -> int:
        """n_train of the newest full fit of the task's scores."""
        with Session(self.engine) as session:
            row = session.scalar(
                select(PredictorVersion)
                .where(
                    PredictorVersion.space == SPACE,
                    PredictorVersion.metric == "score",
                    PredictorVersion.target == self.task,
                    PredictorVersion.update_of.is_(None),
                )
                .order_by(PredictorVersion.id.desc())
            )
            assert row is not None
            return row.n_train


def one_trial(mode: Mode, label: str, items: list[dict], timeout_s: float, poll_s: float) -> Trial:
    old = mode.version()
    acked, wall = mode.post(items)
    seen = mode.wait_version(old, timeout_s, poll_s)
    if seen is None:
        return Trial(label, None)
    version, at = seen
    trial = Trial(label, round(at - acked, 2))
    mode.explain(trial, version, wall)
    return trial


def run_mode(name: str, url: str, tmp: Path, broker: str | None, args, rows) -> ModeResult:
    load_before = os.getloadavg()
    settings = Settings()
    mode = Mode(name, url, tmp, broker, args.auth, args.task, args.torch_threads)
    try:
        space = get_space(SPACE)
        mode.api.create_device(DeviceCreate(name=DEVICE, profiler="torch-cpu"))
        latencies = [
            {
                "id": str(uuid.uuid4()),
                "space": SPACE,
                "arch": arch,
                "device": DEVICE,
                "metric": "latency_ms",
                "value": round(proxy_latency_ms(space, space.parse(arch)), 4),
            }
            for arch, _ in rows
        ]
        initial, held = rows[: args.initial], rows[args.initial :]
        started = time.perf_counter()
        mode.post(latencies)
        mode.post([score_item(a, v, args.task) for a, v in initial])
        first = mode.wait_version(None, args.timeout, args.poll)
        if first is None:
            raise RuntimeError(f"{name}: no first front within {args.timeout:g} s; see {mode.log_path}")
        first_front_s = round(first[1] - started, 1)
        print(f"[{name}] first front (version {first[0]}) {first_front_s} s after loading", flush=True)
        # The 409s of the wait above each woke the scheduler (debounced): let those passes run out
        # before the first trial, so that it meets an idle scheduler like the others.
        time.sleep(2 * settings.refit_delay_s + 1.0)

        trials = []
        for k in range(args.trials):
            # Let the scheduler go idle first: a notify left over from the previous trial would
            # otherwise start the next pass early (less than refit_delay_s after this POST).
            time.sleep(args.gap)
            arch, value = held.pop(0)
            trial = one_trial(mode, f"{k + 1}", [score_item(arch, value, args.task)], args.timeout, args.poll)
            trials.append(trial)
            print(
                f"[{name}] trial {k + 1}: {trial.seconds} s ({trial.fit}, n={trial.n_train}) {trial.steps}",
                flush=True,
            )

        worst: list[Trial] = []
        if not args.no_full:
            growth = settings.full_refit_growth
            limit = math.floor(mode.full_fit_n() * (1.0 + growth))  # the most data an update covers
            n_now = args.initial + args.trials
            top_up = limit - n_now
            if 0 <= top_up < len(held):
                if top_up:
                    time.sleep(args.gap)
                    batch = [score_item(a, v, args.task) for a, v in held[:top_up]]
                    held = held[top_up:]
                    trial = one_trial(
                        mode,
                        f"top-up: {top_up} scores in one batch (to {limit})",
                        batch,
                        args.timeout,
                        args.poll,
                    )
                    worst.append(trial)
                    print(
                        f"[{name}] {trial.label}: {trial.seconds} s ({trial.fit}) {trial.steps}", flush=True
                    )
                time.sleep(args.gap)
                arch, value = held.pop(0)
                trial = one_trial(
                    mode,
                    f"one score past full_refit_growth ({limit + 1} > {limit})",
                    [score_item(arch, value, args.task)],
                    args.timeout,
                    args.poll,
                )
                worst.append(trial)
                print(f"[{name}] {trial.label}: {trial.seconds} s ({trial.fit}) {trial.steps}", flush=True)
            else:
                print(f"[{name}] not enough held-back subnets for the full-fit case", flush=True)
    finally:
        mode.close()
    return ModeResult(
        name,
        url.split(":", 1)[0],
        first_front_s,
        trials,
        worst,
        load_before,
        os.getloadavg(),
        str(mode.log_path),
    )


def _fmt(x: float | None) -> str:
    return "timeout" if x is None else f"{x:.2f}"


def _load(t: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in t)


STEP_NAMES = ("fit dispatched", "fit stored", "front dispatched", "front stored")


STAGES = (
    ("until the scheduling pass", None, "fit dispatched"),
    ("fit (posterior update or full fit)", "fit dispatched", "fit stored"),
    ("hand-off to the front", "fit stored", "front dispatched"),
    ("front search and store", "front dispatched", "front stored"),
    ("until GET /v1/pareto shows it", "front stored", None),
)


def stages(t: Trial) -> dict[str, float]:
    """Seconds per stage of one trial (where its steps are known)."""
    out = {}
    for name, start, end in STAGES:
        a = 0.0 if start is None else t.steps.get(start)
        b = t.seconds if end is None else t.steps.get(end)
        if a is not None and b is not None:
            out[name] = b - a
    return out


def stage_table(trials: list[Trial]) -> list[str]:
    lines = ["| stage | median (s) | min | max |", "|---|---:|---:|---:|"]
    per = [stages(t) for t in trials if t.seconds is not None]
    for name, _, _ in STAGES:
        xs = [p[name] for p in per if name in p]
        if xs:
            lines.append(f"| {name} | {statistics.median(xs):.2f} | {min(xs):.2f} | {max(xs):.2f} |")
    return lines


def trial_row(t: Trial) -> str:
    steps = " | ".join(_fmt(t.steps.get(s)) if s in t.steps else "-" for s in STEP_NAMES)
    return f"| {t.label} | {_fmt(t.seconds)} | {t.fit} | {t.n_train} | {steps} |"


def _revision() -> str:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (
        " plus uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    )


def report(results: list[ModeResult], args, command: str, settings: Settings, started: float) -> str:
    lines = [
        "# Freshness: acknowledged measurement -> updated GET /v1/pareto",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, nproc {os.cpu_count()}, "
        f"Python {platform.python_version()}; run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{time.perf_counter() - started:.0f} s in all; code at {_revision()}. "
        "Load averages (1/5/15 min) per mode below.",
        "",
        f"Data: ufo-track2 `{args.task}` ranks as scores (../shared/data/ufo_track2/train.json; "
        f"{args.initial} of its 400 subnets first, seeded draw {args.seed}); latencies of all 400 on "
        f"device `{DEVICE}` from an **analytic proxy** (1 ms + 2 ms per GMAC + 0.05 ms per million "
        "parameters, as in benchmarks/search.py), not from a timed device.",
        "",
        f"Settings (defaults): refit_delay_s {settings.refit_delay_s:g}, full_refit_growth "
        f"{settings.full_refit_growth:g}, full_refit_after_s {settings.full_refit_after_s:g}, "
        f"front_update_time_limit_s {settings.front_update_time_limit_s:g}, front_time_limit_s "
        f"{settings.front_time_limit_s:g}, front_cache_s {settings.front_cache_s:g}, predictors "
        f"`{settings.predictor_latency}` / `{settings.predictor_score}`; torch threads "
        f"{args.torch_threads or 'default (all cores)'}; "
        f"auth {'on (token)' if args.auth else 'off'}; "
        f"polling every {args.poll:g} s.",
        "",
        "Each trial posts ONE new score of a held-back subnet; seconds run from the POST's 200 to the "
        "first GET /v1/pareto answering a new `version`. The step columns are seconds after that 200 "
        "from the database (work items and stored rows): when the fit was dispatched (the scheduling "
        "pass), when its predictor version was stored, when the front was dispatched and stored.",
        f"Before each trial the script waits {args.gap:g} s (> refit_delay_s) so that the POST meets an idle "
        "scheduler: posted right after the previous front, it would land inside the debounce window "
        "that the previous POST opened, and its pass would start less than refit_delay_s after it.",
        "",
    ]
    summary = [
        "| mode | trials | update / full | median (s) | min (s) | max (s) | target median <= 10 s | "
        "full-fit case (s) | first front (s) |",
        "|---|---:|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        secs = [t.seconds for t in r.trials if t.seconds is not None]
        n_upd = sum(t.fit == "update" for t in r.trials)
        n_full = sum(t.fit == "full" for t in r.trials)
        timeouts = len(r.trials) - len(secs)
        med = statistics.median(secs) if secs and not timeouts else None
        met = (
            "no (timeouts)"
            if timeouts
            else ("**met**" if med is not None and med <= TARGET_S else "**not met**")
        )
        full = next((t for t in r.worst if t.fit == "full"), r.worst[-1] if r.worst else None)
        summary.append(
            f"| {r.name} | {len(r.trials)} | {n_upd} / {n_full} | {_fmt(med)} | "
            f"{_fmt(min(secs) if secs else None)} | {_fmt(max(secs) if secs else None)} | {met} | "
            f"{_fmt(full.seconds) if full else '-'} | {r.first_front_s:.1f} |"
        )
    lines += ["## Summary", "", *summary, ""]
    for r in results:
        lines += [
            f"## {r.name}",
            "",
            f"Database {r.database}; load average before {_load(r.load_before)}, "
            f"after {_load(r.load_after)}; "
            f"first front {r.first_front_s:.1f} s after loading (two full fits and a full-length search).",
            "",
            "| trial | seconds | fit | score subnets | fit dispatched | fit stored | front dispatched "
            "| front stored |",
            "|---|---:|---|---:|---:|---:|---:|---:|",
            *(trial_row(t) for t in r.trials),
        ]
        secs = [t.seconds for t in r.trials if t.seconds is not None]
        if secs:
            lines.append(
                f"| **median / min / max** | **{statistics.median(secs):.2f}** / {min(secs):.2f} / "
                f"{max(secs):.2f} | | | | | | |"
            )
        lines += [
            "",
            "Where the time goes (stages between the steps above, over the single-score trials):",
            "",
            *stage_table(r.trials),
        ]
        if r.worst:
            lines += [
                "",
                "Worst case: data grown past `full_refit_growth` (a full fit):",
                "",
                "| case | seconds | fit | score subnets | fit dispatched | fit stored | front dispatched "
                "| front stored |",
                "|---|---:|---|---:|---:|---:|---:|---:|",
                *(trial_row(t) for t in r.worst),
            ]
        lines.append("")
    return "\n".join(lines) + "\n"


def create_pg_database(base: str) -> tuple[str, str]:
    import psycopg

    name = f"gpnas_fresh_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}", name


def drop_pg_database(base: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="veri", help="ufo-track2 task whose ranks are the scores")
    parser.add_argument("--initial", type=int, default=300, help="scored subnets before the trials")
    parser.add_argument("--trials", type=int, default=7, help="single-measurement trials per mode")
    parser.add_argument("--seed", type=int, default=0, help="order of the 400 subnets")
    parser.add_argument("--poll", type=float, default=0.1, help="GET /v1/pareto interval, s")
    parser.add_argument(
        "--gap",
        type=float,
        default=3.0,
        help="idle seconds before each trial (longer than refit_delay_s: see the report)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="give a trial up after this long, s")
    parser.add_argument(
        "--broker", help="also run PostgreSQL + one `gpnas worker` on this broker (redis://...)"
    )
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432",
        help="server for the broker mode's fresh database",
    )
    parser.add_argument("--no-sqlite", action="store_true", help="skip the embedded SQLite mode")
    parser.add_argument("--no-full", action="store_true", help="skip the full-fit (worst) case")
    parser.add_argument("--auth", action="store_true", help="auth on, with a token (default GPNAS_AUTH=off)")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch threads of whatever fits (OMP_NUM_THREADS for the API process, `gpnas worker "
        "--torch-threads`); 0: the service's defaults (all cores)",
    )
    parser.add_argument("--append", action="store_true", help="append the report to --out")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "freshness.md")
    args = parser.parse_args()
    if args.initial + args.trials + 1 > 400:
        parser.error("--initial + --trials must leave held-back subnets")

    started = time.perf_counter()
    command = _report.command("freshness")
    print(f"nproc {os.cpu_count()}, load average {_load(os.getloadavg())}", flush=True)
    rows = load_rows(args.task, args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="gpnas-freshness-"))
    results = []
    if not args.no_sqlite:
        results.append(
            run_mode("embedded (SQLite, in process)", f"sqlite:///{tmp}/gpnas.db", tmp, None, args, rows)
        )
    if args.broker:
        url, name = create_pg_database(args.postgres)
        try:
            results.append(run_mode("broker + 1 worker (PostgreSQL)", url, tmp, args.broker, args, rows))
        finally:
            drop_pg_database(args.postgres, name)
    text = report(results, args, command, Settings(), started)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.append and args.out.exists():
        text = args.out.read_text() + "\n" + text.replace("# Freshness:", "# Freshness (another run):", 1)
    args.out.write_text(text)
    print(f"written to {args.out}; server logs under {tmp}")


if __name__ == "__main__":
    main()
