"""The tiny profile's language phase: the random-init LLM learns the AV-UIE language from text alone.

The paper profile starts from Llama-2-chat, which already speaks and follows instructions; the tiny
profile's LLM is random. Before the projectors align (``pretrain``), the tiny LLM is trained on the records
of the pre-training mixture as text: the chat prompt of the instruction (placeholders left as single
tokens, no features) followed by the target, loss on the target and its EOS. It learns the answers'
language and which instruction asks for which answer format, but nothing about the media, which only the
feature tokens carry.

Why a separate phase rather than training the LLM jointly with the projectors: jointly, the random LLM
learns the answer templates long before it learns to read the feature tokens, and the projector output
drifted to a large constant (AV-Synth, 1800 joint steps: visual token norm 0.21 -> 15.3, across-clip spread
3 %; AVE accuracy 0.08 against 0.24 for all-background). With the LLM taught first and then frozen, the
projectors align on a fixed reader: AVE accuracy 0.48 after 1500 alignment steps on direct answers in an
AVE-only harness whose text phase had no prompts. With prompts, as here, the pipeline's pre-trained model
still answers AVE near chance (0.04 asked for direct answers; 0.13 when this phase had no prompts).
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
from crab.models.collator import pad_token_id
from crab.train.data import encode_prompt, encode_target
from crab.train.loop import FitResult, fit

__all__ = ["LanguageDataset", "learn_language"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LanguageDataset:
    """Records as text-only chat examples: prompt ids and target ids (map-style dataset; tokenised once).

    Args:
        records: the corpus (instruction and target of each).
        tokenizer: the model's tokenizer (chat template, EOS).

    Raises:
        ValueError: the tokenizer lacks EOS.
    """

    examples: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]  # (prompt ids, target ids + EOS) per record
    pad_token_id: int

    @classmethod
    def of(cls, records: Sequence[AvuieRecord], tokenizer: PreTrainedTokenizerBase) -> LanguageDataset:
        examples = tuple(
            (tuple(encode_prompt(tokenizer, r.instruction)), tuple(encode_target(tokenizer, r.target))) for r in records
        )
        return cls(examples, pad_token_id(tokenizer))

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return self.examples[index]

    @property
    def lengths(self) -> list[int]:
        """Prompt + target tokens per example (what ``optim.group_by_length`` batches by)."""
        return [len(prompt) + len(target) for prompt, target in self.examples]

    def collate(self, examples: list[tuple[tuple[int, ...], tuple[int, ...]]]) -> dict[str, torch.Tensor]:
        """Right-padded batch of prompt + target: ``input_ids``, ``attention_mask``, ``labels`` (B, L) each.

        Labels are -100 over the prompt and the padding, so the loss is the target's (EOS included).
        """
        length = max(len(p) + len(t) for p, t in examples)
        input_ids = torch.full((len(examples), length), self.pad_token_id, dtype=torch.long)  # (B, L)
        attention_mask = torch.zeros((len(examples), length), dtype=torch.long)  # (B, L)
        labels = torch.full((len(examples), length), -100, dtype=torch.long)  # (B, L)
        for row, (prompt, target) in enumerate(examples):
            end = len(prompt) + len(target)
            input_ids[row, :end] = torch.tensor(prompt + target)
            attention_mask[row, :end] = 1
            labels[row, len(prompt) : end] = torch.tensor(target)
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
    """Train every parameter of ``llm`` on the records as text (prompt, then target; loss on the target).

    Resumable like any ``fit``.

    The trainable flags of ``llm`` are restored afterwards, so a caller's frozen LLM stays frozen for the
    next phase.

    Args:
        llm: the ``LlamaForCausalLM`` inside the Crab model (updated in place).
        tokenizer: its tokenizer.
        records: the corpus (their ``instruction`` and ``target``).
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
