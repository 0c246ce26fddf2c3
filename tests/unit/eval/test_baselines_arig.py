"""ARIG trivial baselines: fitted boxes by hand, scored with the official cIoU rules."""

from __future__ import annotations

import pytest

from crab.eval.baselines_arig import arig_baselines, centre_box, prior_box
from crab.eval.metrics_arig import arig_ciou

TRAIN = [{"x0": 10, "y0": 20, "x1": 50, "y1": 60}, {"x0": 100, "y0": 100, "x1": 161, "y1": 141, "object": "dog"}]


def test_fitted_boxes() -> None:
    # mean corners (55, 60, 105.5 -> 106, 100.5 -> 101); mean size 50.5 -> 51 x 40.5 -> 41, centred in 224
    assert prior_box(TRAIN) == (55, 60, 106, 101)
    assert centre_box(TRAIN) == (86, 91, 137, 132)
    assert prior_box([{"x0": 223, "y0": 223, "x1": 224, "y1": 224}]) == (223, 223, 224, 224)
    with pytest.raises(ValueError, match="no train labels"):
        prior_box([])


def test_baselines_are_scored_like_the_model() -> None:
    test = [{"x0": 86, "y0": 91, "x1": 137, "y1": 132}, {"x0": 0, "y0": 0, "x1": 112, "y1": 224}]
    scores = arig_baselines(TRAIN, test)
    assert sorted(scores) == ["centre_box", "full_frame", "prior_box"]
    assert scores["centre_box"] == arig_ciou([(86, 91, 137, 132)] * 2, test)
    # the centre box is the first test box exactly (cIoU 1); against the second (left half of the frame) it overlaps
    # columns 86..111 (26 x 41 = 1066 pixels) and has 51 * 41 - 1066 = 1025 outside: 1066 / (112 * 224 + 1025)
    assert scores["centre_box"]["mean_ciou"] == pytest.approx((1 + 1066 / (112 * 224 + 1025)) / 2)
    assert scores["centre_box"]["ciou"] == 0.5
    # the full frame: cIoU_i = the ground truth's share of the frame
    assert scores["full_frame"]["mean_ciou"] == pytest.approx((51 * 41 / 224**2 + 0.5) / 2)
    assert scores["full_frame"]["num_parse_failures"] == 0
    with pytest.raises(ValueError, match="no test labels"):
        arig_baselines(TRAIN, [])
