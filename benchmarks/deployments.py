"""Multi-task deployments on real scores: what sharing one supernet saves in memory, and what a
memory cap costs in score.

Reads a database that `gpnas demo` filled (the 400 shared ufo-track2 subnets' real task scores,
and ViT-Base latencies timed on this CPU as device ``local-cpu``) and asks the service, in
process, through its own routes:

* each task's best subnet under its own budget, alone (``POST /v1/query``): three independent
  models, whose parameters add up;
* the best deployment of the three tasks under the same budgets (``POST /v1/deployments/query``),
  unconstrained and with memory caps of 100 / 75 / 50 % of the independent total.

Usage::

    gpnas demo --no-serve --database-url sqlite:////tmp/demo.db
    python -m benchmarks.deployments --database-url sqlite:////tmp/demo.db \\
        --out benchmarks/results/deployments.md
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from scipy.special import ndtri

from search_service import Settings, create_app

SPACE = "ufo-track2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--device", default="local-cpu")
    parser.add_argument("--tasks", nargs="+", default=["market1501", "veri", "sop"])
    parser.add_argument(
        "--quantiles",
        nargs="+",
        type=float,
        default=[0.3, 0.5, 0.7],
        help="Each task's budget: this quantile of its front's latencies at the confidence (one per task).",
    )
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if len(args.quantiles) != len(args.tasks):
        parser.error("give one --quantiles value per task")

    url = args.database_url
    if url.startswith("sqlite:///"):
        # Search every query afresh: work on a copy without the answers an earlier run stored.
        copy = Path(tempfile.mkdtemp()) / "gpnas.db"
        shutil.copy(url.removeprefix("sqlite:///"), copy)
        with sqlite3.connect(copy) as db:
            db.execute("DELETE FROM deployment_answers")
            db.execute("DELETE FROM work_items WHERE kind = 'deployment'")
        url = f"sqlite:///{copy}"
    app = create_app(Settings(database_url=url, refit_worker=False))
    client = TestClient(app)
    budgets = {}
    for task, q in zip(args.tasks, args.quantiles, strict=True):
        page = client.get(
            "/v1/pareto", params={"space": SPACE, "task": task, "device": args.device, "limit": 1000}
        )
        page.raise_for_status()
        # The budget a front point meets at the confidence: mean + z * std.
        z = float(ndtri(args.confidence))
        uppers = [p["latency_ms"] + z * p["latency_std"] for p in page.json()["points"]]
        budgets[task] = round(float(np.quantile(uppers, q)), 1)

    alone = {}
    for task in args.tasks:
        body = {
            "space": SPACE,
            "task": task,
            "device": args.device,
            "latency_budget_ms": budgets[task],
            "confidence": args.confidence,
        }
        answer = client.post("/v1/query", json=body)
        answer.raise_for_status()
        alone[task] = answer.json()
    independent = sum(a["params"] for a in alone.values())

    def deployment(**extra) -> tuple[dict, float]:
        body = {
            "space": SPACE,
            "device": args.device,
            "tasks": [{"task": t, "latency_budget_ms": budgets[t]} for t in args.tasks],
            "confidence": args.confidence,
        } | extra
        start = time.perf_counter()
        response = client.post("/v1/deployments/query", json=body)
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            return {"error": response.json()["detail"]}, elapsed
        return response.json(), elapsed

    rows = []
    free, seconds = deployment()
    rows.append(("no cap", free, seconds))
    # 100 / 75 / 50 % as the issue asks; below the unconstrained deployment's own share the cap binds.
    for share in (1.0, 0.75, 0.5, 0.35, 0.3, 0.25):
        answer, seconds = deployment(max_params=int(share * independent))
        rows.append((f"cap {share:.0%} of independent", answer, seconds))
    # One image for all three: each answer comes with the joint forward, so each task's budget is
    # the three budgets' sum (the time the three separate models take one after another).
    total = round(sum(budgets.values()), 1)
    shared, seconds = deployment(
        input="shared", tasks=[{"task": t, "latency_budget_ms": total} for t in args.tasks]
    )
    rows.append((f"no cap, shared input, joint budget {total} ms", shared, seconds))

    lines = [
        f"# Deployments of {', '.join(args.tasks)} on {args.device} ({SPACE})",
        "",
        "Command: `python -m benchmarks.deployments --database-url URL` on a `gpnas demo` database "
        f"(real task scores of the 400 shared subnets; {args.device}: ViT-Base latencies timed on this "
        "CPU). Scores are the track-2 ranks (0-499, higher is better), as predicted by the service's "
        f"GPs; confidence {args.confidence}; budgets: the {', '.join(f'{q:.0%}' for q in args.quantiles)} "
        "quantiles of each task's front latencies at that confidence (mean + z std).",
        "",
        "| task | budget ms | alone: arch | alone: score | alone: params |",
        "|---|---|---|---|---|",
    ]
    for task in args.tasks:
        a = alone[task]
        lines.append(
            f"| {task} | {budgets[task]} | `{a['arch']}` | {a['predicted']['score']:.1f} | {a['params']:,} |"
        )
    lines += [
        f"| **3 independent models** | | | | **{independent:,}** |",
        "",
        "| deployment | params | vs independent | "
        + " | ".join(f"{t} score (alone {alone[t]['predicted']['score']:.1f})" for t in args.tasks)
        + " | score given up (sum) | seconds |",
        "|---|---|---|" + "---|" * len(args.tasks) + "---|---|",
    ]
    for name, answer, seconds in rows:
        if "error" in answer:
            lines.append(f"| {name} | infeasible: {answer['error']} |" + " |" * (len(args.tasks) + 2))
            continue
        scores = {t["task"]: t["predicted"]["score"] for t in answer["tasks"]}
        given_up = sum(alone[t]["predicted"]["score"] - scores[t] for t in args.tasks)
        lines.append(
            f"| {name} | {answer['params']:,} | {answer['params'] / independent:.0%} | "
            + " | ".join(f"{scores[t]:.1f}" for t in args.tasks)
            + f" | {round(given_up, 1) + 0.0:.1f} | {seconds:.1f} |"
        )
    lines += [
        "",
        "seconds: the query's wall time in process (an evolutionary search of up to "
        "`deployment_time_limit_s`); on a SQLite database the script works on a copy without "
        "stored answers, so every query is searched. A cap below the smallest subnet of the space (55.9 M "
        "parameters in ufo-track2) cannot be met, and the 422 says by how much.",
        "",
        "The deployment stores what the tasks share once (in ufo-track2 every weight is shared: a "
        "layer holds the widest slice any task uses), so its parameters are those of the layer-wise "
        "widest of the three paths, plus nothing per task (track-2 tasks have no heads).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    app.state.engine.dispose()


if __name__ == "__main__":
    main()
