"""``crab ablate``: the paper's Table 4 as DVC experiments, one per row and seed, then the Table 4 report.

Each row of ``params.ablate.rows`` is a set of ``dvc exp run -S`` overrides (the adapter, the reasoning
switch); each seed of ``params.ablate.seeds`` sets ``finetune.seed`` on top. All experiments are queued
from the current commit (``dvc exp run --queue -n <row>-seed<seed> evaluate``) and run by ``dvc exp run --run-all``
(each in its own temporary copy of the repository; DVC's run cache restores every stage whose inputs an
earlier experiment already produced, so the rows that share ``avuie`` / ``pretrain`` settings train the
shared stages once). Then ``dvc exp show --json`` is read back and :mod:`crab.report_ablation` renders
``notebooks/ablation/table4.ipynb`` into ``reports/table4.{ipynb,html}`` with the collected results in
``reports/table4.json``.

Why seeds vary only ``finetune.seed``: the rows differ in fine-tuning (and, for the rows without the
reasoning process, in the data the shared pre-training saw); re-seeding pre-training too would multiply the
cost of every row by the pre-training time without isolating the effect the table is about. The spread
reported is therefore the fine-tuning seed's. Re-running replaces the experiments of the same names that
derive from the current commit.

Why each experiment targets ``evaluate`` (the text tasks' stage and its ancestors), not the whole pipeline:
Table 4's columns are AVQA, AVE, AVVP and ARIG, all scored by ``evaluate``; ``finetune_avs`` and
``evaluate_avs`` would add the AVS stage to every row without adding a column (and the single-task row has no
shared adapter for it to start from), and ``report`` renders the main results, not the ablation.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crab.config import AblateConfig, AblationRow
from crab.errors import CrabError

__all__ = [
    "ABLATION_NOTEBOOK",
    "ABLATION_TARGET",
    "RESULTS_PATH",
    "AblationRun",
    "collect_results",
    "experiment_name",
    "format_override",
    "queue_commands",
    "run_ablation",
    "select_rows",
]

log = logging.getLogger(__name__)

#: Where the collected results go (read by the Table 4 notebook).
RESULTS_PATH = Path("reports/table4.json")
#: The Table 4 notebook; outside ``notebooks/``'s top level, so the ``report`` stage does not run it.
ABLATION_NOTEBOOK = Path("notebooks/ablation/table4.ipynb")
_SEED_KEY = "finetune.seed"
#: The stage every experiment reproduces, with its ancestors (module docstring).
ABLATION_TARGET = "evaluate"


@dataclass(frozen=True)
class AblationRun:
    """One queued experiment: a row at a seed."""

    row: AblationRow
    seed: int

    @property
    def name(self) -> str:
        return experiment_name(self.row.name, self.seed)


def experiment_name(row: str, seed: int) -> str:
    """The DVC experiment name of ``row`` at ``seed`` (``crab-seed0``)."""
    return f"{row}-seed{seed}"


def format_override(key: str, value: Any) -> str:
    """``key=value`` for ``dvc exp run -S``, values in YAML spelling (``true``, not ``True``)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float, str)):
        text = str(value)
    else:
        raise CrabError(f"ablate: override {key} must be a scalar, got {value!r}")
    return f"{key}={text}"


