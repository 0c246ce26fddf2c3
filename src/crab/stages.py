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

__all__ = ["STAGES", "Stage", "dvc_yaml", "foreach_tasks", "resolve"]

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
        plots: dvclive / JSON plot files it writes (not cached, shown by ``dvc plots show``).
        persist: keep the outs when the stage reruns (DVC deletes outs first otherwise); for stages
            that resume inside their out folder.
        foreach: a ``params.yaml`` key holding a list of tasks; the stage then runs once per task
            (``crab <stage> --task <task>``; a DVC ``foreach`` stage), and ``{task}`` in its deps,
            outs and metrics stands for the task.
    """

    name: str
    target: str
    help: str
    params: tuple[str, ...]
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    metrics: tuple[str, ...] = ()
    plots: tuple[str, ...] = ()
    persist: bool = False
    foreach: str | None = None

    @property
    def cmd(self) -> str:
        return f"crab {self.name} --task ${{item}}" if self.foreach else f"crab {self.name}"


def _mask_training_stage(section: str, help: str) -> Stage:
    """A segmentation training stage (``finetune_avs`` / ``finetune_avss``): one decoder head, its params section
    and output folders named after it (``crab.train.finetune_avs``)."""
    return Stage(
        name=section,
        target=f"crab.train.finetune_avs:{section}",
        help=help,
        params=("profile", "base_models", "features", "media", "pretrain", "finetune", section),
        deps=(
            "models/base",
            "models/pretrain",
            "models/finetune",
            "data/features",
            "data/avuie",
            "data/raw",
            "reports/validation/avuie.json",
            "src/crab/train",
            "src/crab/models",
            "src/crab/lora",
            "src/crab/features/store.py",
            "src/crab/datasets/media.py",
            "src/crab/tasks.py",
        ),
        outs=(f"models/{section}",),
        metrics=(f"models/{section}_log/metrics.json",),
        plots=(f"models/{section}_log/plots/metrics",),
    )


def _mask_evaluation_stage(name: str, section: str, help: str) -> Stage:
    """The evaluation of a segmentation stage's tasks with its model (a ``foreach`` over ``<section>.tasks``)."""
    return Stage(
        name=name,
        target="crab.eval.run_avs:evaluate_masks",
        help=help,
        params=("datasets", "media", "features", "pretrain", "finetune", section, "evaluate"),
        deps=(
            "data/avuie",
            "data/raw",
            "reports/validation/avuie.json",
            "data/features",
            "models/pretrain",
            "models/finetune",
            f"models/{section}",
            "src/crab/eval",
            "src/crab/tasks.py",
            "src/crab/avuie",
            "src/crab/train/data.py",
            "src/crab/train/finetune_avs.py",
        ),
        outs=("predictions/{task}.jsonl", "predictions/{task}_masks", "metrics/router_{task}.json"),
        metrics=("metrics/{task}.json",),
        foreach=f"{section}.tasks",
    )


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            name="validate_raw",
            target="crab.quality.raw:validate_raw",
            help="Quality gates over the raw datasets: quarantine bad items, write the report and data docs.",
            params=("datasets", "validation", "avuie"),
            deps=("data/raw", "src/crab/quality", "src/crab/datasets", "src/crab/tasks.py"),
            outs=("reports/validation/raw.json", "reports/validation/raw_docs"),
        ),
        Stage(
            name="avuie_build",
            target="crab.avuie.build:avuie_build",
            help="Build AV-UIE instruction data (answers with explicit reasoning) from the validated raw data.",
            # validation.*: the import gate of avuie.release (crab.avuie.released), unused without a release
            params=("datasets", "avuie", "validation.max_failure_rate", "validation.ave_duration_s"),
            deps=(
                "data/raw",
                "reports/validation/raw.json",
                "src/crab/avuie",
                "src/crab/tasks.py",
                "src/crab/datasets",
                "src/crab/eval/metrics_arig.py",  # ARIG boxes from the S4 masks
                "src/crab/synth/avsbench.py",  # scene object -> S4 category (the reasoning's words)
                "src/crab/synth/ref_avs.py",  # scene object -> Ref-AVS category (the expression's referent)
                "src/crab/quality/released.py",  # the import gate of avuie.release, and what it runs on
                "src/crab/quality/runner.py",
                "src/crab/quality/suites.py",
                "src/crab/quality/quarantine.py",
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
        Stage(
            name="base_models",
            target="crab.models.base:base_models",
            help="Write the frozen encoders, the LLM and the tokenizer (tiny: seeded, in the paper formats).",
            params=("profile", "base_models", "avuie"),
            deps=(
                "data/avuie",
                "src/crab/models/base.py",
                "src/crab/models/tokenizer.py",
                "src/crab/models/beats.py",
                "src/crab/models/pretrained.py",
                "src/crab/models/mask_decoder.py",
            ),
            outs=("models/base",),
        ),
        Stage(
            name="features",
            target="crab.features.extract:features",
            help="Run the frozen CLIP and BEATs once over all AV-UIE media into sharded safetensors.",
            params=("avuie", "media", "base_models", "features"),
            deps=(
                "data/avuie",
                "reports/validation/avuie.json",
                "models/base",
                "data/raw",
                "src/crab/features",
                "src/crab/datasets/media.py",
                "src/crab/models/beats.py",
                "src/crab/models/base.py",
                "src/crab/tasks.py",
            ),
            outs=("data/features",),
            persist=True,
        ),
        Stage(
            name="pretrain",
            target="crab.train.pretrain:pretrain",
            help="Align the projectors on captions and task data (tiny: the LLM also learns language), then "
            "pre-train the mask decoder (pretrain.segmentation).",
            params=("profile", "base_models", "features", "media", "pretrain", "finetune.tasks"),
            deps=(
                "models/base",
                "data/features",
                "data/avuie",
                "data/raw",  # the segmentation phase's masks
                "reports/validation/avuie.json",
                "src/crab/train",
                "src/crab/models",
                "src/crab/features/store.py",
                "src/crab/datasets/media.py",
                "src/crab/tasks.py",
            ),
            outs=("models/pretrain",),
            metrics=("models/pretrain_log/metrics.json",),
            plots=("models/pretrain_log/plots/metrics",),
        ),
        Stage(
            name="finetune",
            target="crab.train.finetune:finetune",
            help="Multi-task instruction tuning: LLM frozen, adapter (IA-LoRA or LoRA) and projectors trained.",
            params=("pretrain", "features", "media", "finetune"),
            deps=(
                "models/pretrain",
                "data/features",
                "data/avuie",
                "reports/validation/avuie.json",
                "src/crab/train",
                "src/crab/models",
                "src/crab/lora",
                "src/crab/features/store.py",
                "src/crab/tasks.py",
            ),
            outs=("models/finetune",),
            metrics=("models/finetune_log/metrics.json",),
            plots=("models/finetune_log/plots/metrics",),
        ),
        _mask_training_stage(
            "finetune_avs",
            "AVS fine-tuning: mask decoder, embeddings and LM head on S4 / MS3 / Ref-AVS; adapter, projectors frozen.",
        ),
        _mask_training_stage(
            "finetune_avss", "AVSS fine-tuning: as finetune_avs, with the 71-class decoder head on AVSS."
        ),
        Stage(
            name="evaluate",
            target="crab.eval.run:evaluate",
            help="Greedy generation, answer parsing and official metrics with trivial baselines, per text task.",
            params=("datasets", "media", "features", "pretrain", "finetune", "evaluate"),
            deps=(
                "data/avuie",
                "reports/validation/avuie.json",
                "data/features",
                "models/pretrain",
                "models/finetune",
                "src/crab/eval",
                "src/crab/tasks.py",
                "src/crab/avuie",
                "src/crab/train/data.py",
            ),
            # The router statistics are an analysis table, not scalar metrics: a plain (cached) out.
            outs=("predictions/{task}.jsonl", "metrics/router_{task}.json"),
            metrics=("metrics/{task}.json",),
            foreach="evaluate.tasks",
        ),
        _mask_evaluation_stage(
            "evaluate_avs",
            "finetune_avs",
            "Answers with masks from the finetune_avs model: mIoU / F per video with trivial baselines, per task.",
        ),
        _mask_evaluation_stage(
            "evaluate_avss",
            "finetune_avss",
            "Answers with class maps from the finetune_avss model: AVSS mIoU / F with trivial baselines.",
        ),
        Stage(
            name="report",
            target="crab.report:report",
            help="Execute the papermill notebooks into reports/ (ipynb + HTML without code).",
            params=("finetune", "finetune_avs", "finetune_avss", "pretrain", "evaluate"),
            deps=(
                "notebooks",
                "src/crab/report.py",
                "src/crab/report_tables.py",
                "src/crab/report_data.py",
                "src/crab/report_router.py",
                "src/crab/report_segmentation.py",
                "metrics",
                "predictions",
                "models/pretrain_log",
                "models/finetune_log",
                "models/finetune_avs_log",
                "models/finetune_avss_log",
                "data/avuie",
                "data/raw",
                "reports/validation/raw.json",
                "reports/validation/avuie.json",
            ),
            outs=(
                "reports/results.ipynb",
                "reports/results.html",
                "reports/data.ipynb",
                "reports/data.html",
            ),
        ),
    )
}


