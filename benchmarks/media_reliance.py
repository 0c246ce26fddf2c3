"""How much a trained Crab reads the media: answer-token loss with each clip's own features vs another clip's.

Not a timing. A model can reach a low training loss on AV-UIE from the language alone: the templates, the
class priors and the copying inside an explicit reasoning process are all predictable without looking at
the clip. Only the tokens that depend on the clip (which object, which second, which answer) need the
media, and a low mean loss hides whether they are learned. This script teacher-forces the training targets
of a few train records twice: once with each record's own features, once with the features of the next
record in the batch (same task, same feature shapes: the prompts are unchanged, only what the projectors
see is swapped). The difference is what the media are worth to the model, per token:

* ``loss own`` / ``loss swapped``: mean answer-token negative log-likelihood (nats);
* ``gain``: swapped minus own; about 0 means the answer does not depend on the clip;
* the same split into digit tokens (seconds, box coordinates) and the rest;
* the tokens carrying the most loss, and those the media help most.

Usage (after ``pretrain``; reads ``params.yaml``, ``data/avuie`` and ``data/features``)::

    python benchmarks/media_reliance.py models/pretrain                        # ave, avqa, avvp, arig; reasoning
    python benchmarks/media_reliance.py models/pretrain --direct --tasks ave   # direct answers
    python benchmarks/media_reliance.py models/pretrain --finetune models/finetune --json out.json

With ``--finetune`` the adapter folder is loaded on the pre-trained model as ``evaluate`` does. Text tasks
only (the mask tasks' loss of interest is the decoder's). Records are spread evenly over the train split;
with 96 records per task a gain under about 0.01 nats is noise.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from crab.config import load_params
from crab.models.collator import collate, pad_token_id
from crab.train.data import training_dataset
from crab.train.finetune import load_finetuned
from crab.train.pretrain import load_pretrained

TEXT_TASKS = ("ave", "avqa", "avvp", "arig")
FEATURE_KEYS = ("video_features", "audio_features", "image_features")


def _answer_losses(model: Any, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Per-token NLL (B, L-1) of the next token and the shifted labels (B, L-1); -100 where not an answer."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        logits = model(**inputs).logits[:, :-1]  # (B, L-1, V)
    labels = batch["labels"][:, 1:]  # (B, L-1)
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
    return nll, labels


def _swap_media(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch with every sample's features replaced by the next sample's (a rotation by one)."""
    swapped = dict(batch)
    for key in FEATURE_KEYS:
        features = batch.get(key)
        if isinstance(features, Tensor):  # (B, S, N, D)
            swapped[key] = torch.roll(features, 1, dims=0)
        elif features:  # one (S_i, N_i, D) per sample; the batches hold equal shapes
            swapped[key] = features[-1:] + features[:-1]
    return swapped


def _shape_key(example: Any) -> tuple:
    return tuple(
        None if (f := getattr(example, f"{m}_features", None)) is None else tuple(f.shape)
        for m in ("video", "audio", "image")
    )