def select_rows(cfg: AblateConfig, names: Sequence[str] | None) -> list[AblationRow]:
    """The rows named in ``names`` (all when empty), in the params' order.

    Raises:
        CrabError: an unknown row name (the known ones are listed).
    """
    if not names:
        return list(cfg.rows)
    known = {row.name: row for row in cfg.rows}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise CrabError(f"ablate: unknown row(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [row for row in cfg.rows if row.name in names]


def queue_commands(runs: Sequence[AblationRun]) -> list[list[str]]:
    """One ``dvc exp run --queue`` command per run."""
    commands = []
    for run in runs:
        if _SEED_KEY in run.row.set:
            raise CrabError(f"ablate: row {run.row.name} sets {_SEED_KEY}; seeds come from ablate.seeds")
        overrides = {**run.row.set, _SEED_KEY: run.seed}
        command = ["dvc", "exp", "run", "--queue", "--name", run.name]
        for key, value in overrides.items():
            command += ["--set-param", format_override(key, value)]
        commands.append([*command, ABLATION_TARGET])
    return commands


def _dvc(args: list[str], cwd: Path) -> str:
    """Run one DVC command (``args[0] == "dvc"``); its failure is a :class:`CrabError` with DVC's message.

    This interpreter's ``bin`` folder goes first on ``PATH``: the queue's workers and the stage commands
    (``crab ...``) are looked up there, so ``crab ablate`` works from a venv that is not activated.
    """
    log.info("$ %s", " ".join(args))
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        raise CrabError(f"`{' '.join(args)}` failed: {message[-1] if message else f'exit {proc.returncode}'}")
    return proc.stdout


def _existing_experiments(show: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Experiments of ``dvc exp show --json`` by name, each with its ``baseline`` commit and executor
    ``state``; a name found under several commits keeps its newest run (by timestamp)."""
    found: dict[str, Mapping[str, Any]] = {}
    for entry in show:
        if entry.get("rev") == "workspace":
            continue
        for experiment in entry.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                name = rev.get("name")
                if not name:
                    continue
                run = {**rev, "baseline": entry.get("rev"), "state": (experiment.get("executor") or {}).get("state")}
                stamp = str((rev.get("data") or {}).get("timestamp") or "")
                if name not in found or stamp > str((found[name].get("data") or {}).get("timestamp") or ""):
                    found[name] = run
    return found


def collect_results(show: Sequence[Mapping[str, Any]], runs: Sequence[AblationRun]) -> dict[str, Any]:
    """The ``reports/table4.json`` content: per run, its row, seed, state, commit, overrides and metrics.

    Args:
        show: parsed ``dvc exp show --json --all-commits`` output (experiments of every commit, so a later
            commit does not hide earlier results; a name run under several commits counts its newest run).
        runs: the runs to look up by name.

    Returns:
        ``{"baseline": the current commit, "runs": [{"row", "label", "seed", "name", "state", "baseline",
        "metrics": {file: data}}]}``; a run that is missing or failed has empty metrics and says so in
        ``state``.
    """
    experiments = _existing_experiments(show)
    baseline = next((e.get("rev") for e in show if e.get("rev") != "workspace"), None)
    rows = []
    for run in runs:
        found = experiments.get(run.name)
        metrics: dict[str, Any] = {}
        state = "missing"
        if found is not None:
            state = found.get("state") or "success"
            for path, value in ((found.get("data") or {}).get("metrics") or {}).items():
                if isinstance(value, Mapping) and "data" in value:
                    metrics[path] = value["data"]
            if found.get("error"):
                state = "failed"
        rows.append({"row": run.row.name, "label": run.row.label, "seed": run.seed, "name": run.name,
                     "state": state, "baseline": (found or {}).get("baseline"), "set": dict(run.row.set),
                     "metrics": metrics})  # fmt: skip
    return {"baseline": baseline, "runs": rows}


def _show(repo: Path, all_commits: bool = False) -> list[dict[str, Any]]:
    extra = ["--all-commits"] if all_commits else []
    return json.loads(_dvc(["dvc", "exp", "show", "--json", "--no-pager", *extra], repo) or "[]")


def run_ablation(
    cfg: AblateConfig,
    *,
    rows: Sequence[str] | None = None,
    repo: str | Path = ".",
    collect_only: bool = False,
    render: bool = True,
) -> dict[str, Any]:
    """Queue and run the Table 4 experiments, collect their metrics and render the report.

    Args:
        cfg: ``params.ablate``.
        rows: row names to run (default all).
        repo: the repository root (a git + DVC repo with a commit).
        collect_only: skip running; only collect the existing experiments and render.
        render: render the Table 4 notebook after collecting.

    Returns:
        The collected results (also written to ``reports/table4.json``).

    Raises:
        CrabError: an unknown row, or a DVC command failed (its message is passed on).
    """
    repo = Path(repo)
    runs = [AblationRun(row, seed) for row in select_rows(cfg, rows) for seed in cfg.seeds]
    if not collect_only:
        existing = _existing_experiments(_show(repo))
        clashing = [run.name for run in runs if run.name in existing]
        if clashing:
            _dvc(["dvc", "exp", "remove", *clashing], repo)  # a re-run replaces them
        for command in queue_commands(runs):
            _dvc(command, repo)
        log.info("ablate: running %d experiments (%d rows x %d seeds), %d at a time",
                 len(runs), len(runs) // len(cfg.seeds), len(cfg.seeds), cfg.jobs)  # fmt: skip
        try:
            _dvc(["dvc", "exp", "run", "--run-all", "--jobs", str(cfg.jobs)], repo)
        except CrabError as err:  # a failed experiment: the others' results still count
            log.warning("ablate: %s", err)
    results = collect_results(_show(repo, all_commits=True), runs)
    out = repo / RESULTS_PATH
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    failed = [r["name"] for r in results["runs"] if r["state"] != "success"]
    if failed:
        log.warning("ablate: no results for %s (see `dvc exp show` / `dvc queue logs <name>`)", ", ".join(failed))
    if render:
        from crab.report import REPORTS_DIR, run_notebook

        notebook, html = run_notebook(repo / ABLATION_NOTEBOOK, repo / REPORTS_DIR, {"results_path": str(out)})
        log.info("ablate: Table 4 in %s and %s", notebook, html)
    return results
