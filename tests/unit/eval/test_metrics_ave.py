"""AVE per-second accuracy on hand-computed micro cases (evaluation.md "AVE")."""

from dataclasses import dataclass

import pytest

from crab.eval.metrics_ave import ave_accuracy, ave_segment_labels
from crab.eval.scoring import parse_failure_rate

BG = "background"
GT_BARK_2_6 = {"event": "Bark", "start": 2, "end": 6}  # Bark on seconds 2, 3, 4, 5; background on 0, 1, 6..9


@dataclass(frozen=True)
class Pred:
    """Duck-typed stand-in for crab.avuie.ave.AveLabel."""

    event: str
    start: int
    end: int


def test_segment_labels_mark_half_open_interval():
    assert ave_segment_labels("Bark", 2, 6) == [BG, BG, "Bark", "Bark", "Bark", "Bark", BG, BG, BG, BG]
    assert ave_segment_labels(None, 2, 6) == [BG] * 10
    assert ave_segment_labels("Bark", 0, 3, num_segments=4) == ["Bark", "Bark", "Bark", BG]


def test_segment_labels_clip_and_empty_ranges():
    assert ave_segment_labels("Bark", -3, 15) == ["Bark"] * 10
    assert ave_segment_labels("Bark", 6, 2) == [BG] * 10  # reversed
    assert ave_segment_labels("Bark", 4, 4) == [BG] * 10  # empty
    assert ave_segment_labels("   ", 0, 10) == [BG] * 10  # empty event = unparsable


def test_late_start_misses_one_segment():
    result = ave_accuracy([Pred("Bark", 3, 6)], [GT_BARK_2_6])
    assert result == {
        "accuracy": 0.9,
        "num_videos": 1,
        "num_segments": 10,
        "num_correct_segments": 9,
        "num_parse_failures": 0,
    }


def test_wrong_class_on_true_range_keeps_only_background_segments():
    # Cat on 2..5 vs Bark on 2..5: the 4 event seconds are wrong, the 6 background seconds right.
    assert ave_accuracy([Pred("Cat", 2, 6)], [GT_BARK_2_6])["accuracy"] == pytest.approx(0.6)


def test_wrong_class_on_full_range_scores_zero():
    # Cat everywhere: wrong on the 4 Bark seconds and on the 6 background seconds.
    assert ave_accuracy([Pred("Cat", 0, 10)], [GT_BARK_2_6])["accuracy"] == 0.0


def test_parse_failure_is_all_background():
    result = ave_accuracy([None], [GT_BARK_2_6])
    assert result["accuracy"] == pytest.approx(0.6)
    assert result["num_parse_failures"] == 1


def test_two_videos_pool_segments():
    # Video 1: 9/10; video 2: 6/10 -> 15/20.
    result = ave_accuracy([Pred("Bark", 3, 6), None], [GT_BARK_2_6, {"event": "Cat", "start": 0, "end": 4}])
    assert result["accuracy"] == pytest.approx(0.75)
    assert (result["num_videos"], result["num_segments"], result["num_correct_segments"]) == (2, 20, 15)


def test_predicted_range_is_clipped_to_the_grid():
    assert ave_accuracy([Pred("Bark", 2, 15)], [{"event": "Bark", "start": 2, "end": 10}])["accuracy"] == 1.0
    # Reversed range: background everywhere, and it is not a parse failure.
    result = ave_accuracy([Pred("Bark", 6, 2)], [GT_BARK_2_6])
    assert (result["accuracy"], result["num_parse_failures"]) == (pytest.approx(0.6), 0)


def test_category_match_normalises_whitespace_but_not_case():
    gt = {"event": "Male speech, man speaking", "start": 0, "end": 10}
    assert ave_accuracy([Pred("  Male speech,\n man  speaking ", 0, 10)], [gt])["accuracy"] == 1.0
    assert ave_accuracy([Pred("bark", 2, 6)], [GT_BARK_2_6])["accuracy"] == pytest.approx(0.6)


def test_dict_predictions_equal_object_predictions():
    as_dict = ave_accuracy([{"event": "Bark", "start": 3, "end": 6}], [GT_BARK_2_6])
    assert as_dict == ave_accuracy([Pred("Bark", 3, 6)], [GT_BARK_2_6])


@pytest.mark.parametrize(
    "reference",
    [
        {"event": "Bark", "start": 6, "end": 2},
        {"event": "Bark", "start": 0, "end": 11},
        {"event": "Bark", "start": 3, "end": 3},
        {"event": " ", "start": 0, "end": 10},
    ],
)
def test_invalid_reference_raises(reference):
    with pytest.raises(ValueError, match="reference 0"):
        ave_accuracy([None], [reference])


def test_length_mismatch_and_empty_input_raise():
    with pytest.raises(ValueError, match="1 predictions for 2 references"):
        ave_accuracy([None], [GT_BARK_2_6, GT_BARK_2_6])
    with pytest.raises(ValueError, match="at least one video"):
        ave_accuracy([], [])
    with pytest.raises(TypeError, match="not an AVE label"):
        ave_accuracy(["Bark"], [GT_BARK_2_6])


def test_parse_failure_rate():
    assert parse_failure_rate([None, Pred("Bark", 0, 1), None, Pred("Cat", 0, 1)]) == 0.5
    assert parse_failure_rate(["x"]) == 0.0
    with pytest.raises(ValueError):
        parse_failure_rate([])