def resolve(stage: Stage) -> Callable[[Any], Any]:
    """Import a stage's function (lazily: heavy dependencies load only here)."""
    module_name, _, func_name = stage.target.partition(":")
    return getattr(importlib.import_module(module_name), func_name)


def foreach_tasks(stage: Stage, params: Any) -> list[str]:
    """The tasks a ``foreach`` stage runs for: the list at its dotted ``params`` key (``evaluate.tasks``)."""
    if stage.foreach is None:
        raise ValueError(f"stage {stage.name} is not a foreach stage")
    value: Any = params
    for part in stage.foreach.split("."):
        value = getattr(value, part)
    return list(value)


def dvc_yaml() -> str:
    """The content of ``dvc.yaml``, generated from :data:`STAGES`."""
    stages: dict[str, Any] = {}
    for stage in STAGES.values():

        def paths(items: tuple[str, ...]) -> list[str]:
            return [p.replace("{task}", "${item}") for p in items]

        entry: dict[str, Any] = {
            "cmd": stage.cmd,
            "params": list(stage.params),
            "deps": paths(stage.deps),
            "outs": [{p: {"persist": True}} for p in paths(stage.outs)] if stage.persist else paths(stage.outs),
        }
        if stage.metrics:
            entry["metrics"] = [{path: {"cache": False}} for path in paths(stage.metrics)]
        if stage.plots:
            # dvclive writes a `step` column; without x DVC plots against the row index.
            entry["plots"] = [{path: {"cache": False, "x": "step"}} for path in paths(stage.plots)]
        stages[stage.name] = {"foreach": f"${{{stage.foreach}}}", "do": entry} if stage.foreach else entry
    header = "# Generated from src/crab/stages.py by `crab dvc-yaml`; do not edit by hand.\n"
    return header + yaml.safe_dump({"stages": stages}, sort_keys=False, width=110)
