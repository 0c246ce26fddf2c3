"""AVSS scoring in ``evaluate_avss``: class maps from the 71-class head, the module's scores and the baselines."""

from types import SimpleNamespace

import pytest
import torch

from crab.eval.metrics_avss import avss_scores
from crab.eval.run_avs import _avss_scores, _frame_prediction, frequent_class


def test_frame_prediction_is_the_argmax_class_at_the_truths_size():
    logits = torch.zeros(71, 2, 2)  # (C, S, S)
    logits[5, 0, 0] = logits[7, 1, 1] = 3.0
    prediction = _frame_prediction(logits, (4, 4), semantic=True)  # upsampled to the label map's size
    assert prediction.dtype == torch.long and prediction.shape == (4, 4)
    assert prediction[0, 0] == 5 and prediction[3, 3] == 7
    assert torch.equal(_frame_prediction(None, (3, 5), semantic=True), torch.zeros(3, 5, dtype=torch.long))
    binary = _frame_prediction(torch.ones(1, 2, 2), (2, 2), semantic=False)
    assert torch.equal(binary, torch.ones(2, 2)) and _frame_prediction(None, (2, 2), semantic=False).max() < -10


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
