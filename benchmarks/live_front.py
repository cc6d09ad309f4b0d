"""Does the live front tell the truth? Checks a front served after `make demo` against new timings.

1. Shape: the predicted latency ratio between the front's slowest and fastest points, against the
   ratio measured afterwards for those two subnets (target: within 10%).
2. Budget compliance: for ``--budgets`` budgets spread over the range the front can meet at the
   confidence (the web page's slider range), the subnet ``/v1/query`` returns is timed afterwards;
   target: >= 9 of 10 meet their budget at confidence 0.9.

Every subnet is timed in one interleaved batch with the device's own registered settings (the
protocol the front was fitted on). Run it on the database `make demo` left behind:

    python -m benchmarks.live_front --out benchmarks/results/live_front.md
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import numpy as np
from scipy.special import ndtri

from profilers import create_profiler
from search_service import repositories as repo
from search_service.core import make_engine, make_sessionmaker
from search_service.search import FrontCache, budget_query
from supernet import get_space


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("GPNAS_DATABASE_URL", "sqlite:///gpnas.db"))
    parser.add_argument("--space", default="ufo-track2")
    parser.add_argument("--task", default="cplfw", help="the web page's default task")
    parser.add_argument("--device", default="local-cpu")
    parser.add_argument("--budgets", type=int, default=10)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/live_front.md"))
    args = parser.parse_args(argv)
    command = "python -m benchmarks.live_front " + shlex.join(sys.argv[1:] if argv is None else argv)

    space = get_space(args.space)
    engine = make_engine(args.database_url)
    with make_sessionmaker(engine)() as session:
        loaded = FrontCache(ttl_s=0.0).get(repo.StoredFronts(session), args.space, args.task, args.device)
        if loaded is None:
            raise SystemExit(
                f"no front for {args.task} x {args.device} in {args.database_url}: run `make demo`"
            )
        device = repo.get_device(session, args.device)
        profiler_name, settings = device.profiler, dict(device.settings)
    engine.dispose()
    points = loaded.result.points
    fastest, slowest = min(points, key=lambda p: p.latency_ms), max(points, key=lambda p: p.latency_ms)
    z = float(ndtri(args.confidence))
    reachable = [p.latency_ms + z * p.latency_std for p in points]
    budgets = np.linspace(min(reachable), max(reachable), args.budgets)
    choices = [budget_query(loaded.result.candidates, float(b), args.confidence).point for b in budgets]

    archs = list(dict.fromkeys([fastest.arch, slowest.arch, *(c.arch for c in choices)]))
    profiler = create_profiler(profiler_name, space, **settings)
    try:
        outcomes = profiler.measure_many(archs)
    finally:
        profiler.close()
    failed = [a for a, o in zip(archs, outcomes, strict=True) if isinstance(o, Exception)]
    if failed:
        raise SystemExit(f"could not time {failed}")
    measured = {a: o.value for a, o in zip(archs, outcomes, strict=True)}  # type: ignore[union-attr]
    drift = outcomes[0].reference_spread  # type: ignore[union-attr]

    predicted_ratio = slowest.latency_ms / fastest.latency_ms
    measured_ratio = measured[slowest.arch] / measured[fastest.arch]
    error = predicted_ratio / measured_ratio - 1
    met = [measured[c.arch] <= b for c, b in zip(choices, budgets, strict=True)]
    lines = [
        f"# Live front check: {args.space} {args.task} x {args.device} (front v{loaded.version})",
        "",
        f"Command: `{command}`",
        "",
        "| front point | arch | predicted ms | measured ms |",
        "|---|---|---:|---:|",
        f"| fastest | `{fastest.arch}` | {fastest.latency_ms:.1f} ± {fastest.latency_std:.1f} | "
        f"{measured[fastest.arch]:.1f} |",
        f"| slowest | `{slowest.arch}` | {slowest.latency_ms:.1f} ± {slowest.latency_std:.1f} | "
        f"{measured[slowest.arch]:.1f} |",
        "",
        f"Slowest / fastest latency ratio: predicted **{predicted_ratio:.3f}**, measured "
        f"**{measured_ratio:.3f}** ({error:+.1%}; target within ±10%).",
        "",
        f"Budget compliance at confidence {args.confidence}: **{sum(met)} of {len(met)}** returned subnets "
        "met their budget when timed afterwards (target >= 9 of 10).",
        "",
        "| budget ms | returned arch | predicted ms | P(feasible) | measured ms | met |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for b, c, ok in zip(budgets, choices, met, strict=True):
        choice = budget_query(loaded.result.candidates, float(b), args.confidence)
        lines.append(
            f"| {b:.1f} | `{c.arch}` | {c.latency_ms:.1f} ± {c.latency_std:.1f} | {choice.p_feasible:.3f} | "
            f"{measured[c.arch]:.1f} | {'yes' if ok else '**no**'} |"
        )
    lines += [
        "",
        f"Timed in one interleaved batch of {len(archs)} subnets with the device's settings "
        f"({profiler_name}, {settings}); the reference's spread across rounds was {drift:.1%}; "
        f"1-min load average {os.getloadavg()[0]:.1f} at the end.",
        "",
    ]
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
