"""Trivial baselines for ARIG: boxes a model would give that looks at neither the frame nor the audio.

DESIGN.md section 7 asks every report to state prior baselines beside the model (:mod:`crab.eval.baselines`
for AVE / AVQA, :mod:`crab.eval.baselines_avvp` for AVVP). Each baseline here fits ONE box on the TRAIN labels
only, predicts it for every TEST frame, and is scored with the official rules of
:func:`crab.eval.metrics_arig.arig_ciou`, so it returns the model's result dict and the report prints them side
by side:

* ``full_frame``: the whole 224x224 frame. Its per-sample cIoU is the ground-truth box's share of the frame
  (every ground-truth pixel is covered; every other pixel is a false positive).
* ``centre_box``: the train boxes' mean width and height, centred in the frame (objects are often central).
* ``prior_box``: the train boxes' mean corners, the box a model learns from the labels alone.

Labels are AV-UIE ARIG ``label`` dicts (``{"x0", "y0", "x1", "y1", ...}``) or any form
:func:`crab.eval.metrics_arig.box_fields` reads. Means are rounded half up to whole pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from crab.avuie.arig import ARIG_FRAME_SIZE
from crab.eval.metrics_arig import Box, arig_ciou, box_fields

__all__ = ["arig_baselines", "centre_box", "prior_box"]


def _round(value: float) -> int:
    return math.floor(value + 0.5)


def _boxes(labels: Sequence[Any], what: str) -> list[Box]:
    if not labels:
        raise ValueError(f"no {what} labels: ARIG baselines need at least one")
    return [box_fields(label) for label in labels]


def prior_box(train_labels: Sequence[Any]) -> Box:
    """The mean train box (each corner averaged), kept inside the frame and at least one pixel wide and tall."""
    boxes = _boxes(train_labels, "train")
    x0, y0, x1, y1 = (_round(sum(b[k] for b in boxes) / len(boxes)) for k in range(4))
    x0, y0 = min(x0, ARIG_FRAME_SIZE - 1), min(y0, ARIG_FRAME_SIZE - 1)
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def centre_box(train_labels: Sequence[Any], size: int = ARIG_FRAME_SIZE) -> Box:
    """A box of the train boxes' mean width and height, centred in the ``size`` x ``size`` frame."""
    boxes = _boxes(train_labels, "train")
    width = max(1, _round(sum(b[2] - b[0] for b in boxes) / len(boxes)))
    height = max(1, _round(sum(b[3] - b[1] for b in boxes) / len(boxes)))
    x0, y0 = (size - width) // 2, (size - height) // 2
    return x0, y0, x0 + width, y0 + height


def arig_baselines(train_labels: Sequence[Any], test_labels: Sequence[Any]) -> dict[str, dict]:
    """Every ARIG baseline scored on the test labels: ``{name: arig_ciou result}`` (module docstring).

    Raises:
        ValueError: no train or no test labels, or an invalid box.
    """
    _boxes(test_labels, "test")
    fitted = {
        "centre_box": centre_box(train_labels),
        "full_frame": (0, 0, ARIG_FRAME_SIZE, ARIG_FRAME_SIZE),
        "prior_box": prior_box(train_labels),
    }
    return {name: arig_ciou([box] * len(test_labels), list(test_labels)) for name, box in fitted.items()}
