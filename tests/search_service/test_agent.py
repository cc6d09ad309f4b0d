"""The device agent against the real service (FastAPI app on SQLite, served by uvicorn)."""

from __future__ import annotations

import logging
import time

import httpx
import pytest
import torch

from profilers import (
    LatencyProfiler,
    LocalConfig,
    ProfileResult,
    TableLatencyProfiler,
)
from search_service.agent import AgentError, DeviceAgent
from search_service.client import GpnasClient
from search_service.schemas import CampaignCreate, DeviceCreate
from search_service.testing import free_port, serving
from supernet import SpaceDefinition, TaskDefinition, get_space
from tests._data import DATA_DIR

NB201 = "device_latency/nasbench201.csv"  # device settings name files relative to a data directory
# The agent's machine keeps its tables in DATA_DIR (the server's copy is the same directory here).
LOCAL = LocalConfig(data_dir=DATA_DIR)


@pytest.fixture
def service(tmp_path):
    """A live service: migrated SQLite database, an admin token, uvicorn on a free port."""
    from search_service import Settings, create_app
    from search_service import repositories as repo
    from search_service.core import make_engine, make_sessionmaker, upgrade

    url = f"sqlite:///{tmp_path / 'gpnas.db'}"
    upgrade(url)
    engine = make_engine(url)
    with make_sessionmaker(engine, write=True)() as session:
        _, token = repo.create_token(session, label="agent test")
        session.commit()
    engine.dispose()
    app = create_app(Settings(database_url=url, refit_worker=False, data_dir=DATA_DIR))
    with serving(app) as base, GpnasClient(base, token) as api:
        yield base, token, api


def _device(api, name, profiler, settings, space, n, task=None, candidates=None):
    api.create_device(DeviceCreate(name=name, profiler=profiler, settings=settings))
    api.create_campaign(
        CampaignCreate(space=space, device=name, n=n, seed=0, task=task, candidates=candidates)
    )


def _jobs(api, device):
    return api.list_jobs(device=device).jobs


def _measurements(api, device):
    return api.list_measurements(device=device).measurements


def test_agent_measures_torch_cpu_jobs_end_to_end(service, caplog):
    base, token, api = service
    settings = {"threads": 1, "image_size": 32, "warmup": 1, "min_repeats": 3, "max_repeats": 5}
    _device(api, "cpu-b1", "torch-cpu", settings, "ufo-track2", 3)
    # A 3 s lease is shorter than building ViT-Base and timing it here: only heartbeats keep it.
    agent = DeviceAgent(base, "cpu-b1", token, exit_when_idle=True, lease_seconds=3)
    with caplog.at_level(logging.INFO, logger="gpnas.agent"):
        stats = agent.run()
    assert (stats.done, stats.failed, stats.lost) == (3, 0, 0)
    # What was measured is in the log, one line per job.
    measured = [r.getMessage() for r in caplog.records if " latency_ms = " in r.getMessage()]
    assert len(measured) == 3 and all("repeats" in line for line in measured), measured
    jobs = _jobs(api, "cpu-b1")
    assert [j.status for j in jobs] == ["done"] * 3
    assert all(j.attempts == 1 for j in jobs)  # never re-leased: the heartbeats held
    rows = _measurements(api, "cpu-b1")
    assert sorted(m.arch for m in rows) == sorted(j.arch for j in jobs)
    for m in rows:
        assert m.metric == "latency_ms" and m.value > 0 and m.profiler == "torch-cpu"
        assert m.environment["threads"] == 1 and m.environment["input_shape"] == [1, 3, 32, 32]
        # The three jobs were leased and timed as one interleaved batch against one reference.
        assert m.environment["batch_subnets"] == 3 and m.environment["protocol"] == "interleaved"
        assert m.environment["raw_median_ms"] > 0 and m.drift >= 0 and isinstance(m.flagged, bool)
        assert m.reference_ms == pytest.approx(m.environment["reference_median_ms"], abs=1e-4)
    assert len({m.environment["reference_median_ms"] for m in rows}) == 1
    assert len({(m.reference_arch, m.reference_ms) for m in rows}) == 1  # the batch's level, stored


