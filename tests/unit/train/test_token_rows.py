"""Row-only training of the embeddings / LM head (``crab.train.token_rows``) and its store / restore."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from crab.config import load_params
from crab.errors import CrabError
from crab.train.loop import build_optimizer
from crab.train.token_rows import ROW_KEYS, load_row_weights, row_weights, train_rows_only, trained_rows


class _TinyLm(nn.Module):
    """An embedding and an untied LM head: what ``row_weights`` reads through the embedding accessors."""

    def __init__(self, vocab: int = 12, width: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.head = nn.Linear(width, vocab, bias=False)

    def get_input_embeddings(self) -> nn.Module:
        return self.embed

    def get_output_embeddings(self) -> nn.Module:
        return self.head

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.head(self.embed(ids)), ids.roll(1))


def test_only_the_rows_move_even_with_weight_decay() -> None:
    torch.manual_seed(0)
    model = _TinyLm()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = [9, 10, 11]
    for param in model.parameters():
        train_rows_only(param, rows)
    optim = dataclasses.replace(load_params().finetune_avs.optim, weight_decay=0.5, lr=0.1)
    optimizer = build_optimizer(list(model.named_parameters()), optim)
    assert all(g["weight_decay"] == 0.0 for g in optimizer.param_groups)  # decay would move the frozen rows
    for _ in range(5):
        optimizer.zero_grad()
        model(torch.tensor([0, 3, 9, 10, 11, 5])).backward()
        optimizer.step()
    other = torch.ones(12, dtype=torch.bool)
    other[rows] = False
    for name, value in model.state_dict().items():
        assert torch.equal(value[other], before[name][other]), name
        assert not torch.equal(value[rows], before[name][rows]), name
    assert trained_rows(model.embed.weight).tolist() == rows


def test_unmarked_matrices_are_still_decayed() -> None:
    model = _TinyLm()
    optim = dataclasses.replace(load_params().finetune_avs.optim, weight_decay=0.5)
    groups = build_optimizer(list(model.named_parameters()), optim).param_groups
    assert [g["weight_decay"] for g in groups] == [0.5]


def test_rows_round_trip_and_bad_rows_are_named() -> None:
    source, target = _TinyLm(), _TinyLm()
    stored = row_weights(source, [2, 7])
    assert list(stored) == list(ROW_KEYS) and stored[ROW_KEYS[1]].shape == (2, 4)
    load_row_weights(target, stored, "avs.safetensors")
    assert torch.equal(target.embed.weight[[2, 7]], source.embed.weight[[2, 7]])
    assert torch.equal(target.head.weight[[2, 7]], source.head.weight[[2, 7]])
    assert not torch.equal(target.embed.weight[0], source.embed.weight[0])
    with pytest.raises(CrabError, match=r"avs.safetensors: no token rows \(token_rows.lm_head missing\)"):
        load_row_weights(target, {k: v for k, v in stored.items() if k != ROW_KEYS[2]}, "avs.safetensors")
    wide = {**stored, ROW_KEYS[1]: torch.zeros(2, 5)}
    with pytest.raises(CrabError, match=r"avs.safetensors: token rows \(2, 5\) .* do not fit a \(12, 4\) matrix"):
        load_row_weights(target, wide, "avs.safetensors")
    with pytest.raises(CrabError, match="out of range"):
        train_rows_only(target.embed.weight, [12])
