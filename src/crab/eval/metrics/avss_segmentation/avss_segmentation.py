"""``evaluate`` module for AVSS colour mIoU / F: a thin wrapper over :mod:`crab.eval.metrics_avss`.

Loaded by path (``evaluate.load(<package>/crab/eval/metrics/avss_segmentation)``), never from the hub;
``num_classes`` (default 71, background included) is a load argument. ``evaluate`` copies this file into its
module cache, so it imports the metric from the installed ``crab`` package rather than relatively.

Storage: :meth:`AvssSegmentation.add_batch` reduces each video at once to its
:class:`~crab.eval.metrics_avss.AvssStats` (per-class IoU and F sums and frame counts, 3 x 71 numbers)
instead of storing full-resolution masks, and ``compute`` aggregates those rows exactly as
:func:`crab.eval.metrics_avss.avss_scores` does. Predictions and references are per-video class-index maps
``(T, H, W)`` (tensors, numpy arrays or nested lists); turn logits into indices with
:func:`crab.eval.metrics_avss.avss_predict` first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import evaluate

from crab.eval.metrics_avss import AVSS_NUM_CLASSES, AvssStats, avss_scores_from_stats, avss_stats

_DESCRIPTION = """AVSBench-semantic (AVSS) colour mIoU and F-score as in OpenNLPLab/AVSBench
avss/utils/compute_color_metrics.py: per frame and class IoU and F (beta^2 = 0.3), averaged per class over the
frames where the class is labelled or predicted, then over the classes that occur; also without background."""

_CITATION = """@article{zhou2023avss, title={Audio-Visual Segmentation with Semantics}, author={Zhou, Jinxing and Shen,
Xuyang and Wang, Jianyuan and Zhang, Jiayi and Sun, Weixuan and Zhang, Jing and Birchfield, Stan and Guo, Dan and
Kong, Lingpeng and Wang, Meng and Zhong, Yiran}, journal={International Journal of Computer Vision}, year={2024}}"""

_INPUTS = """Args:
    predictions: per video, predicted class indices (T, H, W).
    references: per video, ground-truth class indices (T, H, W), same resolution.
Returns:
    {"miou", "f_score", "miou_no_background", "f_score_no_background", "iou_per_class", "f_score_per_class",
     "num_classes_present", "num_videos", "num_frames"}."""


class AvssSegmentation(evaluate.Metric):
    """AVSS mIoU and F with and without background (see :mod:`crab.eval.metrics_avss` for the rules)."""

    def __init__(self, *args: Any, num_classes: int = AVSS_NUM_CLASSES, **kwargs: Any) -> None:
        if num_classes < 2:
            raise ValueError(f"avss_segmentation: num_classes must be >= 2 (background + a class), got {num_classes}")
        self.num_classes = num_classes
        super().__init__(*args, **kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "statistics": {
                        "iou_sum": datasets.Sequence(datasets.Value("float64")),
                        "f_sum": datasets.Sequence(datasets.Value("float64")),
                        "class_count": datasets.Sequence(datasets.Value("int64")),
                        "num_frames": datasets.Value("int64"),
                    }
                }
            ),
        )

    def add_batch(self, *, predictions: Sequence[Any] | None = None, references: Sequence[Any] | None = None, **kw):
        """Add a batch of per-video class-index maps, reduced at once to per-class sums."""
        if kw:
            raise ValueError(f"avss_segmentation takes predictions and references only, not {sorted(kw)}")
        if predictions is None or references is None:
            raise ValueError("avss_segmentation: predictions and references are both required")
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        first = len(self)
        stats = [
            avss_stats(p, r, num_classes=self.num_classes, what=f"avss_segmentation video {first + i}")
            for i, (p, r) in enumerate(zip(predictions, references, strict=True))
        ]
        return super().add_batch(statistics=[s.as_dict() for s in stats])

    def add(self, *, prediction: Any = None, reference: Any = None, **kw):
        """Add one video's predicted and ground-truth class-index maps."""
        return self.add_batch(predictions=[prediction], references=[reference], **kw)

    def compute(self, *, predictions: Sequence[Any] | None = None, references: Sequence[Any] | None = None, **kwargs):
        """Score everything added so far plus ``predictions`` / ``references`` if given."""
        if predictions is not None or references is not None:
            self.add_batch(predictions=predictions, references=references)
        if self.writer is None:
            raise ValueError("avss_segmentation: nothing to score; pass predictions or add them first")
        return super().compute(**kwargs)

    def _compute(self, statistics: list[Mapping[str, Any]]) -> dict:
        return avss_scores_from_stats([AvssStats.from_dict(row) for row in statistics])
