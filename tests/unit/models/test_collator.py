"""Placeholder expansion, label masking and left-padded collation of Crab batches (crab-reference 1.6)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from crab.models.collator import (
    IGNORE_INDEX,
    CrabExample,
    build_example,
    collate,
    expand_placeholders,
    pad_token_id,
    placeholder_counts,
)
from crab.models.configuration_crab import CrabConfig, crab_tiny_config

VIDEO, AUDIO, IMAGE = 5, 6, 7
PAD, BOS, EOS = 0, 1, 2


@pytest.fixture(scope="module")
def config() -> CrabConfig:
    return crab_tiny_config(64, video_token_id=VIDEO, audio_token_id=AUDIO, image_token_id=IMAGE, num_queries=8)


def test_expand_placeholders_repeats_only_listed_ids() -> None:
    assert expand_placeholders([1, 5, 9, 6, 5], {5: 3, 6: 2}) == [1, 5, 5, 5, 9, 6, 6, 5, 5, 5]


def test_expand_placeholders_rejects_zero_count() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        expand_placeholders([5], {5: 0})


def test_placeholder_counts_follow_queries(config: CrabConfig) -> None:
    counts = placeholder_counts(config, num_frames=10, num_audio_clips=5)
    assert counts == {VIDEO: 10 * 8, AUDIO: 5 * 8, IMAGE: 8}


def test_build_example_expands_from_feature_shapes_and_masks_prompt(config: CrabConfig) -> None:
    prompt = [BOS, 20, VIDEO, 21, AUDIO, 22]
    answer = [30, 31, EOS]
    example = build_example(
        prompt, answer, config, video_features=torch.zeros(3, 4, 64), audio_features=torch.zeros(2, 5, 64)
    )
    expected_ids = [BOS, 20] + [VIDEO] * 24 + [21] + [AUDIO] * 16 + [22] + answer
    assert example.input_ids == expected_ids
    prompt_len = len(expected_ids) - len(answer)
    assert example.labels == [IGNORE_INDEX] * prompt_len + answer
    placeholder_labels = [lab for tok, lab in zip(example.input_ids, example.labels) if tok in (VIDEO, AUDIO)]
    assert placeholder_labels and set(placeholder_labels) == {IGNORE_INDEX}


def test_build_example_image_expands_to_visual_queries(config: CrabConfig) -> None:
    example = build_example([BOS, IMAGE, 20], [], config, image_features=torch.zeros(4, 64))
    assert example.input_ids == [BOS] + [IMAGE] * 8 + [20]
    assert set(example.labels) == {IGNORE_INDEX}


@pytest.mark.parametrize(
    ("prompt", "kwargs", "message"),
    [
        ([BOS, 20], {"video_features": torch.zeros(1, 4, 64)}, "0 <video> placeholders but features"),
        ([BOS, AUDIO, 20], {}, "1 <audio> placeholders but no features"),
        ([BOS, VIDEO, VIDEO], {"video_features": torch.zeros(1, 4, 64)}, "2 <video> placeholders"),
    ],
)
def test_build_example_checks_placeholders(config: CrabConfig, prompt: list[int], kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_example(prompt, [30], config, **kwargs)


def test_build_example_rejects_placeholder_in_answer(config: CrabConfig) -> None:
    with pytest.raises(ValueError, match="answer contains the <image> placeholder"):
        build_example([BOS, 20], [IMAGE, EOS], config)


def test_example_checks_lengths_and_ranks() -> None:
    with pytest.raises(ValueError, match="labels has 1"):
        CrabExample(input_ids=[1, 2], labels=[1])
    with pytest.raises(ValueError, match="audio_features must have 3 dimensions"):
        CrabExample(input_ids=[1], labels=[1], audio_features=torch.zeros(2, 3))


def test_collate_left_pads_with_positions_from_mask() -> None:
    short = CrabExample(input_ids=[1, 40], labels=[IGNORE_INDEX, 40])
    long = CrabExample(input_ids=[1, 41, 42, 43], labels=[IGNORE_INDEX, IGNORE_INDEX, 42, 43])
    batch = collate([short, long], pad_token_id=PAD)
    assert batch["input_ids"].tolist() == [[PAD, PAD, 1, 40], [1, 41, 42, 43]]
    assert batch["attention_mask"].tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    assert batch["labels"].tolist() == [[-100, -100, -100, 40], [-100, -100, 42, 43]]
    assert batch["position_ids"].tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]
    assert all(t.dtype == torch.long for t in batch.values())
    assert set(batch) == {"input_ids", "attention_mask", "position_ids", "labels"}


def test_collate_stacks_equal_features_and_lists_ragged_ones() -> None:
    video = [torch.full((2, 4, 8), float(i)) for i in range(2)]
    samples = [
        CrabExample(input_ids=[1], labels=[1], video_features=video[0], audio_features=torch.zeros(3, 5, 8)),
        CrabExample(input_ids=[1], labels=[1]),
        CrabExample(input_ids=[1], labels=[1], video_features=video[1], audio_features=torch.ones(2, 6, 8)),
    ]
    batch = collate(samples, pad_token_id=PAD)
    assert isinstance(batch["video_features"], torch.Tensor)
    assert batch["video_features"].shape == (2, 2, 4, 8)
    assert torch.equal(batch["video_features"][1], video[1])  # rows follow sample order, skipping the gap
    assert isinstance(batch["audio_features"], list)
    assert [tuple(t.shape) for t in batch["audio_features"]] == [(3, 5, 8), (2, 6, 8)]
    assert "image_features" not in batch


def test_collate_rejects_empty_batch() -> None:
    with pytest.raises(ValueError, match="empty batch"):
        collate([], pad_token_id=PAD)


def test_pad_token_id_is_the_pad_token_else_eos() -> None:
    assert pad_token_id(SimpleNamespace(pad_token_id=3, eos_token_id=2)) == 3
    assert pad_token_id(SimpleNamespace(pad_token_id=0, eos_token_id=2)) == 0  # id 0 is a pad token, not "none"
    assert pad_token_id(SimpleNamespace(pad_token_id=None, eos_token_id=2)) == 2
