"""MUSIC-AVQA accuracy per type, group and overall on a hand-computed 6-question case."""

import pytest

from crab.eval.metrics_avqa import AVQA_TYPE_KEYS, avqa_accuracy

# (prediction, answer, type): correct?
CASE = [
    ("two", "two", ("Audio", "Counting")),  # right
    ("Two ", "three", ("Audio", "Counting")),  # wrong
    (" YES", "yes", ("Audio", "Comparative")),  # right: case-insensitive, trimmed
    ("acoustic guitar", "acoustic_guitar", ("Visual", "Location")),  # wrong: underscores are part of the word
    (None, "piano", ("Audio-Visual", "Temporal")),  # wrong: parse failure
    ("no", "no", ["Audio-Visual", "Existential"]),  # right (AV-UIE labels store the type as a list)
]


@pytest.fixture(scope="module")
def result():
    predictions, answers, types = zip(*CASE, strict=True)
    return avqa_accuracy(list(predictions), list(answers), list(types))


def test_overall_is_over_questions(result):
    assert result["accuracy"] == pytest.approx(3 / 6)
    assert (result["num_questions"], result["num_correct"], result["num_parse_failures"]) == (6, 3, 1)


def test_per_type(result):
    assert list(result["accuracy_per_type"]) == list(AVQA_TYPE_KEYS)
    assert result["accuracy_per_type"] == {
        "Audio/Counting": 0.5,
        "Audio/Comparative": 1.0,
        "Visual/Counting": None,
        "Visual/Location": 0.0,
        "Audio-Visual/Existential": 1.0,
        "Audio-Visual/Counting": None,
        "Audio-Visual/Location": None,
        "Audio-Visual/Comparative": None,
        "Audio-Visual/Temporal": 0.0,
    }
    assert result["num_questions_per_type"]["Audio/Counting"] == 2
    assert sum(result["num_questions_per_type"].values()) == 6


def test_groups_pool_questions_not_types(result):
    # Audio: 2 right of 3 questions = 0.667 (the mean of its type accuracies would be 0.75).
    assert result["accuracy_per_group"] == {
        "Audio": pytest.approx(2 / 3),
        "Visual": 0.0,
        "Audio-Visual": pytest.approx(1 / 2),
    }


def test_underscored_answer_matches_case_insensitively():
    result = avqa_accuracy(["Acoustic_Guitar"], ["acoustic_guitar"], [("Visual", "Location")])
    assert result["accuracy"] == 1.0


def test_number_must_be_written_as_a_word():
    assert avqa_accuracy(["2"], ["two"], [("Audio", "Counting")])["accuracy"] == 0.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="unknown MUSIC-AVQA question type"):
        avqa_accuracy(["two"], ["two"], [("Audio", "Location")])
    with pytest.raises(ValueError, match="1 predictions for 2 answers"):
        avqa_accuracy(["two"], ["two", "one"], [("Audio", "Counting")] * 2)
    with pytest.raises(ValueError, match="at least one question"):
        avqa_accuracy([], [], [])
