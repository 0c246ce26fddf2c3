"""The Prefect flow that runs the crab DVC pipeline stage by stage (DESIGN.md section 3, house style 4.9).

The stage table :data:`crab.stages.STAGES` is the one list of stages; ``dvc.yaml`` is generated from it
and this flow walks it in order, one Prefect task per stage. Each task runs
``dvc repro --single-item <stage>`` in the project folder, so DVC alone decides *whether* the stage runs
(an up-to-date stage is a sub-second skip recorded as ``ran: False``) and nothing of a stage body is
re-implemented here. Prefect adds the guardrails:

* **retries where a retry is safe** (:data:`STAGE_RETRIES`): DVC removes a stage's outputs before running
  it and our stages write atomically, so every stage is idempotent; heavy stages that can fail for
  transient reasons (memory, a killed worker, a full disk) are retried. Quality gates are never retried:
  a gate failure is a verdict on the data, and retrying it would only delay and blur it;
* **a failing gate fails the flow at once**: stages run sequentially and a failed task raises, so no
  later stage runs; the gates' reports (with the quarantine reasons) are still published;
* **artifacts**: the gates' summaries (``reports/validation/*.json``), the DVC metrics
  (``dvc metrics show --json``) and a per-stage run table are published as Prefect artifacts;
* **no Prefect caching** (``NO_CACHE``): an input-keyed Prefect cache could disagree with ``dvc.lock``.

Stages run one after the other, never concurrently: they share DVC's repository lock and each depends on
the previous ones. The subprocess gets the running interpreter's ``bin`` folder first on ``PATH`` (the
stage commands are ``crab <stage>``) and the offline environment of :data:`crab.cli.OFFLINE_ENV`.
Only the standard library, Prefect and crab's light modules are imported (no torch, no stage module).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import Task

from crab.cli import OFFLINE_ENV
from crab.quality.quarantine import read_report
from crab.stages import STAGES

__all__ = [
    "GATES",
    "STAGE_RETRIES",
    "StageFailedError",
    "crab_pipeline",
    "dvc_command",
    "flatten_metrics",
    "main",
    "publish_metrics",
    "publish_validation",
    "run_stage",
    "select_stages",
    "stage_task",
    "validation_rows",
]

#: Quality gates: never retried; their JSON reports are published as artifacts.
GATES: frozenset[str] = frozenset({"validate_raw", "validate_avuie"})

#: Retries per stage (DESIGN.md section 3 names). Gates get 0 (see the module docstring); cheap
#: deterministic builders 1 (only an I/O hiccup can make a rerun differ); model building, feature
#: extraction, training, evaluation and reports 2. A stage missing here is not retried.
STAGE_RETRIES: dict[str, int] = {
    "validate_raw": 0,
    "avuie_build": 1,
    "validate_avuie": 0,
    "base_models": 2,
    "features": 2,
    "pretrain": 2,
    "finetune": 2,
    "finetune_avs": 2,
    "finetune_avss": 2,
    "evaluate": 2,
    "evaluate_avs": 2,
    "evaluate_avss": 2,
    "report": 2,
}

#: Seconds between retries: long enough for a transient condition (memory pressure) to clear.
RETRY_DELAY_S = 10

#: Lines of a failed stage's output quoted in the error.
_ERROR_TAIL_LINES = 15

#: Quarantined items listed per group in the quarantine artifact.
_QUARANTINE_LINES = 10


class StageFailedError(RuntimeError):
    """``dvc repro`` of one stage exited non-zero.

    Args:
        stage: the stage name.
        returncode: the exit status of ``dvc repro``.
        tail: the last lines of its output (the stage's one-line ``crab: error: ...`` is among them).
    """

    def __init__(self, stage: str, returncode: int, tail: Sequence[str]) -> None:
        self.stage = stage
        self.returncode = returncode
        self.tail = list(tail)
        super().__init__(f"stage {stage} failed (dvc repro exit {returncode}):\n" + "\n".join(self.tail))


def select_stages(stages: Sequence[str] | None) -> list[str]:
    """The stages to run, in stage-table order.

    Args:
        stages: stage names, or None for every stage of :data:`STAGES`.

    Returns:
        The names in the order of :data:`STAGES` (dependency order), without duplicates.

    Raises:
        ValueError: a name is not a stage.
    """
    if stages is None:
        return list(STAGES)
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; the stages are {list(STAGES)}")
    wanted = set(stages)
    return [name for name in STAGES if name in wanted]


def dvc_command(*args: str) -> list[str]:
    """``dvc <args>`` through the running interpreter (the DVC installed beside Prefect and crab)."""
    return [sys.executable, "-m", "dvc", *args]


def _stage_env() -> dict[str, str]:
    """The environment of a stage: offline, quiet, and the interpreter's ``bin`` first on ``PATH``."""
    env = {**OFFLINE_ENV, **os.environ}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _stream(
    cmd: list[str], cwd: Path, logger: logging.Logger | logging.LoggerAdapter, marker: str
) -> tuple[int, list[str], bool]:
    """Run ``cmd``, logging each output line as it comes.

    Returns:
        The exit status, the last output lines, and whether some line contained ``marker``.
    """
    tail: deque[str] = deque(maxlen=_ERROR_TAIL_LINES)
    seen = False
    with subprocess.Popen(
        cmd,
        cwd=cwd,
        env=_stage_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None  # stdout=PIPE
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                tail.append(line)
                seen = seen or marker in line
                logger.info("%s", line)
    return proc.returncode, list(tail), seen


@task(name="run_stage", cache_policy=NO_CACHE, retry_delay_seconds=RETRY_DELAY_S)
def run_stage(name: str, repo: str) -> dict[str, Any]:
    """Reproduce one DVC stage (``dvc repro --single-item <name>``) in ``repo``.

    Args:
        name: a stage of :data:`STAGES`.
        repo: the DVC project folder (holds ``dvc.yaml`` and ``params.yaml``).

    Returns:
        ``{"stage": name, "ran": bool, "seconds": float}``; ``ran`` is False when DVC found the stage
        up to date and skipped it.

    Raises:
        StageFailedError: ``dvc repro`` exited non-zero (a failing gate, a stage error).
    """
    logger = get_run_logger()
    start = time.perf_counter()
    cmd = dvc_command("repro", "--single-item", name)
    returncode, tail, ran = _stream(cmd, Path(repo), logger, marker=f"Running stage '{name}")  # also 'evaluate@ave'
    if returncode != 0:
        raise StageFailedError(name, returncode, tail)
    return {"stage": name, "ran": ran, "seconds": round(time.perf_counter() - start, 2)}


def stage_task(name: str) -> Task[..., dict[str, Any]]:
    """:func:`run_stage` configured for one stage: its retries and a task-run name equal to the stage."""
    return run_stage.with_options(name=f"run_stage[{name}]", task_run_name=name, retries=STAGE_RETRIES.get(name, 0))


def validation_rows(reports: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per dataset / task of the gates' reports (the layout of crab.quality.quarantine)."""
    rows = []
    for report in reports:
        groups = report.get("datasets", report.get("tasks", {}))
        for group, summary in sorted(groups.items()):
            rows.append(
                {
                    "gate": report["stage"],
                    "group": group,
                    "present": summary["present"],
                    "num_items": summary["num_items"],
                    "num_passed": summary["num_passed"],
                    "num_quarantined": summary["num_quarantined"],
                    "failure_rate": summary["failure_rate"],
                    "max_failure_rate": report["max_failure_rate"],
                    "passed": summary["failure_rate"] <= report["max_failure_rate"],
                }
            )
    return rows


def _quarantine_markdown(reports: Sequence[dict[str, Any]]) -> str:
    lines = ["# Quarantined items", ""]
    for report in reports:
        for group, summary in sorted(report.get("datasets", report.get("tasks", {})).items()):
            items = summary["quarantined"]
            if not items:
                continue
            lines.append(f"## {report['stage']} / {group}: {len(items)} of {summary['num_items']} quarantined")
            for item in items[:_QUARANTINE_LINES]:
                lines.append(f"- `{item['source']}`: {'; '.join(item['reasons'])}")
            if len(items) > _QUARANTINE_LINES:
                lines.append(f"- ... {len(items) - _QUARANTINE_LINES} more in the JSON report")
            lines.append("")
    if len(lines) == 2:
        lines.append("No item was quarantined.")
    return "\n".join(lines)


def _gate_report_paths() -> list[str]:
    """The gates' JSON reports, from the stage table (``reports/validation/<gate>.json``)."""
    return [out for name in STAGES if name in GATES for out in STAGES[name].outs if out.endswith(".json")]


@task(cache_policy=NO_CACHE)
def publish_validation(repo: str) -> list[dict[str, Any]]:
    """Publish the gates' summaries (table ``crab-validation``) and reasons (markdown ``crab-quarantine``).

    Args:
        repo: the DVC project folder.

    Returns:
        The table rows (empty when no gate has written its report yet).
    """
    logger = get_run_logger()
    reports = []
    for rel in _gate_report_paths():
        path = Path(repo) / rel
        if path.is_file():
            reports.append(read_report(path))
        else:
            logger.info("no report at %s yet", rel)
    rows = validation_rows(reports)
    if rows:
        create_table_artifact(
            table=rows,
            key="crab-validation",
            description="Quality gates: items checked, passed and quarantined per dataset / AV-UIE task.",
        )
        create_markdown_artifact(
            markdown=_quarantine_markdown(reports),
            key="crab-quarantine",
            description="Why items were quarantined (first items per group; all in reports/validation).",
        )
    return rows


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), inner)
    else:
        yield prefix, value


def flatten_metrics(shown: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows ``{"path", "metric", "value"}`` from the workspace entry of ``dvc metrics show --json``.

    Args:
        shown: the parsed JSON, ``{"": {"data": {path: {"data": {...}} | {"error": {...}}}}}``
            (the workspace is the revision ``""``).

    Returns:
        One row per leaf metric (nested keys joined with ``.``), sorted by path then metric; a file
        DVC could not read gives one row with the metric ``error`` and the error message as value.
    """
    rows = []
    for path, entry in sorted(shown.get("", {}).get("data", {}).items()):
        if "error" in entry:
            rows.append({"path": path, "metric": "error", "value": entry["error"].get("msg", "unreadable")})
            continue
        for metric, value in sorted(_flatten("", entry.get("data", {}))):
            rows.append({"path": path, "metric": metric, "value": value})
    return rows


@task(cache_policy=NO_CACHE)
def publish_metrics(repo: str) -> list[dict[str, Any]]:
    """Publish ``dvc metrics show --json`` of the workspace as the table artifact ``crab-metrics``.

    Args:
        repo: the DVC project folder.

    Returns:
        The table rows (see :func:`flatten_metrics`); empty when no stage declares metrics yet, in which
        case a markdown artifact under the same key says so.

    Raises:
        RuntimeError: ``dvc metrics show`` failed.
    """
    done = subprocess.run(
        dvc_command("metrics", "show", "--json"), cwd=repo, env=_stage_env(), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"dvc metrics show failed (exit {done.returncode}): {done.stderr.strip()}")
    rows = flatten_metrics(json.loads(done.stdout))
    if rows:
        create_table_artifact(table=rows, key="crab-metrics", description="DVC metrics of the workspace.")
    else:
        create_markdown_artifact(
            markdown="No stage has written metrics yet.", key="crab-metrics", description="DVC metrics."
        )
    return rows


def _run_summary_markdown(selected: Sequence[str], results: Sequence[dict[str, Any]]) -> str:
    done = {r["stage"]: r for r in results}
    lines = ["| stage | outcome | seconds |", "|---|---|---|"]
    for name in selected:
        if name in done:
            outcome = "ran" if done[name]["ran"] else "up to date (skipped by DVC)"
            lines.append(f"| {name} | {outcome} | {done[name]['seconds']} |")
        elif len(done) == selected.index(name):
            lines.append(f"| {name} | failed | |")
        else:
            lines.append(f"| {name} | not run | |")
    return "\n".join(lines)


@flow(name="crab-pipeline")
def crab_pipeline(stages: list[str] | None = None, repo: str = ".") -> list[dict[str, Any]]:
    """Run the DVC pipeline stage by stage, in stage-table order, then publish the artifacts.

    Args:
        stages: the stages to run (any order; run in table order), or None for all of :data:`STAGES`.
        repo: the DVC project folder; relative paths are taken from the working directory.

    Returns:
        One ``{"stage", "ran", "seconds"}`` entry per stage (see :func:`run_stage`).

    Raises:
        ValueError: an unknown stage name.
        StageFailedError: a stage failed (after its retries); later stages did not run.
    """
    logger = get_run_logger()
    root = str(Path(repo).resolve())
    selected = select_stages(stages)
    logger.info("crab pipeline in %s: %s", root, ", ".join(selected))
    results: list[dict[str, Any]] = []
    try:
        for name in selected:
            results.append(stage_task(name)(name, root))
    finally:
        # Also after a failing gate: its report holds the reasons the gate failed.
        publish_validation(root)
        create_markdown_artifact(
            markdown=_run_summary_markdown(selected, results),
            key="crab-stages",
            description="What each stage did in this run.",
        )
    publish_metrics(root)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m flows.pipeline [--repo DIR] [STAGE ...]``: one run of the flow (all stages by default)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description="Run the crab pipeline flow once.")
    parser.add_argument("stages", nargs="*", help=f"stages to run (default: all of {list(STAGES)})")
    parser.add_argument("--repo", default=".", help="DVC project folder (default: %(default)s)")
    args = parser.parse_args(argv)
    state = crab_pipeline(stages=args.stages or None, repo=args.repo, return_state=True)
    sys.exit(0 if state.is_completed() else 1)


if __name__ == "__main__":
    main()
