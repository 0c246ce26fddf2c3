"""S4 / MS3 and Ref-AVS segmentation metrics on hand-computed 4x4 cases (evaluation.md "AVS", "Ref-AVS")."""

import math

import numpy as np
import pytest
import torch

from crab.eval.metrics_avs import (
    MaskStats,
    avs_scores,
    f_thresholds,
    frame_f_curves,
    mask_stats,
    ref_avs_null_score,
    ref_avs_scores,
    resize_logits,
)

EPS = 1e-7  # the official IoU denominator epsilon
TINY = -20.0  # logit of a pixel that is background at every threshold but t = 0


def logits_from_probs(probs) -> torch.Tensor:
    """Logits whose sigmoid is ``probs``; 0 probabilities become TINY."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    return torch.where(p > 0, torch.logit(p.clamp(min=1e-12)), torch.full_like(p, TINY)).float()


def block(*cells: tuple[int, int]) -> torch.Tensor:
    """A 4x4 binary mask with ones at ``cells``."""
    mask = torch.zeros(4, 4, dtype=torch.int64)
    for r, c in cells:
        mask[r, c] = 1
    return mask


TOP_LEFT = block((0, 0), (0, 1), (1, 0), (1, 1))  # 4 px
TOP_ROW = block((0, 0), (0, 1), (0, 2), (0, 3))  # 4 px, overlaps TOP_LEFT in 2
EMPTY = torch.zeros(4, 4, dtype=torch.int64)


def confident(mask: torch.Tensor) -> torch.Tensor:
    """Logits that predict exactly ``mask`` at the 0.4 and 0.5 thresholds."""
    return torch.where(mask.bool(), 10.0, -10.0)


def frames(*masks: torch.Tensor) -> torch.Tensor:
    return torch.stack(masks)  # (T, 4, 4)


# Two frames whose F curves peak at different thresholds (GT = TOP_LEFT in both):
# A: GT pixels p = 0.8, four other pixels p = 0.6 -> F = 0.302 at t = 0, 0.65/1.15 on (0, 0.6], 1 on (0.6, 0.8].
# B: GT pixels p = 0.55, nothing else           -> F = 0.302 at t = 0, 1 on (0, 0.55], 0 above.
PROBS_A = 0.8 * TOP_LEFT + 0.6 * block((2, 0), (2, 1), (3, 0), (3, 1))
PROBS_B = 0.55 * TOP_LEFT
F_HALF_PRECISION = 1.3 * 0.5 / (0.3 * 0.5 + 1)  # P = 0.5, R = 1
F_AT_ZERO = 1.3 * 0.25 / (0.3 * 0.25 + 1)  # every pixel predicted: P = 4/16, R = 1


def test_iou_of_overlapping_masks_and_of_empty_ground_truth():
    # Overlap 2, union 6. Empty GT with 3 predicted pixels: 13 true negatives of 16. Both empty: 16 / 16.
    stats = mask_stats(
        frames(confident(TOP_ROW), confident(block((3, 3), (3, 2), (2, 3))), confident(EMPTY)),
        frames(TOP_LEFT, EMPTY, EMPTY),
    )
    assert stats.frame_ious == pytest.approx((2 / (6 + EPS), 13 / (16 + EPS), 16 / (16 + EPS)), abs=1e-12)
    assert stats.num_scored_frames == 1


def test_miou_averages_frames_per_video_then_videos():
    video_1 = (frames(confident(TOP_ROW), confident(EMPTY)), frames(TOP_LEFT, EMPTY))  # IoUs 1/3, 1
    video_2 = (frames(confident(EMPTY)), frames(TOP_LEFT))  # IoU 0
    result = avs_scores([video_1[0], video_2[0]], [video_1[1], video_2[1]])
    assert result["miou"] == pytest.approx(((1 / 3 + 1) / 2 + 0) / 2, abs=1e-6)  # not (1/3 + 1 + 0) / 3
    assert result["num_videos"] == 2
    assert result["num_frames"] == 3
    assert result["num_scored_frames"] == 2


def test_f_curve_of_one_frame_is_hand_computed():
    curve = frame_f_curves(torch.sigmoid(logits_from_probs(PROBS_A))[None], TOP_LEFT.bool()[None])[0]
    thresholds = f_thresholds()
    assert curve[0].item() == pytest.approx(F_AT_ZERO)
    assert curve[thresholds <= 0.59][1:].numpy() == pytest.approx(F_HALF_PRECISION)
    assert curve[(thresholds > 0.61) & (thresholds < 0.79)].numpy() == pytest.approx(1.0)
    assert curve[thresholds > 0.81].numpy() == pytest.approx(0.0)  # nothing predicted: NaN F -> 0


def test_video_f_is_max_of_the_frame_averaged_curve():
    # Averaged curve peaks on (0, 0.55] at (0.65/1.15 + 1) / 2; the mean of per-frame maxima would be 1.
    result = avs_scores([logits_from_probs(torch.stack([PROBS_A, PROBS_B]))], [frames(TOP_LEFT, TOP_LEFT)])
    assert result["f_score"] == pytest.approx((F_HALF_PRECISION + 1) / 2)


def test_f_skips_empty_frames_and_scores_an_all_empty_video_zero():
    with_empty = logits_from_probs(torch.stack([PROBS_B, 0.9 * TOP_ROW]))  # frame 2 has an empty GT
    all_empty = confident(frames(EMPTY, EMPTY))
    result = avs_scores([with_empty, all_empty], [frames(TOP_LEFT, EMPTY), frames(EMPTY, EMPTY)])
    # Video 1: only frame 1 counts (F = 1, not (1 + 0) / 2); video 2 has no object: F = 0, still averaged.
    assert result["f_score"] == pytest.approx((1.0 + 0.0) / 2)
    assert result["num_scored_frames"] == 1


def test_ref_avs_thresholds_at_0_4_where_avs_uses_0_5():
    probs = 0.45 * TOP_LEFT  # between the two thresholds
    logits, truth = [logits_from_probs(probs[None])], [TOP_LEFT[None]]
    assert ref_avs_scores(logits, truth)["miou"] == pytest.approx(4 / (4 + EPS))
    assert avs_scores(logits, truth)["miou"] == 0.0


def test_ref_avs_averages_batches_of_samples_not_frames():
    hit, miss = (confident(TOP_LEFT)[None], TOP_LEFT[None]), (confident(EMPTY)[None], TOP_LEFT[None])
    samples = [hit, hit, hit, hit, miss]  # IoUs 1, 1, 1, 1 | 0
    logits, truth = [s[0] for s in samples], [s[1] for s in samples]
    result = ref_avs_scores(logits, truth)
    assert result["miou"] == pytest.approx((1 + 0) / 2, abs=1e-6)  # batches [1, 1, 1, 1] and [0]
    assert result["num_batches"] == 2
    assert ref_avs_scores(logits, truth, batch_size=1)["miou"] == pytest.approx(4 / 5, abs=1e-6)


def test_ref_avs_f_pools_the_batch_frames_before_the_max():
    logits = [logits_from_probs(PROBS_A[None]), logits_from_probs(PROBS_B[None])]
    truth = [TOP_LEFT[None], TOP_LEFT[None]]
    assert ref_avs_scores(logits, truth)["f_score"] == pytest.approx((F_HALF_PRECISION + 1) / 2)
    assert ref_avs_scores(logits, truth, batch_size=1)["f_score"] == pytest.approx(1.0)


def test_ref_avs_batch_without_objects_scores_f_zero():
    logits = [confident(TOP_LEFT)[None], confident(TOP_LEFT)[None]]
    result = ref_avs_scores(logits, [TOP_LEFT[None], EMPTY[None]], batch_size=1)
    assert result["f_score"] == pytest.approx((1.0 + 0.0) / 2)


def test_null_s_pools_foreground_over_the_batch():
    four_fg = logits_from_probs(0.6 * TOP_LEFT + 0.45 * TOP_ROW * (1 - TOP_LEFT))  # 0.45 pixels are background
    none = confident(EMPTY)
    assert ref_avs_null_score([four_fg[None], none[None]])["null_s"] == pytest.approx(math.sqrt(4 / 32))
    per_sample = ref_avs_null_score([four_fg[None], none[None]], batch_size=1)
    assert per_sample["null_s"] == pytest.approx((math.sqrt(4 / 16) + 0) / 2)
    assert per_sample == {**per_sample, "num_samples": 2, "num_batches": 2, "num_pixels": 32}


def test_f_curves_equal_the_official_threshold_loop():
    generator = torch.Generator().manual_seed(0)
    probs = torch.sigmoid(3 * torch.randn(3, 6, 6, generator=generator))
    gt = torch.rand(3, 6, 6, generator=generator) > 0.6
    expected = torch.zeros(3, 255, dtype=torch.float64)
    for i in range(3):  # _eval_pr + Eval_Fmeasure, one threshold at a time
        for k, t in enumerate(f_thresholds()):
            pred = (probs[i] >= t).double()
            tp = (pred * gt[i]).sum()
            p, r = tp / (pred.sum() + 1e-20), tp / (gt[i].sum() + 1e-20)
            f = 1.3 * p * r / (0.3 * p + r)
            expected[i, k] = 0.0 if torch.isnan(f) else f
    assert torch.allclose(frame_f_curves(probs, gt), expected, atol=1e-12)


def test_inputs_may_be_lists_or_numpy_and_stats_round_trip():
    logits = confident(TOP_ROW)[None]
    from_tensor = mask_stats(logits, TOP_LEFT[None])
    assert mask_stats(logits.tolist(), TOP_LEFT[None].numpy().astype(bool)) == from_tensor
    assert MaskStats.from_dict(from_tensor.as_dict()) == from_tensor


def test_resize_logits_is_bilinear_on_logits():
    resized = resize_logits(torch.tensor([[[0.0, 4.0], [0.0, 4.0]]]), (4, 4))
    assert resized.shape == (1, 4, 4)
    assert resized[0, 0].tolist() == pytest.approx([0.0, 1.0, 3.0, 4.0])


def test_bad_inputs_raise_naming_the_item():
    with pytest.raises(ValueError, match=r"video 1: prediction shape \(1, 2, 2\) != ground truth.*resize_logits"):
        avs_scores([confident(TOP_LEFT)[None], torch.zeros(1, 2, 2)], [TOP_LEFT[None], TOP_LEFT[None]])
    with pytest.raises(ValueError, match="video 0: ground truth must be binary 0/1 .*mask > 0"):
        avs_scores([confident(TOP_LEFT)[None]], [255 * TOP_LEFT[None]])
    with pytest.raises(ValueError, match="sample 0: prediction logits contain NaN"):
        ref_avs_null_score([torch.full((1, 4, 4), float("nan"))])
    with pytest.raises(ValueError, match=r"expected \(T, H, W\)"):
        avs_scores([np.zeros((4, 4))], [np.zeros((4, 4))])
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        avs_scores([confident(TOP_LEFT)[None]] * 2, [TOP_LEFT[None]])
    with pytest.raises(ValueError, match="at least one"):
        avs_scores([], [])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        ref_avs_scores([confident(TOP_LEFT)[None]], [TOP_LEFT[None]], batch_size=0)
