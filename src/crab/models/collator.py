"""Turning tokenised prompts + pre-computed features into Crab model batches (crab-reference section 1.6).

Each ``<video>`` / ``<audio>`` / ``<image>`` placeholder in a prompt is *expanded* to one placeholder token per
projected feature token it stands for (``<video>`` -> T frames x ``num_visual_queries``, ``<audio>`` -> C clips x
``num_audio_queries``, ``<image>`` -> ``num_visual_queries``), as transformers' LLaVA processors do, so the model
can merge features with one ``masked_scatter`` after a count check. Labels are -100 over the prompt (and so
over every placeholder); only answer tokens (the caller appends EOS to the answer) carry loss. Batches are
LEFT-padded (attention mask 0, labels -100, ``position_ids = cumsum(attention_mask) - 1`` clamped at 0),
which suits both training and batched generation.

How it differs from the authors' code: Crab splices features into embeddings per sample inside the model
and pads afterwards; here the sequence layout is fixed by the data side, checked (one placeholder per given
modality, counts from the actual feature shapes), and the features travel beside the ids, stacked when a
batch's shapes agree and as a list (one tensor per sample) when they do not (mixed tasks: 5 or 10 clips,
1 s or 2 s clips).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from crab.models.configuration_crab import CrabConfig

__all__ = [
    "IGNORE_INDEX",
    "CrabExample",
    "build_example",
    "collate",
    "expand_placeholders",
    "pad_token_id",
    "placeholder_counts",
]

#: Label value that carries no loss (transformers' cross-entropy ``ignore_index``).
IGNORE_INDEX = -100

_MODALITIES = ("video", "audio", "image")
_FEATURE_RANKS = {"video": 3, "audio": 3, "image": 2}


@dataclass(frozen=True)
class CrabExample:
    """One training / inference example with expanded placeholders.

    Attributes:
        input_ids: prompt + answer ids, placeholders expanded.
        labels: same length; -100 on the prompt, answer ids elsewhere.
        video_features: (T, P, Dv) per-frame CLIP patch tokens, or ``None``.
        audio_features: (C, N, Da) per-clip BEATs tokens, or ``None``.
        image_features: (P, Dv) CLIP patch tokens of one image, or ``None``.
        mask_features: (L, T, P, Dv) the segmentation decoder's L CLIP levels of the T frames it segments (a
            sample whose answer holds the mask tokens, in a stage that trains the decoder), or ``None``.
        mask_targets: (T, S, S) their ground truth (float 0 / 1; int64 class indices for a class head), with
            ``mask_features``.
    """

    input_ids: list[int]
    labels: list[int]
    video_features: torch.Tensor | None = None
    audio_features: torch.Tensor | None = None
    image_features: torch.Tensor | None = None
    mask_features: torch.Tensor | None = None
    mask_targets: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(f"input_ids has {len(self.input_ids)} tokens but labels has {len(self.labels)}")
        for modality in _MODALITIES:
            features = getattr(self, f"{modality}_features")
            if features is not None and features.ndim != _FEATURE_RANKS[modality]:
                raise ValueError(
                    f"{modality}_features must have {_FEATURE_RANKS[modality]} dimensions, "
                    f"got shape {tuple(features.shape)}"
                )
        if (self.mask_features is None) != (self.mask_targets is None):
            raise ValueError("mask_features and mask_targets go together")
        if self.mask_features is not None and self.mask_targets is not None:
            if self.mask_features.ndim != 4 or self.mask_targets.ndim != 3:
                raise ValueError(
                    f"mask_features must be (L, T, P, Dv) and mask_targets (T, S, S), got "
                    f"{tuple(self.mask_features.shape)} and {tuple(self.mask_targets.shape)}"
                )
            frames, targets = self.mask_features.shape[1], self.mask_targets.shape[0]
            if frames != targets:
                raise ValueError(f"mask_features cover {frames} frames, mask_targets {targets}")


def expand_placeholders(input_ids: list[int], counts: dict[int, int]) -> list[int]:
    """Repeat each placeholder token as many times as the feature tokens it stands for.

    Args:
        input_ids: token ids with single placeholders.
        counts: placeholder id -> number of copies (>= 1); ids not in ``counts`` are kept as they are.

    Returns:
        The expanded ids.

    Raises:
        ValueError: if a count is below 1.
    """
    for token_id, count in counts.items():
        if count < 1:
            raise ValueError(f"placeholder {token_id} must expand to at least 1 token, got {count}")
    expanded: list[int] = []
    for token_id in input_ids:
        expanded.extend([token_id] * counts.get(token_id, 1))
    return expanded


def placeholder_counts(config: CrabConfig, *, num_frames: int = 1, num_audio_clips: int = 1) -> dict[int, int]:
    """Projected tokens per placeholder for a sample with ``num_frames`` frames and ``num_audio_clips`` clips.

    Args:
        config: the model config (placeholder ids, queries per segment).
        num_frames: frames T of the sample's video.
        num_audio_clips: clips C of the sample's audio.

    Returns:
        ``{video_token_id: T * num_visual_queries, audio_token_id: C * num_audio_queries,
        image_token_id: num_visual_queries}``.
    """
    return {
        config.video_token_id: num_frames * config.num_visual_queries,
        config.audio_token_id: num_audio_clips * config.num_audio_queries,
        config.image_token_id: config.num_visual_queries,
    }


def build_example(
    prompt_ids: Sequence[int],
    answer_ids: Sequence[int],
    config: CrabConfig,
    *,
    video_features: torch.Tensor | None = None,
    audio_features: torch.Tensor | None = None,
    image_features: torch.Tensor | None = None,
) -> CrabExample:
    """Expand the prompt's placeholders to the features' sizes and mask the prompt out of the labels.

    Args:
        prompt_ids: chat-templated instruction ids (BOS included), one placeholder per given modality.
        answer_ids: target ids (EOS included); empty for inference.
        config: the model config.
        video_features: (T, P, Dv) or ``None``.
        audio_features: (C, N, Da) or ``None``.
        image_features: (P, Dv) or ``None``.

    Returns:
        The example; ``labels`` is -100 over the whole (expanded) prompt.

    Raises:
        ValueError: if a given modality's placeholder does not occur exactly once in the prompt, a
            placeholder occurs without features, or the answer contains a placeholder.
    """
    features = {"video": video_features, "audio": audio_features, "image": image_features}
    token_ids = {"video": config.video_token_id, "audio": config.audio_token_id, "image": config.image_token_id}
    for modality in _MODALITIES:
        occurrences = sum(1 for t in prompt_ids if t == token_ids[modality])
        expected = 0 if features[modality] is None else 1
        if occurrences != expected:
            raise ValueError(
                f"prompt has {occurrences} <{modality}> placeholders but "
                f"{'features' if expected else 'no features'} were given for {modality}"
            )
        if token_ids[modality] in answer_ids:
            raise ValueError(f"answer contains the <{modality}> placeholder")
    counts = placeholder_counts(
        config,
        num_frames=1 if video_features is None else video_features.shape[0],
        num_audio_clips=1 if audio_features is None else audio_features.shape[0],
    )
    prompt = expand_placeholders(list(prompt_ids), counts)
    return CrabExample(
        input_ids=prompt + list(answer_ids),
        labels=[IGNORE_INDEX] * len(prompt) + list(answer_ids),
        video_features=video_features,
        audio_features=audio_features,
        image_features=image_features,
    )


def pad_token_id(tokenizer: Any) -> int:
    """The id batches are padded with: the tokenizer's pad token, else its EOS (Llama-2's tokenizer has no pad
    token; the tiny one pads with EOS)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def collate(samples: Sequence[CrabExample], pad_token_id: int) -> dict[str, torch.Tensor | list[torch.Tensor]]:
    """Left-pad a batch and gather its features in placeholder order.

    Args:
        samples: the batch's examples.
        pad_token_id: id written into padding positions (Crab: EOS).

    Returns:
        ``input_ids``, ``attention_mask``, ``position_ids``, ``labels`` (all (B, L), long) and, for each
        modality present in the batch, ``<modality>_features``: stacked (B_m, ...) when all its tensors have
        one shape, else a list of per-sample tensors (the model accepts both). Modalities absent from the
        whole batch are left out, so ``model(**batch)`` works. Samples with ``mask_features`` add
        ``mask_features`` (a list of L (B_s, T, P, Dv) tensors, the model's layout) and ``mask_targets``
        (B_s, T, S, S), in batch order; the training step pops the targets before calling the model.

    Raises:
        ValueError: on an empty batch.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    length = max(len(s.input_ids) for s in samples)
    input_ids = torch.full((len(samples), length), pad_token_id, dtype=torch.long)  # (B, L)
    labels = torch.full((len(samples), length), IGNORE_INDEX, dtype=torch.long)  # (B, L)
    attention_mask = torch.zeros((len(samples), length), dtype=torch.long)  # (B, L)
    for row, sample in enumerate(samples):
        start = length - len(sample.input_ids)  # left padding
        input_ids[row, start:] = torch.tensor(sample.input_ids, dtype=torch.long)
        labels[row, start:] = torch.tensor(sample.labels, dtype=torch.long)
        attention_mask[row, start:] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, L), 0 on pads
    batch: dict[str, torch.Tensor | list[torch.Tensor]] = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "labels": labels,
    }
    for modality in _MODALITIES:
        tensors = [f for s in samples if (f := getattr(s, f"{modality}_features")) is not None]
        if not tensors:
            continue
        same_shape = all(t.shape == tensors[0].shape for t in tensors)
        batch[f"{modality}_features"] = torch.stack(tensors) if same_shape else tensors
    masked = [s for s in samples if s.mask_features is not None]
    if masked:
        levels = torch.stack([s.mask_features for s in masked], dim=1)  # (L, B_s, T, P, Dv)
        batch["mask_features"] = list(levels.unbind(0))
        batch["mask_targets"] = torch.stack([s.mask_targets for s in masked])  # (B_s, T, S, S)
    return batch
