"""Ref-AVS scoring in ``evaluate_avs``: per test subset, through the ``avs_segmentation`` module, with baselines."""

import pytest
import torch

from crab.eval.metrics_avs import ref_avs_null_score, ref_avs_scores
from crab.eval.run_avs import EMPTY_LOGIT, _ref_avs_scores


def _truth(rows: int) -> torch.Tensor:
    truth = torch.zeros(10, 4, 4)  # (T, H, W)
    truth[:, :rows] = 1
    return truth


def test_subsets_are_scored_apart_in_test_order_with_the_trivial_masks():
    samples = ["a", "b", "c", "d", "e", "f"]
    subsets = {"a": "seen", "b": "unseen", "c": "seen", "d": "null", "e": "seen", "f": "unseen"}
    truths = {k: _truth(0 if subsets[k] == "null" else 1 + i % 3) for i, k in enumerate(samples)}
    predictions = {k: (t * 2 - 1) * 5 for k, t in truths.items()}  # right everywhere
    predictions["c"] = torch.full((10, 4, 4), 5.0)  # all foreground
    predictions["d"][:, 0, 0] = 5.0  # one false-positive pixel per frame of the null sample
    scores, counts, baselines = _ref_avs_scores(samples, subsets, predictions, truths)
    assert counts == {"num_seen": 3, "num_unseen": 2, "num_null": 1}
    seen = ref_avs_scores([predictions[k] for k in "ace"], [truths[k] for k in "ace"])
    assert scores["seen_miou"] == seen["miou"] and scores["seen_f_score"] == seen["f_score"]
    assert scores["unseen_miou"] == pytest.approx(1.0)
    assert scores["null_s"] == pytest.approx((1 / 16) ** 0.5) == ref_avs_null_score([predictions["d"]])["null_s"]
    assert baselines["empty_mask"]["null_s"] == 0.0 and baselines["full_frame_mask"]["null_s"] == pytest.approx(1.0)
    assert baselines["empty_mask"]["seen_miou"] == 0.0  # every seen sample has an object in every frame
    full = ref_avs_scores([torch.full((10, 4, 4), -EMPTY_LOGIT)] * 3, [truths[k] for k in "ace"])
    assert baselines["full_frame_mask"]["seen_miou"] == full["miou"]


def test_a_subset_without_samples_is_left_out():
    truths = {"a": _truth(2)}
    scores, counts, baselines = _ref_avs_scores(["a"], {"a": "unseen"}, {"a": truths["a"] * 10 - 5}, truths)
    assert set(scores) == {"unseen_miou", "unseen_f_score"} and counts["num_seen"] == 0
    assert set(baselines["empty_mask"]) == {"unseen_miou", "unseen_f_score"}
