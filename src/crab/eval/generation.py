"""Batched greedy decoding of Crab answers for evaluation (DESIGN.md section 7, crab-reference section 5.1).

The ``evaluate`` stage turns every test prompt into an answer with :func:`generate_greedy`:

* **Greedy, whatever the checkpoint says.** Crab's inference driver passes no decoding arguments, so the
  checkpoint's ``generation_config.json`` decides; for Llama-2-7b-chat that is likely ``do_sample=True,
  temperature=0.6, top_p=0.9``, so Crab's answers were probably sampled (crab-reference 5.1).
  Here every call passes :func:`greedy_settings` explicitly: ``do_sample=False``, ``num_beams=1``, one
  sequence, no repetition penalty or n-gram ban, and the tokenizer's EOS / pad ids. transformers lets
  explicit arguments win over the model's generation config, so a saved config cannot turn sampling,
  beams or penalties back on; what is left of it (``temperature``, ``top_p``) is unused without sampling.
* **Batched, with the attention mask.** Prompts are left-padded by :func:`crab.models.collator.collate`
  and decoded with their attention mask and the KV cache, so a batch decodes as each prompt alone would
  (Crab generated from ``inputs_embeds`` without a mask, so its answers depended on the batch).
* **Sorted by length.** Prompts are grouped by length (longest first, so the peak memory shows up in the
  first batch) to waste little compute on padding; the answers come back in the caller's order. Examples
  may be a lazy dataset: each is fetched when its batch runs, so one batch of features is in memory.

Throughput is reported as generated tokens per second, counting each answer up to and including its EOS
(the EOS padding of rows that finished early is not counted).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from crab.models.collator import CrabExample, collate

__all__ = ["STATIC_LENGTH_MULTIPLE", "GenerationStats", "generate_greedy", "greedy_settings", "trim_at_eos"]

log = logging.getLogger(__name__)

_FEATURE_KEYS = ("video_features", "audio_features", "image_features")
#: With a static cache, prompts are left-padded to a multiple of this many tokens: transformers compiles the
#: decoding step once per cache shape (7B model on an H200: 240 s for two shapes, mostly compiling), and prompt lengths vary.
STATIC_LENGTH_MULTIPLE = 64


@dataclass(frozen=True)
class GenerationStats:
    """What one :func:`generate_greedy` call did.

    Attributes:
        num_sequences: prompts decoded.
        num_new_tokens: generated tokens over all prompts (each answer up to and including its EOS).
        seconds: wall-clock time of the decoding loop (collation and transfers included).
        batch_size: prompts per ``generate`` call (the last batch may be smaller).
        max_new_tokens: the decoding budget per prompt.
    """

    num_sequences: int
    num_new_tokens: int
    seconds: float
    batch_size: int
    max_new_tokens: int

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per second (0.0 for an empty run)."""
        return self.num_new_tokens / self.seconds if self.seconds > 0 else 0.0


def greedy_settings(
    max_new_tokens: int, eos_token_id: int, pad_token_id: int, cache: str = "dynamic"
) -> dict[str, Any]:
    """The decoding arguments of every evaluation ``generate`` call (module docstring).

    Args:
        max_new_tokens: budget of generated tokens per prompt.
        eos_token_id: the tokenizer's EOS id (decoding of a row stops there).
        pad_token_id: the tokenizer's pad id (fills rows that finished early).
        cache: ``"dynamic"`` (a cache that grows) or ``"static"`` (preallocated; transformers compiles the
            decoding step on a GPU). Greedy answers are the same with either.

    Returns:
        Keyword arguments for ``generate``.

    Raises:
        ValueError: ``max_new_tokens`` is not positive.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
    if cache not in ("dynamic", "static"):
        raise ValueError(f"cache must be 'dynamic' or 'static', got {cache!r}")
    return {
        "cache_implementation": cache,
        "max_new_tokens": max_new_tokens,
        "min_new_tokens": 0,
        "do_sample": False,
        "num_beams": 1,
        "num_return_sequences": 1,
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
        "use_cache": True,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
    }


def trim_at_eos(token_ids: Sequence[int], eos_token_id: int) -> list[int]:
    """The generated ids up to and including the first EOS (all of them if there is none)."""
    ids = list(token_ids)
    return ids[: ids.index(eos_token_id) + 1] if eos_token_id in ids else ids


def _pad_left(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, multiple: int, pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad (B, L) ids and mask to a multiple of ``multiple`` tokens (masked out, so the answers do not change)."""
    extra = -input_ids.shape[1] % multiple
    if extra == 0:
        return input_ids, attention_mask
    return (
        torch.nn.functional.pad(input_ids, (extra, 0), value=pad_token_id),  # (B, L + extra)
        torch.nn.functional.pad(attention_mask, (extra, 0), value=0),
    )


