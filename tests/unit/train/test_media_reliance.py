"""``benchmarks/media_reliance.py``: the own- vs swapped-media losses it reports are what they claim to be."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from crab.models.collator import collate
from crab.train.data import training_dataset
from crab.train.pretrain import build_crab_model


@pytest.fixture(scope="module")
def bench(load_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return load_benchmark("media_reliance")


def test_swap_gives_each_sample_the_previous_samples_features(bench: ModuleType) -> None:
    stacked = torch.arange(3.0).view(3, 1, 1, 1)  # (B, S, N, D)
    listed = [torch.full((1, 2, 1), float(i)) for i in range(3)]
    batch = {"input_ids": torch.zeros(3, 4), "video_features": stacked, "audio_features": listed}
    swapped = bench._swap_media(batch)
    assert swapped["video_features"].flatten().tolist() == [2.0, 0.0, 1.0]
    assert [float(f[0, 0, 0]) for f in swapped["audio_features"]] == [2.0, 0.0, 1.0]
    assert swapped["input_ids"] is batch["input_ids"]  # the prompts are unchanged
    assert batch["video_features"].flatten().tolist() == [0.0, 1.0, 2.0]  # the input batch is not modified


def _measure(bench: ModuleType, model: Any, tokenizer: Any, params: Any) -> dict:
    dataset = training_dataset(params, ["ave"], tokenizer, model.config, answers="reasoning")
    return bench.measure_task(model, dataset, tokenizer.eos_token_id, tokenizer, num_records=4, batch_size=4)


def test_gain_is_zero_exactly_when_the_model_cannot_see_the_media(
    bench: ModuleType, workspace: Any, stage_dir: Path
) -> None:
    model, tokenizer = build_crab_model(workspace.params.base_models.out_dir, "tiny", seed=0)
    model.eval()
    seeing = _measure(bench, model, tokenizer, workspace.params)
    assert seeing["records"] == 4 and seeing["all"]["tokens"] > 0
    assert seeing["all"]["tokens"] == seeing["digits"]["tokens"] + seeing["other"]["tokens"]
    assert abs(seeing["all"]["gain"]) > 1e-4  # a random model's answers still depend on its input tokens
    with torch.no_grad():  # every media token becomes the same vector: swapping changes nothing
        for projector in (model.visual_projector, model.audio_projector):
            projector.linear_2.weight.zero_()
    blind = _measure(bench, model, tokenizer, workspace.params)
    for part in ("all", "digits", "other"):
        if blind[part]["tokens"]:
            assert blind[part]["gain"] == pytest.approx(0.0, abs=1e-6)
            assert blind[part]["loss_own"] == pytest.approx(blind[part]["loss_swapped"], abs=1e-6)
    # the reported loss is the training loss: the model's own token-mean cross-entropy over the same records
    dataset = training_dataset(workspace.params, ["ave"], tokenizer, model.config, answers="reasoning")
    batch = collate([dataset[i] for i in range(4)], pad_token_id=tokenizer.eos_token_id)
    with torch.no_grad():
        assert blind["all"]["loss_own"] == pytest.approx(model(**batch).loss.item(), rel=1e-5)
