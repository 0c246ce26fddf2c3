"""Trivial baselines for AVVP (LLP audio-visual video parsing): what a model scores that looks at no clip.

DESIGN.md section 7 asks every report to state prior baselines beside the model (:mod:`crab.eval.baselines`
does it for AVE and AVQA). Each baseline here fits a constant answer on the TRAIN labels only, gives that
same answer for every TEST video, and is scored with the official rules of
:func:`crab.eval.metrics_avvp.avvp_f`, so it returns the model's result dict (all ten F values, ``num_videos``,
``num_parse_failures`` = 0) and the report can print them side by side.

There is no "chance" baseline: a uniformly random class x second matrix has no closed-form expected F under
the per-video, active-class averaging, and one random draw would not be deterministic. ``empty`` is the
floor instead: it is also what a parse failure scores (without being counted as one), and it is not zero,
because a video with nothing to find in a modality (often the audio-visual one) scores 1.0 there.

Labels are AV-UIE ``label`` dicts ``{"audio": [{"event", "start", "end"}, ...], "visual": [...]}`` (or
:class:`crab.avuie.avvp.AvvpLabel` objects; read with :func:`crab.eval.metrics_avvp.modality_spans`).
Majorities break ties towards the smallest class name (:func:`crab.eval.scoring.majority`), so they do not
depend on the order of the train file.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from crab.eval.metrics_avvp import (
    AVVP_NUM_SEGMENTS,
    LLP_CLASSES,
    avvp_f,
    events_to_matrix,
    extract_events,
    modality_spans,
)
from crab.eval.scoring import majority, normalise_whitespace

__all__ = [
    "avvp_baselines",
    "avvp_empty_baseline",
    "avvp_prior_classes_baseline",
    "avvp_segment_prior_baseline",
    "segment_prior_label",
]

log = logging.getLogger(__name__)

_MODALITIES = ("audio", "visual")

#: One AV-UIE AVVP label dict: per modality a list of ``{"event", "start", "end"}`` spans.
AvvpLabelDict = dict[str, list[dict[str, Any]]]


def _require(labels: Sequence[Any], what: str) -> None:
    if not labels:
        raise ValueError(f"AVVP {what} labels are empty")


def _score_constant(
    prediction: AvvpLabelDict, test_labels: Sequence[Any], classes: Sequence[str] | None, num_segments: int
) -> dict[str, float | int]:
    """Score one fixed prediction against every test video."""
    _require(test_labels, "test")
    return avvp_f([prediction] * len(test_labels), test_labels, classes, num_segments)


def _classes_in(labels: Sequence[Any], modality: str) -> list[set[str]]:
    """Per video, the (whitespace-normalised) classes with any span in ``modality``."""
    return [{normalise_whitespace(name) for name, _, _ in modality_spans(label, modality)} for label in labels]


def avvp_empty_baseline(
    test_labels: Sequence[Any], classes: Sequence[str] | None = LLP_CLASSES, num_segments: int = AVVP_NUM_SEGMENTS
) -> dict[str, float | int]:
    """Predict no event in either modality for every test video.

    Args:
        test_labels: the test videos' labels.
        classes: the class list the test labels must use (``None`` skips the check; scores are the same).
        num_segments: seconds per video.

    Raises:
        ValueError: no test labels, or an invalid test label.
    """
    return _score_constant({"audio": [], "visual": []}, test_labels, classes, num_segments)


def avvp_prior_classes_baseline(
    train_labels: Sequence[Any],
    test_labels: Sequence[Any],
    classes: Sequence[str] | None = LLP_CLASSES,
    num_segments: int = AVVP_NUM_SEGMENTS,
) -> dict[str, float | int]:
    """Predict the train set's most frequent audio class over the whole clip in audio, and likewise in visual.

    A class's frequency is the number of train videos in which it has any span of that modality (a video
    counts once per class, however many intervals it has). A modality with no event in any train video is
    predicted empty.

    Args:
        train_labels: the train videos' labels (the prior).
        test_labels: the test videos' labels (scored).
        classes: the class list the test labels must use (``None`` skips the check; scores are the same).
        num_segments: seconds per video; the predicted span is ``(0, num_segments)``.

    Raises:
        ValueError: no train or test labels, or an invalid label.
    """
    _require(train_labels, "train")
    prediction: AvvpLabelDict = {}
    for modality in _MODALITIES:
        counts = Counter(name for present in _classes_in(train_labels, modality) for name in present)
        prediction[modality] = [{"event": majority(counts), "start": 0, "end": num_segments}] if counts else []
    log.info("AVVP prior-classes baseline predicts %s", prediction)
    return _score_constant(prediction, test_labels, classes, num_segments)


def segment_prior_label(train_labels: Sequence[Any], num_segments: int = AVVP_NUM_SEGMENTS) -> AvvpLabelDict:
    """The per-second majority vote of the train labels, per modality and class, as a label dict.

    Class ``c`` is active at second ``k`` of a modality when MORE than half of the train videos have ``c``
    active at ``k`` in that modality (a tie is inactive). On real LLP no class is that common, so the vote
    is usually empty in both modalities and the baseline equals ``empty``; that is its finding, not a bug.

    Returns:
        ``{"audio": [...], "visual": [...]}`` spans, the maximal runs of active seconds, classes in name order.

    Raises:
        ValueError: no train labels, or a negative second in one.
    """
    _require(train_labels, "train")
    label: AvvpLabelDict = {}
    for modality in _MODALITIES:
        names = sorted(set().union(*_classes_in(train_labels, modality)))
        votes = np.zeros((len(names), num_segments), dtype=np.int64)  # (C, T) train videos active per cell
        for train in train_labels:
            spans = [(normalise_whitespace(n), s, e) for n, s, e in modality_spans(train, modality)]
            votes += events_to_matrix(spans, names, num_segments)  # 0/1 per video, overlaps unioned
        active = (2 * votes > len(train_labels)).astype(np.int64)  # (C, T) strict majority
        label[modality] = [
            {"event": name, "start": start, "end": end}
            for name, row in zip(names, active, strict=True)
            for start, end in extract_events(row)
        ]
    return label


def avvp_segment_prior_baseline(
    train_labels: Sequence[Any],
    test_labels: Sequence[Any],
    classes: Sequence[str] | None = LLP_CLASSES,
    num_segments: int = AVVP_NUM_SEGMENTS,
) -> dict[str, float | int]:
    """Predict the per-second train majority vote (:func:`segment_prior_label`) for every test video.

    Often empty, and then it scores exactly as ``empty`` does (see :func:`segment_prior_label`).

    Raises:
        ValueError: no train or test labels, or an invalid label.
    """
    prediction = segment_prior_label(train_labels, num_segments)
    log.info("AVVP segment-prior baseline predicts %s", prediction)
    return _score_constant(prediction, test_labels, classes, num_segments)


def avvp_baselines(
    train_labels: Sequence[Any],
    test_labels: Sequence[Any],
    classes: Sequence[str] | None = LLP_CLASSES,
    num_segments: int = AVVP_NUM_SEGMENTS,
) -> dict[str, dict[str, float | int]]:
    """All AVVP baselines by name: ``empty``, ``prior_classes``, ``segment_prior`` (each an ``avvp_f`` dict).

    Raises:
        ValueError: no train or test labels, or an invalid label.
    """
    _require(train_labels, "train")  # before any scoring, even the train-free ``empty``
    return {
        "empty": avvp_empty_baseline(test_labels, classes, num_segments),
        "prior_classes": avvp_prior_classes_baseline(train_labels, test_labels, classes, num_segments),
        "segment_prior": avvp_segment_prior_baseline(train_labels, test_labels, classes, num_segments),
    }
