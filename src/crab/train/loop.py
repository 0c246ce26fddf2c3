"""The training loop shared by ``pretrain`` and ``finetune``, on ``accelerate`` (crab-reference section 3.1).

:func:`fit` trains the parameters with ``requires_grad`` of any model whose forward takes a collated Crab
batch and returns ``.loss``: AdamW (weight decay on matrices only), linear warmup then cosine decay
(``transformers.get_cosine_schedule_with_warmup``), gradient accumulation and clipping through
``accelerate``, mixed precision where the device supports it (:func:`resolve_mixed_precision`), a tqdm
progress bar, and dvclive metrics (loss, LR, gradient norm, tokens/s, epoch) per log step. Every
``save_every_steps`` optimizer steps, and after the last one, it writes a checkpoint
(:mod:`crab.train.checkpoint`); a new call with the same work folder and settings resumes from the latest
one and ends with the same weights as an uninterrupted run (bit-identical on CPU).

The stage folders and the publishing of results are in :mod:`crab.train.stage`.

How it differs from the authors' code: Crab trains with HF ``Trainer`` + DeepSpeed, whose JSON scheduler
silently replaces the requested cosine schedule by warmup + linear decay (section 3.1), and whose
checkpoints cannot resume. Here the schedule is the one named in params and resumption is tested.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import parse_flag_from_env, set_seed
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, get_cosine_schedule_with_warmup

from crab.config import OptimConfig
from crab.errors import CrabError
from crab.train.checkpoint import latest_checkpoint, load_checkpoint, read_trainer_state, save_checkpoint
from crab.train.data import ResumableBatchSampler
from crab.train.token_rows import trained_rows

__all__ = [
    "FitResult",
    "StepPlan",
    "build_optimizer",
    "configure_deepspeed",
    "fit",
    "plan_steps",
    "resolve_mixed_precision",
]

log = logging.getLogger(__name__)

#: Metric names written to dvclive (``<log_dir>/plots/metrics/train/<name>.tsv``; with an extra loss
#: also ``router_aux_loss``).
METRICS = ("loss", "lr", "grad_norm", "tokens_per_s", "epoch")
#: Name of the live dvclive folder inside a work folder.
LIVE_DIRNAME = "dvclive"


@dataclass(frozen=True)
class StepPlan:
    """How many micro-batches and optimizer steps a run takes."""

    batches_per_epoch: int  # micro-batches per epoch and process
    num_steps: int  # optimizer steps = ceil(epochs * batches_per_epoch / grad_accum)
    num_micro_batches: int  # num_steps * grad_accum
    num_warmup_steps: int  # ceil(warmup_ratio * num_steps)


def plan_steps(num_examples: int, optim: OptimConfig, num_replicas: int = 1) -> StepPlan:
    """The step plan of a run over ``num_examples`` examples (see :class:`StepPlan`)."""
    per_epoch = -(-num_examples // (optim.batch_size * num_replicas))
    num_steps = max(1, math.ceil(optim.epochs * per_epoch / optim.grad_accum))
    return StepPlan(per_epoch, num_steps, num_steps * optim.grad_accum, math.ceil(optim.warmup_ratio * num_steps))


def resolve_mixed_precision(requested: str, device: torch.device) -> str:
    """The mixed-precision mode to use: ``requested`` if the device supports it, else ``"no"`` (logged).

    CUDA: ``fp16`` always, ``bf16`` where ``torch.cuda.is_bf16_supported()``. CPU: ``bf16`` only where the
    CPU has native bf16 instructions (AVX512-BF16 or AMX; elsewhere bf16 autocast is emulated and slower),
    never ``fp16`` (autocast on CPU has no fp16 grad scaling). Other devices: ``"no"``.

    Args:
        requested: ``optim.mixed_precision`` (``"no"``, ``"bf16"``, ``"fp16"``).
        device: the training device.
    """
    if requested == "no":
        return "no"
    if device.type == "cuda":
        supported = requested == "fp16" or torch.cuda.is_bf16_supported()
    elif device.type == "cpu":
        native = (
            getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
            or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        )
        supported = requested == "bf16" and native
    else:
        supported = False
    if not supported:
        log.warning("mixed precision %r is not supported on %s; training in float32", requested, device)
        return "no"
    return requested


def build_optimizer(named_params: Sequence[tuple[str, nn.Parameter]], optim: OptimConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (biases, norms and 1-D query/scale vectors are not decayed).

    A matrix trained on some rows only (:func:`crab.train.token_rows.train_rows_only`) is not decayed either:
    decay would move its frozen rows.

    Args:
        named_params: the trainable ``(name, parameter)`` pairs, in a fixed order.
        optim: lr and weight decay.
    """
    decayed = [p.ndim >= 2 and trained_rows(p) is None for _, p in named_params]
    decay = [p for (_, p), d in zip(named_params, decayed, strict=True) if d]
    no_decay = [p for (_, p), d in zip(named_params, decayed, strict=True) if not d]
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=optim.lr)


