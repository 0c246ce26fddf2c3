"""``benchmarks/generation_batch.py``: its comparison decodes every batch size and checks the answers against the first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from crab.features.store import FeatureStore
from crab.train.data import AvuieDataset
from crab.train.pretrain import build_crab_model


@pytest.fixture(scope="module")
def bench(load_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return load_benchmark("generation_batch")


def test_every_batch_size_decodes_the_same_answers(bench: ModuleType, workspace: Any, stage_dir: Path) -> None:
    params = workspace.params
    model, tokenizer = build_crab_model(params.base_models.out_dir, "tiny", seed=0)
    records = [r for r in workspace.records if r.task == "ave"][:5]
    prompts = AvuieDataset(
        records, tokenizer, model.config, FeatureStore(params.features.out_dir), params, with_targets=False
    )
    eos = tokenizer.eos_token_id
    rows = bench.compare_batch_sizes(model, prompts, [1, 2, 5], max_new_tokens=6, eos_id=eos, pad_id=eos, repeats=2)
    assert [row.batch_size for row in rows] == [1, 2, 5]
    assert all(row.identical and row.seconds > 0 for row in rows)
    assert len({row.num_new_tokens for row in rows}) == 1 and 5 <= rows[0].num_new_tokens <= 30
    ids, _ = bench.decode(model, prompts, 5, 6, eos, eos)
    assert ids != bench.decode(model, prompts, 5, 3, eos, eos)[0]  # the budget reaches the decoding


def test_it_refuses_an_empty_comparison(bench: ModuleType) -> None:
    with pytest.raises(ValueError, match="need batch sizes"):
        bench.compare_batch_sizes(None, None, [], max_new_tokens=4, eos_id=0, pad_id=0)
    with pytest.raises(ValueError, match="repeats >= 1"):
        bench.compare_batch_sizes(None, None, [4], max_new_tokens=4, eos_id=0, pad_id=0, repeats=0)
