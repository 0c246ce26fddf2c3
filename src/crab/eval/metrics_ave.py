"""AVE per-second accuracy (audio-visual event localisation), as pure functions.

Implements the protocol of YapengTian/AVE-ECCV18 as stated in evaluation.md "AVE" and crab-reference
section 5.3 (Crab released no AVE scorer): each test video has 10 one-second segments and 29 classes
(the 28 AVE categories + ``"background"``). A prediction ``<event> name </event> <range> s,e </range>``
labels segment ``k`` with ``name`` if ``s <= k < e`` and ``"background"`` otherwise; accuracy is the mean
over all test videos x 10 segments of (predicted label == ground-truth label).

Choices the protocol leaves open, fixed here (and stated in the evaluation report):

* **Category match**: exact, case-sensitive, on the category string verbatim after whitespace
  normalisation (trimmed, inner runs collapsed; :func:`crab.eval.scoring.normalise_whitespace`). AV-UIE
  targets tag the AVE category verbatim (``"Male speech, man speaking"``), so the model is trained to
  reproduce it; a paraphrase (``"man speaking"``) or a case change counts as wrong.
* **Parse failures**: a ``None`` prediction (missing or malformed tags), or one whose event is empty after
  normalisation, labels all ten segments background (evaluation.md).
* **Ranges**: predicted bounds are clipped to ``[0, num_segments]``; an empty or reversed range after
  clipping (``s >= e``) labels no segment, i.e. background everywhere. Ground-truth ranges are not
  clipped: one outside ``0 <= start < end <= num_segments`` is a ``ValueError`` (a data bug).
* A predicted event literally named ``"background"`` labels its segments background (it is the 29th
  class); no AVE category has that name.

Results are one dict, the same shape for the model and the trivial baselines of :mod:`crab.eval.baselines`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from crab.datasets.vocab import AVE_BACKGROUND
from crab.eval.scoring import normalise_whitespace

__all__ = [
    "AVE_NUM_SEGMENTS",
    "AveEvent",
    "ave_accuracy",
    "ave_accuracy_from_scores",
    "ave_reference_labels",
    "ave_segment_labels",
    "ave_segment_scores",
    "event_fields",
]

#: Number of one-second segments of an AVE clip (the protocol's grid).
AVE_NUM_SEGMENTS = 10


class AveEvent(Protocol):
    """Anything with an AVE event and its interval, e.g. ``crab.avuie.ave.AveLabel``."""

    event: str
    start: int
    end: int


def event_fields(item: AveEvent | Mapping[str, Any]) -> tuple[str, int, int]:
    """``(event, start, end)`` of a label object or of an AV-UIE ``label`` dict.

    Raises:
        TypeError: ``item`` has neither the attributes nor the keys ``event``, ``start``, ``end``.
    """
    if isinstance(item, Mapping):
        try:
            return item["event"], int(item["start"]), int(item["end"])
        except KeyError as missing:
            raise TypeError(f"AVE label dict lacks key {missing}: {item!r}") from None
    try:
        return item.event, int(item.start), int(item.end)
    except AttributeError:
        raise TypeError(f"not an AVE label (needs event, start, end): {item!r}") from None


def ave_segment_labels(event: str | None, start: int, end: int, num_segments: int = AVE_NUM_SEGMENTS) -> list[str]:
    """The per-second labels of one (predicted) event: ``event`` on ``[start, end)``, background elsewhere.

    Args:
        event: the category, or ``None`` for a parse failure (all background). Whitespace-normalised.
        start: first second of the event (clipped to ``[0, num_segments]``).
        end: one past the last second (clipped likewise); ``start >= end`` labels no segment.
        num_segments: length of the grid.

    Returns:
        ``num_segments`` labels, one per second.
    """
    labels = [AVE_BACKGROUND] * num_segments
    name = normalise_whitespace(event) if event is not None else ""
    if not name:
        return labels
    lo, hi = min(max(start, 0), num_segments), min(max(end, 0), num_segments)
    for k in range(lo, hi):
        labels[k] = name
    return labels


def ave_reference_labels(
    references: Sequence[AveEvent | Mapping[str, Any]], num_segments: int = AVE_NUM_SEGMENTS
) -> list[list[str]]:
    """The ground-truth per-second labels of each video, validated.

    Args:
        references: the ground-truth event of each video (AV-UIE ``label`` dicts or label objects).
        num_segments: seconds per video.

    Returns:
        ``(num_videos, num_segments)`` labels.

    Raises:
        ValueError: a reference with an empty event or a range outside ``0 <= start < end <= num_segments``.
    """
    labels = []
    for index, reference in enumerate(references):
        event, start, end = event_fields(reference)
        if not isinstance(event, str) or not normalise_whitespace(event):
            raise ValueError(f"reference {index}: AVE event must be a non-empty string, got {event!r}")
        if not 0 <= start < end <= num_segments:
            raise ValueError(f"reference {index}: AVE range [{start}, {end}) is not inside [0, {num_segments}]")
        labels.append(ave_segment_labels(event, start, end, num_segments))
    return labels


def ave_segment_scores(predicted: Sequence[str], reference: Sequence[str]) -> list[int]:
    """Per-segment correctness (1 or 0) of one video's predicted labels against its ground truth.

    Raises:
        ValueError: the two label sequences differ in length.
    """
    if len(predicted) != len(reference):
        raise ValueError(f"{len(predicted)} predicted segments for {len(reference)} reference segments")
    return [int(p == r) for p, r in zip(predicted, reference, strict=True)]


def ave_accuracy_from_scores(segment_scores: Sequence[Sequence[float]], num_parse_failures: int = 0) -> dict:
    """The AVE result dict from per-video, per-segment scores.

    Args:
        segment_scores: ``(num_videos, num_segments)`` scores in [0, 1]: 1/0 for a scored prediction, the
            expected correctness for a chance baseline.
        num_parse_failures: how many predictions were ``None``.

    Returns:
        ``{"accuracy": float, "num_videos": int, "num_segments": int, "num_correct_segments": int | float,
        "num_parse_failures": int}``; ``num_segments`` is the total over videos, ``num_correct_segments``
        is an int for 0/1 scores and a float (an expectation) otherwise.

    Raises:
        ValueError: no videos, or a video without segments.
    """
    if not segment_scores:
        raise ValueError("AVE accuracy needs at least one video")
    if any(len(video) == 0 for video in segment_scores):
        raise ValueError("AVE accuracy: a video has no segments")
    num_segments = sum(len(video) for video in segment_scores)
    num_correct = sum(sum(video) for video in segment_scores)
    return {
        "accuracy": num_correct / num_segments,
        "num_videos": len(segment_scores),
        "num_segments": num_segments,
        "num_correct_segments": num_correct,
        "num_parse_failures": num_parse_failures,
    }


def ave_accuracy(
    predictions: Sequence[AveEvent | Mapping[str, Any] | None],
    references: Sequence[AveEvent | Mapping[str, Any]],
    num_segments: int = AVE_NUM_SEGMENTS,
) -> dict:
    """AVE per-second accuracy over videos x segments (module docstring for the exact rules).

    Args:
        predictions: one parsed prediction per video (``event``, ``start``, ``end`` as attributes or keys),
            ``None`` where the answer could not be parsed.
        references: the ground-truth event of each video, same order (AV-UIE ``label`` dicts work).
        num_segments: seconds per video.

    Returns:
        See :func:`ave_accuracy_from_scores`.

    Raises:
        ValueError: different lengths, no videos, or an invalid reference (empty event, range outside the
            grid or empty).
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    truths = ave_reference_labels(references, num_segments)
    scores = []
    for prediction, truth in zip(predictions, truths, strict=True):
        if prediction is None:
            predicted = ave_segment_labels(None, 0, 0, num_segments)
        else:
            predicted = ave_segment_labels(*event_fields(prediction), num_segments=num_segments)
        scores.append(ave_segment_scores(predicted, truth))
    return ave_accuracy_from_scores(scores, num_parse_failures=sum(p is None for p in predictions))
