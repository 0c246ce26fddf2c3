"""Training checkpoints that resume a killed run to the same weights (DESIGN.md section 8).

A checkpoint is a folder ``<root>/step-00042/`` holding everything that decides the rest of a run:

    trainable.safetensors   the trainable parameters (frozen ones are rebuilt from the stage's inputs)
    optimizer.pt            AdamW state (moments, step counts, param groups)
    scheduler.pt            warmup + cosine scheduler state
    rng-rank<r>.pt          torch CPU (and CUDA) generator states of process r
    trainer_state.json      step, data position, log window, history, python / numpy RNG, fingerprint

It is written into a hidden temp folder and renamed into place, so a ``step-*`` folder is always
complete; the last :data:`KEEP_LAST` are kept. ``.pt`` files hold only tensors and plain containers and
are read with ``weights_only=True``. The fingerprint (the stage's settings and data size) guards against
resuming a run whose params changed: such checkpoints are not used.

How it differs from the authors' code: Crab's ``_save_checkpoint`` keeps only a subset of the weights
(no optimizer, scheduler, RNG or data position), so its ``resume_from_checkpoint`` restarts the schedule
and the data order.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = [
    "KEEP_LAST",
    "latest_checkpoint",
    "load_checkpoint",
    "read_trainer_state",
    "save_checkpoint",
]

log = logging.getLogger(__name__)

#: Checkpoints kept on disk (older ones are deleted after a new one is complete).
KEEP_LAST = 2
_PREFIX = "step-"
_STATE = "trainer_state.json"
_TRAINABLE = "trainable.safetensors"


def _step_dir(root: Path, step: int) -> Path:
    return root / f"{_PREFIX}{step:05d}"


def _checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as (step, folder), oldest first."""
    if not root.is_dir():
        return []
    found = []
    for path in root.glob(f"{_PREFIX}*"):
        stem = path.name.removeprefix(_PREFIX)
        if path.is_dir() and stem.isdigit() and (path / _STATE).is_file():
            found.append((int(stem), path))
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint folder under ``root``, or ``None``."""
    found = _checkpoints(Path(root))
    return found[-1][1] if found else None


def read_trainer_state(path: Path) -> dict[str, Any]:
    """The ``trainer_state.json`` of a checkpoint folder."""
    return json.loads((Path(path) / _STATE).read_text(encoding="utf-8"))


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def _rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor | list[torch.Tensor]]]:
    """(JSON-able python / numpy states, torch states)."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    host = {
        "python": [version, list(internal), gauss],
        "numpy": {**numpy_state, "state": {"key": numpy_state["state"]["key"].tolist(),
                                           "pos": numpy_state["state"]["pos"]}},
    }  # fmt: skip
    tensors: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state_all()
    return host, tensors


def _set_rng_state(host: dict[str, Any], tensors: dict[str, Any]) -> None:
    version, internal, gauss = host["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = dict(host["numpy"])
    numpy_state["state"] = {"key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32),
                            "pos": numpy_state["state"]["pos"]}  # fmt: skip
    np.random.set_state(numpy_state)
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(tensors["cuda"])


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())


def save_checkpoint(
    root: Path,
    step: int,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
    accelerator: Any,
) -> Path:
    """Write checkpoint ``step`` atomically and prune old ones (collective: call on every process).

    Args:
        root: the checkpoints folder.
        step: optimizer steps done.
        model: the (unwrapped) model; its parameters with ``requires_grad`` are saved.
        optimizer: the optimizer (its ``state_dict``).
        scheduler: the LR scheduler (its ``state_dict``).
        state: JSON-able trainer state (step, data position, ...); the python / numpy RNG is added here.
        accelerator: the ``accelerate.Accelerator`` (process index, barriers).

    Returns:
        The checkpoint folder.
    """
    root = Path(root)
    final = _step_dir(root, step)
    tmp = root / f".tmp-{final.name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    host_rng, torch_rng = _rng_state()
    torch.save(torch_rng, tmp / f"rng-rank{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        tensors = {name: p.detach().to("cpu", copy=True).contiguous() for name, p in _trainable(model)}
        save_file(tensors, str(tmp / _TRAINABLE))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        payload = {**state, "step": step, "rng": host_rng}
        (tmp / _STATE).write_text(json.dumps(payload, sort_keys=True) + "\n", encoding="utf-8")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _fsync_tree(tmp)
        shutil.rmtree(final, ignore_errors=True)  # a stale one from an earlier, abandoned run
        os.replace(tmp, final)
        for _, old in _checkpoints(root)[:-KEEP_LAST]:
            shutil.rmtree(old, ignore_errors=True)
        log.info("checkpoint: %s", final)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    accelerator: Any,
) -> dict[str, Any]:
    """Restore trainable weights, optimizer, scheduler and RNG from a checkpoint folder.

    Args:
        path: the checkpoint folder.
        model: the (unwrapped) model with the same trainable parameters as when it was saved.
        optimizer: the optimizer built over those parameters.
        scheduler: the scheduler built over that optimizer.
        accelerator: the ``accelerate.Accelerator``.

    Returns:
        The saved trainer state (``step``, ``position`` and whatever the trainer stored).

    Raises:
        ValueError: the trainable parameter names or shapes differ from the saved ones.
    """
    path = Path(path)
    tensors = load_file(str(path / _TRAINABLE))
    trainable = _trainable(model)
    names = [name for name, _ in trainable]
    if sorted(names) != sorted(tensors):
        extra, absent = sorted(set(tensors) - set(names)), sorted(set(names) - set(tensors))
        raise ValueError(f"{path}: trainable parameters differ (saved only: {extra[:3]}, model only: {absent[:3]})")
    with torch.no_grad():
        for name, param in trainable:
            if tensors[name].shape != param.shape:
                raise ValueError(f"{path}: {name} has shape {list(tensors[name].shape)}, model {list(param.shape)}")
            param.copy_(tensors[name])
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu"))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    state = read_trainer_state(path)
    rng_file = path / f"rng-rank{accelerator.process_index}.pt"
    _set_rng_state(state.pop("rng"), torch.load(rng_file, weights_only=True))
    return state
