"""The Prefect flow over the real DVC pipeline, against a local Prefect server on 127.0.0.1.

One ``prefect server start`` serves the whole session (PREFECT_HOME in a temp folder). Each test builds a
scratch DVC project: the repository's ``dvc.yaml``, a shrunk ``params.yaml``, ``src`` symlinked to the
repository's, and AV-Synth data generated once with ``crab synth``. Covered: a full run of the data stages
(each stage ran once, artifacts readable back), a planted bad row that makes the first gate fail the flow
(no later stage runs), retries of a retry-safe stage but never of a gate (with a fake ``dvc``), and a run
of the ``prefect.yaml`` deployment through a Runner (schedule included).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DATA_STAGES = ["validate_raw", "avuie_build", "validate_avuie"]

#: stack-notes section 0: fast, quiet and offline Prefect / DVC.
QUIET_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    "DVC_NO_ANALYTICS": "1",
}

#: Sizes from the brief: a few clips per split, 32 px, 4 fps, 4-s MUSIC-AVQA / VALOR clips.
SYNTH_SIZES = {
    "video": {"size": 32, "fps": 4},
    "ave": {"num_train": 4, "num_val": 2, "num_test": 2},
    "llp": {"num_train": 2, "num_val": 1, "num_test": 2},
    "s4": {"num_train": 2, "num_val": 1, "num_test": 1},
    "ms3": {"num_train": 1, "num_val": 1, "num_test": 1},
    "music_avqa": {"num_train_videos": 2, "num_val_videos": 1, "num_test_videos": 2, "duration_s": 4},
    "valor": {"num_train": 2, "num_val": 1, "duration_s": 4},
    "ref_avs": {"num_train_videos": 2, "num_val_videos": 1, "num_test_s_videos": 1, "num_test_u_videos": 1},
    "avss": {"num_train": 2, "num_val": 1, "num_test": 1},
    "lvis": {"num_train_images": 4, "num_val_images": 2},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prefect server on a free loopback port for the whole session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    home = tmp_path_factory.mktemp("prefect_home")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, **QUIET_ENV, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    log_path = home / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so teardown stops its children too
        )
    try:
        deadline = time.monotonic() + 120
        while not _healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Prefect server did not become healthy:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        with pytest.MonkeyPatch.context() as mp:
            for key, value in {**QUIET_ENV, "PREFECT_HOME": str(home), "PREFECT_API_URL": url}.items():
                mp.setenv(key, value)
            with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_HOME: home}):
                yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, **QUIET_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def synth_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the shrunk ``params.yaml`` and the AV-Synth ``data/raw`` it generates (once)."""
    root = tmp_path_factory.mktemp("synth_template")
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    for section, values in SYNTH_SIZES.items():
        params["synth"][section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    _run([str(BIN / "crab"), "synth"], root)
    return root


def make_project(dest: Path, template: Path, max_failure_rate: float | None = None) -> Path:
    """A scratch DVC project: the repo's dvc.yaml (+ one top-level metrics file), shrunk params, the data."""
    dest.mkdir(parents=True)
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    pipeline["metrics"] = ["metrics/probe.json"]  # a metric for the metrics artifact to carry
    (dest / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False), encoding="utf-8")
    params = yaml.safe_load((template / "params.yaml").read_text(encoding="utf-8"))
    if max_failure_rate is not None:
        params["validation"]["max_failure_rate"] = max_failure_rate
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    (dest / "metrics").mkdir()
    (dest / "metrics" / "probe.json").write_text(json.dumps({"probe": {"accuracy": 0.75}}), encoding="utf-8")
    os.symlink(REPO / "src", dest / "src")
    shutil.copytree(template / "data", dest / "data")
    _run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], dest)
    return dest