def test_agent_measures_jobs_of_a_space_registered_on_the_server(service):
    base, token, api = service
    definition = SpaceDefinition.load(
        {
            "name": "tiny-vit",
            "tasks": [{"name": "face", "head": 8}],
            "depths": [2, 3],
            "choices": {"ffn_path": ["shared", "task"], "mlp_ratio": [4.0, 2.0], "num_heads": [4, 2]},
            "per_task": ["ffn"],
            "geometry": {"embed_dim": 32, "patch_size": 16, "image_size": 32, "head_dim": 8},
        }
    )
    api.create_space(definition)
    settings = {"threads": 1, "warmup": 1, "min_repeats": 3, "max_repeats": 5}
    _device(api, "cpu-tiny", "torch-cpu", settings, "tiny-vit", 2)
    agent = DeviceAgent(base, "cpu-tiny", token, exit_when_idle=True)
    stats = agent.run()
    assert (stats.done, stats.failed, stats.lost) == (2, 0, 0)
    rows = _measurements(api, "cpu-tiny")
    assert len(rows) == 2 and all(m.space == "tiny-vit" and m.value > 0 for m in rows)
    assert all(m.environment["input_shape"] == [1, 3, 32, 32] for m in rows)  # the space's geometry
    # The agent read the definition from the server (this process's own registry aside) ...
    assert agent.space("tiny-vit").to_definition() == definition
    # ... and reads it again when a job names a task added there since.
    api.add_space_task("tiny-vit", TaskDefinition(name="vehicle"))
    assert agent.space("tiny-vit").tasks == ["face"]
    assert agent.space("tiny-vit", task="vehicle").tasks == ["face", "vehicle"]
    with pytest.raises(AgentError, match="'nope' is not registered on the server"):
        agent.space("nope")


class _Faulty(httpx.BaseTransport):
    """Real HTTP transport that first refuses ``refuse`` connections, and once swallows the
    response of the first result post after the server stored it (a reply lost in transit)."""

    def __init__(self, refuse: int, drop_paths: tuple[str, ...] = ()) -> None:
        self.inner = httpx.HTTPTransport()
        self.refuse = refuse
        self.dropped_result = False
        self.drop_paths = drop_paths

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.refuse > 0:
            self.refuse -= 1
            raise httpx.ConnectError("connection refused (injected)", request=request)
        if any(request.url.path.endswith(p) for p in self.drop_paths):
            raise httpx.ConnectError("heartbeat dropped (injected)", request=request)
        response = self.inner.handle_request(request)
        if request.url.path.endswith("/result") and not self.dropped_result:
            self.dropped_result = True
            response.read()
            raise httpx.ReadTimeout("response lost (injected)", request=request)
        return response


@pytest.mark.usefixtures("data_dir")
def test_agent_retries_with_backoff_and_never_counts_twice(service):
    base, token, api = service
    _device(api, "nb201-pixel2", "table", {"path": NB201, "column": "pixel2"}, "nasbench201", 4)
    delays: list[float] = []
    transport = _Faulty(refuse=3)
    agent = DeviceAgent(
        base,
        "nb201-pixel2",
        token,
        local=LOCAL,
        exit_when_idle=True,
        backoff=1.0,
        client=httpx.Client(base_url=base, transport=transport),
        sleep=delays.append,
    )
    stats = agent.run()
    assert transport.dropped_result and (stats.done, stats.failed, stats.lost) == (4, 0, 0)
    assert len(delays) == 4  # 3 refused connections + 1 lost reply, each retried once
    assert delays[1] > delays[0] * 0.9 and delays[2] > delays[1] * 0.9  # growing backoff (jittered)
    rows = _measurements(api, "nb201-pixel2")
    assert len(rows) == 4 and len({m.arch for m in rows}) == 4  # the re-posted result counted once
    table = TableLatencyProfiler(get_space("nasbench201"), local=LOCAL, path=NB201, column="pixel2")
    for m in rows:
        assert m.value == table.measure(m.arch).value


@pytest.mark.usefixtures("data_dir")
def test_expired_lease_goes_to_another_agent_and_the_late_result_is_dropped(service):
    base, token, api = service
    _device(api, "nb201-raspi4", "table", {"path": NB201, "column": "raspi4"}, "nasbench201", 1)
    space = get_space("nasbench201")

    class StolenWhileMeasuring(LatencyProfiler):
        """Replays the table, but meanwhile the lease expires and a second agent finishes the job."""

        name = "stolen"

        def measure(self, sub):
            time.sleep(1.6)  # the 1 s lease lapses: this agent's heartbeats are being dropped
            other = DeviceAgent(base, "nb201-raspi4", token, local=LOCAL, max_jobs=1, lease_seconds=30)
            assert other.run().done == 1
            return TableLatencyProfiler(space, local=LOCAL, path=NB201, column="raspi4").measure(sub)

    agent = DeviceAgent(
        base,
        "nb201-raspi4",
        token,
        local=LOCAL,
        max_jobs=1,
        lease_seconds=1,
        profiler=StolenWhileMeasuring(space),
        client=httpx.Client(base_url=base, transport=_Faulty(0, drop_paths=("/heartbeat",))),
    )
    stats = agent.run()
    assert (stats.done, stats.lost) == (0, 1)
    assert len(_measurements(api, "nb201-raspi4")) == 1
    (job,) = _jobs(api, "nb201-raspi4")
    assert job.status == "done" and job.attempts == 2


