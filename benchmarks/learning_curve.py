"""Learning curve of one text task: its test score while a pre-trained Crab keeps training on a task mixture.

Not a timing. The pipeline's scores say where a recipe ends, not whether the model was still learning,
nor whether it could fit its own training clips. This script continues training a ``pretrain`` output (the
LLM in full and both projectors, as the tiny profile's grounding phase trains them) on the train records of
``--train`` in one answer form, and every ``--every`` steps scores ``--eval`` with the ``evaluate`` stage's
own greedy decoding, parser and metric on the first ``--num-eval`` test records. At the end it scores the
same number of *train* records: a train score close to the test score means the model underfits (more
steps, a better learning rate or a better projector help), a much higher one that it overfits (more data
helps). The learning rate is constant after a 3 % linear warm-up (no cosine decay), so that the points of
one curve are comparable with each other.

Usage (after ``pretrain``; reads ``params.yaml``, ``data/avuie`` and ``data/features``)::

    python benchmarks/learning_curve.py models/pretrain --train ave --eval ave --answers direct
    python benchmarks/learning_curve.py models/pretrain --answers reasoning --steps 1200 --every 400 --json c.json

With 80 test records, differences under about 0.05 are noise.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from crab.config import AnswerForm, Params, load_params
from crab.eval.generation import generate_greedy
from crab.eval.run import read_split, score_predictions
from crab.eval.scoring import HEADLINE_SCORES
from crab.features.store import FeatureStore
from crab.models.collator import collate, pad_token_id
from crab.models.modeling_crab import set_trainable
from crab.quality.avuie import REPORT_PATH
from crab.quality.quarantine import load_quarantined_avuie
from crab.tasks import Task
from crab.train.data import AvuieDataset, answer_forms, training_dataset
from crab.train.pretrain import load_pretrained


@dataclass(frozen=True)
class Point:
    """One evaluation of the curve."""

    step: int
    split: str
    score: float  # the task's headline score (HEADLINE_SCORES)
    parse_failure_rate: float
    seconds: float  # generation and scoring
    example: str  # the first answer, for a look at what the model writes


def lr_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up over ``warmup_steps`` (step 0 gets ``1 / warmup_steps``), then constant 1."""
    return min(1.0, (step + 1) / max(1, warmup_steps))


def batch_indices(num_examples: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless seeded epochs of full batches; each epoch a new permutation, its last partial batch dropped."""
    if num_examples < batch_size:
        raise ValueError(f"{num_examples} training examples for a batch of {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(num_examples, generator=generator).tolist()
        for start in range(0, num_examples - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def train_steps(
    model: Any, dataset: AvuieDataset, pad_id: int, *, batch_size: int, lr: float, num_steps: int, seed: int
) -> Iterator[tuple[int, float]]:
    """Train ``model`` in place (AdamW, gradient norm clipped at 1); yields ``(step, loss)`` after each step.

    Seeds the global RNG with ``seed`` (the Q-Formers' dropout draws from it), so a run is repeatable on CPU.
    """
    torch.manual_seed(seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    warmup = max(1, round(0.03 * num_steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup))
    batches = batch_indices(len(dataset), batch_size, seed)
    model.train()
    for step in range(1, num_steps + 1):
        batch = collate([dataset[i] for i in next(batches)], pad_token_id=pad_id)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        yield step, loss.item()


def prompts_of(model: Any, tokenizer: Any, params: Params, records: Sequence[Any], answers: AnswerForm) -> AvuieDataset:
    """The records' prompts in ``answers`` form with their features, read once for every point of the curve."""
    return AvuieDataset(
        answer_forms(records, answers), tokenizer, model.config, FeatureStore(params.features.out_dir), params,
        with_targets=False,
    )  # fmt: skip


def score_records(
    model: Any, tokenizer: Any, params: Params, task: str, records: Sequence[Any], prompts: AvuieDataset,
    train_labels: Sequence[Any], max_new_tokens: int,
) -> tuple[float, float, str, float]:  # fmt: skip
    """The headline score, parse-failure rate, first answer and seconds of greedy answers to ``prompts``."""
    started = time.perf_counter()
    model.eval()
    with torch.no_grad():
        ids, _ = generate_greedy(
            model, prompts, batch_size=params.evaluate.batch_size, max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=pad_token_id(tokenizer),
            lengths=[len(item.prompt_ids) for item in prompts.items], show_progress=False,
        )  # fmt: skip
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    _, scores = score_predictions(task, records, texts, train_labels)
    model.train()
    headline = HEADLINE_SCORES[Task(task)]
    return scores[headline], scores["parse_failure_rate"], texts[0], time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a pretrain output folder (models/pretrain)")
    parser.add_argument("--train", default="ave", help="comma-separated training tasks")
    parser.add_argument("--eval", default="ave", help="the evaluated text task")
    parser.add_argument("--answers", default="direct", choices=["direct", "reasoning", "both"])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--every", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--num-eval", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="", help="write the curve here too")
    args = parser.parse_args(argv)

    params = load_params("params.yaml")
    model, tokenizer = load_pretrained(args.model)
    set_trainable(model, llm="full", projectors=True)
    dataset = training_dataset(params, args.train.split(","), tokenizer, model.config, answers=args.answers)
    quarantined = load_quarantined_avuie(REPORT_PATH)
    test, _ = read_split(args.eval, "test", quarantined)
    train, _ = read_split(args.eval, "train", quarantined)
    train_labels = [r.label for r in train]
    eval_form: AnswerForm = "direct" if args.answers == "direct" else "reasoning"
    max_new = 96 if eval_form == "direct" else params.evaluate.max_new_tokens
    scored = {
        split: (records[: args.num_eval], prompts_of(model, tokenizer, params, records[: args.num_eval], eval_form))
        for split, records in (("test", test), ("train", train))
    }

    def point(step: int, split: str) -> Point:
        records, prompts = scored[split]
        score, failures, example, seconds = score_records(
            model, tokenizer, params, args.eval, records, prompts, train_labels, max_new
        )
        result = Point(step, split, score, failures, seconds, example)
        print(f"step {step:5d} {split:5s} {score:.3f} (parse failures {failures:.3f}, {seconds:.0f} s)", flush=True)
        return result

    print(f"examples {dataset.task_counts()}, {args.steps} steps of {args.batch_size}", flush=True)
    curve = [point(0, "test")]
    started = time.perf_counter()
    losses: list[float] = []
    for step, loss in train_steps(
        model,
        dataset,
        pad_token_id(tokenizer),
        batch_size=args.batch_size,
        lr=args.lr,
        num_steps=args.steps,
        seed=args.seed,
    ):
        losses.append(loss)
        if step % args.every == 0 or step == args.steps:
            mean = sum(losses) / len(losses)
            print(f"step {step:5d} train loss {mean:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
            losses = []
            curve.append(point(step, "test"))
    curve.append(point(args.steps, "train"))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"args": vars(args), "curve": [p.__dict__ for p in curve]}, handle, indent=1)


if __name__ == "__main__":
    main()
