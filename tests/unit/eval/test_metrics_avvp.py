"""AVVP segment- and event-level F on hand-computed micro cases (evaluation.md "AVVP").

The expected numbers are worked out by hand in the comments; one test compares the vectorised counts with
a plain loop written straight from the definitions, on seeded random matrices.
"""

from dataclasses import dataclass
from itertools import groupby

import numpy as np
import pytest

from crab.eval.metrics_avvp import (
    AVVP_LEVELS,
    AVVP_SCORES,
    LLP_CLASSES,
    avvp_f,
    event_counts,
    event_level_f,
    events_to_matrix,
    extract_events,
    modality_spans,
    segment_counts,
    segment_level_f,
)


def label(audio=(), visual=()):
    """An AV-UIE label dict from ``(name, start, end)`` triples."""
    return {
        "audio": [{"event": n, "start": s, "end": e} for n, s, e in audio],
        "visual": [{"event": n, "start": s, "end": e} for n, s, e in visual],
    }


def row(*ones: int, length: int = 10) -> np.ndarray:
    out = np.zeros((1, length), dtype=np.int64)
    out[0, list(ones)] = 1
    return out


EMPTY = np.zeros((1, 10), dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# Matrices and runs
# --------------------------------------------------------------------------------------------------


def test_events_to_matrix_half_open_union_and_official_slice_quirks():
    m = events_to_matrix(
        [("Dog", 2, 5), ("Dog", 4, 7), ("Speech", 8, 12), ("Cat", 10, 10), ("Cat", 3, 0)], ["Speech", "Dog", "Cat"]
    )
    assert m.shape == (3, 10)
    assert m[0].tolist() == [0] * 8 + [1, 1]  # 12 clipped to the grid
    assert m[1].tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0, 0]  # [2, 5) and [4, 7) union to [2, 7)
    assert m[2].tolist() == [0] * 10  # onset 10 and offset 0 rows of the released CSVs mark nothing


def test_events_to_matrix_normalises_whitespace_and_rejects_bad_spans():
    assert events_to_matrix([("  Fire_alarm ", 0, 1)], ["Fire_alarm"])[0, 0] == 1
    with pytest.raises(ValueError, match="'Bark' is not one of the 2 classes"):
        events_to_matrix([("Bark", 0, 1)], ["Speech", "Dog"])
    with pytest.raises(ValueError, match="negative"):
        events_to_matrix([("Dog", -1, 3)], ["Dog"])


def test_extract_events_finds_maximal_runs_including_the_last_segment():
    assert extract_events(np.array([1, 1, 0, 0, 1, 0, 1, 1, 1, 1])) == [(0, 2), (4, 5), (6, 10)]
    assert extract_events(np.array([0] * 9 + [1])) == [(9, 10)]
    assert extract_events(np.zeros(10)) == []


def test_modality_spans_accepts_dicts_triples_and_label_objects():
    @dataclass(frozen=True)
    class Event:
        name: str
        intervals: tuple

    @dataclass(frozen=True)
    class Label:
        audio: tuple
        visual: tuple

    obj = Label(audio=(Event("Dog", ((0, 2), (5, 6))),), visual=())
    assert modality_spans(obj, "audio") == [("Dog", 0, 2), ("Dog", 5, 6)]
    assert modality_spans({"audio": [("Cat", 1, 3)], "visual": None}, "visual") == []
    assert modality_spans(label(audio=[("Cat", 1, 3)]), "audio") == [("Cat", 1, 3)]
    with pytest.raises(TypeError, match="lacks key 'visual'"):
        modality_spans({"audio": []}, "visual")
    with pytest.raises(ValueError, match="modality"):
        modality_spans(obj, "audio_visual")


# --------------------------------------------------------------------------------------------------
# Segment level
# --------------------------------------------------------------------------------------------------


def test_segment_partial_overlap():
    # GT [0, 6), prediction [2, 8): TP = 4 (2..5), FP = 2 (6, 7), FN = 2 (0, 1); F = 8 / 12.
    pred, true = row(2, 3, 4, 5, 6, 7), row(0, 1, 2, 3, 4, 5)
    assert [int(x[0]) for x in segment_counts(pred, true)] == [4, 2, 2]
    f = segment_level_f(pred, EMPTY, true, EMPTY)
    assert f.audio == pytest.approx(2 / 3)
    assert f.visual == 1.0  # no visual prediction, no visual truth
    assert f.event_av == pytest.approx(2 / 3)  # pooled counts are the audio counts
    assert f.audio_visual == 1.0  # audio * visual is empty on both sides


