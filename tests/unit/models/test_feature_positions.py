"""Learned position embeddings on the projectors' input tokens (``CrabConfig.visual_feature_positions``)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from crab.models.configuration_crab import CrabConfig, crab_llama2_7b_config, crab_tiny_config
from crab.models.modeling_crab import CrabForConditionalGeneration

WIDTH = 64  # the tiny config's feature widths
PATCHES = 49  # the tiny CLIP's 7 x 7 patches


def _tiny(positions: int = PATCHES) -> CrabConfig:
    config = crab_tiny_config(64, video_token_id=60, audio_token_id=61, image_token_id=62).to_dict()
    return CrabConfig(**{**config, "visual_feature_positions": positions})


def _tokens(seed: int, segments: int, tokens: int) -> torch.Tensor:
    return torch.randn(segments, tokens, WIDTH, generator=torch.Generator().manual_seed(seed))  # (S, N, D)


def test_tiny_visual_projector_has_one_zero_initialised_row_per_patch_and_audio_none() -> None:
    torch.manual_seed(0)
    model = CrabForConditionalGeneration(_tiny())
    assert model.config.visual_feature_positions == PATCHES
    assert model.visual_projector.feature_position.shape == (PATCHES, WIDTH)
    assert torch.equal(model.visual_projector.feature_position, torch.zeros(PATCHES, WIDTH))
    assert model.audio_projector.feature_position is None
    assert crab_llama2_7b_config().visual_feature_positions == 0  # Crab has no such embedding


def test_zero_rows_give_the_projector_without_positions() -> None:
    """Training starts from exactly the projector it replaces; the state dicts differ by the one tensor."""
    torch.manual_seed(0)
    model = CrabForConditionalGeneration(_tiny()).eval()
    plain = CrabForConditionalGeneration(_tiny(positions=0)).eval()
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert missing == [] and unexpected == ["visual_projector.feature_position"]
    features = _tokens(1, 3, PATCHES)
    with torch.no_grad():
        torch.testing.assert_close(model.visual_projector(features), plain.visual_projector(features))


def test_positions_let_the_projector_see_token_order() -> None:
    """Without positions the Q-Former's cross-attention ignores the order of the keys; with them it does not."""
    torch.manual_seed(0)
    model = CrabForConditionalGeneration(_tiny()).eval()
    features = _tokens(2, 2, PATCHES)
    shuffled = features[:, torch.randperm(PATCHES, generator=torch.Generator().manual_seed(3))]
    projector = model.visual_projector
    with torch.no_grad():
        torch.testing.assert_close(projector(features), projector(shuffled), atol=1e-5, rtol=1e-5)
        projector.feature_position.copy_(torch.randn(PATCHES, WIDTH, generator=torch.Generator().manual_seed(4)))
        assert not torch.allclose(projector(features), projector(shuffled), atol=1e-3)


def test_row_i_is_added_to_token_i_after_the_layer_norm() -> None:
    torch.manual_seed(0)
    projector = CrabForConditionalGeneration(_tiny()).eval().visual_projector
    rows = torch.randn(PATCHES, WIDTH, generator=torch.Generator().manual_seed(5))
    features = _tokens(6, 2, PATCHES)
    with torch.no_grad():
        projector.feature_position.copy_(rows)
        ours = projector(features)
        reference = copy.deepcopy(projector)
        reference.feature_position = None
        hook = reference.feature_norm.register_forward_hook(lambda _m, _i, out: out + rows)
        expected = reference(features)
        hook.remove()
    torch.testing.assert_close(ours, expected)


def test_a_token_count_other_than_the_row_count_is_an_error_naming_both() -> None:
    """Features of another CLIP grid must not get positions that belong to other patches."""
    torch.manual_seed(0)
    projector = CrabForConditionalGeneration(_tiny()).eval().visual_projector
    with pytest.raises(ValueError, match=f"{PATCHES} position embeddings but got {PATCHES + 1} tokens"):
        projector(_tokens(6, 2, PATCHES + 1))


def test_rows_survive_save_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CrabForConditionalGeneration(_tiny())
    with torch.no_grad():
        model.visual_projector.feature_position.normal_()
    model.save_pretrained(tmp_path)
    reloaded = CrabForConditionalGeneration.from_pretrained(tmp_path)
    assert reloaded.config.visual_feature_positions == PATCHES
    assert torch.equal(reloaded.visual_projector.feature_position, model.visual_projector.feature_position)


def test_negative_count_is_an_error_naming_the_field() -> None:
    config = _tiny().to_dict()
    config["visual_feature_positions"] = -1
    with pytest.raises(ValueError, match="visual_feature_positions must be >= 0"):
        CrabConfig(**config)
