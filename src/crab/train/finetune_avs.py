"""The ``finetune_avs`` stage: Crab's AVS fine-tuning (crab-reference 3.6), fixed so that it trains masks.

Starts from ``pretrain`` + the ``finetune`` adapter (both frozen: LLM, adapter, projectors) and adds the
segmentation decoder (:mod:`crab.models.mask_decoder`, seeded init): tiny, sized by the base models' manifest
(CLIP width, image and patch size, ``vision.mask_feature_layers``); paper, the reference's decoder on ViT-L/14
layers 14 and 22. It trains the decoder and, of the token embeddings and the LM head, the rows of Crab's added
tokens (the mask block's and the wrappers': :func:`added_token_rows`, :mod:`crab.train.token_rows`) on the
train records of ``finetune_avs.tasks`` with
:func:`crab.train.segmentation.segmentation_step`: each sample's labelled frame (its CLIP levels from the
feature store) and mask (``AvuieDataset(with_masks=True)``), loss ``finetune_avs.loss``. Writes::

    models/finetune_avs/      config.json (the Crab config with its decoder), avs_weights.safetensors (decoder,
                              the added tokens' embedding and LM-head rows), train_summary.json
    models/finetune_avs_log/  dvclive: metrics.json, plots/metrics/train/*.tsv

:func:`load_finetuned_avs` rebuilds the model for evaluating the mask tasks and for ``crab infer``: the
pre-trained Crab with the decoder, these weights, then the ``finetune`` adapter. As in Crab, the other tasks
keep using the ``finetune`` model: the embeddings and LM head trained here saw the mask tasks only.

``finetune_avss`` is the same stage for AVSS (its own params section and output folders): a decoder has one
head (binary for S4 / MS3 / Ref-AVS, 71 classes for AVSS, ``TaskSpec.mask_classes``), and Crab too trained and
released the AVSS decoder separately (``avss_finetune_weights.bin``, crab-reference 3.6).

What is fixed relative to the reference script (crab-reference 3.6): the mask loss is computed (``is_avs_task``
was never set), the decoder gets its inputs and targets (commented out of Crab's train dataset), and the
decoder loads into the model it was built for (Crab's 5-head LoRA could not load its 3-head weights).

Deviation: Crab trains the whole ``embed_tokens`` and ``lm_head`` here. Trained on mask-task data only, that
moves every token's rows; here only the added tokens' rows move (the rows F1 left at their init, and the ones
the mask block needs), so the LLM keeps the vocabulary the text tasks were tuned with, and the stage saves
17 rows instead of two vocabulary-sized matrices.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedTokenizerBase

import crab.lora  # noqa: F401  (registers ia_lora / lora_moe with peft before the adapter is loaded)
from crab.config import FinetuneAvsConfig, FinetuneAvssConfig, Params, SegLossConfig
from crab.errors import CrabError
from crab.models.base import BaseModelPaths
from crab.models.configuration_crab import CrabConfig
from crab.models.mask_decoder import (
    ClassHead,
    CrabMaskDecoderConfig,
    mask_decoder_paper_config,
    mask_decoder_tiny_config,
)
from crab.models.modeling_crab import CrabForConditionalGeneration
from crab.models.tokenizer import CRAB_ADDED_TOKENS, CRAB_MASK_TOKENS
from crab.tasks import TASKS, Task
from crab.train.data import training_dataset
from crab.train.finetune import adapter_folders
from crab.train.loop import fit
from crab.train.pretrain import load_pretrained
from crab.train.segmentation import SegmentationStep, segmentation_step
from crab.train.stage import SUMMARY_NAME, StagePaths, TrainSetup, publish_stage, summary_json
from crab.train.token_rows import ROW_KEYS, load_row_weights, row_weights, train_rows_only

__all__ = [
    "AVS_WEIGHTS_NAME",
    "MASK_STAGES",
    "FinetuneAvsResult",
    "MaskStage",
    "SegmentationObjective",
    "add_mask_decoder",
    "added_token_rows",
    "finetune_avs",
    "finetune_avss",
    "head_classes",
    "load_finetuned_avs",
    "mask_stage",
    "profile_decoder_config",
    "save_avs_weights",
    "setup_finetune_avs",
    "stage_class_head",
    "train_decoder_and_token_rows",
    "with_mask_decoder",
]

log = logging.getLogger(__name__)

#: The weights this stage trains, in its output folder.
AVS_WEIGHTS_NAME = "avs_weights.safetensors"
#: The segmentation stages, each a params section of its own (one decoder head each: binary, AVSS's 71 classes).
MaskStage = Literal["finetune_avs", "finetune_avss"]
MASK_STAGES: tuple[MaskStage, ...] = ("finetune_avs", "finetune_avss")
#: Parameter-name prefix of the decoder, trained whole (the embeddings and LM head train on some rows only).
_DECODER = "mask_decoder."


@dataclass(frozen=True)
class FinetuneAvsResult:
    """What ``finetune_avs`` wrote and how training went (also in ``train_summary.json``)."""

    out_dir: Path
    log_dir: Path
    num_examples: dict[str, int]
    num_steps: int
    final_loss: float
    trainable: dict[str, int]


class SegmentationObjective(nn.Module):
    """``forward(**batch)`` is :func:`segmentation_step` of the wrapped model: what ``fit`` trains on."""

    def __init__(self, model: nn.Module, weights: SegLossConfig) -> None:
        super().__init__()
        self.model = model
        self.weights = weights

    def forward(self, **batch: Any) -> SegmentationStep:
        return segmentation_step(self.model, batch, self.weights)


def _decoder_config(
    config: CrabConfig, profile: str, manifest: dict[str, Any], num_classes: int, class_head: ClassHead
) -> CrabMaskDecoderConfig:
    llm_width = config.text_config.hidden_size
    if profile == "paper":
        return mask_decoder_paper_config(
            llm_hidden_size=llm_width, num_classes=num_classes, vision_hidden_size=config.vision_hidden_size,
            class_head=class_head,
        )  # fmt: skip
    vision = manifest["vision"]
    layers = vision.get("mask_feature_layers")
    if not layers:
        raise CrabError("the base models' manifest names no vision.mask_feature_layers; rerun `crab base_models`")
    return mask_decoder_tiny_config(
        llm_hidden_size=llm_width, vision_hidden_size=config.vision_hidden_size, vision_feature_layers=layers,
        image_size=vision["image_size"], patch_size=vision["patch_size"], num_classes=num_classes,
        class_head=class_head,
    )  # fmt: skip


def mask_stage(task: str) -> MaskStage:
    """The segmentation stage of a mask task's decoder head: ``finetune_avss`` for a class head (AVSS),
    ``finetune_avs`` for the binary one. Fixed by the task, not looked up in params, so that evaluating a task
    reads only its own stage's section (``load_params`` keeps each stage's tasks to its head).

    Raises:
        ValueError: the task has no masks.
    """
    spec = TASKS[Task(task)]
    if not spec.masks:
        raise ValueError(f"{task} is not a mask task")
    return "finetune_avss" if spec.mask_classes > 1 else "finetune_avs"


def head_classes(cfg: FinetuneAvsConfig) -> int:
    """The decoder head size a segmentation stage's tasks need (``TaskSpec.mask_classes``; 1 without tasks).

    Raises:
        CrabError: the tasks need different heads (``load_params`` rejects such params first).
    """
    sizes = {TASKS[Task(t)].mask_classes for t in cfg.tasks} or {1}
    if len(sizes) > 1:
        raise CrabError(f"tasks {cfg.tasks} need decoder heads of different sizes {sorted(sizes)}")
    return sizes.pop()


def add_mask_decoder(
    model: CrabForConditionalGeneration, tokenizer: PreTrainedTokenizerBase, decoder: CrabMaskDecoderConfig, seed: int
) -> CrabForConditionalGeneration:
    """The same Crab with a freshly initialised (seeded) mask decoder prompted by the tokenizer's ``<mask_i>``.

    Raises:
        CrabError: the tokenizer lacks a mask token.
    """
    ids = [tokenizer.convert_tokens_to_ids(t) for t in CRAB_MASK_TOKENS]
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
        raise CrabError(f"the tokenizer has no {CRAB_MASK_TOKENS[ids.index(tokenizer.unk_token_id)]} token")
    config = CrabConfig.from_dict(
        {**model.config.to_dict(), "mask_decoder_config": decoder.to_dict(), "mask_token_ids": ids}
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = CrabForConditionalGeneration(config)
    missing, unexpected = out.load_state_dict(model.state_dict(), strict=False)
    stray = [k for k in missing if not k.startswith("mask_decoder.")] + list(unexpected)
    if stray:
        raise CrabError(f"the decoder model does not take the pre-trained weights: {stray[:3]}")
    out.generation_config = model.generation_config
    return out.to(model.dtype)


def profile_decoder_config(
    params: Params, config: CrabConfig, num_classes: int, class_head: ClassHead = "softmax"
) -> CrabMaskDecoderConfig:
    """The profile's mask decoder for a Crab of ``config`` (tiny: sized by the base models' manifest), with a
    ``num_classes`` head of kind ``class_head`` (a class head's; a binary head ignores it).

    Raises:
        CrabError: the manifest names no decoder levels.
    """
    manifest = json.loads(BaseModelPaths.of(params.base_models.out_dir).manifest.read_text(encoding="utf-8"))
    return _decoder_config(config, params.profile, manifest, num_classes, class_head)


def stage_class_head(cfg: FinetuneAvsConfig) -> ClassHead:
    """A segmentation stage's class-head kind: ``finetune_avss.class_head``; ``softmax`` for the binary stage."""
    return cfg.class_head if isinstance(cfg, FinetuneAvssConfig) else "softmax"


def with_mask_decoder(
    params: Params,
    model: CrabForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    stage: MaskStage = "finetune_avs",
) -> CrabForConditionalGeneration:
    """``model`` with the profile's mask decoder, the head its tasks need (:func:`head_classes`), seeded by the
    stage's ``seed``, then given the weights of the decoder ``pretrain`` trained, where there is one
    (:func:`crab.train.seg_pretrain.load_pretrained_decoder`: all but a head of another size): the model
    ``stage`` trains.

    Raises:
        CrabError: the manifest names no decoder levels, the tokenizer lacks a mask token, or the pre-trained
            decoder has other sizes.
    """
    from crab.train.seg_pretrain import load_pretrained_decoder  # it builds on this module

    cfg: FinetuneAvsConfig = getattr(params, stage)
    decoder = profile_decoder_config(params, model.config, head_classes(cfg), stage_class_head(cfg))
    out = add_mask_decoder(model, tokenizer, decoder, cfg.seed)
    load_pretrained_decoder(out, params.pretrain.out_dir)
    return out


def added_token_rows(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The token ids whose embedding and LM-head rows this stage trains: Crab's 17 added tokens.

    Raises:
        CrabError: the tokenizer lacks one of them.
    """
    ids = [tokenizer.convert_tokens_to_ids(t) for t in CRAB_ADDED_TOKENS]
    absent = [t for t, i in zip(CRAB_ADDED_TOKENS, ids, strict=True) if i is None or i == tokenizer.unk_token_id]
    if absent:
        raise CrabError(f"the tokenizer has no {', '.join(absent)}; rerun `crab base_models`")
    return ids


def save_avs_weights(model: CrabForConditionalGeneration, folder: str | Path, rows: list[int]) -> None:
    """Write what :func:`load_finetuned_avs` reads: the config (with its decoder) and the trained part's weights
    (the decoder, and ``rows`` of the token embeddings and LM head) as ``avs_weights.safetensors``."""
    folder = Path(folder)
    model.config.save_pretrained(folder)
    weights = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k.startswith(_DECODER)}
    save_file({**weights, **row_weights(model, rows)}, folder / AVS_WEIGHTS_NAME, metadata={"format": "pt"})


def setup_finetune_avs(params: Params, stage: MaskStage = "finetune_avs") -> TrainSetup:
    """The frozen pretrain + finetune model with a new decoder, its trainable set (the decoder, the added tokens'
    embedding and LM-head rows), and the stage's tasks' data."""
    cfg: FinetuneAvsConfig = getattr(params, stage)
    base, tokenizer = load_pretrained(params.pretrain.out_dir)
    model = with_mask_decoder(params, base, tokenizer, stage)
    peft = _with_adapter(model, params.finetune.out_dir)
    rows = added_token_rows(tokenizer)
    trainable = train_decoder_and_token_rows(peft, rows)
    dataset = training_dataset(params, list(cfg.tasks), tokenizer, model.config, with_masks=True)
    fingerprint = {"stage": stage, "config": dataclasses.asdict(cfg), "trainable": trainable, "token_rows": rows}
    return TrainSetup(SegmentationObjective(peft, cfg.loss), tokenizer, dataset, trainable, fingerprint)


def train_decoder_and_token_rows(model: PeftModel, rows: list[int]) -> dict[str, int]:
    """F2's trainable set on the adapted Crab: the mask decoder, and ``rows`` of the token embeddings and the LM
    head (their gradient masked to those rows); the LLM, the adapter and the projectors frozen.

    Returns:
        Trainable parameters per part: ``mask_decoder``, ``embed_tokens``, ``lm_head`` (the rows' share).
    """
    for name, param in model.named_parameters():
        param.requires_grad_(_DECODER in name)
    crab = model.get_base_model()
    trainable = {"mask_decoder": sum(p.numel() for p in crab.mask_decoder.parameters())}
    for part, module in (("embed_tokens", crab.get_input_embeddings()), ("lm_head", crab.get_output_embeddings())):
        train_rows_only(module.weight, rows)
        trainable[part] = len(rows) * module.weight.shape[1]
    return trainable


def _with_adapter(model: CrabForConditionalGeneration, finetune_dir: str | Path) -> PeftModel:
    folders = adapter_folders(finetune_dir)
    if list(folders) != ["default"]:
        raise CrabError(
            f"{finetune_dir}: finetune_avs needs the shared adapter, not per-task ones ({list(folders)}); with "
            "finetune.adapter=single_task reproduce the text tasks only (`dvc exp run ... evaluate`)"
        )
    return PeftModel.from_pretrained(model, folders["default"], is_trainable=False)


def finetune_avs(params: Params) -> FinetuneAvsResult:
    """The ``finetune_avs`` stage (module docstring): the binary-head decoder of ``finetune_avs.tasks``; resumes a
    killed run from its latest checkpoint.

    Raises:
        CrabError: the pre-trained or fine-tuned model is missing, or the manifest lacks the decoder's levels.
        DataError, FeatureStoreError: missing or inconsistent data (named).
    """
    return _train_mask_stage(params, "finetune_avs")


def finetune_avss(params: Params) -> FinetuneAvsResult:
    """The ``finetune_avss`` stage: as :func:`finetune_avs`, AVSS's 71-class decoder head (``finetune_avss``)."""
    return _train_mask_stage(params, "finetune_avss")


def _train_mask_stage(params: Params, stage: MaskStage) -> FinetuneAvsResult:
    cfg: FinetuneAvsConfig = getattr(params, stage)
    paths = StagePaths.of(cfg.out_dir)
    setup = setup_finetune_avs(params, stage)
    result = fit(
        setup.model, setup.dataset, setup.collate_fn, cfg.optim, seed=cfg.seed, work_dir=paths.work_dir,
        fingerprint=setup.fingerprint, desc=stage,
    )  # fmt: skip
    peft: PeftModel = setup.model.model
    crab = peft.get_base_model()
    extra = {"seed": cfg.seed, "tasks": list(cfg.tasks), "loss": dataclasses.asdict(cfg.loss),
             "pretrain": params.pretrain.out_dir, "finetune": params.finetune.out_dir}  # fmt: skip

    def write(folder: Path) -> None:
        save_avs_weights(crab, folder, setup.fingerprint["token_rows"])
        (folder / SUMMARY_NAME).write_text(summary_json(stage, setup, result, extra), encoding="utf-8")

    publish_stage(paths, write)
    return FinetuneAvsResult(
        paths.out_dir, paths.log_dir, setup.dataset.task_counts(), result.plan.num_steps, result.final_loss,
        setup.trainable,
    )  # fmt: skip


def load_finetuned_avs(
    pretrain_dir: str | Path, finetune_dir: str | Path, avs_dir: str | Path, dtype: torch.dtype = torch.float32
) -> tuple[PeftModel, PreTrainedTokenizerBase]:
    """The segmentation model for evaluation and inference: pretrain + decoder + ``finetune_avs`` weights + adapter.

    Raises:
        CrabError: a folder is missing or incomplete, or the weights do not fit the model.
    """
    avs_dir = Path(avs_dir)
    if not (avs_dir / "config.json").is_file() or not (avs_dir / AVS_WEIGHTS_NAME).is_file():
        raise CrabError(f"{avs_dir}: no config.json / {AVS_WEIGHTS_NAME}; run `crab finetune_avs`")
    base, tokenizer = load_pretrained(pretrain_dir, dtype)
    config = CrabConfig.from_pretrained(avs_dir, local_files_only=True)
    model = CrabForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    weights = load_file(avs_dir / AVS_WEIGHTS_NAME)
    decoder = {k: v for k, v in weights.items() if k not in ROW_KEYS}
    still_missing = sorted(set(missing) - set(decoder))
    unexpected = [*unexpected, *sorted(set(decoder) - set(model.state_dict()))]
    if unexpected or still_missing:
        raise CrabError(
            f"{avs_dir}: weights do not fit the model (missing {still_missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.load_state_dict(decoder, strict=False)
    load_row_weights(model, weights, str(avs_dir / AVS_WEIGHTS_NAME))
    model.generation_config = base.generation_config
    return _with_adapter(model.to(dtype), finetune_dir).eval(), tokenizer
