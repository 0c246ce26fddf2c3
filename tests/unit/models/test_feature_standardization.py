"""The tiny profile's feature standardisation in the projectors (``CrabConfig.standardize_features``)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from crab.models.configuration_crab import CrabConfig, crab_llama2_7b_config, crab_tiny_config
from crab.models.modeling_crab import CrabForConditionalGeneration

WIDTH = 64  # the tiny config's default feature widths


def _tiny() -> CrabConfig:
    return crab_tiny_config(64, video_token_id=60, audio_token_id=61, image_token_id=62, bos_token_id=1, eos_token_id=2)


def _stats(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(WIDTH, generator=g), 0.5 + torch.rand(WIDTH, generator=g)


def test_standardising_projector_equals_crabs_projector_fed_standardised_features() -> None:
    config = _tiny()
    assert config.standardize_features
    torch.manual_seed(0)
    model = CrabForConditionalGeneration(config).eval()
    plain_config = copy.deepcopy(config)
    plain_config.standardize_features = False
    plain = CrabForConditionalGeneration(plain_config).eval()
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert missing == [] and sorted(unexpected) == sorted(
        f"{p}_projector.feature_{s}" for p in ("visual", "audio") for s in ("mean", "std")
    )
    mean, std = _stats(1)
    model.visual_projector.set_feature_statistics(mean, std)
    features = mean + std * torch.randn(3, 49, WIDTH, generator=torch.Generator().manual_seed(2))  # (S, N, D)
    with torch.no_grad():
        ours = model.visual_projector(features)  # (S, Q, H)
        crabs = plain.visual_projector((features - mean) / std)
        unstandardised = plain.visual_projector(features)
    torch.testing.assert_close(ours, crabs)
    assert not torch.allclose(ours, unstandardised, atol=1e-3)  # the statistics are really applied


def test_statistics_start_as_identity_and_survive_save_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CrabForConditionalGeneration(_tiny())
    assert torch.equal(model.audio_projector.feature_mean, torch.zeros(WIDTH))
    assert torch.equal(model.audio_projector.feature_std, torch.ones(WIDTH))
    mean, std = _stats(3)
    model.audio_projector.set_feature_statistics(mean, std)
    model.save_pretrained(tmp_path)
    reloaded = CrabForConditionalGeneration.from_pretrained(tmp_path)
    assert torch.equal(reloaded.audio_projector.feature_mean, mean)
    assert torch.equal(reloaded.audio_projector.feature_std, std)
    assert torch.equal(reloaded.visual_projector.feature_std, torch.ones(WIDTH))


def test_the_paper_model_has_no_statistics() -> None:
    with torch.device("meta"):
        paper = CrabForConditionalGeneration(crab_llama2_7b_config())
    assert not any("feature_mean" in k or "feature_std" in k for k in paper.state_dict())
    with pytest.raises(ValueError, match="does not standardise"):
        paper.visual_projector.set_feature_statistics(torch.zeros(1024), torch.ones(1024))


@pytest.mark.parametrize(
    ("mean", "std", "match"),
    [
        (torch.zeros(WIDTH + 1), torch.ones(WIDTH), "shape"),
        (torch.zeros(WIDTH), torch.zeros(WIDTH), "positive std"),
        (torch.full((WIDTH,), float("nan")), torch.ones(WIDTH), "finite"),
    ],
)
def test_bad_statistics_are_rejected(mean: torch.Tensor, std: torch.Tensor, match: str) -> None:
    projector = CrabForConditionalGeneration(_tiny()).visual_projector
    with pytest.raises(ValueError, match=match):
        projector.set_feature_statistics(mean, std)
