"""Pieces shared by the AVE and AVQA metrics and their baselines: text normalisation and parse failures.

Both benchmarks score a tagged answer by exact string match (evaluation.md, "AVE" and "AVQA"); they differ
only in case handling (AVE categories are compared case-sensitively, AVQA answers case-insensitively, as
MUSIC-AVQA's vocabulary lookup is). The whitespace rule is one rule for both, so it lives here once. The
parse-failure rate is what every evaluation report prints beside the accuracy: a model that stops writing
its tags scores badly for a different reason than one that answers wrongly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any, TypeVar

from crab.tasks import Task

__all__ = ["HEADLINE_SCORES", "majority", "normalise_whitespace", "parse_failure_rate"]

#: The one score per task that the evaluate summary line and the report lead with, and that ranks the
#: trivial baselines: AVE's and AVQA's overall accuracy; for AVVP the paper's "Segment" column, Event@AV at
#: segment level (evaluation.md; its "Event" column, ``event_event_av``, sits beside it in the metrics file); ARIG its
#: cIoU (the share of frames with cIoU >= 0.5; AUC beside it); S4 and MS3 their mIoU (the F-score beside it);
#: AVSS its mIoU over the 71 classes; Ref-AVS its seen-subset mIoU (Table 1's Ref-AVS column; unseen and null S beside it).
#: Here, not in ``crab.eval.run``, so the report can read it without importing torch.
HEADLINE_SCORES: dict[Task, str] = {
    Task.AVE: "accuracy", Task.AVQA: "accuracy", Task.AVVP: "segment_event_av", Task.ARIG: "ciou", Task.S4: "miou",
    Task.MS3: "miou", Task.AVSS: "miou", Task.REF_AVS: "seen_miou",
}  # fmt: skip

K = TypeVar("K", bound=Hashable)


def normalise_whitespace(text: str) -> str:
    """``text`` trimmed, with every inner run of whitespace collapsed to one space."""
    return " ".join(text.split())


def parse_failure_rate(predictions: Sequence[Any]) -> float:
    """Share of predictions that are ``None`` (the parser found no well-formed tag).

    Args:
        predictions: parsed predictions, ``None`` for a parse failure.

    Returns:
        The share in [0, 1].

    Raises:
        ValueError: ``predictions`` is empty (a rate over nothing is undefined).
    """
    if not predictions:
        raise ValueError("parse_failure_rate needs at least one prediction")
    return sum(p is None for p in predictions) / len(predictions)


def majority(counts: Counter[K]) -> K:
    """The most frequent key; ties go to the smallest key, so the result does not depend on input order.

    Raises:
        ValueError: ``counts`` is empty.
    """
    if not counts:
        raise ValueError("majority of an empty collection")
    return min(counts, key=lambda key: (-counts[key], key))
