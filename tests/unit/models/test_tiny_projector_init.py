"""The tiny profile's Q-Former init scale: projected tokens must depend on the features from the start."""

from __future__ import annotations

import copy

import pytest
import torch

from crab.models.configuration_crab import CrabConfig, crab_llama2_7b_config, crab_tiny_config
from crab.models.modeling_crab import CrabForConditionalGeneration


def _tiny() -> CrabConfig:
    return crab_tiny_config(64, video_token_id=60, audio_token_id=61, image_token_id=62, bos_token_id=1, eos_token_id=2)


def _relative_spread(config: CrabConfig) -> float:
    """Std of the projected tokens across 16 random clips, relative to their mean absolute value."""
    torch.manual_seed(0)
    model = CrabForConditionalGeneration(config).eval()
    features = torch.randn(16, 49, config.vision_hidden_size, generator=torch.Generator().manual_seed(1))
    features[:, :8] += 3 * torch.randn(16, 1, config.vision_hidden_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        tokens = model.visual_projector(features)  # (16, Q, H)
    return float(tokens.std(0).mean() / tokens.abs().mean())


def test_tiny_qformers_use_a_width_scaled_init_and_the_paper_keeps_bert_init() -> None:
    tiny = _tiny()
    for qformer in (tiny.visual_qformer_config, tiny.audio_qformer_config):
        assert qformer.initializer_range == pytest.approx(qformer.hidden_size**-0.5)
    paper = crab_llama2_7b_config()
    assert paper.visual_qformer_config.initializer_range == paper.audio_qformer_config.initializer_range == 0.02


def test_tiny_projected_tokens_differ_across_clips_at_init() -> None:
    tiny = _tiny()
    bert_init = copy.deepcopy(tiny)
    bert_init.visual_qformer_config.initializer_range = 0.02
    spread, spread_bert_init = _relative_spread(tiny), _relative_spread(bert_init)
    assert spread > 0.1  # the features reach the LLM from the first step
    assert spread > 5 * spread_bert_init  # what the 0.02 init gave: tokens nearly independent of the clip