class _DiesAfterResults(httpx.BaseTransport):
    """Real HTTP transport that goes dead (every request refused) after ``results`` result posts."""

    def __init__(self, results: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.results_left = results

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.results_left <= 0:
            raise httpx.ConnectError("agent machine lost its network (injected)", request=request)
        if request.url.path.endswith("/result"):
            self.results_left -= 1
        return self.inner.handle_request(request)


@pytest.mark.usefixtures("data_dir")
def test_a_batch_lease_that_dies_half_way_loses_nothing_and_counts_nothing_twice(service):
    base, token, api = service
    _device(api, "nb201-gold", "table", {"path": NB201, "column": "gold_6226"}, "nasbench201", 4)
    dying = DeviceAgent(
        base,
        "nb201-gold",
        token,
        local=LOCAL,
        lease_size=4,
        lease_seconds=1,
        max_retries=0,
        client=httpx.Client(base_url=base, transport=_DiesAfterResults(2)),
        sleep=lambda s: None,
    )
    with pytest.raises(AgentError, match="unreachable"):
        dying.run()
    assert dying.stats.done == 2
    jobs = _jobs(api, "nb201-gold")
    assert sorted(j.status for j in jobs) == ["done", "done", "leased", "leased"]
    time.sleep(1.2)  # the dead agent's leases (1 s, no more heartbeats) expire
    stats = DeviceAgent(base, "nb201-gold", token, local=LOCAL, lease_size=4, exit_when_idle=True).run()
    assert (stats.done, stats.failed, stats.lost) == (2, 0, 0)
    jobs = _jobs(api, "nb201-gold")
    assert [j.status for j in jobs] == ["done"] * 4
    assert sorted(j.attempts for j in jobs) == [1, 1, 2, 2]
    rows = _measurements(api, "nb201-gold")
    assert len(rows) == 4 and len({m.arch for m in rows}) == 4


@pytest.mark.usefixtures("data_dir")
def test_a_subnet_the_profiler_cannot_measure_fails_only_its_own_job(service):
    base, token, api = service
    _device(api, "nb201-px", "table", {"path": NB201, "column": "pixel2"}, "nasbench201", 3)
    space = get_space("nasbench201")
    table = TableLatencyProfiler(space, local=LOCAL, path=NB201, column="pixel2")
    broken = _jobs(api, "nb201-px")[1].arch

    class OneBroken(LatencyProfiler):
        name = "one-broken"

        def measure(self, sub):
            if space.format(self.subnet(sub)) == broken:
                raise RuntimeError("cannot build this subnet")
            return table.measure(sub)

    stats = DeviceAgent(base, "nb201-px", token, lease_size=3, max_jobs=3, profiler=OneBroken(space)).run()
    assert (stats.done, stats.failed) == (2, 1)
    failed = [j for j in _jobs(api, "nb201-px") if j.status != "done"]
    assert [j.arch for j in failed] == [broken] and "cannot build this subnet" in failed[0].last_error
    assert len(_measurements(api, "nb201-px")) == 2


def test_a_result_the_service_could_not_store_fails_its_job(service):
    base, token, api = service
    _device(api, "cpu-nan", "torch-cpu", {}, "ufo-track2", 1)

    class NaNEnvironment(LatencyProfiler):
        name = "nan-environment"

        def measure(self, sub):
            return ProfileResult(value=1.0, environment={"temperature": float("nan")})

    profiler = NaNEnvironment(get_space("ufo-track2"))
    stats = DeviceAgent(base, "cpu-nan", token, max_jobs=1, profiler=profiler).run()
    assert (stats.done, stats.failed) == (0, 1)
    (job,) = _jobs(api, "cpu-nan")
    assert job.status == "queued" and "not storable" in job.last_error and "temperature" in job.last_error


@pytest.mark.usefixtures("data_dir")
def test_a_failing_measurement_is_reported_and_the_job_requeued(service):
    base, token, api = service
    # fbnet's table cannot hold ufo-track2 archs: every measurement fails.
    # The server would refuse to plan on a table it can read and that does not fit, so the
    # campaign names its candidate instead (as for a table that only the agent can read).
    arch = get_space("ufo-track2").format(get_space("ufo-track2").sample(1, seed=0)[0])
    settings = {"path": "device_latency/fbnet.csv", "column": "pixel2"}
    _device(api, "wrong-table", "table", settings, "ufo-track2", 1, candidates=[arch])
    stats = DeviceAgent(base, "wrong-table", token, local=LOCAL, max_jobs=1).run()
    assert (stats.done, stats.failed) == (0, 1)
    (job,) = _jobs(api, "wrong-table")
    assert job.status == "queued" and "is not in space 'ufo-track2'" in job.last_error
    assert _measurements(api, "wrong-table") == []


def test_bad_token_and_unknown_device_stop_the_agent(service):
    base, token, api = service
    with pytest.raises(AgentError, match="not registered"):
        DeviceAgent(base, "no-such-device", token).run()
    _device(api, "cpu-x", "torch-cpu", {}, "ufo-track2", 1)
    with pytest.raises(AgentError, match="rejected the token"):
        DeviceAgent(base, "cpu-x", "gpnas_wrong").run()
    with pytest.raises(AgentError, match="unreachable after 3 attempts"):
        DeviceAgent(
            f"http://127.0.0.1:{free_port()}", "cpu-x", token, max_retries=2, sleep=lambda s: None
        ).run()


@pytest.mark.usefixtures("data_dir")
def test_gpnas_agent_command(service):
    import subprocess
    import sys

    base, token, api = service
    _device(api, "nb201-cli", "table", {"path": NB201, "column": "gold_6226"}, "nasbench201", 2)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from search_service.cli import main; main()",
            "agent",
            "--server",
            base,
            "--device",
            "nb201-cli",
            "--token",
            token,
            "--exit-when-idle",
            "--quiet",
            "--data-dir",
            str(DATA_DIR),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "jobs done: 2, failed: 0" in done.stdout
    assert len(_measurements(api, "nb201-cli")) == 2
    bad = subprocess.run(
        [
            sys.executable,
            "-c",
            "from search_service.cli import main; main()",
            "agent",
            "--server",
            base,
            "--device",
            "nb201-cli",
            "--token",
            "gpnas_wrong",
            "--exit-when-idle",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks an agent on a machine without the device's GPU")
def test_agent_without_the_hardware_hands_the_job_back_and_stops(service):
    base, token, api = service
    _device(api, "h100-fp16", "torch-cuda", {"dtype": "fp16"}, "ufo-track2", 2)
    with pytest.raises(AgentError, match="cannot be measured here.*needs a CUDA device"):
        DeviceAgent(base, "h100-fp16", token, exit_when_idle=True).run()
    statuses = sorted(j.status for j in _jobs(api, "h100-fp16"))
    assert statuses == ["queued", "queued"]  # one handed back, the other never leased


def test_gpnas_profile_looks_the_device_up_on_the_server(service):
    from search_service.cli._profile import resolve_device

    base, token, api = service
    api.create_device(
        DeviceCreate(name="nb201-look", profiler="table", settings={"path": NB201, "column": "pixel2"})
    )
    name, settings = resolve_device("nb201-look", {"column": "raspi4"}, base, token)
    assert (name, settings) == ("table", {"path": NB201, "column": "raspi4"})  # --set overrides
    with pytest.raises(ValueError, match="'nope' is not registered on"):
        resolve_device("nope", {}, base, token)
    with pytest.raises(ValueError, match="HTTP 401"):
        resolve_device("nb201-look", {}, base, "gpnas_wrong")
    with pytest.raises(ValueError, match="unreachable .*ConnectError"):
        resolve_device("nb201-look", {}, f"http://127.0.0.1:{free_port()}", token)


def test_settings_the_service_would_refuse_stop_the_agent_before_it_starts():
    for options, message in [
        ({"lease_size": 65}, "lease_size: .*64"),
        ({"lease_seconds": 86_401}, "lease_seconds: .*86400"),
        ({"device": "two words"}, "device: String should match"),
    ]:
        arguments = {"server": "http://127.0.0.1:1", "device": "dev", "token": "t", "local": LOCAL, **options}
        with pytest.raises(ValueError, match=message):
            DeviceAgent(**arguments)
