"""``benchmarks/learning_curve.py``: its schedule, its batches and its training steps do what the curve claims."""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from crab.models.modeling_crab import set_trainable
from crab.train.data import training_dataset
from crab.train.pretrain import build_crab_model


@pytest.fixture(scope="module")
def bench(load_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return load_benchmark("learning_curve")


def test_learning_rate_warms_up_linearly_then_stays_constant(bench: ModuleType) -> None:
    assert [bench.lr_factor(s, 4) for s in range(7)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0]
    assert bench.lr_factor(0, 0) == 1.0  # no warm-up


def test_batches_cover_every_example_once_per_epoch_in_a_seeded_order(bench: ModuleType) -> None:
    first = list(islice(bench.batch_indices(10, 3, seed=1), 6))  # two epochs of three full batches
    for epoch in (first[:3], first[3:]):
        flat = [i for batch in epoch for i in batch]
        assert len(flat) == len(set(flat)) == 9  # one example of the ten dropped with the partial batch
    assert first[:3] != first[3:]  # each epoch its own permutation
    assert first == list(islice(bench.batch_indices(10, 3, seed=1), 6))
    assert first != list(islice(bench.batch_indices(10, 3, seed=2), 6))
    with pytest.raises(ValueError, match="2 training examples for a batch of 3"):
        next(bench.batch_indices(2, 3, seed=0))


def _trained(bench: ModuleType, workspace: Any, steps: int) -> tuple[dict[str, torch.Tensor], list[float]]:
    model, tokenizer = build_crab_model(workspace.params.base_models.out_dir, "tiny", seed=0)
    set_trainable(model, llm="full", projectors=True)
    dataset = training_dataset(workspace.params, ["ave"], tokenizer, model.config, answers="direct")
    losses = [
        loss
        for _, loss in bench.train_steps(
            model, dataset, tokenizer.eos_token_id, batch_size=2, lr=1e-3, num_steps=steps, seed=0
        )
    ]
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, losses


def test_train_steps_change_the_llm_and_projectors_and_are_deterministic(
    bench: ModuleType, workspace: Any, stage_dir: Path
) -> None:
    before, _ = _trained(bench, workspace, 0)
    after, losses = _trained(bench, workspace, 3)
    assert len(losses) == 3 and all(loss > 0 for loss in losses)
    for prefix in ("language_model.", "visual_projector.", "audio_projector."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)), prefix
    again, losses_again = _trained(bench, workspace, 3)
    assert losses_again == losses
    assert all(torch.equal(after[k], again[k]) for k in after)