def configure_deepspeed(plugin: Any, optim: OptimConfig) -> None:
    """Give a DeepSpeed plugin the micro-batch size and clipping norm of params (its ``"auto"`` values).

    accelerate takes the micro-batch size from a prepared ``DataLoader``, which :func:`fit` has not (its
    sampler is resumable), and would clip at 1.0; the accumulation steps it fills from the Accelerator.

    Args:
        plugin: the active ``accelerate.utils.DeepSpeedPlugin``.
        optim: the stage's ``batch_size`` and ``max_grad_norm``.

    Raises:
        CrabError: the DeepSpeed config sets one of them to another value than params.
    """
    mismatches: list[str] = []
    plugin.fill_match("train_micro_batch_size_per_gpu", mismatches, train_micro_batch_size_per_gpu=optim.batch_size)
    plugin.fill_match("gradient_clipping", mismatches, gradient_clipping=optim.max_grad_norm)
    if mismatches:
        raise CrabError(f"the DeepSpeed config disagrees with params (set these in params.yaml): {mismatches}")


@dataclass
class _Window:
    """Sums since the last log step (saved in checkpoints so resumed logs equal uninterrupted ones)."""

    loss: float = 0.0
    aux: float = 0.0
    count: int = 0

    def add(self, loss: float, aux: float) -> None:
        self.loss, self.aux, self.count = self.loss + loss, self.aux + aux, self.count + 1


