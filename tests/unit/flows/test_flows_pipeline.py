"""The flow module's pure parts: stage selection, the retry table, metric and validation rows, imports.

No Prefect server is needed: these are plain functions and task options (the flow itself runs in
tests/integration/test_prefect_flow.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crab.stages import STAGES
from flows.pipeline import (
    GATES,
    STAGE_RETRIES,
    StageFailedError,
    flatten_metrics,
    select_stages,
    stage_task,
    validation_rows,
)

REPO = Path(__file__).resolve().parents[3]


def test_default_stages_are_the_stage_table_in_order() -> None:
    assert select_stages(None) == list(STAGES)


def test_selected_stages_follow_table_order_without_duplicates() -> None:
    names = list(STAGES)
    assert select_stages([names[-1], names[0], names[-1]]) == [names[0], names[-1]]


def test_unknown_stage_is_rejected_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown stage.*'nope'.*validate_raw"):
        select_stages(["nope"])


def test_every_stage_has_a_retry_decision_and_gates_are_never_retried() -> None:
    assert set(STAGES) <= set(STAGE_RETRIES), "add the new stage to flows.pipeline.STAGE_RETRIES"
    assert GATES <= set(STAGES)
    for name in STAGES:
        configured = stage_task(name)
        assert configured.retries == (0 if name in GATES else STAGE_RETRIES[name])
        assert configured.task_run_name == name
    assert any(STAGE_RETRIES[name] > 0 for name in STAGES if name not in GATES)


def test_flatten_metrics_reads_the_workspace_revision_and_errors() -> None:
    shown = {
        "": {
            "data": {
                "metrics/ave.json": {"data": {"accuracy": 0.5, "per_type": {"a": 1, "b": {"c": 2}}}},
                "metrics/missing.json": {"error": {"type": "FileNotFoundError", "msg": "no such file"}},
            }
        },
        "HEAD": {"data": {"metrics/ave.json": {"data": {"accuracy": 0.1}}}},
    }
    assert flatten_metrics(shown) == [
        {"path": "metrics/ave.json", "metric": "accuracy", "value": 0.5},
        {"path": "metrics/ave.json", "metric": "per_type.a", "value": 1},
        {"path": "metrics/ave.json", "metric": "per_type.b.c", "value": 2},
        {"path": "metrics/missing.json", "metric": "error", "value": "no such file"},
    ]
    assert flatten_metrics({"": {"data": {}}}) == []


def test_validation_rows_mark_groups_above_the_threshold() -> None:
    group = {"present": True, "num_items": 10, "num_passed": 9, "num_quarantined": 1, "quarantined": []}
    reports = [
        {"stage": "validate_raw", "max_failure_rate": 0.05, "datasets": {"ave": {**group, "failure_rate": 0.1}}},
        {"stage": "validate_avuie", "max_failure_rate": 0.2, "tasks": {"avqa": {**group, "failure_rate": 0.1}}},
    ]
    rows = validation_rows(reports)
    assert [(r["gate"], r["group"], r["passed"]) for r in rows] == [
        ("validate_raw", "ave", False),
        ("validate_avuie", "avqa", True),
    ]


def test_stage_failure_names_the_stage_and_quotes_its_output() -> None:
    err = StageFailedError("validate_raw", 1, ["crab: error: validate_raw: ave quarantined 1 of 9 items"])
    assert "stage validate_raw failed (dvc repro exit 1)" in str(err)
    assert "ave quarantined 1 of 9" in str(err)


def test_importing_the_flows_does_not_import_torch_or_stage_modules() -> None:
    code = (
        "import sys, flows.pipeline, flows.serve\n"
        "heavy = [m for m in ('torch', 'great_expectations', 'crab.quality.raw', 'crab.avuie.build') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
