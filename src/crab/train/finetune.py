"""The ``finetune`` stage: multi-task instruction tuning with IA-LoRA, LoRA or LoRA-MoE (crab-reference 3.5).

Starts from the ``pretrain`` output, freezes the whole LLM (embeddings and LM head included), puts the
adapter chosen by ``finetune.adapter`` on the LLM's seven linears of every decoder layer (only the LLM's:
the target regex is anchored at ``language_model``) and trains the adapter plus both projectors, which
peft holds as ``modules_to_save`` so that they are saved with the adapter. The data is the mixture of
``finetune.tasks`` train splits. With a routed adapter (IA-LoRA, LoRA-MoE) and
``lora.router_aux_loss_coef > 0`` the router load-balance loss is added to the LM loss (off by default, as
in Crab). Writes::

    models/finetune/        adapter_config.json, adapter_model.safetensors (PEFT save_pretrained: adapter
                            + projectors), train_summary.json
    models/finetune_log/    dvclive: metrics.json, plots/metrics/train/*.tsv

``finetune.adapter: single_task`` is Table 4's "Single task" row instead: one plain LoRA adapter (+ its own
projectors) per task, each trained on its task's data alone (:mod:`crab.train.single_task`), saved as
``models/finetune/<task>/`` and loaded as named peft adapters of one model; evaluation switches to the
task's adapter (:func:`use_task_adapter`).

:func:`load_finetuned` rebuilds the model for evaluation and ``crab infer``: the pre-trained Crab folder
plus this adapter, in eval mode.

How it differs from the authors' code: Crab selects trainable weights by substring over parameter names
(``--save_modules vl_projector,al_projector,lora``) and saves them as one ``.bin``; here the trainable set
is declared by component and saved in PEFT's format, which ``PeftModel.from_pretrained`` reloads.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model
from transformers import PreTrainedTokenizerBase

import crab.lora  # noqa: F401  (registers ia_lora / lora_moe with peft before any adapter is built or loaded)
from crab.config import FinetuneConfig, Params
from crab.errors import CrabError
from crab.lora import ROUTED_ADAPTER_KINDS, build_adapter_config, llm_target_regex, router_aux_loss
from crab.models.modeling_crab import CrabForConditionalGeneration, set_trainable
from crab.train.data import training_dataset
from crab.train.loop import fit
from crab.train.pretrain import load_pretrained
from crab.train.stage import SUMMARY_NAME, StagePaths, TrainSetup, publish_stage, summary_json

__all__ = [
    "SINGLE_TASK",
    "FinetuneResult",
    "adapter_folders",
    "attach_adapter",
    "finetune",
    "load_finetuned",
    "setup_finetune",
    "trainable_components",
    "use_task_adapter",
]

log = logging.getLogger(__name__)

#: The modules trained fully next to the adapter (peft ``modules_to_save``).
PROJECTORS = ("visual_projector", "audio_projector")
_ADAPTER_MARKERS = ("ia_lora_", "lora_moe_", "lora_")
#: ``finetune.adapter`` value of the single-task baseline: a plain LoRA adapter per task.
SINGLE_TASK = "single_task"
#: The peft adapter kind each task's adapter uses in the single-task baseline.
_SINGLE_TASK_KIND = "lora"


@dataclass(frozen=True)
class FinetuneResult:
    """What ``finetune`` wrote and how training went (also in ``train_summary.json``)."""

    out_dir: Path
    log_dir: Path
    num_examples: dict[str, int]  # per task
    num_steps: int
    final_loss: float
    trainable: dict[str, int]  # trainable parameters per component


def trainable_components(model: torch.nn.Module) -> dict[str, int]:
    """Trainable parameter count per component: ``adapter``, ``visual_projector``, ``audio_projector``,
    ``language_model`` (LLM weights outside the adapter) and ``other``; zero counts are left out."""
    counts: dict[str, int] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if any(marker in name for marker in _ADAPTER_MARKERS):
            component = "adapter"
        else:
            component = next((c for c in (*PROJECTORS, "language_model") if c in name.split(".")), "other")
        counts[component] = counts.get(component, 0) + param.numel()
    return counts


def attach_adapter(model: CrabForConditionalGeneration, cfg: FinetuneConfig) -> PeftModel:
    """Freeze ``model`` and wrap it with the stage's adapter on the LLM; projectors become trainable copies.

    Args:
        model: the pre-trained Crab model.
        cfg: ``finetune`` params (adapter kind, LoRA hyper-parameters, seed for the adapter init).

    Returns:
        The ``PeftModel``: adapter and ``modules_to_save`` projectors trainable, everything else frozen.

    Raises:
        CrabError: router settings with ``adapter: lora`` (a non-zero router aux loss).
    """
    lora = cfg.lora
    kind = _SINGLE_TASK_KIND if cfg.adapter == SINGLE_TASK else cfg.adapter
    try:
        adapter_config = build_adapter_config(
            kind, r=lora.r, alpha=lora.alpha, dropout=lora.dropout,
            num_heads=lora.num_heads if kind in ROUTED_ADAPTER_KINDS else None,
            target_modules=llm_target_regex("language_model"), modules_to_save=list(PROJECTORS),
            router_aux_loss_coef=lora.router_aux_loss_coef,
        )  # fmt: skip
    except ValueError as err:
        raise CrabError(f"finetune.lora: {err} (adapter {cfg.adapter!r})") from None
    set_trainable(model, llm="frozen", projectors=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return get_peft_model(model, adapter_config)


def setup_finetune(params: Params, tasks: list[str] | None = None) -> TrainSetup:
    """The pre-trained model with its adapter, and the fine-tuning mixture of ``tasks`` (default
    ``finetune.tasks``; the single-task baseline passes one task)."""
    cfg = params.finetune
    tasks = list(cfg.tasks) if tasks is None else tasks
    base, tokenizer = load_pretrained(params.pretrain.out_dir)
    model = attach_adapter(base, cfg)
    trainable = trainable_components(model)
    dataset = training_dataset(params, tasks, tokenizer, base.config)
    fingerprint = {"stage": "finetune", "config": dataclasses.asdict(cfg), "tasks": tasks, "trainable": trainable}
    return TrainSetup(model, tokenizer, dataset, trainable, fingerprint)


def finetune(params: Params) -> FinetuneResult:
    """The ``finetune`` stage (module docstring); resumes a killed run from its latest checkpoint.

    Args:
        params: reads ``pretrain.out_dir``, ``features.out_dir``, ``media`` and ``finetune``.

    Returns:
        The :class:`FinetuneResult`.

    Raises:
        CrabError: the pre-trained model is missing, or the adapter settings are inconsistent.
        DataError, FeatureStoreError: missing or inconsistent data (named).
    """
    cfg = params.finetune
    if cfg.adapter == SINGLE_TASK:
        from crab.train.single_task import finetune_single_task  # imports this module

        return finetune_single_task(params)
    paths = StagePaths.of(cfg.out_dir)
    setup = setup_finetune(params)
    use_aux = cfg.adapter in ROUTED_ADAPTER_KINDS and cfg.lora.router_aux_loss_coef > 0
    result = fit(
        setup.model, setup.dataset, setup.collate_fn, cfg.optim, seed=cfg.seed, work_dir=paths.work_dir,
        fingerprint=setup.fingerprint, extra_loss=router_aux_loss if use_aux else None, desc="finetune",
    )  # fmt: skip
    extra = {"seed": cfg.seed, "tasks": list(cfg.tasks), "adapter": cfg.adapter,
             "lora": dataclasses.asdict(cfg.lora), "pretrain": params.pretrain.out_dir}  # fmt: skip

    def write(folder: Path) -> None:
        setup.model.save_pretrained(folder)
        (folder / SUMMARY_NAME).write_text(summary_json("finetune", setup, result, extra), encoding="utf-8")

    publish_stage(paths, write)
    return FinetuneResult(
        paths.out_dir, paths.log_dir, setup.dataset.task_counts(), result.plan.num_steps, result.final_loss,
        setup.trainable,
    )  # fmt: skip


def adapter_folders(finetune_dir: str | Path) -> dict[str, Path]:
    """The saved adapters of a ``finetune`` folder: ``{"default": folder}`` for one shared adapter, or
    ``{task: folder/task}`` for the single-task baseline (its ``train_summary.json`` lists the tasks).

    Raises:
        CrabError: the folder holds neither layout, or a listed task's adapter is missing.
    """
    finetune_dir = Path(finetune_dir)
    if (finetune_dir / "adapter_config.json").is_file():
        return {"default": finetune_dir}
    summary_path = finetune_dir / SUMMARY_NAME
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        if summary.get("adapter") == SINGLE_TASK:
            folders = {task: finetune_dir / task for task in summary["tasks"]}
            missing = [str(f) for f in folders.values() if not (f / "adapter_config.json").is_file()]
            if missing:
                raise CrabError(
                    f"{finetune_dir}: single-task adapters missing: {', '.join(missing)}; run `crab finetune`"
                )
            return folders
    raise CrabError(f"{finetune_dir}: no adapter_config.json; run `crab finetune`")


def load_finetuned(
    pretrain_dir: str | Path, finetune_dir: str | Path, dtype: torch.dtype = torch.float32
) -> tuple[PeftModel, PreTrainedTokenizerBase]:
    """The fine-tuned model for evaluation and inference: pre-trained Crab + the saved adapter(s), eval mode.

    Call it as ``load_finetuned(params.pretrain.out_dir, params.finetune.out_dir)``. The returned
    ``PeftModel`` forwards ``generate(input_ids, attention_mask, video_features=..., audio_features=...)``
    to :meth:`CrabForConditionalGeneration.generate`. A single-task ``finetune`` folder loads every task's
    adapter under the task's name; select one with :func:`use_task_adapter` before generating.

    Args:
        pretrain_dir: the ``pretrain`` output folder (model and tokenizer).
        finetune_dir: the ``finetune`` output folder (PEFT adapter, or one sub-folder per task).
        dtype: dtype of the model.

    Raises:
        CrabError: a folder is missing or incomplete.
    """
    folders = adapter_folders(finetune_dir)
    base, tokenizer = load_pretrained(pretrain_dir, dtype)
    (first, first_dir), *rest = folders.items()
    model = PeftModel.from_pretrained(base, first_dir, adapter_name=first, is_trainable=False)
    for name, folder in rest:
        model.load_adapter(folder, adapter_name=name, is_trainable=False)
    return model.eval(), tokenizer


def use_task_adapter(model: PeftModel, task: str) -> None:
    """Make ``task``'s adapter active if ``model`` holds one adapter per task; a shared adapter is left as is.

    Raises:
        CrabError: the model holds per-task adapters but none for ``task``.
    """
    names = list(model.peft_config)
    if names == ["default"]:
        return
    if task not in names:
        raise CrabError(f"the single-task model has adapters for {names}, not for task {task!r}")
    model.set_adapter(task)
