"""ARIG cIoU and AUC (audio-referred image grounding), as pure numpy functions.

Implements evaluation.md "ARIG", the sound-source-localisation convention of
hche11/Localizing-Visual-Sounds-the-Hard-Way (``utils.py`` / ``test.py``, class ``Evaluator``). Crab
released no ARIG scorer (its ``utils/ciou.py`` is the Complete-IoU box loss, not this metric).

* Maps are 224x224. The ground truth of an AVSBench-derived sample is its box, rasterised (the AV-UIE
  label holds the box, :class:`crab.avuie.arig.ArigLabel`); a 224x224 binary mask is accepted too.
* Per sample ``cIoU_i = sum(pred * gt) / (sum(gt) + sum(pred * [gt == 0]))`` (``Evaluator.cal_CIOU``).
  For binary maps this is the plain IoU ``|P n G| / |P u G|``; the name is kept for comparability.
* Reported ``ciou`` = fraction of samples with ``cIoU_i >= 0.5`` (``Evaluator.final``: ``np.mean(ciou >=
  0.5)``); ``auc`` = area under the success-rate curve: at each threshold ``t_i = 0.05 * i``, ``i = 0..20``,
  the fraction of samples with ``cIoU_i >= t_i``, integrated with ``sklearn.metrics.auc(x, results)`` over
  ``x = [0.05 * i for i in range(21)]`` (``Evaluator.cal_AUC``), i.e. the trapezoid rule. We compute the
  same trapezoid with ``numpy.trapezoid`` (sklearn is not a dependency; ``sklearn.metrics.auc`` is
  ``np.trapezoid(y, x)`` for increasing ``x``). The thresholds are the reference's floats ``0.05 * i``,
  not the decimals: ``0.05 * 6 == 0.30000000000000004``, so a sample with ``cIoU_i == 0.3`` exactly does not
  count at ``t_6``, as in the reference.

Deviations (also stated in the report):

* **No binarisation.** The reference binarises a heat map at its median; Crab predicts a box, so the
  prediction map is the rasterised box, 1 inside and 0 outside.
* **Parse failures.** A ``None`` prediction (no well-formed ``<obj>`` tag) is an empty map, ``cIoU_i = 0``.
* **Empty ground truth** is a ``ValueError``: ARIG skips frames without a sounding object (Crab's
  ``x1 == 1000`` sentinel), and ``cIoU_i`` would be 0/0 for an empty prediction.

Pixel convention: boxes ``(x0, y0, x1, y1)`` are end-exclusive pixel-boundary coordinates, the box covers
``map[y0:y1, x0:x1]`` (the reference rasterises its ground-truth boxes the same way, ``temp[ymin:ymax,
xmin:xmax] = 1``). :func:`box_from_mask` and :func:`resize_mask` turn an AVSBench mask into such a box.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from crab.avuie.arig import ARIG_FRAME_SIZE

__all__ = [
    "ARIG_SUCCESS_CIOU",
    "ARIG_THRESHOLDS",
    "ArigBox",
    "arig_auc",
    "arig_ciou",
    "arig_ciou_from_scores",
    "arig_sample_ciou",
    "arig_success_rates",
    "box_fields",
    "box_from_mask",
    "box_map",
    "resize_mask",
]

#: The 21 success thresholds of the reference, computed as it does (``0.05 * i``; module docstring).
ARIG_THRESHOLDS: tuple[float, ...] = tuple(0.05 * i for i in range(21))
#: A sample is localised when its cIoU reaches this value (the reported "cIoU").
ARIG_SUCCESS_CIOU = 0.5

Box = tuple[int, int, int, int]


class ArigBox(Protocol):
    """Anything with a box's corners, e.g. ``crab.avuie.arig.ArigLabel``."""

    x0: int
    y0: int
    x1: int
    y1: int


def box_fields(item: ArigBox | Mapping[str, Any] | Sequence[int]) -> Box:
    """``(x0, y0, x1, y1)`` of a label object, an AV-UIE ``label`` dict or a 4-sequence.

    Raises:
        TypeError: ``item`` has no such corners, or a corner is not an integer.
    """
    try:
        if isinstance(item, Mapping):
            values = (item["x0"], item["y0"], item["x1"], item["y1"])
        elif isinstance(item, Sequence) and not isinstance(item, str):
            if len(item) != 4:
                raise TypeError(f"a box needs 4 coordinates, got {len(item)}: {item!r}")
            values = tuple(item)
        else:
            values = (item.x0, item.y0, item.x1, item.y1)
    except (KeyError, AttributeError) as missing:
        raise TypeError(f"not an ARIG box (needs x0, y0, x1, y1): {item!r} lacks {missing}") from None
    try:
        x0, y0, x1, y1 = (operator.index(v) for v in values)  # ints and numpy ints, not floats
    except TypeError:
        raise TypeError(f"ARIG box coordinates must be integers, got {item!r}") from None
    return x0, y0, x1, y1