def measure_task(model: Any, dataset: Any, pad_id: int, tokenizer: Any, num_records: int, batch_size: int) -> dict:
    """Own- vs swapped-media losses of one task's dataset (records spread evenly over it)."""
    step = max(1, len(dataset) // num_records)
    examples = [dataset[i] for i in range(0, len(dataset), step)][:num_records]
    groups: dict[tuple, list[Any]] = defaultdict(list)
    for example in examples:
        groups[_shape_key(example)].append(example)
    own_all, swapped_all, label_all = [], [], []
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            if len(chunk) < 2:  # nothing to swap with
                continue
            batch = collate(chunk, pad_token_id=pad_id)
            own, labels = _answer_losses(model, batch)
            swapped, _ = _answer_losses(model, _swap_media(batch))
            mask = labels != -100
            own_all.append(own[mask])
            swapped_all.append(swapped[mask])
            label_all.append(labels[mask])
    own, swapped, labels = torch.cat(own_all), torch.cat(swapped_all), torch.cat(label_all)
    pieces = tokenizer.convert_ids_to_tokens(labels.tolist())
    texts = [tokenizer.convert_tokens_to_string([p]) for p in pieces]
    digit = torch.tensor([t.strip().isdigit() for t in texts])
    per_token: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for text, o, s in zip(texts, own.tolist(), swapped.tolist(), strict=True):
        entry = per_token[text]
        entry[0] += 1
        entry[1] += o
        entry[2] += s - o

    def part(selection: Tensor) -> dict[str, float]:
        if not bool(selection.any()):
            return {"tokens": 0}
        return {"tokens": int(selection.sum()), "loss_own": own[selection].mean().item(),
                "loss_swapped": swapped[selection].mean().item(),
                "gain": (swapped[selection] - own[selection]).mean().item(),
                "share_of_loss": (own[selection].sum() / own.sum()).item()}  # fmt: skip

    def top(index: int, k: int = 8) -> list[dict[str, Any]]:
        ranked = sorted(per_token.items(), key=lambda kv: -kv[1][index])[:k]
        return [{"token": t, "count": int(n), "loss_own": lo / n, "gain": g / n} for t, (n, lo, g) in ranked]

    return {"records": len(examples), "all": part(torch.ones_like(digit)), "digits": part(digit),
            "other": part(~digit), "most_loss": top(1), "most_gain": top(2)}  # fmt: skip


def _print(task: str, result: dict) -> None:
    print(f"\n{task}: {result['records']} train records")
    print(f"  {'tokens':8} {'n':>6} {'loss own':>9} {'swapped':>9} {'gain':>7} {'share':>6}")
    for name in ("all", "digits", "other"):
        r = result[name]
        if r["tokens"]:
            print(f"  {name:8} {r['tokens']:6d} {r['loss_own']:9.3f} {r['loss_swapped']:9.3f} {r['gain']:+7.3f} "
                  f"{r['share_of_loss']:6.2f}")  # fmt: skip
    for title, key in (("most loss", "most_loss"), ("most gain", "most_gain")):
        cells = ", ".join(f"{e['token']!r} {e['loss_own']:.2f} ({e['gain']:+.2f}, n={e['count']})" for e in result[key])
        print(f"  {title}: {cells}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pretrain", type=Path, help="a pretrain output folder (model + tokenizer)")
    parser.add_argument("--finetune", type=Path, default=None, help="a finetune output folder (adapter) to load")
    parser.add_argument("--tasks", default=",".join(TEXT_TASKS), help="comma-separated text tasks")
    parser.add_argument("--direct", action="store_true", help="direct answers instead of the reasoning targets")
    parser.add_argument("--records", type=int, default=96, help="train records per task")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = [t for t in tasks if t not in TEXT_TASKS]
    if unknown:
        parser.error(f"--tasks: {unknown} are not text tasks ({', '.join(TEXT_TASKS)})")
    params = load_params(args.params)
    if args.finetune is None:
        model, tokenizer = load_pretrained(args.pretrain)
        config = model.config
    else:
        model, tokenizer = load_finetuned(args.pretrain, args.finetune)
        config = model.get_base_model().config
    pad_id = pad_token_id(tokenizer)
    results = {}
    for task in tasks:
        dataset = training_dataset(params, [task], tokenizer, config, answers="direct" if args.direct else "reasoning")
        results[task] = measure_task(model, dataset, pad_id, tokenizer, args.records, args.batch_size)
        _print(task, results[task])
    if args.json is not None:
        meta = {"pretrain": str(args.pretrain), "finetune": None if args.finetune is None else str(args.finetune),
                "answers": "direct" if args.direct else "reasoning", "records_per_task": args.records}  # fmt: skip
        args.json.write_text(json.dumps({"meta": meta, "tasks": results}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
