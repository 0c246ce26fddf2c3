"""What the two training stages share: their folders, their setup record, the summary, and publishing.

Folders of a stage with ``out_dir`` ``models/<stage>`` (:class:`StagePaths`): the final artefacts go to
``models/<stage>/`` and the dvclive log to ``models/<stage>_log/``, both written when training has finished
(temp folder + rename, :func:`publish_stage`), so DVC may delete them before a run. Checkpoints and the live
dvclive log of the running run live in ``models/checkpoints/<stage>/``, outside every DVC output, because
``dvc repro`` deletes a stage's outputs before running it and would otherwise delete what a killed run needs
to resume. A stage run in phases (the tiny ``pretrain`` teaches the LLM language first) gives each earlier phase
a sibling work folder ``models/checkpoints/<stage>.<phase>/`` (:meth:`StagePaths.phase_work_dir`), whose
dvclive log is published as ``models/<stage>_log/<phase>/``. A finished stage deletes its work folders. Each
output folder holds a ``train_summary.json`` (:func:`summary_json`): data counts, trainable parameters, step
plan and loss history, and no timings, so it is the same for the same seed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from transformers import PreTrainedTokenizerBase

from crab.models.collator import collate, pad_token_id
from crab.train.data import AvuieDataset
from crab.train.loop import LIVE_DIRNAME, FitResult

__all__ = ["SUMMARY_NAME", "StagePaths", "TrainSetup", "publish_folder", "publish_stage", "summary_json"]

log = logging.getLogger(__name__)

#: Name of the JSON summary written next to the weights by both training stages.
SUMMARY_NAME = "train_summary.json"


@dataclass(frozen=True)
class StagePaths:
    """Where a training stage writes (module docstring)."""

    out_dir: Path  # final model / adapter (DVC out)
    log_dir: Path  # final dvclive folder (DVC metrics + plots)
    work_dir: Path  # checkpoints + live dvclive folder of the running run (not tracked)

    @classmethod
    def of(cls, out_dir: str | Path) -> StagePaths:
        out = Path(out_dir)
        return cls(out, out.with_name(f"{out.name}_log"), out.parent / "checkpoints" / out.name)

    @property
    def live_dir(self) -> Path:
        """The dvclive folder of the running run (copied to ``log_dir`` when the stage finishes)."""
        return self.work_dir / LIVE_DIRNAME

    def phase_work_dir(self, phase: str) -> Path:
        """Work folder of an earlier phase: a sibling of ``work_dir``, so a restart of the last phase with
        other settings (which clears ``work_dir``) keeps the finished phase."""
        return self.work_dir.with_name(f"{self.work_dir.name}.{phase}")


@dataclass
class TrainSetup:
    """A training stage ready to fit: model (trainable set), tokenizer, data and resumption fingerprint."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    dataset: AvuieDataset
    trainable: dict[str, int]  # trainable parameters per component
    fingerprint: dict[str, Any]

    def collate_fn(self, examples: list) -> dict:
        """Left-padded batch (pad = the tokenizer's pad id, EOS if it has none)."""
        return collate(examples, pad_token_id=pad_token_id(self.tokenizer))


def summary_json(stage: str, setup: TrainSetup, result: FitResult, extra: dict[str, Any]) -> str:
    """The ``train_summary.json`` text: deterministic for a seed (no timings; those go to the dvclive log)."""
    total = sum(p.numel() for p in setup.model.parameters())
    summary = {
        "stage": stage,
        "num_examples": setup.dataset.task_counts(),
        "trainable_parameters": setup.trainable,
        "total_parameters": total,
        "plan": vars(result.plan),
        "mixed_precision": result.mixed_precision,
        "final_loss": result.final_loss,
        "history": result.history,
        **extra,
    }
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"


def publish_stage(paths: StagePaths, write_outputs: Callable[[Path], None], phases: Sequence[str] = ()) -> None:
    """Finish a stage: write its outputs, publish them and the dvclive logs atomically, drop the work folders.

    Runs the writing on the main process only; every process waits for it.

    Args:
        paths: the stage's folders.
        write_outputs: ``f(folder)`` writes the stage's artefacts into an empty temp folder.
        phases: earlier phases whose dvclive logs go to ``log_dir/<phase>`` (:meth:`StagePaths.phase_work_dir`).
    """
    state = PartialState()
    if state.is_main_process:
        for final in (paths.out_dir, paths.log_dir):
            shutil.rmtree(final.parent / f".{final.name}.tmp", ignore_errors=True)
        tmp_out = paths.out_dir.parent / f".{paths.out_dir.name}.tmp"
        tmp_out.mkdir(parents=True)
        write_outputs(tmp_out)
        tmp_log = paths.log_dir.parent / f".{paths.log_dir.name}.tmp"
        shutil.copytree(paths.live_dir, tmp_log)
        for phase in phases:
            shutil.copytree(paths.phase_work_dir(phase) / LIVE_DIRNAME, tmp_log / phase)
        publish_folder(tmp_out, paths.out_dir)
        publish_folder(tmp_log, paths.log_dir)
        for work_dir in (paths.work_dir, *(paths.phase_work_dir(phase) for phase in phases)):
            shutil.rmtree(work_dir, ignore_errors=True)
        if paths.work_dir.parent.is_dir() and not any(paths.work_dir.parent.iterdir()):
            paths.work_dir.parent.rmdir()  # models/checkpoints/ once no stage has a run in progress
        log.info("wrote %s and %s", paths.out_dir, paths.log_dir)
    state.wait_for_everyone()


def publish_folder(tmp: Path, final: Path) -> None:
    """Replace ``final`` by the finished folder ``tmp`` with renames (the old one is removed last)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
