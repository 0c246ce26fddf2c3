"""The tiny profile's language phase data: text-only chat examples with the loss on the answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crab.models.base import BaseModelPaths, load_tokenizer
from crab.train.data import encode_prompt, encode_target
from crab.train.language import LanguageDataset


@pytest.fixture(scope="module")
def tokenizer(workspace: Any) -> Any:
    return load_tokenizer(BaseModelPaths.of(workspace.params.base_models.out_dir).tokenizer)


def test_examples_are_prompt_then_target_with_loss_on_the_target_only(
    workspace: Any, stage_dir: Path, tokenizer: Any
) -> None:
    records = [r for r in workspace.records if r.split == "train"][:3]
    dataset = LanguageDataset.of(records, tokenizer)
    assert len(dataset) == 3
    batch = dataset.collate([dataset[i] for i in range(3)])
    lengths = [len(encode_prompt(tokenizer, r.instruction)) + len(encode_target(tokenizer, r.target)) for r in records]
    assert batch["input_ids"].shape == batch["labels"].shape == (3, max(lengths))
    for row, (record, length) in enumerate(zip(records, lengths, strict=True)):
        prompt = encode_prompt(tokenizer, record.instruction)
        target = encode_target(tokenizer, record.target)
        assert batch["input_ids"][row, :length].tolist() == prompt + target
        assert batch["attention_mask"][row].tolist() == [1] * length + [0] * (max(lengths) - length)
        assert batch["labels"][row].tolist() == [-100] * len(prompt) + target + [-100] * (max(lengths) - length)
        assert target[-1] == tokenizer.eos_token_id  # the answer's end is learned too
