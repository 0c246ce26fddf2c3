"""The tiny profile's language phase: the random-init LLM learns the AV-UIE language from text alone.

The paper profile starts from Llama-2-chat, which already speaks; the tiny profile's LLM is random. Before
the projectors align (``pretrain``), the tiny LLM is trained as a plain causal LM on the target texts of
the pre-training mixture (captions and answers with their reasoning), without prompts or feature tokens:
``<s> target </s>``, loss on every real token.

Why a separate phase rather than training the LLM jointly with the projectors: jointly, the random LLM
learns the answer templates long before it learns to read the feature tokens, and the projector output
drifted to a large constant (AV-Synth, 1800 joint steps: visual token norm 0.21 -> 15.3, across-clip spread
3 %; AVE accuracy 0.08 against 0.24 for all-background). With the LLM taught first and then frozen, the
projectors align on a fixed reader (AVE accuracy 0.48 after 1500 alignment steps of the same harness).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from crab.avuie.schema import AvuieRecord
from crab.config import OptimConfig
from crab.train.data import encode_target
from crab.train.loop import FitResult, fit

__all__ = ["LanguageDataset", "learn_language"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LanguageDataset:
    """Target texts as token ids ``<s> target </s>`` (map-style dataset; tokenised once).

    Args:
        records: the records whose targets are the corpus.
        tokenizer: the model's tokenizer (needs BOS and EOS).

    Raises:
        ValueError: the tokenizer lacks BOS or EOS.
    """

    ids: tuple[tuple[int, ...], ...]
    pad_token_id: int

    @classmethod
    def of(cls, records: Sequence[AvuieRecord], tokenizer: PreTrainedTokenizerBase) -> LanguageDataset:
        if tokenizer.bos_token_id is None:
            raise ValueError(f"{tokenizer.name_or_path or 'tokenizer'}: no BOS token")
        ids = tuple((tokenizer.bos_token_id, *encode_target(tokenizer, r.target)) for r in records)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return cls(ids, pad)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[int, ...]:
        return self.ids[index]

    def collate(self, examples: list[tuple[int, ...]]) -> dict[str, torch.Tensor]:
        """Right-padded batch: ``input_ids``, ``attention_mask`` and ``labels`` (-100 on padding), (B, L) each."""
        length = max(len(e) for e in examples)
        input_ids = torch.full((len(examples), length), self.pad_token_id, dtype=torch.long)  # (B, L)
        attention_mask = torch.zeros((len(examples), length), dtype=torch.long)  # (B, L)
        for row, example in enumerate(examples):
            input_ids[row, : len(example)] = torch.tensor(example)
            attention_mask[row, : len(example)] = 1
        labels = input_ids.masked_fill(attention_mask == 0, -100)  # (B, L)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def learn_language(
    llm: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[AvuieRecord],
    optim: OptimConfig,
    *,
    seed: int,
    work_dir: Path,
    fingerprint: dict[str, Any],
) -> FitResult:
    """Train every parameter of ``llm`` as a causal LM on the records' targets; resumable like any ``fit``.

    The trainable flags of ``llm`` are restored afterwards, so a caller's frozen LLM stays frozen for the
    next phase.

    Args:
        llm: the ``LlamaForCausalLM`` inside the Crab model (updated in place).
        tokenizer: its tokenizer.
        records: the corpus (their ``target`` texts).
        optim: the phase's optimisation (``pretrain.language``).
        seed: data order and dropout seed.
        work_dir: the phase's checkpoints and dvclive folder.
        fingerprint: settings a checkpoint must match to be resumed (``fit`` adds the optimisation ones).

    Returns:
        ``fit``'s result.
    """
    dataset = LanguageDataset.of(records, tokenizer)
    flags = {name: p.requires_grad for name, p in llm.named_parameters()}
    for p in llm.parameters():
        p.requires_grad_(True)
    try:
        result = fit(llm, dataset, dataset.collate, optim, seed=seed, work_dir=work_dir, fingerprint=fingerprint,
                     desc="pretrain/language")  # fmt: skip
    finally:
        for name, p in llm.named_parameters():
            p.requires_grad_(flags[name])
    log.info("pretrain/language: %d texts, %d steps, final loss %.4f", len(dataset), result.plan.num_steps,
             result.final_loss)  # fmt: skip
    return result
