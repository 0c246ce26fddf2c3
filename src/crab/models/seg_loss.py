"""Segmentation loss of Crab's mask decoder: BCE + Dice for binary masks, cross-entropy (+ Dice) for AVSS.

Implements the losses of crab-reference section 1.8: binary tasks (S4, MS3, Ref-AVS) take per-pixel
BCE-with-logits averaged over pixels plus the Dice loss on sigmoid probabilities; AVSS takes the per-pixel
cross-entropy over its classes, averaged over pixels. Each is computed per frame.

A factorized class head (``class_head: factorized``, :func:`crab.models.mask_decoder.factorized_class_log_probs`)
takes the two losses of its two questions instead: "does an object sound here" as the binary head does (BCE +
Dice on the sounding logit, all pixels), and "which object" as the cross-entropy over the object classes on the
object pixels alone (:func:`factorized_mask_losses`). Over all pixels, as the plain cross-entropy weighs it, the
class part has the weight of the objects' area (4 % of AV-Synth's AVSS pixels) and hardly trained.

For Crab's softmax head, one addition, weighted by the same ``dice`` weight (0 gives Crab's loss): a soft Dice on the softmax
probabilities, averaged over the classes the frame's label map holds (:func:`semantic_dice_loss`). Why: with
cross-entropy alone the tiny AV-Synth model learns the background prior (every pixel background, object mIoU 0;
sounding objects cover a small share of the pixels), while Dice weighs each present class equally, whatever its
area; the binary head has its Dice term for the same reason. Measured on AV-Synth (180 steps): not enough on its
own, the tiny model still predicts background everywhere.

How it differs from the authors' ``SegModule.forward`` / ``models/loss.py``:

- The weights are arguments (the stage reads them from ``params.yaml``); Crab hard-coded bce 1.0 / dice 0.5 /
  ce 1.0 inside ``forward`` and ignored its CLI flags.
- The loss is a *mean* over samples: a sample's loss is the mean over its labelled frames, and the batch loss
  the mean over samples with at least one labelled frame. Crab summed over samples, so the loss (and the
  effective learning rate of the decoder) grew with the batch size.
- Frames without ground truth are skipped through a per-frame validity mask (S4 training labels frame 0 only);
  their logits and targets are never read, so placeholder targets there are harmless.
- Dice smoothing: Crab divides probabilities and targets by 1000 and adds 1e-6 to numerator and denominator,
  which is the same as a smoothing term of 1e-3 on unscaled sums (:data:`DICE_SMOOTH`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from crab.models.mask_decoder import factorized_sounding_logits

__all__ = [
    "DICE_SMOOTH",
    "SegmentationLoss",
    "binary_mask_losses",
    "factorized_mask_losses",
    "segmentation_loss",
    "semantic_dice_loss",
    "semantic_mask_loss",
]

#: Dice smoothing on pixel-count sums; Crab's ``eps=1e-6`` at ``scale=1000`` (crab-reference 1.8).
DICE_SMOOTH = 1e-3


@dataclass(frozen=True)
class SegmentationLoss:
    """The weighted total and its unweighted parts (sample means), for the optimiser and for logging.

    Attributes:
        loss: scalar to backpropagate: ``bce_weight * bce + dice_weight * dice`` (binary head) or
            ``ce_weight * ce + dice_weight * dice`` (class head).
        bce: binary cross-entropy part (``None`` for a multi-class head).
        dice: Dice part (binary: on the sigmoid mask; class head: :func:`semantic_dice_loss`).
        ce: cross-entropy part (``None`` for a binary head).
        num_frames: labelled frames that entered the loss.
        num_samples: samples with at least one labelled frame.
    """

    loss: torch.Tensor
    bce: torch.Tensor | None
    dice: torch.Tensor | None
    ce: torch.Tensor | None
    num_frames: int
    num_samples: int


def binary_mask_losses(
    logits: torch.Tensor, targets: torch.Tensor, smooth: float = DICE_SMOOTH
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame BCE (pixel mean) and Dice loss of binary masks.

    Args:
        logits: (N, S, S) mask logits.
        targets: (N, S, S) ground truth in [0, 1].
        smooth: added to the Dice numerator and denominator (keeps empty masks finite).

    Returns:
        bce (N,), dice (N,) with dice = 1 - (2 sum(p g) + smooth) / (sum(p) + sum(g) + smooth), p = sigmoid.
    """
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").flatten(1).mean(dim=1)  # (N,)
    probs, targets = logits.sigmoid().flatten(1), targets.flatten(1)  # (N, S*S)
    overlap = 2 * (probs * targets).sum(dim=1)
    dice = 1 - (overlap + smooth) / (probs.sum(dim=1) + targets.sum(dim=1) + smooth)  # (N,)
    return bce, dice


