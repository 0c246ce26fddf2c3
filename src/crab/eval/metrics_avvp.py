"""AVVP (audio-visual video parsing, LLP) segment- and event-level F-scores, as pure numpy functions.

Implements evaluation.md "AVVP" exactly as the official scorer does it: YapengTian/AVVP-ECCV20
``utils/eval_metrics.py`` (``segment_level``, ``event_level``, ``extract_event``, ``event_wise_metric``) driven
by ``main_avvp.py`` ``eval`` (commit 0b28c1a). Per video, events become binary matrices of shape
``(num_classes, 10)`` (class x one-second segment) for audio (A) and visual (V); audio-visual is ``A * V``
for predictions and ground truth alike. Then, per video:

* **Segment level.** Per class row: ``TP = sum(S*G)``, ``FP = sum(S*(1-G))``, ``FN = sum((1-S)*G)``;
  ``F = 2TP / (2TP + FP + FN)`` averaged over the rows with any prediction or any ground truth; a video
  with no such row scores 1.0 ("all true negatives").
* **Event level.** Each row's maximal runs of 1s are events. A predicted event is a TP if its IoU with
  **any** ground-truth event of that row is >= 0.5 (no one-to-one matching), else an FP; a ground-truth
  event with no predicted event at IoU >= 0.5 is an FN. Then F per row and the average as above.
* **Event@AV** (the official ``f``): the same per-row F from the pooled counts ``TP_a + TP_v``, ``FP_a + FP_v``,
  ``FN_a + FN_v``. **Type@AV** = mean of F_a, F_v and F_av.

Each of the five numbers is then averaged over videos (``np.mean`` over the test list in ``main_avvp.py``).
We report fractions in [0, 1]; the paper's tables print 100x.

Where a generative model forces choices the official code never faced (stated in the report):

* **Class names** are matched exactly (case-sensitive) after whitespace normalisation, as AVE's categories
  are (:mod:`crab.eval.metrics_ave`). A predicted name outside the class list gets a row of its own: a
  hallucinated class counts as false positives, never silently dropped. Rows that are empty in both
  prediction and truth do not enter any F, so the scores do not depend on the class list at all; the list
  only validates the ground truth (and orders the rows of :func:`events_to_matrix`).
* **Parse failures**: a ``None`` prediction is an empty prediction in both modalities (all zeros).
* **Intervals** ``(start, end)`` are ``[start, end)`` on the one-second grid, written into the matrix the
  way the official ``GT[cls, onset:offset] = 1`` slice does: clipped to the grid, ``start >= end`` marks
  nothing. This keeps the released ground truth's quirks (one audio row with onset 10, two with offset 0)
  as the official scorer reads them. Negative seconds are a ``ValueError`` (numpy would wrap them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from crab.datasets.vocab_seg import LLP_CLASSES, LLP_NUM_SEGMENTS
from crab.eval.scoring import normalise_whitespace

__all__ = [
    "AVVP_LEVELS",
    "AVVP_NUM_SEGMENTS",
    "AVVP_SCORES",
    "LLP_CLASSES",
    "Span",
    "VideoF",
    "avvp_f",
    "avvp_f_from_videos",
    "event_counts",
    "event_level_f",
    "events_to_matrix",
    "extract_events",
    "modality_spans",
    "segment_counts",
    "segment_level_f",
]

#: Number of one-second segments of an LLP clip.
AVVP_NUM_SEGMENTS = LLP_NUM_SEGMENTS


#: The two evaluation levels and the five numbers per level; result keys are ``f"{level}_{score}"``.
AVVP_LEVELS: tuple[str, ...] = ("segment", "event")
AVVP_SCORES: tuple[str, ...] = ("audio", "visual", "audio_visual", "type_av", "event_av")

#: One event span: class name and ``[start, end)`` in whole seconds.
Span = tuple[str, int, int]

_MODALITIES = ("audio", "visual")
_PER_MODALITY = ("audio", "visual", "audio_visual")  # the VideoF fields averaged as they are


# --------------------------------------------------------------------------------------------------
# Inputs: spans and matrices
# --------------------------------------------------------------------------------------------------


def _span(item: Any) -> Span:
    """``(name, start, end)`` of one span given as a mapping (AV-UIE label dict) or a 3-sequence."""
    if isinstance(item, Mapping):
        try:
            return item["event"], int(item["start"]), int(item["end"])
        except KeyError as missing:
            raise TypeError(f"AVVP span dict lacks key {missing}: {item!r}") from None
    if isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 3:
        return item[0], int(item[1]), int(item[2])
    raise TypeError(f"not an AVVP span (needs event, start, end): {item!r}")


def modality_spans(label: Any, modality: str) -> list[Span]:
    """The flat spans of one modality of a label.

    Args:
        label: an AV-UIE label dict ``{"audio": [span, ...], "visual": [...]}`` whose spans are
            ``{"event", "start", "end"}`` dicts or ``(name, start, end)`` triples; or a label object (e.g.
            ``crab.avuie.avvp.AvvpLabel``) whose ``audio`` / ``visual`` attributes hold events with ``name``
            and ``intervals``.
        modality: ``"audio"`` or ``"visual"``.

    Returns:
        ``(name, start, end)`` per interval, in label order.

    Raises:
        ValueError: unknown modality.
        TypeError: the label has no such modality, or a span / event of the wrong shape.
    """
    if modality not in _MODALITIES:
        raise ValueError(f"AVVP modality must be one of {_MODALITIES}, got {modality!r}")
    if isinstance(label, Mapping):
        if modality not in label:
            raise TypeError(f"AVVP label dict lacks key {modality!r}: {label!r}")
        return [_span(item) for item in label[modality] or ()]
    try:
        events = getattr(label, modality)
        return [(event.name, int(start), int(end)) for event in events for start, end in event.intervals]
    except AttributeError:
        raise TypeError(f"not an AVVP label (needs {modality} events with name and intervals): {label!r}") from None


def events_to_matrix(
    spans: Iterable[Span], classes: Sequence[str], num_segments: int = AVVP_NUM_SEGMENTS
) -> np.ndarray:
    """The binary class x segment matrix of a list of spans (the official ``GT[cls, onset:offset] = 1``).

    Args:
        spans: ``(name, start, end)`` spans, ``[start, end)`` in seconds; overlapping spans of a class
            simply union. Names are whitespace-normalised before lookup.
        classes: the row order; every name must be in it.
        num_segments: columns.

    Returns:
        ``(len(classes), num_segments)`` int array of 0/1.

    Raises:
        ValueError: a name not in ``classes``, or a negative second.
    """
    row = {name: index for index, name in enumerate(classes)}
    matrix = np.zeros((len(classes), num_segments), dtype=np.int64)  # (C, T)
    for name, start, end in spans:
        key = normalise_whitespace(name)
        if key not in row:
            raise ValueError(f"AVVP event {name!r} is not one of the {len(classes)} classes")
        if start < 0 or end < 0:
            raise ValueError(f"AVVP event {name!r}: negative interval ({start} {end})")
        matrix[row[key], start:end] = 1  # numpy slice semantics: clipped to the grid, empty if start >= end
    return matrix


def _check_pair(pred: np.ndarray, true: np.ndarray) -> None:
    if pred.shape != true.shape or pred.ndim != 2:
        raise ValueError(f"AVVP matrices must be 2-D and alike, got {pred.shape} and {true.shape}")


# --------------------------------------------------------------------------------------------------
# Counts and per-video F
# --------------------------------------------------------------------------------------------------


def segment_counts(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class segment TP, FP, FN (official ``segment_level``).

    Args:
        pred: ``(C, T)`` binary prediction.
        true: ``(C, T)`` binary ground truth.

    Returns:
        ``(tp, fp, fn)``, each ``(C,)``.
    """
    _check_pair(pred, true)
    return (pred * true).sum(axis=1), (pred * (1 - true)).sum(axis=1), ((1 - pred) * true).sum(axis=1)


