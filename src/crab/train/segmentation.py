"""The segmentation objective: the LM loss of a batch plus the mask loss of its segmentation samples.

Crab's AVS fine-tuning (crab-reference 3.6) was meant to add a mask loss to the LM loss for the samples whose
answer holds the six mask tokens, with the target frame's CLIP levels as the decoder input and its mask as the
target; as released it never computed it (``is_avs_task`` never set, decoder inputs commented out of the
dataset). Here the data path (:class:`crab.train.data.AvuieDataset` with ``with_masks``, then
:func:`crab.models.collator.collate`) puts ``mask_features`` and ``mask_targets`` in the batch, and
:func:`segmentation_step` turns that batch into one loss: ``lm_weight * LM + BCE + Dice`` (binary head),
``lm_weight * LM + CE + Dice`` (AVSS's softmax class head) or ``lm_weight * LM + BCE + Dice + CE`` (a factorized
class head: sounding and class parts), the mask part averaged over samples
(:func:`crab.models.seg_loss.segmentation_loss`), the weights ``finetune_avs.loss`` of params.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from crab.config import SegLossConfig
from crab.models.modeling_crab import CrabForConditionalGeneration
from crab.models.seg_loss import SegmentationLoss, segmentation_loss

__all__ = ["SegmentationStep", "segmentation_step"]


@dataclass(frozen=True)
class SegmentationStep:
    """One forward's losses: ``loss`` (to back-propagate), the LM part and the mask parts."""

    loss: torch.Tensor
    lm_loss: torch.Tensor
    mask: SegmentationLoss


def segmentation_step(
    model: CrabForConditionalGeneration, batch: Mapping[str, Any], weights: SegLossConfig
) -> SegmentationStep:
    """Forward a collated batch and combine its LM and mask losses.

    Args:
        model: Crab with a mask decoder (possibly under a PEFT adapter).
        batch: :func:`~crab.models.collator.collate` output with ``labels``, ``mask_features`` (L levels of
            (B_s, T, P, Dv)) and ``mask_targets`` (B_s, T, S, S), the rows in batch order of the samples that
            hold the mask tokens.
        weights: ``finetune_avs.loss``.

    Returns:
        The losses.

    Raises:
        ValueError: the batch has no ``labels`` or no ``mask_targets`` (use the plain forward for batches
            without segmentation samples), or the model finds the mask rows and features inconsistent.
    """
    inputs = dict(batch)
    targets = inputs.pop("mask_targets", None)
    if targets is None or "mask_features" not in inputs:
        raise ValueError("segmentation_step needs mask_features and mask_targets (AvuieDataset(with_masks=True))")
    if inputs.get("labels") is None:
        raise ValueError("segmentation_step needs labels for the LM loss")
    outputs = model(**inputs)
    decoder = model.config.mask_decoder_config  # a PeftModel's config is its base model's
    mask = segmentation_loss(
        outputs.mask_logits,
        targets,
        bce_weight=weights.bce,
        dice_weight=weights.dice,
        ce_weight=weights.ce,
        factorized=decoder is not None and decoder.factorized,
    )  # mask_logits (B_s, T, C, S, S) vs targets (B_s, T, S, S)
    return SegmentationStep(loss=weights.lm * outputs.loss + mask.loss, lm_loss=outputs.loss, mask=mask)