def factorized_mask_losses(
    log_probs: torch.Tensor, targets: torch.Tensor, smooth: float = DICE_SMOOTH
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-frame losses of a factorized class head: sounding BCE and Dice (all pixels), class CE (object pixels).

    Args:
        log_probs: (N, C, S, S) class log-probabilities of a factorized head (background first).
        targets: (N, S, S) class indices in [0, C) (0 = background).
        smooth: the Dice smoothing.

    Returns:
        bce (N,), dice (N,), ce (N,): ``ce`` is the mean over the frame's object pixels of the cross-entropy of
        their class among the C - 1 object classes (0 for a frame without object pixels).
    """
    # The head's logits, exactly: f, and log_softmax(g) = log_softmax(log_probs[:, 1:]).
    sounding = factorized_sounding_logits(log_probs)  # (N, S, S)
    objects = targets > 0  # (N, S, S)
    bce, dice = binary_mask_losses(sounding, objects.to(log_probs.dtype), smooth)
    pixel_ce = F.cross_entropy(log_probs[:, 1:], (targets - 1).clamp(min=0), reduction="none")  # (N, S, S)
    area = objects.flatten(1).sum(dim=1)  # (N,)
    ce = (pixel_ce * objects).flatten(1).sum(dim=1) / area.clamp(min=1)
    return bce, dice, ce


def semantic_mask_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-frame cross-entropy (pixel mean) of class-index masks.

    Args:
        logits: (N, C, S, S) class logits.
        targets: (N, S, S) class indices in [0, C).

    Returns:
        (N,).
    """
    return F.cross_entropy(logits, targets, reduction="none").flatten(1).mean(dim=1)


def semantic_dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """Per-frame soft Dice loss of class-index masks, averaged over the classes present in the frame's target.

    Args:
        logits: (N, C, S, S) class logits.
        targets: (N, S, S) class indices in [0, C).
        smooth: added to each class's Dice numerator and denominator.

    Returns:
        (N,): per frame, the mean over present classes c of 1 - (2 sum(p_c g_c) + smooth) / (sum(p_c) + sum(g_c) +
        smooth), p = softmax over classes, g_c the one-hot target. Absent classes do not enter the mean: the
        probability they take is missing from the present classes' overlaps, and the cross-entropy penalises it.
    """
    probs = logits.float().softmax(dim=1).flatten(2)  # (N, C, S*S)
    onehot = F.one_hot(targets, logits.shape[1]).permute(0, 3, 1, 2).flatten(2).to(probs.dtype)  # (N, C, S*S)
    area = onehot.sum(dim=2)  # (N, C)
    dice = 1 - (2 * (probs * onehot).sum(dim=2) + smooth) / (probs.sum(dim=2) + area + smooth)  # (N, C)
    present = (area > 0).to(probs.dtype)
    return (dice * present).sum(dim=1) / present.sum(dim=1)  # every frame has at least one class present


def segmentation_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    bce_weight: float,
    dice_weight: float,
    ce_weight: float,
    dice_smooth: float = DICE_SMOOTH,
    factorized: bool = False,
) -> SegmentationLoss:
    """Mask loss of a batch, averaged over labelled frames within a sample, then over samples.

    A one-channel head (``C == 1``) takes BCE + Dice against binary targets, a multi-channel head cross-entropy
    + Dice (:func:`semantic_dice_loss`) against class indices.

    Args:
        logits: (B, T, C, S, S) decoder output.
        targets: (B, T, S, S) masks: floats in [0, 1] (or bool) for ``C == 1``, integer class indices otherwise.
            Entries of unlabelled frames are ignored.
        valid: (B, T) bool, True where the frame has ground truth; ``None`` means every frame.
        bce_weight: weight of the BCE part (binary head).
        dice_weight: weight of the Dice part (both heads).
        ce_weight: weight of the cross-entropy part (multi-class head).
        dice_smooth: Dice smoothing on pixel-count sums.
        factorized: the head is a factorized class head (``logits`` are its log-probabilities):
            :func:`factorized_mask_losses`, weighted ``bce`` / ``dice`` / ``ce``.

    Returns:
        The loss and its parts. With no labelled frame at all the loss is a zero that keeps the graph.

    Raises:
        ValueError: on mismatched shapes, a negative weight, a wrong target dtype, or labelled targets out of
            range ([0, 1] for binary, [0, C) for classes).
    """
    if logits.ndim != 5:
        raise ValueError(f"logits must be (B, T, C, S, S), got {tuple(logits.shape)}")
    batch, frames, num_classes = logits.shape[:3]
    expected = (batch, frames, *logits.shape[3:])
    if targets.shape != expected:
        raise ValueError(f"targets must be {expected} for logits {tuple(logits.shape)}, got {tuple(targets.shape)}")
    if valid is None:
        valid = torch.ones(batch, frames, dtype=torch.bool, device=logits.device)
    if valid.shape != (batch, frames) or valid.dtype != torch.bool:
        raise ValueError(f"valid must be a bool ({batch}, {frames}) tensor, got {valid.dtype} {tuple(valid.shape)}")
    for name, weight in (("bce_weight", bce_weight), ("dice_weight", dice_weight), ("ce_weight", ce_weight)):
        if weight < 0:
            raise ValueError(f"{name} must be non-negative, got {weight}")

    counts = valid.sum(dim=1)  # (B,) labelled frames per sample
    num_samples = int((counts > 0).sum())
    num_frames = int(counts.sum())
    if num_frames == 0:
        zero = logits.sum() * 0.0  # no ground truth in this batch: contribute nothing, keep the graph
        if num_classes == 1:
            return SegmentationLoss(zero, zero, zero, None, 0, 0)
        return SegmentationLoss(zero, None, zero, zero, 0, 0)
    # Weight of each labelled frame in the sample mean: 1 / (its sample's labelled frames * labelled samples).
    frame_weights = (1.0 / (counts.clamp(min=1) * num_samples)).unsqueeze(1).expand(batch, frames)[valid]  # (n,)
    frame_weights = frame_weights.to(logits.dtype)
    frame_logits, frame_targets = logits[valid], targets[valid]  # (n, C, S, S), (n, S, S)

    if num_classes == 1:
        if frame_targets.is_floating_point() or frame_targets.dtype == torch.bool:
            frame_targets = frame_targets.to(logits.dtype)
        else:
            raise ValueError(f"binary targets must be float or bool, got {targets.dtype}")
        if frame_targets.min() < 0 or frame_targets.max() > 1:
            raise ValueError("binary targets must lie in [0, 1]")
        bce, dice = binary_mask_losses(frame_logits[:, 0], frame_targets, dice_smooth)  # (n,), (n,)
        bce, dice = (frame_weights * bce).sum(), (frame_weights * dice).sum()
        return SegmentationLoss(bce_weight * bce + dice_weight * dice, bce, dice, None, num_frames, num_samples)

    if frame_targets.is_floating_point() or frame_targets.dtype == torch.bool:
        raise ValueError(f"class targets must be integer indices, got {targets.dtype}")
    if frame_targets.min() < 0 or frame_targets.max() >= num_classes:
        low, high = int(frame_targets.min()), int(frame_targets.max())
        raise ValueError(f"class targets must lie in [0, {num_classes}), got [{low}, {high}]")
    frame_targets = frame_targets.long()
    if factorized:
        bce, dice, ce = (
            (frame_weights * part).sum() for part in factorized_mask_losses(frame_logits, frame_targets, dice_smooth)
        )
        loss = bce_weight * bce + dice_weight * dice + ce_weight * ce
        return SegmentationLoss(loss, bce, dice, ce, num_frames, num_samples)
    ce = (frame_weights * semantic_mask_loss(frame_logits, frame_targets)).sum()
    dice = (frame_weights * semantic_dice_loss(frame_logits, frame_targets, dice_smooth)).sum()
    return SegmentationLoss(ce_weight * ce + dice_weight * dice, None, dice, ce, num_frames, num_samples)
