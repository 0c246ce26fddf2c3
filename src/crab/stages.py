"""The stage table: the one place that says what each pipeline stage is (DESIGN.md section 3).

``dvc.yaml``, the ``crab`` CLI and the Prefect flows are thin adapters over :data:`STAGES`:

* ``crab <stage>`` runs ``Stage.target`` with the loaded params;
* ``dvc.yaml`` is *generated* from this table (``crab dvc-yaml``), so its stage names, commands,
  ``params`` sections, ``deps`` and ``outs`` cannot drift from it; a contract test checks that the
  committed file equals the generated one;
* stage functions are referenced as ``"module:function"`` strings and imported only when the stage
  runs, which keeps torch, great_expectations and prefect out of CLI start-up.

A stage function takes the whole :class:`crab.config.Params` and works relative to the repository
root (the current directory when DVC runs it). ``params`` lists exactly the top-level sections it
reads, so ``dvc repro`` reruns precisely the stages whose inputs changed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["STAGES", "Stage", "dvc_yaml", "resolve"]

PARAMS_FILE = "params.yaml"


@dataclass(frozen=True)
class Stage:
    """One pipeline stage.

    Attributes:
        name: stage name = CLI subcommand = dvc.yaml key (short verb or ``<verb>_<object>``).
        target: ``"module:function"`` of the stage function ``fn(params) -> result``.
        help: one line for ``crab --help``.
        params: top-level ``params.yaml`` sections the function reads.
        deps: files and folders it reads (code included, so code changes rerun it).
        outs: files and folders it writes (cached by DVC).
        metrics: small JSON metric files it writes (not cached, shown by ``dvc metrics show``).
    """

    name: str
    target: str
    help: str
    params: tuple[str, ...]
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    metrics: tuple[str, ...] = ()

    @property
    def cmd(self) -> str:
        return f"crab {self.name}"


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            name="validate_raw",
            target="crab.quality.raw:validate_raw",
            help="Quality gates over the raw datasets: quarantine bad items, write the report and data docs.",
            params=("datasets", "validation", "avuie"),
            deps=("data/raw", "src/crab/quality", "src/crab/datasets"),
            outs=("reports/validation/raw.json", "reports/validation/raw_docs"),
        ),
        Stage(
            name="avuie_build",
            target="crab.avuie.build:avuie_build",
            help="Build AV-UIE instruction data (answers with explicit reasoning) from the validated raw data.",
            params=("datasets", "avuie"),
            deps=(
                "data/raw",
                "reports/validation/raw.json",
                "src/crab/avuie",
                "src/crab/tasks.py",
                "src/crab/datasets",
            ),
            outs=("data/avuie",),
        ),
        Stage(
            name="validate_avuie",
            target="crab.quality.avuie:validate_avuie",
            help="Quality gates over AV-UIE: tags parse, ranges and answers valid, media exist.",
            params=("validation", "avuie"),
            deps=("data/avuie", "data/raw", "src/crab/quality", "src/crab/tasks.py", "src/crab/avuie"),
            outs=("reports/validation/avuie.json", "reports/validation/avuie_docs"),
        ),
    )
}


def resolve(stage: Stage) -> Callable[[Any], Any]:
    """Import a stage's function (lazily: heavy dependencies load only here)."""
    module_name, _, func_name = stage.target.partition(":")
    return getattr(importlib.import_module(module_name), func_name)


def dvc_yaml() -> str:
    """The content of ``dvc.yaml``, generated from :data:`STAGES`."""
    stages: dict[str, Any] = {}
    for stage in STAGES.values():
        entry: dict[str, Any] = {
            "cmd": stage.cmd,
            "params": list(stage.params),
            "deps": list(stage.deps),
            "outs": list(stage.outs),
        }
        if stage.metrics:
            entry["metrics"] = [{path: {"cache": False}} for path in stage.metrics]
        stages[stage.name] = entry
    header = "# Generated from src/crab/stages.py by `crab dvc-yaml`; do not edit by hand.\n"
    return header + yaml.safe_dump({"stages": stages}, sort_keys=False, width=110)