@dataclass
class _RunState:
    """Progress of a run: what a checkpoint restores besides weights, optimizer, scheduler and RNG."""

    step: int = 0  # optimizer steps done
    position: int = 0  # micro-batches consumed (the sampler's data position)
    window: _Window = field(default_factory=_Window)
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None

    def payload(self, fingerprint: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON-able part of a checkpoint."""
        window = dataclasses.asdict(self.window)
        return {"position": self.position, "window": window, "history": self.history, "fingerprint": fingerprint}


@dataclass
class FitResult:
    """What :func:`fit` did.

    Attributes:
        plan: the step plan.
        resumed_from_step: the checkpoint step this call started from (None: from scratch).
        history: one dict per log step over the whole run (``step``, ``loss``, ``lr``, ``grad_norm``,
            ``epoch``; ``router_aux_loss`` with an extra loss), resumed parts included.
        seconds: wall time of this call's training.
        num_tokens: LLM input tokens (padding excluded) processed by this call.
        mixed_precision: the mode actually used.
    """

    plan: StepPlan
    resumed_from_step: int | None
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    num_tokens: int = 0
    mixed_precision: str = "no"

    @property
    def final_loss(self) -> float:
        """Mean loss of the last log window (NaN if nothing was logged)."""
        return self.history[-1]["loss"] if self.history else float("nan")


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Move a collated batch (tensors, or lists of tensors for ragged features) to ``device``."""
    moved = {}
    for key, value in batch.items():
        moved[key] = [v.to(device) for v in value] if isinstance(value, list) else value.to(device)
    return moved


def _truncate_live(live_dir: Path, step: int) -> None:
    """Drop dvclive rows logged after ``step`` (a killed run may have logged past its last checkpoint)."""
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        header, *rows = tsv.read_text(encoding="utf-8").splitlines()
        column = header.split("\t").index("step")
        kept = [r for r in rows if int(r.split("\t")[column]) <= step]
        tsv.write_text("\n".join([header, *kept]) + "\n", encoding="utf-8")


def _open_live(live_dir: Path, run: _RunState) -> Any:
    """The run's dvclive ``Live``: fresh, or resumed after dropping rows logged past the checkpoint.

    It writes no dvc.yaml (the stage table declares the plots), saves no DVC experiment and makes no report.
    """
    from dvclive import Live  # imported late: it imports dvc, which costs a second

    if run.resumed_from is None:
        shutil.rmtree(live_dir, ignore_errors=True)
    else:
        _truncate_live(live_dir, run.step)
    return Live(dir=str(live_dir), resume=run.resumed_from is not None, save_dvc_exp=False, dvcyaml=None, report=None)


def _lengths(dataset: Sequence[Any], desc: str) -> Sequence[int]:
    """The per-example token lengths ``optim.group_by_length`` batches by (the dataset's ``lengths``)."""
    lengths = getattr(dataset, "lengths", None)
    if lengths is None:
        raise ValueError(
            f"{desc}: group_by_length needs a dataset with per-example lengths, {type(dataset).__name__} has none"
        )
    return lengths


def fit(
    model: nn.Module,
    dataset: Sequence[Any],
    collate_fn: Callable[[list[Any]], Mapping[str, Any]],
    optim: OptimConfig,
    *,
    seed: int,
    work_dir: Path,
    fingerprint: Mapping[str, Any],
    extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
    on_step_end: Callable[[int], None] | None = None,
    desc: str = "train",
) -> FitResult:
    """Train ``model``'s trainable parameters on ``dataset``, resuming from ``work_dir`` if possible.

    Args:
        model: a model whose ``forward(**collate_fn(examples))`` returns an output with ``.loss``;
            ``requires_grad`` decides what trains. Updated in place.
        dataset: map-style dataset of examples.
        collate_fn: examples -> batch dict.
        optim: the stage's optimisation settings.
        seed: seeds the data order and (per process) the python / numpy / torch RNGs (dropout).
        work_dir: checkpoints and the live dvclive folder (``StagePaths.work_dir``).
        fingerprint: JSON-able settings that must match for a checkpoint to be resumed.
        extra_loss: ``f(model) -> scalar`` added to the task loss after each forward (router aux loss).
        on_step_end: called with the step number after every optimizer step (and its checkpoint).
        desc: progress-bar label.

    Returns:
        The :class:`FitResult`.

    Raises:
        ValueError: the model has no trainable parameter, or the dataset is empty.
        CrabError: the loss became NaN or infinite (the step and LR are named).
    """
    work_dir = Path(work_dir)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters")
    if len(dataset) == 0:
        raise ValueError("the training dataset is empty")
    # One accelerate state per process: the first Accelerator fixes the precision, the first state the device and
    # process group; that one must see ACCELERATE_USE_CPU (only Accelerator reads it), or CPU workers train alone.
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    mixed_precision = resolve_mixed_precision(optim.mixed_precision, state.device)
    if (launched := os.environ.get("ACCELERATE_MIXED_PRECISION", mixed_precision)) != mixed_precision:
        log.warning("%s: mixed precision %r (params), not the launcher's %r", desc, mixed_precision, launched)
    accelerator = Accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=optim.grad_accum)
    if accelerator.state.deepspeed_plugin is not None:
        configure_deepspeed(accelerator.state.deepspeed_plugin, optim)
    sampler = ResumableBatchSampler(
        len(dataset), optim.batch_size, seed, lengths=_lengths(dataset, desc) if optim.group_by_length else None,
        num_replicas=accelerator.num_processes, rank=accelerator.process_index,
    )  # fmt: skip
    plan = plan_steps(len(dataset), optim, accelerator.num_processes)
    set_seed(seed, device_specific=True)
    optimizer = build_optimizer(named, optim)
    scheduler = get_cosine_schedule_with_warmup(optimizer, plan.num_warmup_steps, plan.num_steps)
    checkpointed = _set_activation_checkpointing(model, optim.gradient_checkpointing, desc)
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    if accelerator.gradient_accumulation_steps != optim.grad_accum:  # the step plan counts optim.grad_accum
        raise CrabError(f"{desc}: accelerate accumulates {accelerator.gradient_accumulation_steps} micro-batches, "
                        f"params {optim.grad_accum}: set it in params.yaml, not in the launcher or DeepSpeed config")  # fmt: skip
    # Compared with the JSON copy in checkpoints, so normalise it through JSON (tuples -> lists, ...).
    # Activation checkpointing changes memory and time, not the math (the recomputation replays the RNG state), so
    # a run may switch it on to resume after running out of memory.
    optim_settings = {k: v for k, v in dataclasses.asdict(optim).items() if k != "gradient_checkpointing"}
    fingerprint = json.loads(json.dumps({**fingerprint, "optim": optim_settings, "seed": seed,
                                         "plan": vars(plan), "num_examples": len(dataset)}))  # fmt: skip

    run = _restore(work_dir, fingerprint, model=model, optimizer=optimizer, scheduler=scheduler,
                   accelerator=accelerator, desc=desc)  # fmt: skip
    live = _open_live(work_dir / LIVE_DIRNAME, run) if accelerator.is_main_process else None
    log.info(
        "%s: %d examples, %d steps (%d micro-batches of %d x %d processes, accumulation %d), mixed precision %s",
        desc, len(dataset), plan.num_steps, plan.num_micro_batches, optim.batch_size,
        accelerator.num_processes, optim.grad_accum, mixed_precision,
    )  # fmt: skip

    wrapped.train()
    params = [p for p in wrapped.parameters() if p.requires_grad]  # the prepared ones: FSDP replaces them
    max_norm = optim.max_grad_norm if optim.max_grad_norm > 0 else float("inf")
    progress = tqdm(total=plan.num_steps, initial=run.step, desc=desc, unit="step",
                    disable=not accelerator.is_main_process)  # fmt: skip
    start = window_start = time.perf_counter()
    num_tokens = window_tokens = 0
    while run.position < plan.num_micro_batches:
        batch = _to_device(collate_fn([dataset[i] for i in sampler.batch(run.position)]), accelerator.device)
        tokens = int(batch["attention_mask"].sum())
        with accelerator.accumulate(wrapped):
            loss = wrapped(**batch).loss
            aux = extra_loss(model) if extra_loss is not None else None
            loss_value, aux_value = float(loss.detach()), 0.0 if aux is None else float(aux.detach())
            if not math.isfinite(loss_value + aux_value):
                lr = scheduler.get_last_lr()[0]
                raise CrabError(
                    f"{desc}: the loss became {loss_value + aux_value} at step {run.step + 1} (lr {lr:.3g})"
                )
            accelerator.backward(loss if aux is None else loss + aux)
            run.position += 1
            run.window.add(loss_value, aux_value)
            num_tokens, window_tokens = num_tokens + tokens, window_tokens + tokens
            if not accelerator.sync_gradients:
                continue
            grad_norm = float(accelerator.clip_grad_norm_(params, max_norm))
            lr = scheduler.get_last_lr()[0]  # the LR this step uses
            optimizer.step()
            if not accelerator.optimizer_step_was_skipped:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        run.step += 1
        progress.update(1)
        if run.step % optim.log_every_steps == 0 or run.step == plan.num_steps:
            now = time.perf_counter()
            record = _close_window(run, accelerator, lr=lr, grad_norm=grad_norm, epoch=sampler.epoch_at(run.position),
                                   with_aux=extra_loss is not None)  # fmt: skip
            speed = window_tokens * accelerator.num_processes / max(now - window_start, 1e-9)
            _log_metrics(live, record, speed)
            progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}")
            window_tokens, window_start = 0, now
        if run.step % optim.save_every_steps == 0 or run.step == plan.num_steps:
            save_checkpoint(work_dir, run.step, model=model, optimizer=optimizer, scheduler=scheduler,
                            state=run.payload(fingerprint), accelerator=accelerator)  # fmt: skip
        if on_step_end is not None:
            on_step_end(run.step)
    progress.close()
    if live is not None:
        live.end()
    accelerator.unwrap_model(wrapped, keep_fp32_wrapper=False)  # drops the autocast patch of forward
    if checkpointed is not None:
        checkpointed.activation_checkpointing_disable()
    seconds = time.perf_counter() - start
    log.info("%s: %d steps in %.1f s (%.0f tokens/s)", desc, plan.num_steps, seconds, num_tokens / max(seconds, 1e-9))
    return FitResult(plan, run.resumed_from, run.history, seconds, num_tokens, mixed_precision)


