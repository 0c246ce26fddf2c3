"""Trivial AVE and MUSIC-AVQA baselines on tiny train/test sets computed by hand."""

import random

import pytest

from crab.eval.baselines import (
    ave_all_background_baseline,
    ave_baselines,
    ave_chance_baseline,
    ave_majority_baseline,
    ave_segment_majority_baseline,
    avqa_baselines,
    avqa_chance_baseline,
    avqa_majority_baseline,
    avqa_type_majority_baseline,
)


def ave(event, start, end):
    return {"event": event, "start": start, "end": end}


# Event majority: Cat (3 of 5). Range majority: (0, 3) and (5, 10) tie at 2 -> smallest, (0, 3).
# So the majority baseline predicts Cat on seconds 0..2, background on 3..9.
# Per second: 0..4 background (3 or 4 of 5), 5..9 Cat (3 of 5).
AVE_TRAIN = [ave("Bark", 0, 3), ave("Bark", 0, 3), ave("Cat", 3, 10), ave("Cat", 5, 10), ave("Cat", 5, 10)]
AVE_TEST = [ave("Cat", 5, 10), ave("Bark", 0, 10)]


def test_ave_all_background():
    # Test 1: 5 background seconds right; test 2: none -> 5/20.
    result = ave_all_background_baseline(AVE_TEST)
    assert result["accuracy"] == pytest.approx(0.25)
    assert (result["num_correct_segments"], result["num_parse_failures"]) == (5, 0)


def test_ave_majority_event_over_majority_range():
    # Test 1: GT bg on 0..4, Cat on 5..9; prediction Cat on 0..2, bg on 3..9 -> seconds 3, 4 right; test 2: 0.
    assert ave_majority_baseline(AVE_TRAIN, AVE_TEST)["accuracy"] == pytest.approx(2 / 20)


def test_ave_majority_does_not_depend_on_train_order():
    shuffled = AVE_TRAIN[:]
    random.Random(0).shuffle(shuffled)
    assert ave_majority_baseline(shuffled, AVE_TEST) == ave_majority_baseline(AVE_TRAIN, AVE_TEST)


def test_ave_segment_majority():
    # Prediction bg on 0..4, Cat on 5..9: test 1 all 10 right, test 2 none -> 10/20.
    assert ave_segment_majority_baseline(AVE_TRAIN, AVE_TEST)["accuracy"] == pytest.approx(0.5)


def test_ave_chance_is_one_in_29():
    result = ave_chance_baseline(AVE_TEST)
    assert result["accuracy"] == pytest.approx(1 / 29)
    assert result["num_correct_segments"] == pytest.approx(20 / 29)


def test_ave_baselines_share_the_metric_shape():
    results = ave_baselines(AVE_TRAIN, AVE_TEST)
    assert list(results) == ["all_background", "majority", "segment_majority", "chance"]
    keys = {"accuracy", "num_videos", "num_segments", "num_correct_segments", "num_parse_failures"}
    assert all(set(r) == keys for r in results.values())


def test_ave_baselines_reject_empty_and_invalid_labels():
    with pytest.raises(ValueError, match="AVE train labels are empty"):
        ave_majority_baseline([], AVE_TEST)
    with pytest.raises(ValueError, match="reference 0"):
        ave_all_background_baseline([ave("Cat", 4, 2)])


def qa(answer, modality, kind):
    return {"answer": answer, "question_type": [modality, kind], "question": "?", "question_id": 0}


# Per type majority: Audio/Counting two, Visual/Location left, Audio-Visual/Existential no.
# Overall majority: no (3). Distinct answers: 2 + 2 + 2 per type, 6 overall.
AVQA_TRAIN = [
    qa("two", "Audio", "Counting"), qa("two", "Audio", "Counting"), qa("three", "Audio", "Counting"),
    qa("left", "Visual", "Location"), qa("right", "Visual", "Location"), qa("left", "Visual", "Location"),
    qa("yes", "Audio-Visual", "Existential"), qa("no", "Audio-Visual", "Existential"),
    qa("no", "Audio-Visual", "Existential"), qa("no", "Audio-Visual", "Existential"),
]  # fmt: skip
AVQA_TEST = [
    qa("two", "Audio", "Counting"),
    qa("one", "Audio", "Counting"),
    qa("right", "Visual", "Location"),
    qa("no", "Audio-Visual", "Existential"),
    qa("left", "Audio-Visual", "Temporal"),  # type absent from train
]


def test_avqa_type_majority():
    # two (right), two (wrong), left (wrong), no (right), fallback "no" (wrong) -> 2/5.
    result = avqa_type_majority_baseline(AVQA_TRAIN, AVQA_TEST)
    assert result["accuracy"] == pytest.approx(0.4)
    assert result["accuracy_per_group"] == {"Audio": 0.5, "Visual": 0.0, "Audio-Visual": 0.5}
    assert result["accuracy_per_type"]["Audio-Visual/Temporal"] == 0.0


def test_avqa_overall_majority():
    # "no" everywhere: only question 4 right -> 1/5.
    result = avqa_majority_baseline(AVQA_TRAIN, AVQA_TEST)
    assert result["accuracy"] == pytest.approx(0.2)
    assert result["accuracy_per_group"] == {"Audio": 0.0, "Visual": 0.0, "Audio-Visual": 0.5}


def test_avqa_chance_uniform_over_type_answers():
    # 1/2 (two in {two, three}), 0 (one unseen), 1/2, 1/2, 1/6 (Temporal unseen: all 6 answers) -> (5/3)/5.
    result = avqa_chance_baseline(AVQA_TRAIN, AVQA_TEST)
    assert result["accuracy"] == pytest.approx(1 / 3)
    assert result["num_correct"] == pytest.approx(5 / 3)
    assert result["accuracy_per_group"] == {
        "Audio": pytest.approx(0.25),
        "Visual": pytest.approx(0.5),
        "Audio-Visual": pytest.approx(1 / 3),
    }


def test_avqa_baselines_share_the_metric_shape():
    results = avqa_baselines(AVQA_TRAIN, AVQA_TEST)
    assert list(results) == ["type_majority", "majority", "chance"]
    assert all(set(r) == set(results["majority"]) for r in results.values())
    assert results["majority"]["num_parse_failures"] == 0


def test_avqa_baselines_reject_unknown_types():
    with pytest.raises(ValueError, match="unknown MUSIC-AVQA question type"):
        avqa_majority_baseline([qa("two", "Audio", "Temporal")], AVQA_TEST)