def extract_events(row: np.ndarray) -> list[tuple[int, int]]:
    """The maximal runs of 1s of one class row as ``[start, end)`` (official ``extract_event``)."""
    runs: list[tuple[int, int]] = []
    start = None
    for k, value in enumerate(list(row) + [0]):  # a trailing 0 closes a run that reaches the last segment
        if value == 1 and start is None:
            start = k
        elif value != 1 and start is not None:
            runs.append((start, k))
            start = None
    return runs


def _matches(first: tuple[int, int], second: tuple[int, int]) -> bool:
    """IoU >= 0.5 of two intervals, as the official ``sum(x1*x2) >= 0.5 * sum(x1 + x2 - x1*x2)`` (integers)."""
    inter = max(0, min(first[1], second[1]) - max(first[0], second[0]))
    union = (first[1] - first[0]) + (second[1] - second[0]) - inter
    return 2 * inter >= union


def event_counts(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class event TP, FP, FN (official ``event_level`` / ``event_wise_metric``).

    A predicted run is a TP if it matches ANY ground-truth run of its class (IoU >= 0.5), else an FP; a
    ground-truth run matched by no predicted run is an FN. No one-to-one assignment.

    Args:
        pred: ``(C, T)`` binary prediction.
        true: ``(C, T)`` binary ground truth.

    Returns:
        ``(tp, fp, fn)``, each ``(C,)``.
    """
    _check_pair(pred, true)
    num_classes = pred.shape[0]
    tp, fp, fn = (np.zeros(num_classes, dtype=np.int64) for _ in range(3))
    for c in range(num_classes):
        predicted, truth = extract_events(pred[c]), extract_events(true[c])
        hits = [any(_matches(p, t) for t in truth) for p in predicted]
        tp[c], fp[c] = sum(hits), len(hits) - sum(hits)
        fn[c] = sum(not any(_matches(t, p) for p in predicted) for t in truth)
    return tp, fp, fn


def _class_average_f(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
    """Mean over classes with a prediction or a truth of ``2TP / (2TP + FP + FN)``; 1.0 if there is none."""
    active = (tp + fp > 0) | (tp + fn > 0)  # (C,)
    if not active.any():
        return 1.0  # all true negatives
    f = 2 * tp[active] / (2 * tp[active] + fp[active] + fn[active])
    return float(f.mean())


@dataclass(frozen=True)
class VideoF:
    """The four per-video F values of the official scorer (``f_a, f_v, f, f_av``)."""

    audio: float
    visual: float
    event_av: float
    audio_visual: float


_Counts = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def _video_f(counts: _Counts, pred_a: np.ndarray, pred_v: np.ndarray, true_a: np.ndarray, true_v: np.ndarray) -> VideoF:
    """The four F values from one level's per-class counts; the audio-visual matrices are the products."""
    a, v = counts(pred_a, true_a), counts(pred_v, true_v)
    av = counts(pred_a * pred_v, true_a * true_v)
    pooled = tuple(x + y for x, y in zip(a, v, strict=True))
    return VideoF(
        audio=_class_average_f(*a),
        visual=_class_average_f(*v),
        event_av=_class_average_f(*pooled),
        audio_visual=_class_average_f(*av),
    )


def segment_level_f(pred_a: np.ndarray, pred_v: np.ndarray, true_a: np.ndarray, true_v: np.ndarray) -> VideoF:
    """Segment-level F of one video; all four matrices ``(C, T)`` binary, audio-visual = audio * visual."""
    return _video_f(segment_counts, pred_a, pred_v, true_a, true_v)


def event_level_f(pred_a: np.ndarray, pred_v: np.ndarray, true_a: np.ndarray, true_v: np.ndarray) -> VideoF:
    """Event-level F of one video; all four matrices ``(C, T)`` binary, audio-visual = audio * visual."""
    return _video_f(event_counts, pred_a, pred_v, true_a, true_v)


# --------------------------------------------------------------------------------------------------
# Over a test set
# --------------------------------------------------------------------------------------------------


def avvp_f_from_videos(
    segment: Sequence[VideoF], event: Sequence[VideoF], num_parse_failures: int = 0
) -> dict[str, float | int]:
    """The AVVP result dict from per-video F values (averaged over videos, as ``main_avvp.py`` does).

    Returns:
        ``{f"{level}_{score}": float}`` for level in :data:`AVVP_LEVELS` and score in :data:`AVVP_SCORES`
        (``type_av`` = mean of audio, visual and audio_visual), plus ``num_videos`` and ``num_parse_failures``.

    Raises:
        ValueError: no videos, or the two lists differ in length.
    """
    if not segment or len(segment) != len(event):
        raise ValueError(f"AVVP F needs the same non-zero number of videos per level, got {len(segment)}/{len(event)}")
    result: dict[str, float | int] = {}
    for level, videos in zip(AVVP_LEVELS, (segment, event), strict=True):
        means = {name: float(np.mean([getattr(v, name) for v in videos])) for name in _PER_MODALITY}
        result[f"{level}_audio"] = means["audio"]
        result[f"{level}_visual"] = means["visual"]
        result[f"{level}_audio_visual"] = means["audio_visual"]
        result[f"{level}_type_av"] = (means["audio"] + means["visual"] + means["audio_visual"]) / 3
        result[f"{level}_event_av"] = float(np.mean([v.event_av for v in videos]))
    result["num_videos"] = len(segment)
    result["num_parse_failures"] = num_parse_failures
    return result


def _rows(prediction: Any, reference: Any, classes: Sequence[str] | None, index: int) -> list[str]:
    """Row names for one video: the class list (or the video's reference names) plus unknown predicted names."""
    truth = {normalise_whitespace(s[0]) for m in _MODALITIES for s in modality_spans(reference, m)}
    if classes is not None:
        unknown = truth - set(classes)
        if unknown:
            raise ValueError(f"reference {index}: AVVP events {sorted(unknown)} are not in the class list")
        rows = list(classes)
    else:
        rows = sorted(truth)
    if prediction is not None:
        predicted = {normalise_whitespace(s[0]) for m in _MODALITIES for s in modality_spans(prediction, m)}
        rows += sorted(predicted - set(rows))  # hallucinated classes: rows of false positives
    return rows


def avvp_f(
    predictions: Sequence[Any | None],
    references: Sequence[Any],
    classes: Sequence[str] | None = None,
    num_segments: int = AVVP_NUM_SEGMENTS,
) -> dict[str, float | int]:
    """AVVP segment- and event-level F over a test set (module docstring for the exact rules).

    Args:
        predictions: one parsed prediction per video (``AvvpLabel``-like or a label dict, see
            :func:`modality_spans`), ``None`` for a parse failure (empty in both modalities).
        references: the ground-truth label of each video, same order.
        classes: the class list that the references must use (e.g. :data:`LLP_CLASSES`); ``None`` skips the
            check. The scores are the same either way.
        num_segments: seconds per video.

    Returns:
        See :func:`avvp_f_from_videos`.

    Raises:
        ValueError: different lengths, no videos, a reference name outside ``classes``, a negative second.
        TypeError: a label of the wrong shape.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    segment, event = [], []
    for index, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        rows = _rows(prediction, reference, classes, index)
        true_a, true_v = (events_to_matrix(modality_spans(reference, m), rows, num_segments) for m in _MODALITIES)
        if prediction is None:
            pred_a, pred_v = np.zeros_like(true_a), np.zeros_like(true_v)
        else:
            pred_a, pred_v = (events_to_matrix(modality_spans(prediction, m), rows, num_segments) for m in _MODALITIES)
        segment.append(segment_level_f(pred_a, pred_v, true_a, true_v))
        event.append(event_level_f(pred_a, pred_v, true_a, true_v))
    return avvp_f_from_videos(segment, event, num_parse_failures=sum(p is None for p in predictions))