def test_segment_f_averages_only_over_active_classes():
    # Rows: Speech exact (F = 1); Dog predicted but absent (F = 0); Cat absent everywhere (skipped) -> 0.5.
    pred = np.array([[1] * 10, [1, 1] + [0] * 8, [0] * 10])
    true = np.array([[1] * 10, [0] * 10, [0] * 10])
    assert segment_level_f(pred, np.zeros_like(pred), true, np.zeros_like(true)).audio == pytest.approx(0.5)


def test_empty_video_scores_one_and_missed_events_score_zero():
    result = avvp_f([label()], [label()])
    assert all(result[f"{level}_{score}"] == 1.0 for level in AVVP_LEVELS for score in AVVP_SCORES)
    missed = avvp_f([label()], [label(audio=[("Speech", 0, 10)])])
    assert missed["segment_audio"] == 0.0 and missed["event_audio"] == 0.0
    assert missed["segment_visual"] == 1.0 and missed["segment_audio_visual"] == 1.0


# --------------------------------------------------------------------------------------------------
# Event level
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "true", "counts"),
    [
        ((0, 1), (0, 1, 2, 3), (1, 0, 0)),  # IoU 2/4 = 0.5 exactly: a match (>=)
        ((0, 1), (0, 1, 2, 3, 4), (0, 1, 1)),  # IoU 2/5 = 0.4: FP and FN
        ((0, 1, 2), (0, 1, 2, 3, 4), (1, 0, 0)),  # IoU 3/5 = 0.6
        ((3, 4, 5, 6), (0, 1, 2, 3, 4), (0, 1, 1)),  # IoU 2/7 = 0.29
    ],
)
def test_event_iou_threshold(pred, true, counts):
    assert tuple(int(x[0]) for x in event_counts(row(*pred), row(*true))) == counts


def test_predicted_event_matches_any_ground_truth_event():
    # GT runs [0, 2) and [5, 10); prediction [5, 9) misses the first (IoU 0) but matches the second (4/5):
    # TP = 1, FP = 0, the first GT run is unmatched: FN = 1; F = 2 / (2 + 1).
    pred, true = row(5, 6, 7, 8), row(0, 1, 5, 6, 7, 8, 9)
    assert [int(x[0]) for x in event_counts(pred, true)] == [1, 0, 1]
    assert event_level_f(pred, EMPTY, true, EMPTY).audio == pytest.approx(2 / 3)


def test_split_prediction_counts_each_run():
    # GT [0, 10); prediction runs [0, 4) and [5, 10): IoU 0.4 (FP) and 0.5 (TP); the GT run is matched (FN 0).
    assert [int(x[0]) for x in event_counts(row(0, 1, 2, 3, 5, 6, 7, 8, 9), row(*range(10)))] == [1, 1, 0]


# --------------------------------------------------------------------------------------------------
# Type@AV, Event@AV and the test-set average
# --------------------------------------------------------------------------------------------------

# Speech heard on [0, 10) and seen on [0, 2); the prediction hears it on [0, 10) and sees nothing.
POOLING_TRUTH = label(audio=[("Speech", 0, 10)], visual=[("Speech", 0, 2)])
POOLING_PRED = label(audio=[("Speech", 0, 10)])


def test_type_and_event_at_av_pooling():
    result = avvp_f([POOLING_PRED], [POOLING_TRUTH])
    # Segment: F_a = 1, F_v = 0 (FN 2), audio-visual truth [0, 2) vs empty prediction: F_av = 0.
    # Event@AV pools the Speech row: TP 10, FP 0, FN 2 -> 20 / 22, not the mean (1 + 0) / 2 of F_a and F_v.
    assert result["segment_audio"] == 1.0
    assert result["segment_visual"] == 0.0
    assert result["segment_audio_visual"] == 0.0
    assert result["segment_type_av"] == pytest.approx(1 / 3)
    assert result["segment_event_av"] == pytest.approx(10 / 11)
    # Event: audio 1 TP; visual 1 FN; pooled TP 1, FN 1 -> 2 / 3; audio-visual 1 FN.
    assert (result["event_audio"], result["event_visual"], result["event_audio_visual"]) == (1.0, 0.0, 0.0)
    assert result["event_type_av"] == pytest.approx(1 / 3)
    assert result["event_event_av"] == pytest.approx(2 / 3)


