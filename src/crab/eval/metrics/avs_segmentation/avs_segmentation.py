"""``evaluate`` module for S4 / MS3 and Ref-AVS segmentation: a thin wrapper over :mod:`crab.eval.metrics_avs`.

Loaded by path (``evaluate.load(<package>/crab/eval/metrics/avs_segmentation, config_name=...)``), never
from the hub. ``evaluate`` copies this file into its module cache, so it imports the metric from the
installed ``crab`` package rather than relatively.

The config name picks the protocol: ``"s4"``, ``"ms3"`` or ``"default"`` (one video per batch, sigmoid > 0.5),
``"ref_avs"`` (seen / unseen: batches of ``batch_size`` samples, sigmoid > 0.4) and ``"ref_avs_null"``
(S metric; references are optional and ignored). ``batch_size`` is a ``compute`` argument of the Ref-AVS
configs (default 4).

Storage: a video's logits are megabytes, so :meth:`AvsSegmentation.add_batch` reduces each (prediction,
reference) pair at once to its :class:`~crab.eval.metrics_avs.MaskStats` (per-frame IoUs, a summed
255-point F curve, pixel counts) and the Arrow table holds one ``statistics`` row per item; ``compute``
aggregates those rows exactly as the pure functions do. Predictions and references may be tensors, numpy
arrays or nested lists of shape ``(T, H, W)``, the references binary and at the ground truth's resolution.
Rows keep their insertion order, which the Ref-AVS batching depends on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import evaluate

from crab.eval.metrics_avs import (
    AVS_IOU_THRESHOLD,
    REF_AVS_BATCH_SIZE,
    REF_AVS_IOU_THRESHOLD,
    MaskStats,
    avs_scores_from_stats,
    mask_stats,
    ref_avs_null_score_from_stats,
    ref_avs_scores_from_stats,
)

_DESCRIPTION = """AVSBench S4 / MS3 and Ref-AVS segmentation metrics as in the official code
(OpenNLPLab/AVSBench avs_s4/utils/utility.py, GeWu-Lab/Ref-AVS utils/metric/utility.py): mIoU (J) with
empty-ground-truth frames scored by true negatives, F-score with beta^2 = 0.3 over 255 thresholds (frames
without an object skipped, max over thresholds per video / per Ref-AVS batch), and the Ref-AVS null S."""

_CITATION = """@inproceedings{zhou2022avs, title={Audio-Visual Segmentation}, author={Zhou, Jinxing and Wang, Jianyuan
and Zhang, Jiayi and Sun, Weixuan and Zhang, Jing and Birchfield, Stan and Guo, Dan and Kong, Lingpeng and Wang, Meng
and Zhong, Yiran}, booktitle={ECCV}, year={2022}}
@inproceedings{wang2024refavs, title={Ref-AVS: Refer and Segment Objects in Audio-Visual Scenes}, author={Wang,
Yaoting and Sun, Peiwen and Zhou, Dongzhan and Li, Guangyao and Zhang, Honggang and Hu, Di}, booktitle={ECCV},
year={2024}}"""

_INPUTS = """Args:
    predictions: per video / sample, mask logits (T, H, W) at the ground truth's resolution.
    references: per video / sample, binary ground truth (T, H, W); optional for config "ref_avs_null".
    batch_size: (compute, Ref-AVS configs only) samples per scored batch, default 4.
Returns:
    s4 / ms3 / default: {"miou", "f_score", "num_videos", "num_frames", "num_scored_frames"}.
    ref_avs: {"miou", "f_score", "num_samples", "num_batches", "num_frames", "num_scored_frames"}.
    ref_avs_null: {"null_s", "num_samples", "num_batches", "num_pixels"} (lower is better)."""

#: config name -> (protocol, foreground threshold of the mIoU)
_CONFIGS: dict[str, tuple[str, float]] = {
    "default": ("avs", AVS_IOU_THRESHOLD),
    "s4": ("avs", AVS_IOU_THRESHOLD),
    "ms3": ("avs", AVS_IOU_THRESHOLD),
    "ref_avs": ("ref_avs", REF_AVS_IOU_THRESHOLD),
    "ref_avs_null": ("ref_avs_null", REF_AVS_IOU_THRESHOLD),
}

_STATISTICS = {
    "frame_ious": datasets.Sequence(datasets.Value("float64")),
    "f_curve_sum": datasets.Sequence(datasets.Value("float64")),
    "num_scored_frames": datasets.Value("int64"),
    "num_foreground": datasets.Value("int64"),
    "num_pixels": datasets.Value("int64"),
}


class AvsSegmentation(evaluate.Metric):
    """S4 / MS3 / Ref-AVS mIoU, F and null S (see :mod:`crab.eval.metrics_avs` for the rules)."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in _CONFIGS:
            raise ValueError(f"avs_segmentation: unknown config {self.config_name!r}; known: {', '.join(_CONFIGS)}")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({"statistics": _STATISTICS}),
        )

    @property
    def _protocol(self) -> str:
        return _CONFIGS[self.config_name][0]

    def add_batch(self, *, predictions: Sequence[Any] | None = None, references: Sequence[Any] | None = None, **kw):
        """Add a batch of (T, H, W) logits and binary ground truths, reduced at once to per-item statistics."""
        if kw:
            raise ValueError(f"avs_segmentation takes predictions and references only, not {sorted(kw)}")
        if predictions is None:
            raise ValueError("avs_segmentation: predictions are required")
        null = self._protocol == "ref_avs_null"
        if references is None and not null:
            raise ValueError(f"avs_segmentation[{self.config_name}]: references are required")
        if not null and len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        first = len(self)
        threshold = _CONFIGS[self.config_name][1]
        stats = [
            mask_stats(
                prediction,
                None if null else references[i],
                iou_threshold=threshold,
                what=f"avs_segmentation item {first + i}",
            )
            for i, prediction in enumerate(predictions)
        ]
        return super().add_batch(statistics=[s.as_dict() for s in stats])

    def add(self, *, prediction: Any = None, reference: Any = None, **kw):
        """Add one video / sample: (T, H, W) logits and its binary ground truth."""
        return self.add_batch(predictions=[prediction], references=None if reference is None else [reference], **kw)

    def compute(self, *, predictions: Sequence[Any] | None = None, references: Sequence[Any] | None = None, **kwargs):
        """Score everything added so far plus ``predictions`` / ``references`` if given."""
        if predictions is not None or references is not None:
            self.add_batch(predictions=predictions, references=references)
        if self.writer is None:
            raise ValueError("avs_segmentation: nothing to score; pass predictions or add them first")
        return super().compute(**kwargs)

    def _compute(self, statistics: list[Mapping[str, Any]], batch_size: int | None = None) -> dict:
        stats = [MaskStats.from_dict(row) for row in statistics]
        if self._protocol == "avs":
            if batch_size is not None:
                raise ValueError("S4 / MS3 are scored one video per batch; batch_size is for the Ref-AVS configs")
            return avs_scores_from_stats(stats)
        batch_size = REF_AVS_BATCH_SIZE if batch_size is None else batch_size
        if self._protocol == "ref_avs":
            return ref_avs_scores_from_stats(stats, batch_size)
        return ref_avs_null_score_from_stats(stats, batch_size)
