"""``build_crab_model``: the switches of ``params.yaml`` that shape the fresh Crab model (tiny workspace, conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crab.train.pretrain import build_crab_model


@pytest.mark.parametrize("positions", [True, False])
def test_pretrain_switch_gives_one_row_per_patch_of_the_base_clip_or_none(workspace: Any, positions: bool) -> None:
    """``pretrain.visual_feature_positions`` reaches the built model; the row count is the base CLIP's patch grid."""
    model, _ = build_crab_model(
        workspace.params.base_models.out_dir, "tiny", seed=0, visual_feature_positions=positions
    )
    manifest = json.loads((Path(workspace.params.base_models.out_dir) / "manifest.json").read_text(encoding="utf-8"))
    patches = manifest["vision"]["num_patches"]
    assert model.config.visual_feature_positions == (patches if positions else 0)
    assert (model.visual_projector.feature_position is not None) is positions
    assert model.audio_projector.feature_position is None
