"""Segmentation loss: hand-computed BCE / Dice / CE on 2x2 masks, validity mask, sample averaging, errors."""

from __future__ import annotations

import math

import pytest
import torch

from crab.models.mask_decoder import factorized_class_log_probs
from crab.models.seg_loss import (
    DICE_SMOOTH,
    binary_mask_losses,
    factorized_mask_losses,
    segmentation_loss,
    semantic_dice_loss,
    semantic_mask_loss,
)

LN2, LN3 = math.log(2), math.log(3)
WEIGHTS = {"bce_weight": 1.0, "dice_weight": 0.5, "ce_weight": 1.0}


def _binary_case() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits with sigmoids 0.5, 0.75 / 0.75, 0.25 against a top-row mask."""
    logits = torch.tensor([[0.0, LN3], [LN3, -LN3]])
    targets = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    return logits, targets


def test_binary_losses_by_hand() -> None:
    logits, targets = _binary_case()
    bce, dice = binary_mask_losses(logits[None], targets[None], smooth=1.0)
    # Pixels: -ln 0.5, -ln 0.75, -ln 0.25, -ln 0.75.
    expected_bce = (LN2 + math.log(4 / 3) + math.log(4) + math.log(4 / 3)) / 4
    # sum(p g) = 0.5 + 0.75, sum(p) = 2.25, sum(g) = 2: 1 - (2.5 + 1) / (4.25 + 1) = 1/3.
    torch.testing.assert_close(bce, torch.tensor([expected_bce]))
    torch.testing.assert_close(dice, torch.tensor([1 / 3]))


def test_binary_total_is_weighted_sum() -> None:
    logits, targets = _binary_case()
    out = segmentation_loss(logits[None, None, None], targets[None, None], dice_smooth=1.0, **WEIGHTS)
    expected_bce = (3 * LN2 + 2 * math.log(4 / 3)) / 4
    torch.testing.assert_close(out.bce, torch.tensor(expected_bce))
    torch.testing.assert_close(out.dice, torch.tensor(1 / 3))
    torch.testing.assert_close(out.loss, torch.tensor(expected_bce + 0.5 / 3))
    assert out.ce is None and (out.num_frames, out.num_samples) == (1, 1)


def test_factorized_losses_are_the_sounding_binary_losses_and_the_object_pixels_class_ce() -> None:
    # the binary case's logits as the sounding channel; class logits g: pixel (0, 0) favours class 2 (2:1)
    sounding, _ = _binary_case()
    classes = torch.zeros(2, 2, 2)  # (C-1, S, S) for C = 3
    classes[1, 0, 0] = LN2
    channels = torch.cat([sounding[None], classes])[None]  # (1, 3, 2, 2)
    targets = torch.tensor([[[2, 1], [0, 0]]])  # objects on the top row, as the binary case's mask
    bce, dice, ce = factorized_mask_losses(factorized_class_log_probs(channels), targets, smooth=1.0)
    expected_bce, expected_dice = binary_mask_losses(sounding[None], torch.tensor([[[1.0, 1.0], [0.0, 0.0]]]), 1.0)
    torch.testing.assert_close(bce, expected_bce)
    torch.testing.assert_close(dice, expected_dice)
    # object pixels only: (0, 0) class 2 at 2/3, (0, 1) class 1 at 1/2
    torch.testing.assert_close(ce, torch.tensor([(math.log(3 / 2) + LN2) / 2]))
    out = segmentation_loss(
        factorized_class_log_probs(channels)[None], targets[None], dice_smooth=1.0, factorized=True, **WEIGHTS
    )
    torch.testing.assert_close(out.loss, (expected_bce + 0.5 * expected_dice + ce)[0])


def test_factorized_class_ce_of_a_frame_without_objects_is_zero() -> None:
    channels = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    _, _, ce = factorized_mask_losses(factorized_class_log_probs(channels), torch.zeros(1, 3, 3, dtype=torch.long))
    assert ce.tolist() == [0.0]


def test_dice_of_an_empty_mask_predicted_empty_is_near_zero() -> None:
    logits = torch.full((1, 2, 2), -20.0)
    _, dice = binary_mask_losses(logits, torch.zeros(1, 2, 2), smooth=DICE_SMOOTH)
    assert 0 <= dice.item() < 1e-4  # 1 - 1e-3 / (4 sigmoid(-20) + 1e-3); finite thanks to the smoothing


def test_cross_entropy_by_hand() -> None:
    logits = torch.zeros(1, 3, 2, 2)  # (N, C, 2, 2)
    logits[0, 0, 0, 1] = LN2  # pixel (0, 1): probabilities 1/2, 1/4, 1/4
    logits[0, 0, 1, 0] = LN2  # pixel (1, 0): same
    targets = torch.tensor([[[2, 0], [1, 0]]])  # -ln 1/3, -ln 1/2, -ln 1/4, -ln 1/3
    expected = (2 * LN3 + LN2 + 2 * LN2) / 4
    torch.testing.assert_close(semantic_mask_loss(logits, targets), torch.tensor([expected]))
    out = segmentation_loss(logits[None], targets[None], bce_weight=1.0, dice_weight=0.5, ce_weight=2.0)
    torch.testing.assert_close(out.ce, torch.tensor(expected))
    # soft Dice over the present classes 0, 1, 2 (probabilities 1/3 at (0,0), (1,1); 1/2, 1/4, 1/4 at the others)
    dice = (6 / 11 + 10 / 13 + 9 / 13) / 3  # class 0: 1 - (5/3) / (11/3); 1: 1 - (1/2) / (13/6); 2: 1 - (2/3) / (13/6)
    torch.testing.assert_close(semantic_dice_loss(logits, targets, smooth=0.0), torch.tensor([dice]))
    torch.testing.assert_close(out.dice, torch.tensor(dice), atol=1e-3, rtol=0)  # with DICE_SMOOTH
    torch.testing.assert_close(out.loss, 2 * out.ce + 0.5 * out.dice)
    assert out.bce is None
    only_background = semantic_dice_loss(torch.full((1, 3, 2, 2), -5.0).index_fill(1, torch.tensor([0]), 5.0),
                                         torch.zeros(1, 2, 2, dtype=torch.long))  # fmt: skip
    assert only_background.item() < 1e-3  # an object-free frame predicted as background: only class 0 counts


def _constant_frames() -> tuple[torch.Tensor, torch.Tensor]:
    """(2, 2, 1, 2, 2) logits and targets whose per-frame BCE is ln 2, ln 4 / ln 4/3, (unlabelled garbage)."""
    logits = torch.empty(2, 2, 1, 2, 2)
    targets = torch.empty(2, 2, 2, 2)
    logits[0, 0], targets[0, 0] = 0.0, 1.0  # ln 2
    logits[0, 1], targets[0, 1] = LN3, 0.0  # ln 4
    logits[1, 0], targets[1, 0] = LN3, 1.0  # ln 4/3
    logits[1, 1], targets[1, 1] = float("nan"), 7.0  # no ground truth: never read
    return logits, targets


def test_validity_mask_and_sample_averaging() -> None:
    logits, targets = _constant_frames()
    valid = torch.tensor([[True, True], [True, False]])
    out = segmentation_loss(logits, targets, valid, bce_weight=1.0, dice_weight=0.0, ce_weight=1.0)
    per_sample = [(LN2 + math.log(4)) / 2, math.log(4 / 3)]
    torch.testing.assert_close(out.bce, torch.tensor(sum(per_sample) / 2))  # mean of sample means
    frame_mean = (LN2 + math.log(4) + math.log(4 / 3)) / 3
    assert abs(out.bce.item() - frame_mean) > 0.05  # not a mean over frames
    assert (out.num_frames, out.num_samples) == (3, 2)
    torch.testing.assert_close(out.loss, out.bce)


def test_unlabelled_sample_does_not_count_and_batch_size_does_not_scale_the_loss() -> None:
    logits, targets = _constant_frames()
    valid = torch.tensor([[True, True], [True, False]])
    base = segmentation_loss(logits, targets, valid, **WEIGHTS).loss
    padded = segmentation_loss(
        torch.cat([logits, logits[:1]]),
        torch.cat([targets, targets[:1]]),
        torch.cat([valid, torch.tensor([[False, False]])]),
        **WEIGHTS,
    )
    doubled = segmentation_loss(torch.cat([logits] * 2), torch.cat([targets] * 2), torch.cat([valid] * 2), **WEIGHTS)
    torch.testing.assert_close(padded.loss, base)
    assert padded.num_samples == 2
    torch.testing.assert_close(doubled.loss, base)  # Crab summed over samples: this would double


def test_unlabelled_frames_get_no_gradient() -> None:
    logits, targets = _constant_frames()
    logits = logits.nan_to_num(0.0).requires_grad_(True)
    valid = torch.tensor([[True, True], [True, False]])
    segmentation_loss(logits, targets, valid, **WEIGHTS).loss.backward()
    assert logits.grad[1, 1].abs().sum() == 0 and logits.grad[0, 0].abs().sum() > 0


def test_no_labelled_frame_gives_a_zero_that_backpropagates() -> None:
    logits = torch.randn(2, 1, 3, 2, 2, requires_grad=True)
    targets, valid = torch.zeros(2, 1, 2, 2, dtype=torch.long), torch.zeros(2, 1, dtype=torch.bool)
    out = segmentation_loss(logits, targets, valid, **WEIGHTS)
    out.loss.backward()
    assert out.loss.item() == 0 and out.num_frames == 0 and out.bce is None
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize(
    ("logits_shape", "targets", "message"),
    [
        ((1, 1, 1, 2, 2), torch.zeros(1, 1, 3, 3), "targets must be"),
        ((1, 1, 2, 2), torch.zeros(1, 1, 2, 2), r"logits must be \(B, T, C, S, S\)"),
        ((1, 1, 1, 2, 2), torch.full((1, 1, 2, 2), 2.0), r"in \[0, 1\]"),
        ((1, 1, 1, 2, 2), torch.ones(1, 1, 2, 2, dtype=torch.long), "float or bool"),
        ((1, 1, 3, 2, 2), torch.full((1, 1, 2, 2), 3), r"\[0, 3\), got \[3, 3\]"),
        ((1, 1, 3, 2, 2), torch.zeros(1, 1, 2, 2), "integer indices"),
    ],
)
def test_bad_inputs_raise(logits_shape: tuple, targets: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        segmentation_loss(torch.zeros(logits_shape), targets, **WEIGHTS)


def test_negative_weight_and_bad_validity_raise() -> None:
    logits, targets = torch.zeros(1, 1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="dice_weight must be non-negative"):
        segmentation_loss(logits, targets, bce_weight=1.0, dice_weight=-0.5, ce_weight=1.0)
    with pytest.raises(ValueError, match="valid must be a bool"):
        segmentation_loss(logits, targets, torch.ones(1, 1), **WEIGHTS)
