"""AVSS (AVSBench-semantic) colour mIoU and F-score, as pure functions.

Implements evaluation.md "AVSS", matching OpenNLPLab/AVSBench ``avs_scripts/avss/utils/compute_color_metrics.py``
(``_batch_miou_fscore``) and the accumulation of ``avs_scripts/avss/test.py``:

* Classes: ``num_classes`` = 71 (index 0 = background, then the 70 AVSBench categories alphabetically).
  A prediction is the argmax class of the logits (:func:`avss_predict`); labels are class indices.
* Per frame and class ``c``: ``inter`` (pixels predicted c and labelled c), ``pred`` (predicted c), ``lab``
  (labelled c), ``union = pred + lab - inter``; ``IoU_c = inter / (union + 2.22e-16)``;
  ``F_c = 1.3 P R / (0.3 P + R)`` with ``P = inter / pred``, ``R = inter / lab`` and NaN -> 0.
  The frame *counts* for class ``c`` when ``union > 0`` (the class is labelled or predicted there).
* Over all frames: per class, the sum of its per-frame IoU (and F) divided by the number of frames where it
  counts, i.e. the mean per-frame score over the frames where it occurs, **not** pooled areas.
* mIoU / F = mean over the classes that occur at least once; the ``_no_background`` variants drop class 0.

Choices and differences, stated so a reader can compare numbers:

* The official final line averages over **all** 71 classes with absent ones as 0 (its running print
  averages over present classes). evaluation.md fixes "mean over classes present"; both agree when every
  class occurs in the test set, as on the real AVSS test split. The per-class lists in the result allow
  either.
* Crab's "no background" variant drops the *last* class (woman); we drop index 0, background.
* The official loader pads 5-frame v1 videos to 10 frames with all-background masks and scores the padding;
  here only the frames passed in are scored (pass padded frames to reproduce that).
* Labels outside ``[0, num_classes)`` are an error (the official histogram silently drops them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from crab.eval.metrics_avs import F_BETA2
from crab.tasks import AVSS_NUM_CLASSES  # 71 classes with background (dataset-layouts 5.3)

__all__ = [
    "AVSS_NUM_CLASSES",
    "BACKGROUND_INDEX",
    "AvssStats",
    "as_class_frames",
    "avss_predict",
    "avss_scores",
    "avss_scores_from_stats",
    "avss_stats",
    "frame_class_areas",
]

#: Class index of background.
BACKGROUND_INDEX = 0

_IOU_EPS = 2.220446049250313e-16  # official: inter / (eps + union)


@dataclass(frozen=True)
class AvssStats:
    """Per-class sums over the frames of one video; adding videos' stats gives the dataset's.

    Attributes:
        iou_sum: per class, the sum over frames of the frame IoU (``num_classes`` values).
        f_sum: per class, the sum over frames of the frame F-score.
        class_count: per class, the number of frames where it is labelled or predicted (``union > 0``).
        num_frames: frames of the video.
    """

    iou_sum: tuple[float, ...]
    f_sum: tuple[float, ...]
    class_count: tuple[int, ...]
    num_frames: int

    def as_dict(self) -> dict[str, Any]:
        """Plain types, e.g. for an Arrow row; :meth:`from_dict` inverts it."""
        return {
            "iou_sum": list(self.iou_sum),
            "f_sum": list(self.f_sum),
            "class_count": list(self.class_count),
            "num_frames": self.num_frames,
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> AvssStats:
        """The statistics from :meth:`as_dict`'s output."""
        return cls(
            iou_sum=tuple(float(v) for v in row["iou_sum"]),
            f_sum=tuple(float(v) for v in row["f_sum"]),
            class_count=tuple(int(v) for v in row["class_count"]),
            num_frames=int(row["num_frames"]),
        )


def avss_predict(logits: Any) -> torch.Tensor:
    """Class-index predictions from per-class logits, as the official ``argmax(softmax(logits))``.

    Args:
        logits: ``(T, C, H, W)``.

    Returns:
        ``(T, H, W)`` int64 class indices (first maximum on ties).
    """
    scores = logits if isinstance(logits, torch.Tensor) else torch.as_tensor(np.asarray(logits))
    if scores.ndim != 4:
        raise ValueError(f"AVSS logits must be (T, C, H, W), got shape {tuple(scores.shape)}")
    return scores.argmax(dim=1)


def as_class_frames(array: Any, num_classes: int, what: str) -> torch.Tensor:
    """A validated ``(T, H, W)`` int64 class-index tensor from a tensor, numpy array or nested lists.

    Raises:
        ValueError: not 3-D, empty, not integral, or an index outside ``[0, num_classes)``.
    """
    tensor = array if isinstance(array, torch.Tensor) else torch.as_tensor(np.asarray(array))
    if tensor.ndim != 3 or tensor.numel() == 0:
        raise ValueError(f"{what}: expected non-empty (T, H, W) class indices, got shape {tuple(tensor.shape)}")
    if tensor.is_floating_point():
        if not bool((tensor == tensor.round()).all()):
            raise ValueError(f"{what}: class indices must be integers (pass avss_predict(logits) for logits)")
    tensor = tensor.long()
    low, high = int(tensor.min()), int(tensor.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"{what}: class index range [{low}, {high}] is outside [0, {num_classes})")
    return tensor