def _to_device(value: torch.Tensor | list[torch.Tensor], device: torch.device, dtype: torch.dtype) -> Any:
    """Features on the model's device and in its dtype (the store may hold float16 / bfloat16)."""
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype)
    return [v.to(device=device, dtype=dtype) for v in value]


def generate_greedy(
    model: torch.nn.Module,
    examples: Sequence[CrabExample],
    *,
    batch_size: int,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    lengths: Sequence[int] | None = None,
    show_progress: bool = True,
    cache: str = "dynamic",
) -> tuple[list[list[int]], GenerationStats]:
    """Greedy answers to prompts, in batches of similar length, returned in the order of ``examples``.

    Args:
        model: a ``CrabForConditionalGeneration`` (or a PEFT model wrapping one) in eval mode; its
            ``generate(input_ids, attention_mask, video_features=..., ...)`` returns prompt + new ids.
        examples: prompts built with ``crab.models.collator.build_example(prompt_ids, [], ...)`` (empty
            answers), each with its features. May be lazy (e.g. a ``torch.utils.data.Dataset`` reading
            features from the store): each example is fetched once, when its batch runs, so only one batch
            of features is in memory at a time.
        batch_size: prompts per ``generate`` call.
        max_new_tokens: budget of generated tokens per prompt.
        eos_token_id: the tokenizer's EOS id.
        pad_token_id: the tokenizer's pad id (prompt padding and finished rows).
        lengths: a sort key per example (e.g. its prompt's text length, which orders prompts like their
            full length when all carry the same number of frames and clips); by default the length of
            each example's ``input_ids``, which fetches every example once more up front.
        show_progress: show a tqdm bar over batches (hidden when stderr is not a terminal).
        cache: the KV cache, see :func:`greedy_settings`.

    Returns:
        The generated ids of each example (prompt removed, cut after the first EOS, EOS kept) and the
        run's :class:`GenerationStats`.

    Raises:
        ValueError: ``batch_size`` or ``max_new_tokens`` is not positive, or ``lengths`` has another length.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if lengths is None:
        lengths = [len(examples[i].input_ids) for i in range(len(examples))]
    elif len(lengths) != len(examples):
        raise ValueError(f"{len(lengths)} lengths for {len(examples)} examples")
    settings = greedy_settings(max_new_tokens, eos_token_id, pad_token_id, cache)
    parameter = next(model.parameters())
    device, dtype = parameter.device, parameter.dtype
    # Longest first; ties keep the caller's order, so the batches do not depend on anything else.
    order = sorted(range(len(examples)), key=lambda i: (-lengths[i], i))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    answers: list[list[int]] = [[] for _ in range(len(examples))]
    start_time = time.perf_counter()
    with torch.inference_mode():
        # disable=None: tqdm hides itself when stderr is not a terminal (DVC logs, CI).
        for indices in tqdm(batches, desc="generate", unit="batch", disable=None if show_progress else True):
            batch = collate([examples[i] for i in indices], pad_token_id=pad_token_id)
            input_ids = batch["input_ids"].to(device)  # (B, L), left-padded
            attention_mask = batch["attention_mask"].to(device)  # (B, L)
            if cache == "static":  # few prompt lengths, few compiled graphs (one per cache shape)
                input_ids, attention_mask = _pad_left(input_ids, attention_mask, STATIC_LENGTH_MULTIPLE, pad_token_id)
            # position_ids are left out: transformers derives them from the mask, for the prompt and each step.
            features = {key: _to_device(batch[key], device, dtype) for key in _FEATURE_KEYS if key in batch}
            sequences = model.generate(input_ids=input_ids, attention_mask=attention_mask, **features, **settings)
            new_tokens = sequences[:, input_ids.shape[1] :].tolist()  # (B, n_new)
            for row, index in enumerate(indices):
                answers[index] = trim_at_eos(new_tokens[row], eos_token_id)
    stats = GenerationStats(
        num_sequences=len(examples),
        num_new_tokens=sum(len(a) for a in answers),
        seconds=time.perf_counter() - start_time,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    )
    log.info(
        "generated %d answers, %d tokens in %.1f s (%.1f tokens/s, batch %d)",
        stats.num_sequences,
        stats.num_new_tokens,
        stats.seconds,
        stats.tokens_per_s,
        batch_size,
    )
    return answers, stats
