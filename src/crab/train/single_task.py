"""Table 4's "Single task" baseline: one plain LoRA adapter (and its own projectors) per task.

``finetune.adapter: single_task`` makes the ``finetune`` stage train, for each task of ``finetune.tasks`` in
turn, a fresh copy of the pre-trained model with a plain LoRA adapter (``finetune.lora`` r / alpha /
dropout) on that task's train split alone, with the same optimisation settings as the multi-task run (so
each task sees its data for ``optim.epochs`` epochs, as in the mixture). Nothing is shared between tasks,
which is what the row measures: no cooperation at all. Written like the multi-task stage::

    models/finetune/<task>/     adapter_config.json, adapter_model.safetensors, train_summary.json
    models/finetune/train_summary.json   {"adapter": "single_task", "tasks": [...], "per_task": {...}}
    models/finetune_log/        dvclive: metrics.json {task: metrics}, plots/metrics/<task>/train/*.tsv

Resumable like every stage: each task trains in ``models/checkpoints/finetune/<task>/`` (a killed task
resumes from its latest checkpoint) and a finished task is parked in ``models/checkpoints/finetune/done/``,
so a restarted stage skips it. :func:`crab.train.finetune.load_finetuned` loads the adapters as named peft
adapters of one model (the task names); evaluation activates the evaluated task's adapter.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from accelerate import PartialState

from crab.config import Params
from crab.train.finetune import FinetuneResult, setup_finetune
from crab.train.loop import LIVE_DIRNAME, fit
from crab.train.stage import SUMMARY_NAME, StagePaths, publish_stage, summary_json

__all__ = ["finetune_single_task"]

log = logging.getLogger(__name__)

_DONE_DIRNAME = "done"
_LOG_DIRNAME = "log"


def _train_task(params: Params, task: str, paths: StagePaths, done: Path) -> None:
    """Train ``task``'s adapter and park its outputs (adapter, summary, dvclive log) in ``done``."""
    cfg = params.finetune
    setup = setup_finetune(params, tasks=[task])
    work_dir = paths.work_dir / task
    result = fit(
        setup.model, setup.dataset, setup.collate_fn, cfg.optim, seed=cfg.seed, work_dir=work_dir,
        fingerprint=setup.fingerprint, desc=f"finetune {task}",
    )  # fmt: skip
    state = PartialState()
    if state.is_main_process:
        tmp = done.with_name(f".{done.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        setup.model.save_pretrained(tmp)
        extra = {"seed": cfg.seed, "tasks": [task], "adapter": "lora", "single_task": True,
                 "lora": {"r": cfg.lora.r, "alpha": cfg.lora.alpha, "dropout": cfg.lora.dropout},
                 "pretrain": params.pretrain.out_dir}  # fmt: skip
        (tmp / SUMMARY_NAME).write_text(summary_json("finetune", setup, result, extra), encoding="utf-8")
        shutil.copytree(work_dir / LIVE_DIRNAME, tmp / _LOG_DIRNAME)
        tmp.rename(done)  # the task is finished only once everything is in place
        shutil.rmtree(work_dir, ignore_errors=True)
    state.wait_for_everyone()


def _merge_logs(paths: StagePaths, done_root: Path, tasks: list[str]) -> None:
    """One dvclive folder for the stage: ``metrics.json`` keyed by task, plots under ``plots/metrics/<task>/``."""
    live = paths.live_dir
    shutil.rmtree(live, ignore_errors=True)
    (live / "plots" / "metrics").mkdir(parents=True)
    metrics: dict[str, Any] = {}
    for task in tasks:
        task_log = done_root / task / _LOG_DIRNAME
        if (task_log / "metrics.json").is_file():
            metrics[task] = json.loads((task_log / "metrics.json").read_text(encoding="utf-8"))
        if (task_log / "plots" / "metrics").is_dir():
            shutil.copytree(task_log / "plots" / "metrics", live / "plots" / "metrics" / task)
    (live / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def finetune_single_task(params: Params) -> FinetuneResult:
    """Train one LoRA adapter per task (module docstring) and publish them as the ``finetune`` output.

    Returns:
        The :class:`FinetuneResult` of the whole stage: examples per task, the total number of steps, the
        mean of the tasks' final losses and the trainable parameters of one task's model.
    """
    cfg = params.finetune
    paths = StagePaths.of(cfg.out_dir)
    done_root = paths.work_dir / _DONE_DIRNAME
    tasks = list(cfg.tasks)
    for task in tasks:
        done = done_root / task
        if (done / SUMMARY_NAME).is_file():
            log.info("finetune %s: already trained in %s, skipped", task, done)
            continue
        log.info("finetune %s: single-task LoRA adapter", task)
        _train_task(params, task, paths, done)
    summaries = {t: json.loads((done_root / t / SUMMARY_NAME).read_text(encoding="utf-8")) for t in tasks}
    if PartialState().is_main_process:
        _merge_logs(paths, done_root, tasks)

    def write(folder: Path) -> None:
        for task in tasks:
            shutil.copytree(done_root / task, folder / task, ignore=shutil.ignore_patterns(_LOG_DIRNAME))
        summary = {"stage": "finetune", "adapter": "single_task", "tasks": tasks, "seed": cfg.seed,
                   "per_task": {t: {k: s[k] for k in ("num_examples", "final_loss", "plan", "trainable_parameters")}
                                for t, s in summaries.items()}}  # fmt: skip
        (folder / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    publish_stage(paths, write)
    return FinetuneResult(
        paths.out_dir,
        paths.log_dir,
        {t: s["num_examples"][t] for t, s in summaries.items()},
        sum(s["plan"]["num_steps"] for s in summaries.values()),
        sum(s["final_loss"] for s in summaries.values()) / len(summaries),
        summaries[tasks[0]]["trainable_parameters"],
    )