async def _flow_run_facts(flow_run_id: Any) -> tuple[Any, dict[str, list[Any]], dict[str, Any]]:
    """The flow run, its task runs by name, and its artifacts by key, read back from the API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
    )

    async with get_client() as client:
        flow_run = await client.read_flow_run(flow_run_id)
        task_runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    by_name: dict[str, list[Any]] = {}
    for run in task_runs:
        by_name.setdefault(run.name, []).append(run)
    return flow_run, by_name, {a.key: a for a in artifacts}


def _table(artifact: Any) -> list[dict[str, Any]]:
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


@pytest.fixture(scope="module")
def completed_run(prefect_api: str, synth_template: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """The flow over the data stages of a fresh scratch project: (project, final state)."""
    from flows.pipeline import crab_pipeline

    project = make_project(tmp_path_factory.mktemp("flow") / "project", synth_template)
    state = crab_pipeline(stages=DATA_STAGES, repo=str(project), return_state=True)
    return project, state


def test_flow_runs_each_data_stage_once_and_publishes_artifacts(completed_run: tuple) -> None:
    project, state = completed_run
    flow_run, task_runs, artifacts = asyncio.run(_flow_run_facts(state.state_details.flow_run_id))

    assert flow_run.state.is_completed(), flow_run.state.message
    for name in DATA_STAGES:
        assert len(task_runs.get(name, [])) == 1, f"{name}: {task_runs.keys()}"
        assert task_runs[name][0].state.is_completed() and task_runs[name][0].run_count == 1
    assert [r["stage"] for r in state.result()] == DATA_STAGES
    assert all(r["ran"] for r in state.result())
    lock = yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8"))
    assert set(lock["stages"]) == set(DATA_STAGES)

    assert {"crab-validation", "crab-quarantine", "crab-metrics", "crab-stages"} <= set(artifacts)
    rows = _table(artifacts["crab-validation"])
    assert {(r["gate"], r["group"]) for r in rows} >= {("validate_raw", "ave"), ("validate_avuie", "ave")}
    assert all(r["passed"] and r["num_items"] > 0 for r in rows if r["present"])
    assert {"path": "metrics/probe.json", "metric": "probe.accuracy", "value": 0.75} in _table(
        artifacts["crab-metrics"]
    )
    assert "| validate_avuie | ran |" in artifacts["crab-stages"].data


def test_failing_gate_fails_the_flow_before_later_stages(
    prefect_api: str, synth_template: Path, tmp_path: Path
) -> None:
    from flows.pipeline import crab_pipeline

    project = make_project(tmp_path / "project", synth_template, max_failure_rate=0.0)
    with (project / "data/raw/ave/trainSet.txt").open("a", encoding="utf-8") as fh:
        fh.write("Not A Class&zzzzzzzzzzz&good&0&3\n")  # unknown category, no video file

    state = crab_pipeline(stages=DATA_STAGES, repo=str(project), return_state=True)
    flow_run, task_runs, artifacts = asyncio.run(_flow_run_facts(state.state_details.flow_run_id))

    assert flow_run.state.is_failed()
    assert "validate_raw" in (flow_run.state.message or "")
    assert len(task_runs["validate_raw"]) == 1 and task_runs["validate_raw"][0].run_count == 1
    assert task_runs["validate_raw"][0].state.is_failed()
    assert "avuie_build" not in task_runs and "validate_avuie" not in task_runs
    assert not (project / "data" / "avuie").exists()
    ave = [r for r in _table(artifacts["crab-validation"]) if r["group"] == "ave"]
    assert ave and ave[0]["num_quarantined"] == 1 and not ave[0]["passed"]
    assert "zzzzzzzzzzz" in artifacts["crab-quarantine"].data
    assert "| avuie_build | not run |" in artifacts["crab-stages"].data


def test_retry_safe_stage_is_retried_and_a_gate_is_not(
    prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fake ``dvc repro``: avuie_build fails once then passes (retried); validate_raw always fails."""
    import flows.pipeline as pipeline

    _run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], tmp_path)
    calls: list[str] = []
    failures_left = {"avuie_build": 1}
    always_failing: set[str] = set()

    def fake_stream(cmd: list[str], cwd: Path, logger: Any, marker: str) -> tuple[int, list[str], bool]:
        stage = cmd[-1]
        calls.append(stage)
        if stage in always_failing or failures_left.get(stage, 0) > 0:
            failures_left[stage] = failures_left.get(stage, 0) - 1
            return 1, [f"crab: error: {stage}: planted failure"], False
        return 0, [f"Running stage '{stage}':"], True

    monkeypatch.setattr(pipeline, "_stream", fake_stream)
    monkeypatch.setattr(pipeline, "run_stage", pipeline.run_stage.with_options(retry_delay_seconds=0))

    state = pipeline.crab_pipeline(stages=["avuie_build", "validate_raw"], repo=str(tmp_path), return_state=True)
    _, task_runs, _ = asyncio.run(_flow_run_facts(state.state_details.flow_run_id))
    assert state.is_completed()
    assert calls == ["validate_raw", "avuie_build", "avuie_build"]
    assert task_runs["avuie_build"][0].run_count == 2

    calls.clear()
    always_failing.add("validate_raw")
    state = pipeline.crab_pipeline(stages=["avuie_build", "validate_raw"], repo=str(tmp_path), return_state=True)
    assert state.is_failed()
    assert calls == ["validate_raw"]


def test_deployment_from_prefect_yaml_runs_with_its_schedule(
    completed_run: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Register prefect.yaml's deployment with a Runner, trigger a run, execute it in a subprocess."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.runner import Runner

    from flows.pipeline import crab_pipeline
    from flows.serve import load_deployment

    project, _ = completed_run
    spec = load_deployment("nightly")
    monkeypatch.chdir(REPO)  # the deployment's entrypoint is recorded relative to the working directory

    async def scenario() -> tuple[Any, Any, Any]:
        runner = Runner(name="crab-test-runner", query_seconds=1, limit=1, pause_on_shutdown=False)
        deployment_id = await runner.aadd_flow(
            crab_pipeline,
            name=spec.name,
            schedules=spec.schedules(),
            parameters=spec.parameters,
            concurrency_limit=spec.concurrency_limit,
            tags=list(spec.tags),
        )
        flow_run = await run_deployment(
            f"crab-pipeline/{spec.name}",
            parameters={"stages": DATA_STAGES, "repo": str(project)},
            timeout=0,
        )
        await runner.start(run_once=True)
        async with get_client() as client:
            return (
                await client.read_flow_run(flow_run.id),
                await client.read_deployment(deployment_id),
                flow_run.id,
            )

    flow_run, deployment, flow_run_id = asyncio.run(scenario())
    assert flow_run.state.is_completed(), flow_run.state.message
    assert deployment.entrypoint == spec.entrypoint
    assert [(s.schedule.cron, s.active) for s in deployment.schedules] == [(spec.crons[0][0], True)]
    _, task_runs, artifacts = asyncio.run(_flow_run_facts(flow_run_id))
    assert all(len(task_runs[name]) == 1 for name in DATA_STAGES)
    # The project was reproduced by completed_run: DVC skips every stage.
    assert artifacts["crab-stages"].data.count("up to date (skipped by DVC)") == len(DATA_STAGES)
