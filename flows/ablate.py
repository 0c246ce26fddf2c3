"""The Table 4 ablation queue as a Prefect flow: ``crab ablate`` on a schedule, results as artifacts.

One task runs :func:`crab.ablate.run_ablation` in the repository (DVC queues and runs the experiments;
Prefect only decides when), then the flow publishes the Table 4 layout and the paper's orderings as table
artifacts. The ``table4-weekly`` deployment in ``prefect.yaml`` schedules it. Run it once by hand with
``python -m flows.ablate [--rows crab,wo_erp] [--repo DIR]``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from crab.ablate import run_ablation
from crab.config import load_params
from crab.report_ablation import orderings, table4

__all__ = ["crab_ablate", "main"]


@task(cache_policy=NO_CACHE)
def run_table4(repo: str, rows: list[str] | None, collect_only: bool) -> dict[str, Any]:
    """Queue and run the rows (or only collect them) and render ``reports/table4.html``; no retries:
    a re-run would replace finished experiments."""
    params = load_params(Path(repo) / "params.yaml")
    return run_ablation(params.ablate, rows=rows, repo=repo, collect_only=collect_only)


@flow(name="crab-ablate")
def crab_ablate(rows: list[str] | None = None, repo: str = ".", collect_only: bool = False) -> dict[str, Any]:
    """Run the Table 4 experiments and publish the table and the orderings as artifacts.

    Args:
        rows: row names of ``params.ablate.rows`` (None: all).
        repo: the repository (git + DVC, with a commit).
        collect_only: do not run experiments; collect and publish what exists.

    Returns:
        The collected results (``reports/table4.json``).
    """
    root = str(Path(repo).resolve())
    results = run_table4(root, rows, collect_only)
    table = table4(results)
    create_table_artifact(table=table.astype(str).to_dict("records"), key="crab-table4",
                          description="Table 4: ours (AV-Synth, mean ± sd over seeds) beside the paper's.")  # fmt: skip
    order = orderings(results)
    if not order.empty:
        create_table_artifact(table=order.astype(str).to_dict("records"), key="crab-table4-orderings",
                              description="Which of the paper's Table 4 orderings hold on AV-Synth.")  # fmt: skip
    done = sum(run["state"] == "success" for run in results["runs"])
    get_run_logger().info("crab ablate: %d of %d experiments have results", done, len(results["runs"]))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m flows.ablate [--rows a,b] [--repo DIR] [--collect-only]``: one run of the flow."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m flows.ablate", description="Run the Table 4 flow once.")
    parser.add_argument("--rows", help="comma-separated row names (default: all)")
    parser.add_argument("--repo", default=".", help="repository (default: %(default)s)")
    parser.add_argument("--collect-only", action="store_true", help="collect existing experiments only")
    args = parser.parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",")] if args.rows else None
    state = crab_ablate(rows=rows, repo=args.repo, collect_only=args.collect_only, return_state=True)
    sys.exit(0 if state.is_completed() else 1)


if __name__ == "__main__":
    main()