def test_scores_average_over_videos_and_parse_failures_are_empty_predictions():
    result = avvp_f([POOLING_PRED, None, None], [POOLING_TRUTH, label(), label(visual=[("Dog", 3, 5)])])
    # Video 2: empty truth and a parse failure -> 1.0 everywhere; video 3: missed Dog -> F_v = 0, Event@AV 0.
    assert result["segment_audio"] == pytest.approx((1 + 1 + 1) / 3)
    assert result["segment_visual"] == pytest.approx((0 + 1 + 0) / 3)
    assert result["segment_event_av"] == pytest.approx((10 / 11 + 1 + 0) / 3)
    assert result["event_event_av"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert (result["num_videos"], result["num_parse_failures"]) == (3, 2)


def test_unknown_predicted_class_is_a_false_positive_and_class_list_does_not_change_scores():
    truth = label(audio=[("Speech", 0, 10)])
    pred = label(audio=[("Speech", 0, 10), ("Dog barking", 0, 3)])
    # Rows Speech (F = 1) and the hallucinated "Dog barking" (F = 0) -> 0.5.
    assert avvp_f([pred], [truth])["segment_audio"] == pytest.approx(0.5)
    assert avvp_f([pred], [truth], classes=LLP_CLASSES) == avvp_f([pred], [truth])
    with pytest.raises(ValueError, match="reference 0: AVVP events \\['Bark'\\] are not in the class list"):
        avvp_f([pred], [label(audio=[("Bark", 0, 1)])], classes=LLP_CLASSES)


def test_names_match_exactly_after_whitespace_normalisation():
    truth = label(audio=[("Violin_fiddle", 0, 10)])
    assert avvp_f([label(audio=[(" Violin_fiddle  ", 0, 10)])], [truth])["segment_audio"] == 1.0
    assert avvp_f([label(audio=[("violin_fiddle", 0, 10)])], [truth])["segment_audio"] == 0.0


def test_input_errors():
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        avvp_f([None, None], [label()])
    with pytest.raises(ValueError, match="non-zero number of videos"):
        avvp_f([], [])
    with pytest.raises(ValueError, match="2-D and alike"):
        segment_counts(np.zeros((2, 10)), np.zeros((3, 10)))


# --------------------------------------------------------------------------------------------------
# Equivalence with a plain loop written from the definitions
# --------------------------------------------------------------------------------------------------


def _runs(values: list[int]) -> list[set[int]]:
    """The runs of 1s of a row as sets of segment indices."""
    k, found = 0, []
    for value, group in groupby(values):
        n = len(list(group))
        if value == 1:
            found.append(set(range(k, k + n)))
        k += n
    return found


def _hit(a: set[int], b: set[int]) -> bool:
    return len(a & b) / len(a | b) >= 0.5


def _plain_counts(pred: np.ndarray, true: np.ndarray, level: str) -> list[tuple[int, int, int]]:
    """Per-row (TP, FP, FN) by counting segment pairs, or runs matched at IoU >= 0.5 with any run."""
    out = []
    for p_row, t_row in zip(pred.tolist(), true.tolist(), strict=True):
        if level == "segment":
            pairs = list(zip(p_row, t_row, strict=True))
            out.append((pairs.count((1, 1)), pairs.count((1, 0)), pairs.count((0, 1))))
        else:
            p_runs, t_runs = _runs(p_row), _runs(t_row)
            tp = sum(any(_hit(p, t) for t in t_runs) for p in p_runs)
            fn = sum(not any(_hit(t, p) for p in p_runs) for t in t_runs)
            out.append((tp, len(p_runs) - tp, fn))
    return out


def _plain_f(counts: list[tuple[int, int, int]]) -> float:
    fs = [2 * tp / (2 * tp + fp + fn) for tp, fp, fn in counts if tp + fp + fn > 0]
    return sum(fs) / len(fs) if fs else 1.0


@pytest.mark.parametrize("level", ["segment", "event"])
def test_vectorised_scorer_equals_plain_loop(level):
    rng = np.random.default_rng(7)
    score = segment_level_f if level == "segment" else event_level_f
    for _ in range(200):
        # (4, 4, 25, 10): pred_a, pred_v, true_a, true_v; a quarter of the rows active, 40% segment density.
        mats = (rng.random((4, 25, 10)) < 0.4) * (rng.random((4, 25, 1)) < 0.25)
        pa, pv, ta, tv = mats.astype(np.int64)
        a, v = _plain_counts(pa, ta, level), _plain_counts(pv, tv, level)
        pooled = [tuple(x + y for x, y in zip(ca, cv, strict=True)) for ca, cv in zip(a, v, strict=True)]
        got = score(pa, pv, ta, tv)
        assert got.audio == pytest.approx(_plain_f(a))
        assert got.visual == pytest.approx(_plain_f(v))
        assert got.event_av == pytest.approx(_plain_f(pooled))
        assert got.audio_visual == pytest.approx(_plain_f(_plain_counts(pa * pv, ta * tv, level)))