def frame_class_areas(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, ...]:
    """Per frame and class: intersection, predicted and labelled pixel counts (the official histograms).

    Args:
        pred: ``(T, H, W)`` int64 predicted classes.
        label: ``(T, H, W)`` int64 labelled classes.
        num_classes: histogram length.

    Returns:
        ``(inter, area_pred, area_lab)``, each ``(T, num_classes)`` float64.
    """
    num_frames = pred.shape[0]
    offsets = torch.arange(num_frames)[:, None, None] * num_classes  # (T, 1, 1)
    size = num_frames * num_classes

    def histogram(classes: torch.Tensor) -> torch.Tensor:
        return torch.bincount(classes.reshape(-1), minlength=size).reshape(num_frames, num_classes).double()

    hits = (pred + offsets)[pred == label]  # (N_hit,) flattened frame*C + class of correct pixels
    return histogram(hits), histogram(pred + offsets), histogram(label + offsets)


def avss_stats(predictions: Any, labels: Any, *, num_classes: int = AVSS_NUM_CLASSES, what: str = "video") -> AvssStats:
    """Reduce one video to its per-class sums (:class:`AvssStats`).

    Args:
        predictions: ``(T, H, W)`` predicted class indices (:func:`avss_predict` turns logits into these).
        labels: ``(T, H, W)`` ground-truth class indices at the same resolution.
        num_classes: classes including background.
        what: names the video in errors.

    Raises:
        ValueError: shapes differ or are malformed, or an index outside ``[0, num_classes)``.
    """
    pred = as_class_frames(predictions, num_classes, f"{what} prediction")
    label = as_class_frames(labels, num_classes, f"{what} ground truth")
    if pred.shape != label.shape:
        raise ValueError(
            f"{what}: prediction shape {tuple(pred.shape)} != ground truth shape {tuple(label.shape)}; "
            "scores are taken at the ground truth's resolution"
        )
    inter, area_pred, area_lab = frame_class_areas(pred, label, num_classes)  # (T, C) each
    union = area_pred + area_lab - inter
    iou = inter / (union + _IOU_EPS)
    precision = inter / area_pred  # 0/0 = NaN where the class is not predicted, as in the official code
    recall = inter / area_lab
    fscore = torch.nan_to_num((1 + F_BETA2) * precision * recall / (F_BETA2 * precision + recall), nan=0.0)
    return AvssStats(
        iou_sum=tuple(iou.sum(0).tolist()),
        f_sum=tuple(fscore.sum(0).tolist()),
        class_count=tuple((union > 0).sum(0).tolist()),
        num_frames=pred.shape[0],
    )


def _mean_over(per_class: list[float | None], classes: range) -> float:
    """Mean of the present classes' scores among ``classes``; 0.0 when none is present."""
    present = [per_class[c] for c in classes if per_class[c] is not None]
    return sum(present) / len(present) if present else 0.0


def avss_scores_from_stats(stats: Sequence[AvssStats]) -> dict:
    """AVSS mIoU and F (with and without background) from per-video statistics.

    Returns:
        ``{"miou", "f_score", "miou_no_background", "f_score_no_background", "iou_per_class",
        "f_score_per_class", "num_classes_present", "num_videos", "num_frames"}``; the per-class lists hold
        ``None`` for classes that never occur. A variant with no present class is 0.0.

    Raises:
        ValueError: no videos, or videos with different class counts.
    """
    if not stats:
        raise ValueError("AVSS mIoU / F needs at least one video")
    lengths = {len(s.class_count) for s in stats}
    if len(lengths) != 1:
        raise ValueError(f"AVSS statistics disagree on the number of classes: {sorted(lengths)}")
    count = np.sum([s.class_count for s in stats], axis=0)  # (C,)
    iou_sum = np.sum([s.iou_sum for s in stats], axis=0)
    f_sum = np.sum([s.f_sum for s in stats], axis=0)
    iou = [float(iou_sum[c] / count[c]) if count[c] else None for c in range(len(count))]
    fscore = [float(f_sum[c] / count[c]) if count[c] else None for c in range(len(count))]
    all_classes, objects = range(len(count)), range(BACKGROUND_INDEX + 1, len(count))
    return {
        "miou": _mean_over(iou, all_classes),
        "f_score": _mean_over(fscore, all_classes),
        "miou_no_background": _mean_over(iou, objects),
        "f_score_no_background": _mean_over(fscore, objects),
        "iou_per_class": iou,
        "f_score_per_class": fscore,
        "num_classes_present": int((count > 0).sum()),
        "num_videos": len(stats),
        "num_frames": sum(s.num_frames for s in stats),
    }


def avss_scores(predictions: Sequence[Any], references: Sequence[Any], *, num_classes: int = AVSS_NUM_CLASSES) -> dict:
    """AVSS colour mIoU and F-score (module docstring for the exact rules).

    Args:
        predictions: per video, predicted class indices ``(T, H, W)`` (tensor, numpy array or nested lists).
        references: per video, ground-truth class indices ``(T, H, W)``.
        num_classes: classes including background (71 for AVSBench-semantic).

    Returns:
        See :func:`avss_scores_from_stats`.

    Raises:
        ValueError: different lengths, no videos, or a malformed video.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    stats = [
        avss_stats(p, r, num_classes=num_classes, what=f"video {i}")
        for i, (p, r) in enumerate(zip(predictions, references, strict=True))
    ]
    return avss_scores_from_stats(stats)
