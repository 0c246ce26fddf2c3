"""MUSIC-AVQA accuracy per question type, per modality group and overall, as pure functions.

Matches GeWu-Lab/MUSIC-AVQA ``net_grd_avst/main_avst.py`` ``test()`` (evaluation.md "AVQA", crab-reference
section 5.3): per-question correctness is accumulated in nine lists, one per question type; a type's
accuracy is the mean over its questions; a **modality group's accuracy (Audio, Visual, Audio-Visual) is
pooled over the group's questions** (``(sum(A_count) + sum(A_cmp)) / (len(A_count) + len(A_cmp))``), not
the mean of its type accuracies; the overall accuracy is pooled over all questions. With unequal type sizes
the two group definitions differ, so the pooled one is what makes our numbers comparable with the papers'.

The official model is a classifier over the answer vocabulary, so it compares indices; an LLM writes text,
so we compare the parsed ``<answer>`` against the vocabulary word:

* **Exact match, case-insensitive, whitespace-trimmed** (inner runs collapsed), as evaluation.md states.
* **No other leniency.** Underscores are part of the word (``"acoustic_guitar"``, ``"electric_bass"``);
  ``"acoustic guitar"`` is wrong, and so is ``"2"`` for ``"two"``. AV-UIE targets tag the vocabulary word
  verbatim (``crab.avuie.avqa``), so a trained model writes it that way; mapping spaces to underscores
  would hide formatting errors the parse-failure and accuracy numbers should show, and it would be a rule
  only we apply. This is the same rule as ``crab.avuie.avqa.answers_match``.
* A parse failure (``None``) is a wrong answer and is counted in ``num_parse_failures``.
* A type or group without questions has accuracy ``None`` (the official script would divide by zero).

Results are one dict, the same shape for the model and the trivial baselines of :mod:`crab.eval.baselines`.
"""

from __future__ import annotations

from collections.abc import Sequence

from crab.datasets.vocab import AVQA_QUESTION_TYPES
from crab.eval.scoring import normalise_whitespace

__all__ = [
    "AVQA_GROUPS",
    "AVQA_TYPE_KEYS",
    "avqa_accuracy",
    "avqa_accuracy_from_scores",
    "normalise_answer",
    "type_key",
]

#: The three modality groups, in the order papers report them.
AVQA_GROUPS: tuple[str, ...] = ("Audio", "Visual", "Audio-Visual")


def type_key(question_type: Sequence[str]) -> str:
    """``"Audio/Counting"`` for ``("Audio", "Counting")`` (also for the AV-UIE list ``["Audio", "Counting"]``).

    Raises:
        ValueError: not one of the nine MUSIC-AVQA question types.
    """
    pair = tuple(question_type)
    if pair not in AVQA_QUESTION_TYPES:
        raise ValueError(f"unknown MUSIC-AVQA question type {question_type!r}")
    return f"{pair[0]}/{pair[1]}"


#: Keys of the per-type accuracies, in the order of ``crab.datasets.vocab.AVQA_QUESTION_TYPES``.
AVQA_TYPE_KEYS: tuple[str, ...] = tuple(type_key(t) for t in AVQA_QUESTION_TYPES)


def normalise_answer(answer: str) -> str:
    """The form answers are compared in: whitespace-normalised and case-folded (underscores kept)."""
    return normalise_whitespace(answer).casefold()


def avqa_accuracy_from_scores(
    scores: Sequence[float], question_types: Sequence[Sequence[str]], num_parse_failures: int = 0
) -> dict:
    """The AVQA result dict from per-question scores.

    Args:
        scores: one score in [0, 1] per question: 1/0 for a scored answer, the expected correctness for a
            chance baseline.
        question_types: the ``(modality, kind)`` of each question, same order.
        num_parse_failures: how many predictions were ``None``.

    Returns:
        ``{"accuracy": float (overall, over questions), "accuracy_per_group": {group: float | None},
        "accuracy_per_type": {"Audio/Counting": float | None, ...}, "num_questions": int,
        "num_questions_per_type": {type key: int}, "num_correct": int | float, "num_parse_failures": int}``.
        Groups and types appear in the fixed order of :data:`AVQA_GROUPS` / :data:`AVQA_TYPE_KEYS`;
        ``num_correct`` is a float (an expectation) when the scores are.

    Raises:
        ValueError: no questions, lengths differ, or an unknown question type.
    """
    if len(scores) != len(question_types):
        raise ValueError(f"{len(scores)} scores for {len(question_types)} question types")
    if not scores:
        raise ValueError("AVQA accuracy needs at least one question")
    type_sums = dict.fromkeys(AVQA_TYPE_KEYS, 0)
    type_counts = dict.fromkeys(AVQA_TYPE_KEYS, 0)
    for score, question_type in zip(scores, question_types, strict=True):
        key = type_key(question_type)
        type_sums[key] += score
        type_counts[key] += 1
    per_group = {}
    for group in AVQA_GROUPS:
        keys = [key for key in AVQA_TYPE_KEYS if key.rsplit("/", 1)[0] == group]
        count = sum(type_counts[key] for key in keys)
        per_group[group] = sum(type_sums[key] for key in keys) / count if count else None
    per_type = {key: type_sums[key] / type_counts[key] if type_counts[key] else None for key in AVQA_TYPE_KEYS}
    num_correct = sum(scores)
    return {
        "accuracy": num_correct / len(scores),
        "accuracy_per_group": per_group,
        "accuracy_per_type": per_type,
        "num_questions": len(scores),
        "num_questions_per_type": type_counts,
        "num_correct": num_correct,
        "num_parse_failures": num_parse_failures,
    }


def avqa_accuracy(
    predictions: Sequence[str | None], answers: Sequence[str], question_types: Sequence[Sequence[str]]
) -> dict:
    """MUSIC-AVQA accuracy per type, per group (pooled over questions) and overall.

    Args:
        predictions: the parsed answer of each question, ``None`` where no ``<answer>`` tag was found.
        answers: the reference answer words (MUSIC-AVQA vocabulary), same order.
        question_types: ``(modality, kind)`` per question, e.g. ``("Audio-Visual", "Temporal")``.

    Returns:
        See :func:`avqa_accuracy_from_scores`.

    Raises:
        ValueError: lengths differ, no questions, or an unknown question type.
    """
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answers")
    scores = [
        int(prediction is not None and normalise_answer(prediction) == normalise_answer(answer))
        for prediction, answer in zip(predictions, answers, strict=True)
    ]
    return avqa_accuracy_from_scores(scores, question_types, sum(p is None for p in predictions))
