"""Tests for ``crab.eval.metrics_arig``: cIoU per sample, success rate, AUC, boxes from masks, mask resizing.

Every expected value is computed by hand in the comment beside it. Box (x0, y0, x1, y1) covers
``map[y0:y1, x0:x1]``, so its area is (x1 - x0) * (y1 - y0).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from crab.avuie.arig import ArigLabel
from crab.eval.metrics_arig import (
    ARIG_THRESHOLDS,
    arig_auc,
    arig_ciou,
    arig_ciou_from_scores,
    arig_sample_ciou,
    arig_success_rates,
    box_fields,
    box_from_mask,
    box_map,
    resize_mask,
)

GT = (0, 0, 100, 100)  # area 10000


@pytest.mark.parametrize(
    ("pred", "expected"),
    [
        ((0, 0, 50, 50), 2500 / 10000),  # inside the GT: inter 2500, no background
        ((0, 0, 200, 100), 10000 / (10000 + 10000)),  # covers the GT plus 100x100 of background
        ((50, 50, 150, 150), 2500 / (10000 + 7500)),  # partial overlap: inter 2500, 7500 outside
        ((0, 0, 100, 100), 1.0),  # exact
        ((100, 0, 224, 224), 0.0),  # touching at x = 100 (end-exclusive): no shared pixel
        (None, 0.0),  # parse failure = empty map
        ((60, 60, 40, 80), 0.0),  # reversed box = empty map
        ((-50, -50, 50, 50), 2500 / 10000),  # clipped to the frame: (0, 0, 50, 50)
    ],
)
def test_sample_ciou_hand_cases(pred, expected):
    result = arig_ciou([pred], [GT])
    assert result["mean_ciou"] == pytest.approx(expected)
    assert result["ciou"] == (1.0 if expected >= 0.5 else 0.0)
    assert result["num_parse_failures"] == (pred is None)


def test_sample_ciou_with_a_soft_ground_truth_is_not_iou():
    # The reference's Flickr maps hold 0.5 where one of two annotators drew a box. GT = 0.5 on a 10x10 box.
    gt = np.zeros((20, 20))
    gt[:10, :10] = 0.5
    same = box_map((0, 0, 10, 10), 20)
    wider = box_map((0, 0, 20, 10), 20)  # 100 more pixels, all with gt == 0
    assert arig_sample_ciou(same, gt) == pytest.approx(50 / (50 + 0))  # 1.0 though the GT is only 0.5
    assert arig_sample_ciou(wider, gt) == pytest.approx(50 / (50 + 100))


def test_mask_reference_scores_the_bounding_box_by_the_mask_area():
    mask = np.zeros((224, 224), dtype=np.uint8)
    mask[0:10, 0:2] = 255  # an L: 20 pixels ...
    mask[8:10, 2:10] = 255  # ... + 16 pixels = 36
    box = box_from_mask(mask)
    assert box == (0, 0, 10, 10)
    assert arig_ciou([box], [mask])["mean_ciou"] == pytest.approx(36 / 100)  # inter 36, background 64


def test_ciou_is_the_fraction_at_or_above_one_half():
    preds = [(0, 0, 100, 100), (0, 0, 200, 100), (0, 0, 50, 50), None]  # cIoU 1, 0.5, 0.25, 0
    result = arig_ciou(preds, [GT] * 4)
    assert result["ciou"] == 0.5  # 1 and 0.5 pass; 0.5 counts (>=)
    assert result["num_samples"] == 4 and result["num_parse_failures"] == 1


def test_auc_of_known_cious_by_hand():
    # cIoU_i = 0, 0.25, 0.5, 1. Success rate at t = 0.05 i:
    #   i = 0: 4/4; i = 1..5 (t <= 0.25): 3/4; i = 6..10 (t <= 0.5): 2/4; i = 11..20: 1/4 (1.0 >= 1.0).
    # Trapezoid with width 0.05: (1 + .75)/2 + 4 * .75 + (.75 + .5)/2 + 4 * .5 + (.5 + .25)/2 + 9 * .25
    #   = .875 + 3 + .625 + 2 + .375 + 2.25 = 9.125 -> AUC = 9.125 * 0.05 = 0.45625.
    cious = [0.0, 0.25, 0.5, 1.0]
    assert arig_success_rates(cious) == [1.0] + [0.75] * 5 + [0.5] * 5 + [0.25] * 10
    assert arig_auc(cious) == pytest.approx(0.45625, abs=1e-12)
    result = arig_ciou_from_scores(cious, num_parse_failures=1)
    assert result["auc"] == pytest.approx(0.45625, abs=1e-12)
    assert result["ciou"] == 0.5 and result["mean_ciou"] == pytest.approx(0.4375)
    assert result["num_samples"] == 4 and result["num_parse_failures"] == 1


def test_auc_of_metric_on_boxes_by_hand():
    # cIoU_i = 0.25, 0.5, 0, 1/7 (= 0.143): rates 1; 3/4 at i = 1, 2; 2/4 at i = 3..5; 1/4 at i = 6..10; 0 after.
    # (1 + .75)/2 + .75 + (.75 + .5)/2 + 2 * .5 + (.5 + .25)/2 + 4 * .25 + .25/2 = 4.75 -> 4.75 * 0.05 = 0.2375.
    preds = [(0, 0, 50, 50), (0, 0, 200, 100), None, (50, 50, 150, 150)]
    result = arig_ciou(preds, [GT] * 4)
    assert result["auc"] == pytest.approx(0.2375, abs=1e-12)
    assert result["ciou"] == 0.25


def test_auc_extremes():
    assert arig_auc([1.0, 1.0]) == pytest.approx(1.0)
    assert arig_auc([0.0, 0.0]) == pytest.approx(0.025)  # only t = 0 succeeds: (1 + 0) / 2 * 0.05


def test_thresholds_are_the_reference_floats():
    # The reference compares with 0.05 * i, and 0.05 * 6 == 0.30000000000000004 > 0.3: a cIoU of exactly 0.3
    # fails threshold 6 (likewise 0.15 fails threshold 3), while 0.25 and 0.5 pass thresholds 5 and 10.
    assert len(ARIG_THRESHOLDS) == 21 and ARIG_THRESHOLDS[0] == 0.0 and ARIG_THRESHOLDS[-1] == 1.0
    rates = arig_success_rates([0.3, 0.15, 0.25, 0.5])
    assert rates[3] == 3 / 4  # 0.15 fails
    assert rates[5] == 3 / 4  # 0.3, 0.25, 0.5 pass 0.25
    assert rates[6] == 1 / 4  # only 0.5 passes 0.30000000000000004
    assert rates[10] == 1 / 4  # 0.5 >= 0.5


def test_box_map_is_end_exclusive():
    m = box_map((1, 2, 3, 5), 8)
    assert m.shape == (8, 8) and m.dtype == np.float64
    assert m.sum() == 2 * 3  # columns 1, 2 x rows 2, 3, 4
    assert m[2, 1] == 1 and m[4, 2] == 1 and m[5, 2] == 0 and m[2, 3] == 0
    assert box_map(None).shape == (224, 224) and box_map(None).sum() == 0


def test_box_from_mask():
    assert box_from_mask(np.zeros((5, 7))) is None  # frame without a sounding object: skipped
    single = np.zeros((5, 7), dtype=np.uint8)
    single[3, 5] = 1
    assert box_from_mask(single) == (5, 3, 6, 4)  # one pixel: x1 = x0 + 1
    with pytest.raises(ValueError, match="2-D"):
        box_from_mask(np.zeros((2, 2, 3)))


def test_box_of_a_random_rectangle_mask_round_trips_and_covers_any_mask():
    rng = np.random.default_rng(0)
    for _ in range(50):
        x0, x1 = sorted(rng.choice(225, size=2, replace=False))
        y0, y1 = sorted(rng.choice(225, size=2, replace=False))
        rectangle = box_map((x0, y0, x1, y1))
        assert box_from_mask(rectangle) == (x0, y0, x1, y1)
        blob = rectangle * (rng.random((224, 224)) < 0.3)
        box = box_from_mask(blob)
        if box is not None:
            assert (box_map(box)[blob > 0] == 1).all()  # the box covers every foreground pixel


def test_resize_mask_by_hand():
    assert (resize_mask(np.full((224, 224), 7)) == np.ones((224, 224), dtype=bool)).all()
    up = resize_mask(np.array([[0, 255], [0, 0]]))  # 2x2 -> 224: each source pixel is a 112x112 quadrant
    assert up.dtype == bool and up.sum() == 112 * 112 and up[:112, 112:].all()
    # 448 -> 224: output r samples source floor((r + 0.5) * 2) = 2 r + 1, the odd rows and columns.
    odd, even = np.zeros((448, 448)), np.zeros((448, 448))
    odd[1, 1] = even[0, 0] = 1
    assert resize_mask(odd)[0, 0] and resize_mask(odd).sum() == 1
    assert resize_mask(even).sum() == 0
    with pytest.raises(ValueError, match="2-D"):
        resize_mask(np.zeros((0, 4)))


@pytest.mark.parametrize(("height", "width"), [(5, 7), (300, 224), (100, 150), (50, 40)])
def test_resize_mask_equals_pil_nearest_without_ties(height, width):
    mask = (np.random.default_rng(height).random((height, width)) > 0.5).astype(np.uint8) * 255
    pil = np.asarray(Image.fromarray(mask).resize((224, 224), Image.Resampling.NEAREST)) > 0
    assert (resize_mask(mask) == pil).all()


def test_resize_mask_at_an_exact_tie_takes_the_exact_pixel():
    # 1280 -> 224: output column 17 has centre 17.5 * 1280 / 224 = 100 exactly -> source column 100
    # (PIL's float arithmetic gives 99; see resize_mask).
    mask = np.zeros((224, 1280), dtype=np.uint8)
    mask[:, 100] = 255
    assert np.flatnonzero(resize_mask(mask)[0]).tolist() == [17]


def test_box_fields_accepts_labels_dicts_tuples_and_numpy_ints():
    expected = (1, 2, 3, 4)
    assert box_fields(ArigLabel(1, 2, 3, 4)) == expected
    assert box_fields({"x0": 1, "y0": 2, "x1": 3, "y1": 4, "category": "dog"}) == expected
    assert box_fields([np.int64(1), 2, 3, 4]) == expected
    with pytest.raises(TypeError, match="integers"):
        box_fields((1.5, 2, 3, 4))
    with pytest.raises(TypeError, match="4 coordinates"):
        box_fields((1, 2, 3))
    with pytest.raises(TypeError, match="lacks"):
        box_fields({"x0": 1})


@pytest.mark.parametrize(
    ("predictions", "references", "match"),
    [
        ([None], [GT, GT], "1 predictions for 2 references"),
        ([], [], "at least one sample"),
        ([None], [(10, 10, 10, 20)], "empty or outside"),
        ([None], [(0, 0, 225, 20)], "empty or outside"),
        ([None], [np.zeros((224, 224))], "empty mask"),
        ([None], [np.ones((10, 10))], "resize_mask"),
    ],
)
def test_invalid_inputs_raise(predictions, references, match):
    with pytest.raises(ValueError, match=match):
        arig_ciou(predictions, references)


def test_sample_ciou_rejects_empty_ground_truth_and_shape_mismatch():
    with pytest.raises(ValueError, match="empty ground-truth"):
        arig_sample_ciou(np.ones((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="differ in shape"):
        arig_sample_ciou(np.ones((4, 4)), np.ones((4, 5)))
