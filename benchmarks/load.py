"""Load benchmark of the service: ingest throughput and POST /v1/query latency under concurrency.

Starts ``gpnas serve`` (uvicorn, one process) on a fresh database, ingests synthetic measurements
of ``ufo-track2`` (a latency per subnet on one device, a ``market1501`` score per subnet) in
batches of 100 through POST /v1/measurements, fits the predictors and the front once
(POST /v1/refit), then drives POST /v1/query with concurrent keep-alive clients for a fixed time
and reports p50 / p99 latency. The clients are raw asyncio HTTP/1.1 connections, so that the load
generator spends little of the machine's CPU; they run on the same machine as the server.

    python -m benchmarks.load                       # SQLite file in a temp dir
    python -m benchmarks.load --database-url postgresql://postgres@127.0.0.1:5432/gpnas_load

The latencies and scores are stand-ins (latency proportional to FLOPs, score growing with size):
this measures the service, not the predictors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from search_service.client import GpnasClient
from search_service.core import upgrade
from search_service.schemas import DeviceCreate, MeasurementBatch, RefitRequest
from search_service.testing import free_port, gpnas_command, wait_until_healthy
from supernet import get_space

ROOT = Path(__file__).resolve().parents[1]

SPACE, TASK, DEVICE = "ufo-track2", "market1501", "bench-cpu"


def synthetic(n: int, seed: int) -> list[dict]:
    """``2 n`` measurement items: latency and score of ``n`` random subnets."""
    space = get_space(SPACE)
    rng = np.random.default_rng(seed)
    items = []
    for sub in space.sample(n, seed):
        arch = space.format(sub)
        latency = space.flops(sub) / 1e9 * float(rng.uniform(0.98, 1.02))
        common = {"space": SPACE, "arch": arch}
        items.append(
            {"id": str(uuid.uuid4()), **common, "device": DEVICE, "metric": "latency_ms", "value": latency}
        )
        score = 50 * math.log(latency) + float(rng.normal(0, 0.5))
        items.append({"id": str(uuid.uuid4()), **common, "task": TASK, "metric": "score", "value": score})
    return items


async def _client(
    host: str, port: int, bodies: list[bytes], stop_at: float, out: list[float], errors: list[str]
):
    reader, writer = await asyncio.open_connection(host, port)
    i = 0
    try:
        while time.perf_counter() < stop_at:
            body = bodies[i % len(bodies)]
            i += 1
            request = (
                f"POST /v1/query HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            payload = await reader.readexactly(length)
            out.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n")[0].decode() + " " + payload[:200].decode())
    finally:
        writer.close()


async def query_load(
    port: int, clients: int, seconds: float, budgets: list[float]
) -> tuple[list[float], list[str]]:
    bodies = [
        json.dumps(
            {"space": SPACE, "task": TASK, "device": DEVICE, "latency_budget_ms": b, "confidence": 0.9}
        ).encode()
        for b in budgets
    ]
    out: list[float] = []
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds
    await asyncio.gather(
        *(_client("127.0.0.1", port, bodies[c:] + bodies[:c], stop_at, out, errors) for c in range(clients))
    )
    return out, errors


def batches(items: list[dict]) -> list[MeasurementBatch]:
    """``items`` as batches of 100, validated (here, before any timing starts)."""
    return [
        MeasurementBatch.model_validate({"measurements": items[i : i + 100]})
        for i in range(0, len(items), 100)
    ]


def post_all(api: GpnasClient, batches: list[MeasurementBatch], clients: int) -> None:
    """POST ``batches`` from ``clients`` concurrent clients (one connection pool)."""

    def post(batch: MeasurementBatch) -> None:
        answer = api.post_measurements(batch)
        assert answer.inserted == len(batch.measurements), answer

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, batches))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: a new SQLite file in a temp dir")
    parser.add_argument("--ingest", type=int, default=10_000, help="measurements for the ingest throughput")
    parser.add_argument("--subnets", type=int, default=500, help="ufo-track2 subnets with latency and score")
    parser.add_argument("--ingest-clients", type=int, default=1)
    parser.add_argument("--clients", type=int, default=50, help="concurrent query clients")
    parser.add_argument("--seconds", type=float, default=20.0, help="query load duration")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument(
        "--predictor",
        default="gpnas",
        help="predictor fitted by the refit, latency and scores (GPNAS_PREDICTOR_LATENCY / _SCORE)",
    )
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--front-evaluations", type=int, default=20_000)
    parser.add_argument("--out", type=Path, help="append a Markdown table row set here")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="gpnas-load-")
    url = args.database_url or f"sqlite:///{tmp}/gpnas.db"
    upgrade(url)
    port = free_port()
    env = {
        **os.environ,
        "GPNAS_DATABASE_URL": url,
        "GPNAS_AUTH": "off",
        "GPNAS_REFIT_WORKER": "off",
        "GPNAS_FRONT_MAX_EVALUATIONS": str(args.front_evaluations),
        "GPNAS_PREDICTOR_LATENCY": args.predictor,
        "GPNAS_PREDICTOR_SCORE": args.predictor,
    }
    server = subprocess.Popen(
        gpnas_command("serve", "--port", str(port), "--log-level", "warning"), cwd=ROOT, env=env
    )
    base = f"http://127.0.0.1:{port}"
    # No retries: an error answer during the benchmark should show, not be hidden by a retry.
    api = GpnasClient(base, timeout=600, max_retries=0)
    try:
        wait_until_healthy(base, process=server)
        api.create_device(DeviceCreate(name=DEVICE, profiler="torch-cpu"))

        # Ingest throughput: fbnet latencies (a space without tasks, so the refit below skips them).
        fbnet = get_space("fbnet")
        rng = np.random.default_rng(1)
        ingest = [
            {"id": str(uuid.uuid4()), "space": "fbnet", "arch": fbnet.format(sub), "device": DEVICE}
            | {"metric": "latency_ms", "value": float(rng.uniform(5, 50)), "std": 0.1, "repeats": 20}
            for sub in fbnet.sample(args.ingest, seed=1)
        ]
        ingest_batches = batches(ingest)
        started = time.perf_counter()
        post_all(api, ingest_batches, args.ingest_clients)
        ingest_s = time.perf_counter() - started
        ingest_rate = len(ingest) / ingest_s
        # The front's data: a latency and a score for each of --subnets ufo-track2 subnets.
        post_all(api, batches(synthetic(args.subnets, seed=0)), 1)

        started = time.perf_counter()
        report = api.refit(RefitRequest(space=SPACE))
        refit_s = time.perf_counter() - started
        assert report.errors == [], report
        assert report.fronts, report
        front = api.pareto(SPACE, TASK, DEVICE, limit=1000)
        latencies = [p.latency_ms for p in front.points]
        budgets = list(np.linspace(min(latencies) * 1.05, max(latencies), 17))

        asyncio.run(query_load(port, args.clients, args.warmup, budgets))
        # The machine may be shared: record how busy it was when the measured run started.
        load_before = os.getloadavg()[0]
        samples, errors = asyncio.run(query_load(port, args.clients, args.seconds, budgets))
        ms = np.array(samples) * 1000
        result = {
            "backend": url.split(":", 1)[0],
            "ingest_measurements": len(ingest),
            "ingest_clients": args.ingest_clients,
            "ingest_per_s": round(ingest_rate),
            "refit_s": round(refit_s, 1),
            "front_subnets": args.subnets,
            "front_points": front.total,
            "predictor": args.predictor,
            "workers": args.workers,
            "query_clients": args.clients,
            "queries": len(samples),
            "errors": len(errors),
            "query_per_s": round(len(samples) / args.seconds),
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "cpus": os.cpu_count(),
            "load_avg_1m_before": round(load_before, 1),
            "machine": platform.processor() or platform.machine(),
        }
        print(json.dumps(result))
        if errors:
            print("first errors:", errors[:3], file=sys.stderr)
        if args.out:
            with args.out.open("a") as handle:
                handle.write(json.dumps(result) + "\n")
    finally:
        api.close()
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
