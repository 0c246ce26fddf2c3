"""AVSS scoring in ``evaluate_avss``: class maps from the 71-class head, the module's scores and the baselines."""

from types import SimpleNamespace

import pytest
import torch

from crab.eval.metrics_avss import avss_scores
from crab.eval.run_avs import _avss_scores, _frame_prediction, frequent_class


def test_frame_prediction_is_the_heads_class_map_at_the_truths_size():
    logits = torch.zeros(71, 2, 2)  # (C, S, S)
    logits[5, 0, 0] = logits[7, 1, 1] = 3.0
    prediction = _frame_prediction(logits, (4, 4), "softmax")  # upsampled to the label map's size
    assert prediction.dtype == torch.long and prediction.shape == (4, 4)
    assert prediction[0, 0] == 5 and prediction[3, 3] == 7
    # a factorized head's log-probabilities: objects sound on the top row (class 5 at 0.35, background 0.3) and
    # the bottom row (class 7), not in the middle (background 0.9): two regions, one class each
    probs = torch.full((71, 3, 2), 0.7 / 140)  # (C, S, S)
    probs[0] = 0.3
    probs[5, 0], probs[7, 2] = 0.35, 0.35
    probs[:, 1], probs[0, 1] = 0.1 / 70, 0.9
    factorized = _frame_prediction(probs.log(), (3, 2), "factorized")
    assert factorized.tolist() == [[5, 5], [0, 0], [7, 7]]
    assert torch.equal(_frame_prediction(None, (3, 5), "softmax"), torch.zeros(3, 5, dtype=torch.long))
    binary = _frame_prediction(torch.ones(1, 2, 2), (2, 2), None)
    assert torch.equal(binary, torch.ones(2, 2)) and _frame_prediction(None, (2, 2), None).max() < -10


def test_frequent_class_counts_the_labels_objects():
    records = [SimpleNamespace(label={"objects": o}) for o in (["man", "guitar"], ["guitar"], [], ["man", "guitar"])]
    assert frequent_class(records) == 28  # guitar, named three times
    assert frequent_class([SimpleNamespace(label={"objects": []})]) == 0


def test_scores_and_baselines_through_the_module():
    truth = torch.zeros(2, 4, 4, dtype=torch.long)  # (T, H, W): one clip of two frames
    truth[:, :2] = 28
    perfect, half = truth.clone(), truth.clone()
    half[1] = 0
    scores, counts, baselines = _avss_scores([perfect, half], [truth, truth], prior=28)
    assert counts == {"num_videos": 2}
    expected = avss_scores([perfect, half], [truth, truth])
    assert scores["miou"] == expected["miou"] and scores["f_score"] == expected["f_score"]
    assert baselines["all_background"]["miou_no_background"] == 0.0
    # every pixel guitar: IoU 0.5 for guitar, 0 for background (labelled, never predicted)
    assert baselines["frequent_class_full_frame"]["miou"] == pytest.approx((0.5 + 0.0) / 2)
    assert set(baselines["all_background"]) == {"miou", "f_score", "miou_no_background", "f_score_no_background",
                                                "num_classes_present"}  # fmt: skip


def test_each_mask_task_has_the_stage_of_its_head():
    from crab.train.finetune_avs import mask_stage

    assert {t: mask_stage(t) for t in ("s4", "ms3", "ref_avs", "avss")} == {
        "s4": "finetune_avs", "ms3": "finetune_avs", "ref_avs": "finetune_avs", "avss": "finetune_avss"
    }  # fmt: skip
    with pytest.raises(ValueError, match="ave is not a mask task"):
        mask_stage("ave")
