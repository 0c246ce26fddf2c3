"""Trivial baselines for AVE and MUSIC-AVQA: what a model scores that looks at no video and no audio.

DESIGN.md section 7 asks every report to state chance and majority / prior baselines beside the model, so a
reader can see how much of a number is learnt from the clip and how much from label priors (MUSIC-AVQA
is known for strong answer priors per question type). Each baseline sees only the TRAIN labels (to fit its
prior) and the TEST labels (to be scored), never a model, and returns the same dict as the metric
(:func:`crab.eval.metrics_ave.ave_accuracy`, :func:`crab.eval.metrics_avqa.avqa_accuracy`), so the
report can print them side by side. Chance baselines report the EXPECTED accuracy in closed form, not one
random draw, so they are deterministic; their ``num_correct*`` counts are therefore floats.

Labels are plain AV-UIE ``label`` dicts (contracts: AVE ``{"event", "start", "end"}``, AVQA ``{"answer",
"question_type", ...}``) or, for AVE, objects with those attributes. Majorities break ties towards the
smallest key (:func:`crab.eval.scoring.majority`), so they do not depend on the order of the train file.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from crab.datasets.vocab import AVE_BACKGROUND, AVE_CATEGORIES
from crab.eval.metrics_ave import (
    AVE_NUM_SEGMENTS,
    AveEvent,
    ave_accuracy_from_scores,
    ave_reference_labels,
    ave_segment_labels,
    ave_segment_scores,
    event_fields,
)
from crab.eval.metrics_avqa import avqa_accuracy, avqa_accuracy_from_scores, normalise_answer, type_key
from crab.eval.scoring import majority, normalise_whitespace

__all__ = [
    "AVE_NUM_CLASSES",
    "ave_all_background_baseline",
    "ave_baselines",
    "ave_chance_baseline",
    "ave_majority_baseline",
    "ave_segment_majority_baseline",
    "avqa_baselines",
    "avqa_chance_baseline",
    "avqa_majority_baseline",
    "avqa_type_majority_baseline",
]

log = logging.getLogger(__name__)

#: Classes of a segment under the AVE protocol: the 28 categories + background.
AVE_NUM_CLASSES = len(AVE_CATEGORIES) + 1

AveLabelLike = AveEvent | Mapping[str, Any]


def _require(labels: Sequence[Any], what: str) -> None:
    if not labels:
        raise ValueError(f"{what} labels are empty")


# --------------------------------------------------------------------------------------------------
# AVE
# --------------------------------------------------------------------------------------------------


def _score_constant(predicted: Sequence[str], test_labels: Sequence[AveLabelLike], num_segments: int) -> dict:
    """Score one fixed per-second labelling against every test video."""
    _require(test_labels, "AVE test")
    truths = ave_reference_labels(test_labels, num_segments)
    return ave_accuracy_from_scores([ave_segment_scores(predicted, truth) for truth in truths])


def ave_all_background_baseline(test_labels: Sequence[AveLabelLike], num_segments: int = AVE_NUM_SEGMENTS) -> dict:
    """Predict background for every segment (what unparsable answers score, without counting failures).

    Raises:
        ValueError: no test labels, or an invalid test label.
    """
    return _score_constant([AVE_BACKGROUND] * num_segments, test_labels, num_segments)


def ave_majority_baseline(
    train_labels: Sequence[AveLabelLike], test_labels: Sequence[AveLabelLike], num_segments: int = AVE_NUM_SEGMENTS
) -> dict:
    """Predict the train-majority event over the train-majority ``(start, end)`` range for every test video.

    Event and range are the two independent majorities. This is a valid Crab answer (one event, one
    range), i.e. the best-guess constant output of the model.

    Raises:
        ValueError: no train or test labels, or an invalid test label.
    """
    _require(train_labels, "AVE train")
    fields = [event_fields(label) for label in train_labels]
    event = majority(Counter(normalise_whitespace(e) for e, _, _ in fields))
    start, end = majority(Counter((s, t) for _, s, t in fields))
    log.info("AVE majority baseline predicts %r over [%d, %d)", event, start, end)
    return _score_constant(ave_segment_labels(event, start, end, num_segments), test_labels, num_segments)


def ave_segment_majority_baseline(
    train_labels: Sequence[AveLabelLike], test_labels: Sequence[AveLabelLike], num_segments: int = AVE_NUM_SEGMENTS
) -> dict:
    """Predict, for each second k, the label most frequent at second k over the train videos.

    The per-second prior; unlike :func:`ave_majority_baseline` its output need not be one event on one
    range (on real AVE it is mostly background: the events are spread over 28 categories).

    Raises:
        ValueError: no train or test labels, or an invalid label.
    """
    _require(train_labels, "AVE train")
    per_second: list[Counter[str]] = [Counter() for _ in range(num_segments)]
    for truth in ave_reference_labels(train_labels, num_segments):
        for k, name in enumerate(truth):
            per_second[k][name] += 1
    predicted = [majority(counter) for counter in per_second]
    log.info("AVE per-segment majority baseline predicts %s", predicted)
    return _score_constant(predicted, test_labels, num_segments)


def ave_chance_baseline(
    test_labels: Sequence[AveLabelLike], num_segments: int = AVE_NUM_SEGMENTS, num_classes: int = AVE_NUM_CLASSES
) -> dict:
    """Expected accuracy of a label drawn uniformly from ``num_classes`` classes per segment (1/29 for AVE).

    Raises:
        ValueError: no test labels, or an invalid test label.
    """
    _require(test_labels, "AVE test")
    truths = ave_reference_labels(test_labels, num_segments)
    return ave_accuracy_from_scores([[1 / num_classes] * len(truth) for truth in truths])


def ave_baselines(
    train_labels: Sequence[AveLabelLike], test_labels: Sequence[AveLabelLike], num_segments: int = AVE_NUM_SEGMENTS
) -> dict[str, dict]:
    """All AVE baselines by name: ``all_background``, ``majority``, ``segment_majority``, ``chance``."""
    return {
        "all_background": ave_all_background_baseline(test_labels, num_segments),
        "majority": ave_majority_baseline(train_labels, test_labels, num_segments),
        "segment_majority": ave_segment_majority_baseline(train_labels, test_labels, num_segments),
        "chance": ave_chance_baseline(test_labels, num_segments),
    }


# --------------------------------------------------------------------------------------------------
# AVQA
# --------------------------------------------------------------------------------------------------


def _answers_and_types(labels: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[tuple[str, str]]]:
    answers = [label["answer"] for label in labels]
    types = [tuple(label["question_type"]) for label in labels]
    for question_type in types:
        type_key(question_type)  # rejects unknown types before any prior is fitted
    return answers, types


def avqa_majority_baseline(train_labels: Sequence[Mapping[str, Any]], test_labels: Sequence[Mapping[str, Any]]) -> dict:
    """Answer every test question with the most frequent train answer.

    Raises:
        ValueError: no train or test labels, or an unknown question type.
    """
    _require(train_labels, "AVQA train")
    _require(test_labels, "AVQA test")
    train_answers, _ = _answers_and_types(train_labels)
    answer = majority(Counter(normalise_answer(a) for a in train_answers))
    log.info("AVQA majority baseline answers %r", answer)
    answers, types = _answers_and_types(test_labels)
    return avqa_accuracy([answer] * len(answers), answers, types)


def avqa_type_majority_baseline(
    train_labels: Sequence[Mapping[str, Any]], test_labels: Sequence[Mapping[str, Any]]
) -> dict:
    """Answer each test question with the most frequent train answer of its question type.

    A test type absent from train falls back to the overall train majority (logged).

    Raises:
        ValueError: no train or test labels, or an unknown question type.
    """
    _require(train_labels, "AVQA train")
    _require(test_labels, "AVQA test")
    train_answers, train_types = _answers_and_types(train_labels)
    per_type: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for answer, question_type in zip(train_answers, train_types, strict=True):
        per_type[question_type][normalise_answer(answer)] += 1
    fallback = majority(Counter(normalise_answer(a) for a in train_answers))
    prior = {question_type: majority(counter) for question_type, counter in per_type.items()}
    answers, types = _answers_and_types(test_labels)
    unseen = sorted({type_key(t) for t in types if t not in prior})
    if unseen:
        log.info("AVQA type-majority baseline: types %s not in train, answering %r", unseen, fallback)
    return avqa_accuracy([prior.get(t, fallback) for t in types], answers, types)


def avqa_chance_baseline(train_labels: Sequence[Mapping[str, Any]], test_labels: Sequence[Mapping[str, Any]]) -> dict:
    """Expected accuracy of an answer drawn uniformly from the distinct train answers of the question's type.

    A question scores ``1 / |A_t|`` if its answer is among the ``A_t`` train answers of its type, else 0.
    A test type absent from train draws from all distinct train answers.

    Raises:
        ValueError: no train or test labels, or an unknown question type.
    """
    _require(train_labels, "AVQA train")
    _require(test_labels, "AVQA test")
    train_answers, train_types = _answers_and_types(train_labels)
    per_type: dict[tuple[str, str], set[str]] = defaultdict(set)
    for answer, question_type in zip(train_answers, train_types, strict=True):
        per_type[question_type].add(normalise_answer(answer))
    everything = {normalise_answer(a) for a in train_answers}
    answers, types = _answers_and_types(test_labels)
    scores = []
    for answer, question_type in zip(answers, types, strict=True):
        choices = per_type.get(question_type, everything)
        scores.append(1 / len(choices) if normalise_answer(answer) in choices else 0.0)
    return avqa_accuracy_from_scores(scores, types)


def avqa_baselines(
    train_labels: Sequence[Mapping[str, Any]], test_labels: Sequence[Mapping[str, Any]]
) -> dict[str, dict]:
    """All AVQA baselines by name: ``type_majority``, ``majority``, ``chance``."""
    return {
        "type_majority": avqa_type_majority_baseline(train_labels, test_labels),
        "majority": avqa_majority_baseline(train_labels, test_labels),
        "chance": avqa_chance_baseline(train_labels, test_labels),
    }