def _set_activation_checkpointing(model: nn.Module, enabled: bool, desc: str) -> PreTrainedModel | None:
    """Turn on activation checkpointing for ``model`` (a transformers model, or a peft model around one).

    Non-reentrant checkpointing: it needs no input that requires grad (the LLM's embeddings are frozen in every
    stage but the language phase) and works with frozen layers and adapters.

    Returns:
        The model it was turned on for (to turn it off after training), or None when not ``enabled``.

    Raises:
        CrabError: ``enabled`` for a model that does not support it.
    """
    if not enabled:
        return None
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not (isinstance(target, PreTrainedModel) and target.supports_gradient_checkpointing):
        raise CrabError(f"{desc}: optim.gradient_checkpointing is set, but {type(target).__name__} does not support it")
    target.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return target


def _restore(
    work_dir: Path, fingerprint: Mapping[str, Any], *, model: nn.Module, optimizer: Any, scheduler: Any,
    accelerator: Accelerator, desc: str,
) -> _RunState:  # fmt: skip
    """Load the latest checkpoint of ``work_dir`` if it has this run's fingerprint; else clear the folder."""
    latest = latest_checkpoint(work_dir)
    if latest is not None and read_trainer_state(latest).get("fingerprint") != fingerprint:
        log.warning("%s: checkpoints come from other settings; starting over", work_dir)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            shutil.rmtree(work_dir, ignore_errors=True)
        accelerator.wait_for_everyone()
        latest = None
    if latest is None:
        return _RunState()
    state = load_checkpoint(latest, model=model, optimizer=optimizer, scheduler=scheduler, accelerator=accelerator)
    log.info("%s: resuming from %s (step %d)", desc, latest, state["step"])
    return _RunState(state["step"], state["position"], _Window(**state["window"]), state["history"], state["step"])


def _close_window(
    run: _RunState, accelerator: Accelerator, *, lr: float, grad_norm: float, epoch: float, with_aux: bool
) -> dict[str, float]:
    """The log record of the window that ends at ``run.step`` (losses averaged over processes); resets it."""
    sums = accelerator.reduce(torch.tensor([run.window.loss, run.window.aux], device=accelerator.device), "sum")
    count = run.window.count * accelerator.num_processes
    record = {"step": run.step, "loss": float(sums[0]) / count, "lr": lr, "grad_norm": grad_norm, "epoch": epoch}
    if with_aux:
        record["router_aux_loss"] = float(sums[1]) / count
    run.history.append(record)
    run.window = _Window()
    return record


def _log_metrics(live: Any, record: Mapping[str, float], tokens_per_s: float) -> None:
    if live is None:
        return
    live.step = int(record["step"])
    for name, value in record.items():
        if name != "step":
            live.log_metric(f"train/{name}", value)
    live.log_metric("train/tokens_per_s", tokens_per_s)
    live.make_summary()
