"""``prefect.yaml``: it parses, its deployments name the real flow with valid parameters and schedules."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.flows import Flow, load_flow_from_entrypoint

from flows.serve import PREFECT_YAML, load_deployment

REPO = Path(__file__).resolve().parents[3]


def _config() -> dict:
    return yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))


def test_prefect_yaml_is_the_one_at_the_repository_root() -> None:
    assert PREFECT_YAML == REPO / "prefect.yaml"
    assert _config()["deployments"], "prefect.yaml declares no deployment"


@pytest.mark.parametrize("entry", _config()["deployments"], ids=lambda e: e["name"])
def test_deployment_names_an_existing_flow_and_valid_parameters(entry: dict) -> None:
    path, _, func = entry["entrypoint"].rpartition(":")
    assert (REPO / path).is_file(), entry["entrypoint"]
    pipeline = load_flow_from_entrypoint(f"{REPO / path}:{func}", use_placeholder_flow=False)
    assert (
        isinstance(pipeline, Flow)
        and pipeline.name == {"crab_pipeline": "crab-pipeline", "crab_ablate": "crab-ablate"}[func]
    )
    pipeline.validate_parameters(entry.get("parameters") or {})  # raises on unknown or mistyped ones
    assert entry["work_pool"]["name"]


@pytest.mark.parametrize("entry", _config()["deployments"], ids=lambda e: e["name"])
def test_deployment_has_an_active_valid_cron_schedule(entry: dict) -> None:
    spec = load_deployment(entry["name"])
    assert spec.crons, "no active schedule"
    for schedule in spec.schedules():  # Cron() validates the expression and the time zone
        assert schedule.cron == spec.crons[0][0]


def test_runs_start_in_the_repository_that_was_deployed() -> None:
    config = _config()
    (build,) = config["build"]
    step_id = build["prefect.deployments.steps.run_shell_script"]["id"]
    (pull,) = config["pull"]
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == f"{{{{ {step_id}.stdout }}}}"


def test_load_deployment_rejects_unknown_names_and_non_cron_schedules(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no deployment named 'weekly'"):
        load_deployment("weekly")
    path = tmp_path / "prefect.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "deployments": [
                    {"name": "x", "entrypoint": "flows/pipeline.py:crab_pipeline", "schedules": [{"interval": 60}]}
                ]
            }
        ),
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="only cron schedules"):
        load_deployment("x", path)