def box_map(box: Box | None, size: int = ARIG_FRAME_SIZE) -> np.ndarray:
    """Rasterise a box onto a ``size x size`` map: ``map[y0:y1, x0:x1] = 1``.

    Args:
        box: ``(x0, y0, x1, y1)``, end-exclusive; clipped to the frame. ``None`` (a parse failure) and a
            box that is empty or reversed after clipping give an all-zero map.
        size: side of the map.

    Returns:
        ``(size, size)`` float64 map of 0 and 1 (float, like the reference's ``np.zeros``).
    """
    out = np.zeros((size, size), dtype=np.float64)  # (H, W) = (y, x)
    if box is None:
        return out
    x0, y0, x1, y1 = (min(max(v, 0), size) for v in box)
    if x0 < x1 and y0 < y1:
        out[y0:y1, x0:x1] = 1.0
    return out


def box_from_mask(mask: np.ndarray) -> Box | None:
    """The tightest box around a mask's foreground (``mask > 0``), or None for an empty mask.

    Args:
        mask: ``(H, W)`` mask, foreground ``> 0`` (AVSBench: 0 / 255, or class indices with 0 = background).
            Resize it to the 224x224 frame first (:func:`resize_mask`) to get an ARIG label.

    Returns:
        ``(x0, y0, x1, y1)`` end-exclusive: ``x0`` / ``y0`` the first foreground column / row, ``x1`` / ``y1``
        one past the last; ``box_map(box)`` covers the mask. None when nothing is foreground, i.e. a frame
        without a sounding object, which ARIG skips.

    Raises:
        ValueError: ``mask`` is not 2-D.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    rows = np.flatnonzero((mask > 0).any(axis=1))  # (H,) -> indices of rows with foreground
    if rows.size == 0:
        return None
    cols = np.flatnonzero((mask > 0).any(axis=0))  # (W,) -> indices of columns with foreground
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def resize_mask(mask: np.ndarray, size: int = ARIG_FRAME_SIZE) -> np.ndarray:
    """Binarise a mask (``> 0``) and resize it to ``size x size`` by nearest neighbour, aspect ratio ignored.

    The frame is resized straight to 224x224 (crab-reference 1.2), so the mask is too. Rounding:
    pixel-centre nearest neighbour, output row ``r`` takes source row ``floor((r + 1/2) * H / size)``
    (columns likewise), computed in exact integer arithmetic. This is PIL's ``Image.NEAREST`` rule; PIL
    evaluates it in floating point, so where ``(r + 1/2) * H / size`` is exactly an integer it can take the
    row before (e.g. 20 of 224 columns for a 1280-wide mask), a one-pixel difference.

    Args:
        mask: ``(H, W)`` mask at its own resolution, foreground ``> 0``.
        size: side of the output.

    Returns:
        ``(size, size)`` bool mask.

    Raises:
        ValueError: ``mask`` is not 2-D or is empty.
    """
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"mask must be a non-empty 2-D (H, W) array, got shape {mask.shape}")
    height, width = mask.shape
    centres = 2 * np.arange(size) + 1  # (size,) pixel centres in half-pixels of the output
    rows = centres * height // (2 * size)  # (size,) floor((r + 1/2) * H / size), always < H
    cols = centres * width // (2 * size)  # (size,)
    return (mask > 0)[np.ix_(rows, cols)]  # (size, size)


def arig_sample_ciou(pred_map: np.ndarray, gt_map: np.ndarray) -> float:
    """``cIoU_i = sum(pred * gt) / (sum(gt) + sum(pred * [gt == 0]))`` of one sample.

    Args:
        pred_map: ``(S, S)`` predicted map (0 / 1).
        gt_map: ``(S, S)`` ground-truth map; values in [0, 1] (the reference's Flickr maps hold 0.5).

    Returns:
        cIoU_i in [0, 1].

    Raises:
        ValueError: different shapes, or an empty ground truth (cIoU undefined; ARIG skips such frames).
    """
    if pred_map.shape != gt_map.shape:
        raise ValueError(f"prediction map {pred_map.shape} and ground-truth map {gt_map.shape} differ in shape")
    pred = pred_map.astype(np.float64)
    gt = gt_map.astype(np.float64)
    gt_area = gt.sum()
    if gt_area <= 0:
        raise ValueError("empty ground-truth map: cIoU is undefined (ARIG skips frames without a sounding object)")
    return float((pred * gt).sum() / (gt_area + (pred * (gt == 0)).sum()))


def arig_success_rates(cious: Sequence[float], thresholds: Sequence[float] = ARIG_THRESHOLDS) -> list[float]:
    """Fraction of samples with ``cIoU_i >= t`` at each threshold ``t`` (the reference's ``results``).

    Raises:
        ValueError: no samples.
    """
    if len(cious) == 0:
        raise ValueError("ARIG success rates need at least one sample")
    values = np.asarray(cious, dtype=np.float64)  # (N,)
    return [float(np.mean(values >= t)) for t in thresholds]


def arig_auc(cious: Sequence[float]) -> float:
    """Area under the success-rate curve over :data:`ARIG_THRESHOLDS`, trapezoid rule (``cal_AUC``).

    Raises:
        ValueError: no samples.
    """
    return float(np.trapezoid(arig_success_rates(cious), ARIG_THRESHOLDS))


def arig_ciou_from_scores(cious: Sequence[float], num_parse_failures: int = 0) -> dict:
    """The ARIG result dict from per-sample cIoU values.

    Args:
        cious: ``(num_samples,)`` cIoU_i values in [0, 1].
        num_parse_failures: how many predictions were ``None`` (their cIoU_i is 0 in ``cious``).

    Returns:
        ``{"ciou": float, "auc": float, "mean_ciou": float, "success_rates": list[float] (21, one per
        threshold of ARIG_THRESHOLDS), "num_samples": int, "num_parse_failures": int}``; ``ciou`` is the
        fraction of samples with cIoU_i >= 0.5, the number papers report as "cIoU".

    Raises:
        ValueError: no samples.
    """
    rates = arig_success_rates(cious)
    return {
        "ciou": float(np.mean(np.asarray(cious, dtype=np.float64) >= ARIG_SUCCESS_CIOU)),
        "auc": float(np.trapezoid(rates, ARIG_THRESHOLDS)),
        "mean_ciou": float(np.mean(cious)),
        "success_rates": rates,
        "num_samples": len(cious),
        "num_parse_failures": num_parse_failures,
    }


def _reference_map(reference: Any, index: int, size: int) -> np.ndarray:
    """The ground-truth map of one reference (box or ``(size, size)`` mask), validated."""
    if isinstance(reference, np.ndarray):
        if reference.shape != (size, size):
            raise ValueError(f"reference {index}: mask shape {reference.shape} is not ({size}, {size}); resize_mask it")
        gt = (reference > 0).astype(np.float64)
        if not gt.any():
            raise ValueError(f"reference {index}: empty mask (ARIG skips frames without a sounding object)")
        return gt
    x0, y0, x1, y1 = box_fields(reference)
    if not (0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size):
        raise ValueError(f"reference {index}: box ({x0},{y0})({x1},{y1}) is empty or outside the {size}x{size} frame")
    return box_map((x0, y0, x1, y1), size)


def arig_ciou(
    predictions: Sequence[ArigBox | Mapping[str, Any] | Sequence[int] | None],
    references: Sequence[ArigBox | Mapping[str, Any] | Sequence[int] | np.ndarray],
    size: int = ARIG_FRAME_SIZE,
) -> dict:
    """ARIG cIoU and AUC over samples (module docstring for the exact rules).

    Args:
        predictions: one parsed box per sample (``ArigLabel``, ``{"x0", "y0", "x1", "y1"}`` dict or
            ``(x0, y0, x1, y1)``), ``None`` where the answer could not be parsed (empty map). Boxes are
            clipped to the frame; an empty or reversed box is an empty map.
        references: the ground truth of each sample, same order: a box like the predictions (AV-UIE
            ``label`` dicts work) or a ``(size, size)`` mask (foreground ``> 0``).
        size: side of the square maps.

    Returns:
        See :func:`arig_ciou_from_scores`.

    Raises:
        ValueError: different lengths, no samples, or an invalid reference (empty, reversed or outside
            the frame; a mask of another shape or without foreground).
        TypeError: a prediction or reference that is not a box.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    cious = []
    for index, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        gt = _reference_map(reference, index, size)  # (size, size)
        pred = box_map(None if prediction is None else box_fields(prediction), size)  # (size, size)
        cious.append(arig_sample_ciou(pred, gt))
    return arig_ciou_from_scores(cious, num_parse_failures=sum(p is None for p in predictions))
