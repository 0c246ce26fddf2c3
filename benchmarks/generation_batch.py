"""Evaluation decoding at several batch sizes, side by side: time, generated tokens/s and identical answers.

The ``evaluate`` stages decode every test prompt greedily (:func:`crab.eval.generation.generate_greedy`)
in batches of ``evaluate.batch_size``. For the tiny profile a decoding step costs about as much for 64 rows
as for 16 (the model is so small that per-step overhead dominates), so a bigger batch decodes the same
answers in fewer steps; for the 7B model GPU memory bounds it. This script loads the model the ``evaluate``
stage uses (``pretrain`` + ``finetune`` adapter), decodes the first ``--num`` test prompts of a text task at
each batch size (in turn, ``--repeats`` rounds), and reports the median time, the ratio to the first batch
size and whether every answer equals the first batch size's (left padding with the attention mask should
make the answers independent of the batch; a difference would be a bug or float noise in a near tie).

Usage (after ``finetune``; reads ``params.yaml``, ``data/avuie`` and ``data/features``)::

    python benchmarks/generation_batch.py --task ave --batch-sizes 16,64
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from crab.config import load_params
from crab.eval.generation import generate_greedy
from crab.eval.run import read_split
from crab.features.store import FeatureStore
from crab.models.collator import pad_token_id
from crab.quality.avuie import REPORT_PATH
from crab.quality.quarantine import load_quarantined_avuie
from crab.train.data import AvuieDataset
from crab.train.finetune import load_finetuned


@dataclass(frozen=True)
class Row:
    """One batch size's result."""

    batch_size: int
    seconds: float  # median over the rounds
    num_new_tokens: int
    identical: bool  # every answer equals the reference batch size's


def decode(model: Any, prompts: AvuieDataset, batch_size: int, max_new_tokens: int, eos_id: int, pad_id: int) -> tuple[list[list[int]], int]:  # fmt: skip
    """Greedy answers to ``prompts`` at ``batch_size`` and the number of generated tokens."""
    ids, stats = generate_greedy(
        model, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens, eos_token_id=eos_id,
        pad_token_id=pad_id, lengths=[len(item.prompt_ids) for item in prompts.items], show_progress=False,
    )  # fmt: skip
    return ids, stats.num_new_tokens


def compare_batch_sizes(
    model: Any, prompts: AvuieDataset, batch_sizes: Sequence[int], *, max_new_tokens: int, eos_id: int, pad_id: int,
    repeats: int = 1,
) -> list[Row]:  # fmt: skip
    """Decode ``prompts`` at every batch size, ``repeats`` rounds in turn; the first size is the reference.

    Raises:
        ValueError: no batch sizes, or ``repeats`` < 1.
    """
    if not batch_sizes or repeats < 1:
        raise ValueError(f"need batch sizes and repeats >= 1, got {list(batch_sizes)} and {repeats}")
    times: dict[int, list[float]] = {size: [] for size in batch_sizes}
    answers: dict[int, list[list[int]]] = {}
    tokens: dict[int, int] = {}
    model.eval()
    with torch.inference_mode():
        for _ in range(repeats):
            for size in batch_sizes:
                started = time.perf_counter()
                answers[size], tokens[size] = decode(model, prompts, size, max_new_tokens, eos_id, pad_id)
                times[size].append(time.perf_counter() - started)
    reference = answers[batch_sizes[0]]
    return [Row(size, statistics.median(times[size]), tokens[size], answers[size] == reference) for size in batch_sizes]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="ave", help="a text task with test records (ave, avqa, avvp, arig)")
    parser.add_argument("--batch-sizes", default="16,64", help="comma-separated; the first is the reference")
    parser.add_argument("--num", type=int, default=80, help="test prompts decoded")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)

    params = load_params("params.yaml")
    model, tokenizer = load_finetuned(params.pretrain.out_dir, params.finetune.out_dir)
    records, _ = read_split(args.task, "test", load_quarantined_avuie(REPORT_PATH))
    prompts = AvuieDataset(
        records[: args.num], tokenizer, model.get_base_model().config, FeatureStore(params.features.out_dir), params,
        with_targets=False,
    )  # fmt: skip
    eos_id = tokenizer.eos_token_id
    pad_id = pad_token_id(tokenizer)
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    rows = compare_batch_sizes(
        model, prompts, sizes, max_new_tokens=params.evaluate.max_new_tokens, eos_id=eos_id, pad_id=pad_id,
        repeats=args.repeats,
    )  # fmt: skip
    print(f"{args.task}: {len(prompts)} test prompts, max_new_tokens {params.evaluate.max_new_tokens}")
    print(f"{'batch':>6} {'seconds':>8} {'tokens/s':>9} {'speed-up':>9} identical")
    for row in rows:
        print(
            f"{row.batch_size:>6} {row.seconds:>8.1f} {row.num_new_tokens / row.seconds:>9.0f} "
            f"{rows[0].seconds / row.seconds:>8.2f}x {'yes' if row.identical else 'NO'}"
        )


if __name__ == "__main__":
    main()
