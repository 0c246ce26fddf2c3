"""AVSS per-class mIoU / F on hand-computed 4x4 cases (evaluation.md "AVSS")."""

import numpy as np
import pytest
import torch

from crab.eval.metrics_avss import AvssStats, avss_predict, avss_scores, avss_stats

EPS = 2.220446049250313e-16  # the official IoU denominator epsilon
NUM_CLASSES = 4  # 0 background, 1..3 objects


def f_measure(p: float, r: float) -> float:
    return 1.3 * p * r / (0.3 * p + r)


def frame(fill: int = 0, **cells: list[tuple[int, int]]) -> torch.Tensor:
    """A 4x4 class map filled with ``fill`` and ``c<k>=[(r, c), ...]`` set to class k."""
    out = torch.full((4, 4), fill, dtype=torch.int64)
    for name, positions in cells.items():
        for r, c in positions:
            out[r, c] = int(name[1:])
    return out


TOP_LEFT = [(0, 0), (0, 1), (1, 0), (1, 1)]
TOP_ROW = [(0, 0), (0, 1), (0, 2), (0, 3)]

# Frame 1: class 1 labelled top-left, predicted top row (overlap 2, union 6); background overlap 10, union 14.
# Frame 2: all background, one pixel predicted as class 3 (a false positive); class 1 is absent.
LABELS = torch.stack([frame(c1=TOP_LEFT), frame()])  # (2, 4, 4)
PREDICTIONS = torch.stack([frame(c1=TOP_ROW), frame(c3=[(3, 3)])])

BG_IOU = (10 / (14 + EPS) + 15 / (16 + EPS)) / 2  # mean over the 2 frames where background occurs
BG_F = (f_measure(10 / 12, 10 / 12) + f_measure(1.0, 15 / 16)) / 2
C1_IOU, C1_F = 2 / (6 + EPS), f_measure(0.5, 0.5)  # frame 1 only: absence in frame 2 does not dilute it
C3_IOU, C3_F = 0.0, 0.0  # predicted but never labelled: counts, scores 0 (NaN recall -> 0)


def test_per_frame_statistics_are_hand_computed():
    stats = avss_stats(PREDICTIONS, LABELS, num_classes=NUM_CLASSES)
    assert stats.class_count == (2, 1, 0, 1)
    assert stats.iou_sum == pytest.approx((10 / 14 + 15 / 16, 1 / 3, 0.0, 0.0))
    assert stats.f_sum == pytest.approx((2 * BG_F, C1_F, 0.0, 0.0))
    assert stats.num_frames == 2


def test_miou_and_f_average_the_classes_that_occur():
    result = avss_scores([PREDICTIONS], [LABELS], num_classes=NUM_CLASSES)
    assert result["iou_per_class"] == pytest.approx([BG_IOU, C1_IOU, None, C3_IOU])
    assert result["f_score_per_class"] == pytest.approx([BG_F, C1_F, None, C3_F])
    assert result["miou"] == pytest.approx((BG_IOU + C1_IOU + C3_IOU) / 3)
    assert result["f_score"] == pytest.approx((BG_F + C1_F + C3_F) / 3)
    assert result["num_classes_present"] == 3
    assert (result["num_videos"], result["num_frames"]) == (1, 2)


def test_no_background_variant_drops_class_zero():
    result = avss_scores([PREDICTIONS], [LABELS], num_classes=NUM_CLASSES)
    assert result["miou_no_background"] == pytest.approx((C1_IOU + C3_IOU) / 2)
    assert result["f_score_no_background"] == pytest.approx((C1_F + C3_F) / 2)


def test_absent_classes_do_not_count_even_with_71_classes():
    result = avss_scores([PREDICTIONS], [LABELS])  # default 71 classes, 3 occur
    assert result["miou"] == pytest.approx((BG_IOU + C1_IOU + C3_IOU) / 3)
    assert len(result["iou_per_class"]) == 71
    assert result["iou_per_class"][70] is None


def test_accumulation_is_per_frame_so_video_grouping_does_not_matter():
    together = avss_scores([PREDICTIONS], [LABELS], num_classes=NUM_CLASSES)
    split = avss_scores([PREDICTIONS[:1], PREDICTIONS[1:]], [LABELS[:1], LABELS[1:]], num_classes=NUM_CLASSES)
    assert split == {**together, "num_videos": 2}


def test_all_background_scores_no_background_variant_zero():
    background = torch.zeros(1, 4, 4, dtype=torch.int64)
    result = avss_scores([background], [background], num_classes=NUM_CLASSES)
    assert result["miou"] == pytest.approx(16 / (16 + EPS))
    assert result["miou_no_background"] == 0.0


def test_predict_is_argmax_over_classes():
    logits = torch.zeros(1, NUM_CLASSES, 4, 4)
    logits[0, 2, 1, 1] = 5.0
    expected = frame(c2=[(1, 1)])
    assert torch.equal(avss_predict(logits)[0], expected)


def test_equals_a_plain_loop_over_frames_and_classes():
    generator = torch.Generator().manual_seed(0)
    pred = torch.randint(0, NUM_CLASSES, (3, 5, 5), generator=generator)
    label = torch.randint(0, NUM_CLASSES, (3, 5, 5), generator=generator)
    iou_sum, f_sum, count = np.zeros(NUM_CLASSES), np.zeros(NUM_CLASSES), np.zeros(NUM_CLASSES, dtype=int)
    for t in range(3):
        for c in range(NUM_CLASSES):
            p, g = (pred[t] == c).numpy(), (label[t] == c).numpy()
            inter, union = (p & g).sum(), (p | g).sum()
            iou_sum[c] += inter / (union + EPS)
            count[c] += union > 0
            if inter:
                f_sum[c] += f_measure(inter / p.sum(), inter / g.sum())
    stats = avss_stats(pred, label, num_classes=NUM_CLASSES)
    assert stats.iou_sum == pytest.approx(tuple(iou_sum))
    assert stats.f_sum == pytest.approx(tuple(f_sum))
    assert stats.class_count == tuple(count)


def test_inputs_may_be_lists_or_numpy_and_stats_round_trip():
    stats = avss_stats(PREDICTIONS, LABELS, num_classes=NUM_CLASSES)
    assert avss_stats(PREDICTIONS.tolist(), LABELS.numpy(), num_classes=NUM_CLASSES) == stats
    assert AvssStats.from_dict(stats.as_dict()) == stats


def test_bad_inputs_raise_naming_the_video():
    with pytest.raises(ValueError, match=r"video 0 ground truth: class index range \[3, 4\] is outside \[0, 4\)"):
        avss_scores([PREDICTIONS], [LABELS + 3], num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match="video 0 prediction: class indices must be integers"):
        avss_scores([PREDICTIONS + 0.5], [LABELS], num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match=r"video 0: prediction shape \(1, 4, 4\) != ground truth shape \(2, 4, 4\)"):
        avss_scores([PREDICTIONS[:1]], [LABELS], num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match="1 predictions for 2 references"):
        avss_scores([PREDICTIONS], [LABELS, LABELS])
    with pytest.raises(ValueError, match="at least one video"):
        avss_scores([], [])
    with pytest.raises(ValueError, match=r"\(T, C, H, W\)"):
        avss_predict(torch.zeros(4, 4, 4))
