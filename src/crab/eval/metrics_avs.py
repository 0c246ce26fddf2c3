"""Binary segmentation metrics of AVSBench S4 / MS3 and Ref-AVS (seen, unseen, null), as pure functions.

Implements evaluation.md "AVS" and "Ref-AVS", matching the official code:

* S4 / MS3 (OpenNLPLab/AVSBench ``avs_scripts/avs_s4/utils/utility.py``: ``mask_iou``, ``Eval_Fmeasure``;
  ``avs_s4/test.py`` scores one video per batch and averages the per-video scores):

  - **mIoU (J)**: per frame, foreground = ``sigmoid(logit) > 0.5``; IoU = ``|P and G| / (|P or G| + 1e-7)``;
    a frame whose ground truth is empty scores ``(true-negative pixels) / (all pixels + 1e-7)``. Frames are
    averaged per video, then videos are averaged (the official loop); with AVSBench's 5 frames per video
    this is the mean over all frames.
  - **F-score (F, beta^2 = 0.3)**: 255 thresholds ``linspace(0, 1 - 1e-10)`` (float32) on the sigmoid
    probabilities (``prob >= t``); per frame, ``precision = TP / (#pred + 1e-20)``,
    ``recall = TP / (#gt + 1e-20)``, ``F = 1.3 P R / (0.3 P + R)``, NaN -> 0. Frames with an empty ground
    truth are skipped; the F curve is averaged over the video's remaining frames, the video's F is its max
    over thresholds (0 when every frame is empty), and videos are averaged.

* Ref-AVS (GeWu-Lab/Ref-AVS ``utils/metric/utility.py``, ``scripts/train.py``): the official test loop scores
  **batches of 4 samples x 10 frames** (consecutive in test order) and averages the batch scores, so
  ``batch_size`` is a parameter (default 4) and the result depends on the order of the samples, as there.

  - Seen / unseen: mIoU as above but foreground = ``sigmoid > 0.4``, averaged over the batch's frames; F as
    above over the batch's non-empty frames, max over thresholds per batch (0 if all are empty).
  - Null (the referred object is absent): ``S = sqrt(#(sigmoid > 0.5) / #pixels)`` pooled over all frames of
    the batch, averaged over batches; lower is better. The ground truth is not used.

How this differs from Crab (crab-reference section 5.4): Crab averages F per arbitrary batch of frames and
counts empty-ground-truth frames as F = 0, and it scores Ref-AVS with its AVS code (threshold 0.5, its own
batching, S per frame). We follow the official definitions above; there is no Crab variant here.

Inputs are one array per video (S4 / MS3) or per sample (Ref-AVS): logits ``(T, H, W)`` and a binary ground
truth ``(T, H, W)`` **at the ground truth's resolution** (AVSBench 224x224 and Ref-AVS 256x256 after the
official resizing). Predictions at another size go through :func:`resize_logits` first (bilinear on the
logits), never silently. Probabilities are computed in float32 like the official code, counts exactly, and
the ratios in float64, so the scores agree with the official ones to float32 rounding.

Each item is first reduced to its sufficient statistics (:class:`MaskStats`: per-frame IoUs, summed F
curve, counts), from which every protocol's score follows; the ``evaluate`` module
``crab/eval/metrics/avs_segmentation`` stores these few hundred numbers per item instead of megabytes of
logits, and computes exactly what these functions compute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "AVS_IOU_THRESHOLD",
    "F_BETA2",
    "F_NUM_THRESHOLDS",
    "NULL_THRESHOLD",
    "REF_AVS_BATCH_SIZE",
    "REF_AVS_IOU_THRESHOLD",
    "MaskStats",
    "as_frames",
    "avs_scores",
    "avs_scores_from_stats",
    "f_thresholds",
    "frame_f_curves",
    "frame_ious",
    "mask_stats",
    "ref_avs_null_score",
    "ref_avs_null_score_from_stats",
    "ref_avs_scores",
    "ref_avs_scores_from_stats",
    "resize_logits",
]

#: Foreground threshold on sigmoid probabilities for the S4 / MS3 mIoU (AVSBench ``mask_iou``).
AVS_IOU_THRESHOLD = 0.5
#: Foreground threshold for the Ref-AVS seen / unseen mIoU (Ref-AVS ``mask_iou``).
REF_AVS_IOU_THRESHOLD = 0.4
#: Foreground threshold for the Ref-AVS null S metric (Ref-AVS ``metric_s_for_null``).
NULL_THRESHOLD = 0.5
#: beta^2 of the F-measure (precision weighted more than recall).
F_BETA2 = 0.3
#: Number of probability thresholds of the F curve (``Eval_Fmeasure(pr_num=255)``).
F_NUM_THRESHOLDS = 255
#: Samples per scored batch in the official Ref-AVS test loop.
REF_AVS_BATCH_SIZE = 4

_IOU_EPS = 1e-7  # official mask_iou: inter / (union + eps)
_PR_EPS = 1e-20  # official _eval_pr: tp / (count + eps)


@dataclass(frozen=True)
class MaskStats:
    """Sufficient statistics of one video (S4 / MS3) or one sample (Ref-AVS) for every protocol here.

    Attributes:
        frame_ious: IoU of each frame at the item's foreground threshold; empty when no ground truth was given.
        f_curve_sum: the F curves of the frames with a non-empty ground truth, summed (``F_NUM_THRESHOLDS``
            values); all zeros when there is none.
        num_scored_frames: how many frames have a non-empty ground truth (the F curve's denominator).
        num_foreground: pixels with ``sigmoid > NULL_THRESHOLD`` over all frames (null S numerator).
        num_pixels: ``T * H * W``.
    """

    frame_ious: tuple[float, ...]
    f_curve_sum: tuple[float, ...]
    num_scored_frames: int
    num_foreground: int
    num_pixels: int

    @property
    def num_frames(self) -> int:
        """Frames scored for mIoU (0 for a null sample given without ground truth)."""
        return len(self.frame_ious)

    def as_dict(self) -> dict[str, Any]:
        """Plain types, e.g. for an Arrow row; :meth:`from_dict` inverts it."""
        return {
            "frame_ious": list(self.frame_ious),
            "f_curve_sum": list(self.f_curve_sum),
            "num_scored_frames": self.num_scored_frames,
            "num_foreground": self.num_foreground,
            "num_pixels": self.num_pixels,
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> MaskStats:
        """The statistics from :meth:`as_dict`'s output."""
        return cls(
            frame_ious=tuple(float(v) for v in row["frame_ious"]),
            f_curve_sum=tuple(float(v) for v in row["f_curve_sum"]),
            num_scored_frames=int(row["num_scored_frames"]),
            num_foreground=int(row["num_foreground"]),
            num_pixels=int(row["num_pixels"]),
        )


def as_frames(array: Any, what: str) -> torch.Tensor:
    """A ``(T, H, W)`` tensor from a tensor, numpy array or nested lists.

    Args:
        array: the frames of one item.
        what: names the item in errors, e.g. ``"video 3 prediction"``.

    Raises:
        ValueError: not 3-D, or no frames / pixels.
    """
    tensor = array if isinstance(array, torch.Tensor) else torch.as_tensor(np.asarray(array))
    if tensor.ndim != 3:
        raise ValueError(f"{what}: expected (T, H, W) frames, got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise ValueError(f"{what}: no frames or pixels, shape {tuple(tensor.shape)}")
    return tensor


def resize_logits(logits: Any, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize logits ``(T, h, w)`` to the ground truth's ``size = (H, W)``.

    The logits are resized, not a binarised mask, so that every F threshold still sees graded scores and
    the mask boundary falls where the interpolated logit crosses the threshold (``align_corners=False``).

    Returns:
        ``(T, H, W)`` float32 logits.
    """
    frames = as_frames(logits, "logits").float()
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    resized = F.interpolate(frames[:, None], size=tuple(size), mode="bilinear", align_corners=False)  # (T, 1, H, W)
    return resized[:, 0]  # (T, H, W)


def _probabilities_and_truth(logits: Any, truth: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated float32 probabilities and a bool ground truth, both ``(T, H, W)``."""
    scores = as_frames(logits, f"{what} prediction")
    gt = as_frames(truth, f"{what} ground truth")
    if scores.shape != gt.shape:
        raise ValueError(
            f"{what}: prediction shape {tuple(scores.shape)} != ground truth shape {tuple(gt.shape)}; "
            "scores are taken at the ground truth's resolution (resize the logits with resize_logits)"
        )
    probs = _probabilities(scores, what)
    if gt.dtype != torch.bool and not bool(((gt == 0) | (gt == 1)).all()):
        raise ValueError(f"{what}: ground truth must be binary 0/1 (max {gt.max().item()}); binarise it with mask > 0")
    return probs, gt.bool()


def _probabilities(scores: torch.Tensor, what: str) -> torch.Tensor:
    """sigmoid of the logits in float32 (the official dtype); NaN logits are an error, not background."""
    scores = scores.float()
    if bool(torch.isnan(scores).any()):
        raise ValueError(f"{what}: prediction logits contain NaN")
    return torch.sigmoid(scores)


def frame_ious(probs: torch.Tensor, gt: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per-frame IoU as in the official ``mask_iou``: an empty ground truth scores its true negatives.

    Args:
        probs: ``(T, H, W)`` sigmoid probabilities.
        gt: ``(T, H, W)`` bool ground truth.
        threshold: foreground is ``probs > threshold`` (strict, as in the official code).

    Returns:
        ``(T,)`` float64 IoUs.
    """
    pred = probs > threshold  # (T, H, W)
    inter = (pred & gt).sum(dim=(1, 2)).double()  # (T,)
    union = (pred | gt).sum(dim=(1, 2)).double()
    empty = ~gt.any(dim=2).any(dim=1)  # (T,)
    true_negatives = (~pred & ~gt).sum(dim=(1, 2)).double()
    num_pixels = float(gt.shape[1] * gt.shape[2])
    inter = torch.where(empty, true_negatives, inter)
    union = torch.where(empty, torch.full_like(union, num_pixels), union)
    return inter / (union + _IOU_EPS)


def f_thresholds(num_thresholds: int = F_NUM_THRESHOLDS) -> torch.Tensor:
    """The official float32 thresholds ``linspace(0, 1 - 1e-10, num)`` (the last one rounds to 1.0)."""
    return torch.linspace(0, 1 - 1e-10, num_thresholds, dtype=torch.float32)


def frame_f_curves(
    probs: torch.Tensor, gt: torch.Tensor, num_thresholds: int = F_NUM_THRESHOLDS, beta2: float = F_BETA2
) -> torch.Tensor:
    """Per-frame F-measure at every threshold, as the official ``_eval_pr`` + ``Eval_Fmeasure`` loop.

    Instead of 255 binarisations, each pixel is bucketed once by how many thresholds it reaches
    (``prob >= t``, exactly the official comparison in float32), and the per-threshold counts are reverse
    cumulative sums of those bucket histograms: same counts, O(T*H*W) memory.

    Args:
        probs: ``(T, H, W)`` float32 sigmoid probabilities.
        gt: ``(T, H, W)`` bool ground truth.
        num_thresholds: curve length.
        beta2: beta^2 of the F-measure.

    Returns:
        ``(T, num_thresholds)`` float64 F values, NaN replaced by 0. Frames with an empty ground truth get a
        curve too; the callers skip them.
    """
    num_frames, num_pixels = probs.shape[0], probs.shape[1] * probs.shape[2]
    thresholds = f_thresholds(num_thresholds)
    # Bucket k = number of thresholds <= prob, so the pixel is foreground at threshold i iff i < k.
    buckets = torch.bucketize(probs.float().reshape(num_frames, num_pixels), thresholds, right=True)  # (T, HW)
    offsets = torch.arange(num_frames)[:, None] * (num_thresholds + 1)
    flat = (buckets + offsets).reshape(-1)  # (T*HW,)
    size = num_frames * (num_thresholds + 1)
    pixel_hist = torch.bincount(flat, minlength=size).reshape(num_frames, num_thresholds + 1)  # (T, K+1)
    hit_hist = torch.bincount(flat, weights=gt.reshape(-1).double(), minlength=size)
    hit_hist = hit_hist.reshape(num_frames, num_thresholds + 1)  # (T, K+1) pixels of the object only

    def at_least(hist: torch.Tensor) -> torch.Tensor:
        # count[:, i] = #pixels with bucket > i = reverse cumulative sum from bucket i + 1.
        return hist.double().flip(1).cumsum(1).flip(1)[:, 1:]  # (T, K)

    num_pred = at_least(pixel_hist)
    true_pos = at_least(hit_hist)
    num_gt = gt.reshape(num_frames, num_pixels).sum(1).double()[:, None]  # (T, 1)
    precision = true_pos / (num_pred + _PR_EPS)
    recall = true_pos / (num_gt + _PR_EPS)
    f_curve = (1 + beta2) * precision * recall / (beta2 * precision + recall)
    return torch.nan_to_num(f_curve, nan=0.0)


def mask_stats(
    logits: Any,
    truth: Any | None,
    *,
    iou_threshold: float = AVS_IOU_THRESHOLD,
    num_thresholds: int = F_NUM_THRESHOLDS,
    beta2: float = F_BETA2,
    what: str = "item",
) -> MaskStats:
    """Reduce one video / sample to its :class:`MaskStats`.

    Args:
        logits: ``(T, H, W)`` mask logits at the ground truth's resolution.
        truth: ``(T, H, W)`` binary ground truth (0/1 or bool); ``None`` for a null sample scored by S only.
        iou_threshold: 0.5 for S4 / MS3, 0.4 for Ref-AVS.
        num_thresholds: F curve length.
        beta2: beta^2 of the F-measure.
        what: names the item in errors.

    Raises:
        ValueError: shapes differ or are not ``(T, H, W)``, a non-binary ground truth, or NaN logits.
    """
    if truth is None:
        probs = _probabilities(as_frames(logits, f"{what} prediction"), what)
        return MaskStats((), (0.0,) * num_thresholds, 0, int((probs > NULL_THRESHOLD).sum()), probs.numel())
    probs, gt = _probabilities_and_truth(logits, truth, what)
    scored = gt.any(dim=2).any(dim=1)  # (T,) frames with an object
    curves = frame_f_curves(probs[scored], gt[scored], num_thresholds, beta2)  # (S, K)
    return MaskStats(
        frame_ious=tuple(frame_ious(probs, gt, iou_threshold).tolist()),
        f_curve_sum=tuple(curves.sum(0).tolist()),
        num_scored_frames=int(scored.sum()),
        num_foreground=int((probs > NULL_THRESHOLD).sum()),
        num_pixels=probs.numel(),
    )


def _pooled_f(stats: Sequence[MaskStats]) -> float:
    """Max over thresholds of the F curve averaged over the pooled non-empty frames; 0 if there are none."""
    num_scored = sum(s.num_scored_frames for s in stats)
    if num_scored == 0:
        return 0.0
    curve = np.sum([s.f_curve_sum for s in stats], axis=0) / num_scored  # (K,)
    return float(curve.max())


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _need_items(stats: Sequence[MaskStats], what: str) -> None:
    if not stats:
        raise ValueError(f"{what} needs at least one item")
    if any(s.num_frames == 0 for s in stats):
        raise ValueError(f"{what}: an item has no ground truth frames (null samples are scored by ref_avs_null_score)")


def avs_scores_from_stats(stats: Sequence[MaskStats]) -> dict:
    """S4 / MS3 mIoU and F from per-video statistics (one official test batch per video).

    Returns:
        ``{"miou", "f_score", "num_videos", "num_frames", "num_scored_frames"}``: mIoU = mean over videos of
        the frame-mean IoU; F = mean over videos of the max over thresholds of the video's F curve (0 for a
        video without any object); ``num_scored_frames`` counts frames with a non-empty ground truth.

    Raises:
        ValueError: no videos, or a video without ground truth.
    """
    _need_items(stats, "AVS mIoU / F")
    return {
        "miou": _mean([_mean(s.frame_ious) for s in stats]),
        "f_score": _mean([_pooled_f([s]) for s in stats]),
        "num_videos": len(stats),
        "num_frames": sum(s.num_frames for s in stats),
        "num_scored_frames": sum(s.num_scored_frames for s in stats),
    }


def _batches(stats: Sequence[MaskStats], batch_size: int) -> list[Sequence[MaskStats]]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [stats[i : i + batch_size] for i in range(0, len(stats), batch_size)]


def ref_avs_scores_from_stats(stats: Sequence[MaskStats], batch_size: int = REF_AVS_BATCH_SIZE) -> dict:
    """Ref-AVS seen / unseen mIoU and F from per-sample statistics, in the official batches.

    Args:
        stats: one entry per sample, in test order (computed with ``iou_threshold=0.4``).
        batch_size: samples per batch; the last batch may be smaller and weighs as much as the others.

    Returns:
        ``{"miou", "f_score", "num_samples", "num_batches", "num_frames", "num_scored_frames"}``.

    Raises:
        ValueError: no samples, a sample without ground truth, or ``batch_size < 1``.
    """
    _need_items(stats, "Ref-AVS mIoU / F")
    batches = _batches(stats, batch_size)
    return {
        "miou": _mean([_mean([iou for s in batch for iou in s.frame_ious]) for batch in batches]),
        "f_score": _mean([_pooled_f(batch) for batch in batches]),
        "num_samples": len(stats),
        "num_batches": len(batches),
        "num_frames": sum(s.num_frames for s in stats),
        "num_scored_frames": sum(s.num_scored_frames for s in stats),
    }


def ref_avs_null_score_from_stats(stats: Sequence[MaskStats], batch_size: int = REF_AVS_BATCH_SIZE) -> dict:
    """Ref-AVS null S (lower is better) from per-sample statistics, in the official batches.

    Returns:
        ``{"null_s", "num_samples", "num_batches", "num_pixels"}``; ``null_s`` is the mean over batches of
        ``sqrt(foreground pixels / all pixels)`` pooled over the batch.

    Raises:
        ValueError: no samples or ``batch_size < 1``.
    """
    if not stats:
        raise ValueError("Ref-AVS null S needs at least one sample")
    batches = _batches(stats, batch_size)
    per_batch = [math.sqrt(sum(s.num_foreground for s in b) / sum(s.num_pixels for s in b)) for b in batches]
    return {
        "null_s": _mean(per_batch),
        "num_samples": len(stats),
        "num_batches": len(batches),
        "num_pixels": sum(s.num_pixels for s in stats),
    }


def _all_stats(predictions: Sequence[Any], references: Sequence[Any], iou_threshold: float, noun: str) -> list:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    return [
        mask_stats(p, r, iou_threshold=iou_threshold, what=f"{noun} {i}")
        for i, (p, r) in enumerate(zip(predictions, references, strict=True))
    ]


def avs_scores(predictions: Sequence[Any], references: Sequence[Any]) -> dict:
    """S4 / MS3 mIoU (J) and F-score (module docstring for the exact rules).

    Args:
        predictions: per video, mask logits ``(T, H, W)`` (tensor, numpy array or nested lists).
        references: per video, the binary ground truth ``(T, H, W)`` at the same resolution.

    Returns:
        See :func:`avs_scores_from_stats`.

    Raises:
        ValueError: different lengths, no videos, or a malformed video (shape, non-binary truth, NaN).
    """
    return avs_scores_from_stats(_all_stats(predictions, references, AVS_IOU_THRESHOLD, "video"))


def ref_avs_scores(
    predictions: Sequence[Any], references: Sequence[Any], *, batch_size: int = REF_AVS_BATCH_SIZE
) -> dict:
    """Ref-AVS seen / unseen mIoU (sigmoid > 0.4) and F in batches of ``batch_size`` samples.

    Args:
        predictions: per sample (one referring expression), mask logits ``(T, H, W)``, in test order.
        references: per sample, the binary ground truth ``(T, H, W)``.
        batch_size: samples per scored batch (official: 4).

    Returns:
        See :func:`ref_avs_scores_from_stats`.
    """
    stats = _all_stats(predictions, references, REF_AVS_IOU_THRESHOLD, "sample")
    return ref_avs_scores_from_stats(stats, batch_size)


def ref_avs_null_score(predictions: Sequence[Any], *, batch_size: int = REF_AVS_BATCH_SIZE) -> dict:
    """Ref-AVS null S: sqrt of the predicted-foreground fraction per batch, averaged; lower is better.

    Args:
        predictions: per null sample, mask logits ``(T, H, W)``, in test order.
        batch_size: samples per scored batch (official: 4).

    Returns:
        See :func:`ref_avs_null_score_from_stats`.
    """
    stats = [mask_stats(p, None, what=f"sample {i}") for i, p in enumerate(predictions)]
    return ref_avs_null_score_from_stats(stats, batch_size)
