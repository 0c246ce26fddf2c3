"""Serve a deployment of ``prefect.yaml`` from this process, without a work pool or worker.

``prefect.yaml`` is the one place where the pipeline's deployments (schedule, parameters, concurrency)
are declared; ``prefect deploy`` sends them to a work pool of type ``process``. For a laptop or a CI
box, ``python -m flows.serve`` (from the repository root, against a running Prefect server) registers
the same deployment from the same file and executes its runs here: a long-lived process, stopped with
Ctrl-C, which then pauses the schedule so that runs do not pile up while nobody serves them.
:func:`load_deployment` is also what the integration test registers, so the schedule it checks is the
one in ``prefect.yaml``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prefect.flows import load_flow_from_entrypoint
from prefect.schedules import Cron, Schedule

__all__ = ["PREFECT_YAML", "DeploymentSpec", "load_deployment", "main"]

log = logging.getLogger(__name__)

#: The deployments file at the repository root.
PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment of ``prefect.yaml`` (the fields serving needs).

    Attributes:
        name: deployment name (``crab-pipeline/<name>``).
        entrypoint: ``path/to/file.py:flow_function``, relative to the repository root.
        parameters: default flow parameters.
        crons: ``(cron, timezone)`` of each *active* cron schedule.
        concurrency_limit: at most this many runs at once (None: unlimited).
        description: shown in the UI.
        tags: deployment tags.
    """

    name: str
    entrypoint: str
    parameters: dict[str, Any] = field(default_factory=dict)
    crons: tuple[tuple[str, str], ...] = ()
    concurrency_limit: int | None = None
    description: str = ""
    tags: tuple[str, ...] = ()

    def schedules(self) -> list[Schedule]:
        """The Prefect schedules of the active crons."""
        return [Cron(cron, timezone=timezone) for cron, timezone in self.crons]


def load_deployment(name: str = "nightly", path: str | Path = PREFECT_YAML) -> DeploymentSpec:
    """Read one deployment from ``prefect.yaml``.

    Args:
        name: the deployment's ``name``.
        path: the deployments file.

    Returns:
        Its spec.

    Raises:
        ValueError: no deployment of that name, or a schedule that is not a cron schedule.
    """
    config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    entries = {entry["name"]: entry for entry in config.get("deployments") or []}
    if name not in entries:
        raise ValueError(f"{path}: no deployment named {name!r} (have {sorted(entries)})")
    entry = entries[name]
    crons = []
    for schedule in entry.get("schedules") or []:
        if "cron" not in schedule:
            raise ValueError(f"{path}: deployment {name!r}: only cron schedules are served, got {schedule}")
        if schedule.get("active", True):
            crons.append((schedule["cron"], schedule.get("timezone", "UTC")))
    return DeploymentSpec(
        name=name,
        entrypoint=entry["entrypoint"],
        parameters=dict(entry.get("parameters") or {}),
        crons=tuple(crons),
        concurrency_limit=entry.get("concurrency_limit"),
        description=" ".join(str(entry.get("description", "")).split()),
        tags=tuple(entry.get("tags") or ()),
    )


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m flows.serve [--name nightly]``: serve a deployment of ``prefect.yaml`` until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="nightly", help="deployment of prefect.yaml (default: %(default)s)")
    parser.add_argument("--prefect-yaml", default=str(PREFECT_YAML), help="deployments file")
    args = parser.parse_args(argv)
    # Prefect logs the runner itself; the root level stays at WARNING so that httpx does not log every poll.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)

    spec = load_deployment(args.name, args.prefect_yaml)
    # The flow named by the deployment's entrypoint (relative to the folder of prefect.yaml), loaded
    # the way a worker loads it; a missing flow is an error, not Prefect's placeholder flow.
    entry_file, _, func = spec.entrypoint.rpartition(":")
    pipeline = load_flow_from_entrypoint(
        f"{Path(args.prefect_yaml).resolve().parent / entry_file}:{func}", use_placeholder_flow=False
    )
    log.info("serving %s/%s (schedules %s)", pipeline.name, spec.name, list(spec.crons) or "none")
    pipeline.serve(
        name=spec.name,
        schedules=spec.schedules(),
        parameters=spec.parameters,
        global_limit=spec.concurrency_limit,
        description=spec.description,
        tags=list(spec.tags),
        limit=1,
    )


if __name__ == "__main__":
    main()
