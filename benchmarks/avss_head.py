"""What a trained AVSS decoder gets right: where objects sound, which class they are, and the mIoU of each class map.

Not a timing. AVSS mIoU mixes two questions, and a low score does not say which one fails: *where* does an
object sound (the sounding mask) and *which* object is it (the class). This script teacher-forces the AV-UIE
answers of a split through the ``finetune_avss`` model (so the mask tokens' states are the training positions,
and generation cannot fail) and reports, over the labelled frames:

* ``sounding precision`` / ``recall``: of the pixels the head calls "an object sounds here", the share that
  are labelled with an object, and of the labelled object pixels, the share it calls sounding;
* ``class accuracy``: over the labelled object pixels, the share whose most probable object class is right
  (whatever the sounding decision);
* the AVSS mIoU (with and without background, the classes that occur) of three class maps made from the
  same logits, beside the all-background map: ``argmax`` (Crab's rule, the most probable of the 71 classes),
  ``pixel`` (sounding where p(object) > 0.5, then each pixel's most probable class) and ``region`` (sounding
  as ``pixel``, each connected region one class: :func:`crab.models.mask_decoder.class_map`, what
  ``evaluate_avss`` and ``crab infer`` use for a factorized head). For Crab's softmax head only ``argmax``
  is the model's own rule; the others are computed the same way, with p(object) = 1 - p(background).

Usage (after ``finetune_avss``; reads ``params.yaml``, ``data/avuie`` and ``data/features``)::

    python benchmarks/avss_head.py                    # test split
    python benchmarks/avss_head.py --split train --json out.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from crab.avuie.build import OUT_DIR as AVUIE_DIR
from crab.config import load_params
from crab.eval.metrics_avss import avss_scores
from crab.models.collator import collate, pad_token_id
from crab.models.mask_decoder import class_map, factorized_sounding_logits
from crab.quality.avuie import REPORT_PATH as AVUIE_REPORT
from crab.quality.quarantine import load_quarantined_avuie
from crab.train.data import load_records, training_dataset
from crab.train.finetune_avs import load_finetuned_avs

#: The class maps compared, each a function of (T, C, H, W) class log-probabilities.
RULES: dict[str, Callable[[Tensor], Tensor]] = {
    "argmax": lambda log_probs: class_map(log_probs, "softmax"),
    "pixel": lambda log_probs: torch.where(
        sounding_pixels(log_probs), log_probs[:, 1:].argmax(dim=1) + 1, torch.zeros((), dtype=torch.long)
    ),
    "region": lambda log_probs: class_map(log_probs, "factorized"),
}


def sounding_pixels(log_probs: Tensor) -> Tensor:
    """(T, C, H, W) class log-probabilities -> (T, H, W) bool: p(some object) > p(background)."""
    return factorized_sounding_logits(log_probs) > 0


def pixel_counts(log_probs: Tensor, truth: Tensor) -> dict[str, int]:
    """Sounding and class counts of (T, C, H, W) log-probabilities against (T, H, W) label maps.

    Returns:
        ``predicted`` (pixels called sounding), ``labelled`` (object pixels), ``hit`` (both), ``class_right``
        (object pixels whose most probable object class is the label).
    """
    sounding, objects = sounding_pixels(log_probs), truth > 0
    best = log_probs[:, 1:].argmax(dim=1) + 1  # (T, H, W)
    return {"predicted": int(sounding.sum()), "labelled": int(objects.sum()), "hit": int((sounding & objects).sum()),
            "class_right": int((objects & (best == truth)).sum())}  # fmt: skip


def summarise(frames: Sequence[tuple[str, Tensor, Tensor]]) -> dict[str, Any]:
    """The report of (video id, (C, H, W) log-probabilities, (H, W) labels) frames: counts and each rule's mIoU."""
    by_video: dict[str, list[int]] = defaultdict(list)
    for index, (video, _, _) in enumerate(frames):
        by_video[video].append(index)
    log_probs = torch.stack([f[1] for f in frames])  # (N, C, H, W)
    truths = torch.stack([f[2] for f in frames])  # (N, H, W)
    counts = pixel_counts(log_probs, truths)
    videos = list(by_video.values())
    truth_videos = [truths[idx] for idx in videos]
    out: dict[str, Any] = {
        "frames": len(frames),
        "videos": len(videos),
        "sounding_precision": counts["hit"] / max(counts["predicted"], 1),
        "sounding_recall": counts["hit"] / max(counts["labelled"], 1),
        "class_accuracy": counts["class_right"] / max(counts["labelled"], 1),
        "all_background": _miou([torch.zeros_like(t) for t in truth_videos], truth_videos),
    }
    for name, rule in RULES.items():
        maps = rule(log_probs)  # (N, H, W)
        out[name] = _miou([maps[idx] for idx in videos], truth_videos)
    return out


def _miou(predictions: list[Tensor], truths: list[Tensor]) -> dict[str, float]:
    scores = avss_scores(predictions, truths)
    return {k: scores[k] for k in ("miou", "miou_no_background", "num_classes_present")}


def teacher_forced_frames(split: str, batch_size: int) -> list[tuple[str, Tensor, Tensor]]:
    """(video id, (C, S, S) log-probabilities, (S, S) labels) of every AVSS record of ``split``."""
    params = load_params("params.yaml")
    model, tokenizer = load_finetuned_avs(
        params.pretrain.out_dir, params.finetune.out_dir, params.finetune_avss.out_dir
    )
    crab = model.get_base_model()
    if crab.config.mask_decoder_config.num_classes == 1:
        raise SystemExit(f"{params.finetune_avss.out_dir} holds a binary decoder, not an AVSS class head")
    records = load_records(AVUIE_DIR, ["avss"], split, load_quarantined_avuie(AVUIE_REPORT))
    dataset = training_dataset(params, ["avss"], tokenizer, crab.config, split, with_masks=True)
    pad = pad_token_id(tokenizer)
    frames = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            batch = collate(items, pad_token_id=pad)
            targets = batch.pop("mask_targets")  # (B, 1, S, S): the record's labelled frame
            logits = model(**batch).mask_logits[:, 0].float()  # (B, C, S, S)
            if crab.config.mask_decoder_config.class_head == "softmax":
                logits = logits.log_softmax(dim=1)  # Crab's head: logits -> log-probabilities
            for offset, (row, target) in enumerate(zip(logits, targets[:, 0], strict=True)):
                frames.append((records[start + offset].video_id, row, target.long()))
    return frames


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="test", help="AV-UIE split of avss (default test)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report = summarise(teacher_forced_frames(args.split, args.batch_size))
    print(f"avss {args.split}: {report['frames']} frames of {report['videos']} videos")
    print(f"sounding precision {report['sounding_precision']:.3f}  recall {report['sounding_recall']:.3f}  "
          f"class accuracy on object pixels {report['class_accuracy']:.3f}")  # fmt: skip
    print(f"{'class map':<16}{'mIoU':>8}{'no bg':>8}{'classes':>9}")
    for name in ("all_background", *RULES):
        row = report[name]
        print(f"{name:<16}{row['miou']:>8.4f}{row['miou_no_background']:>8.4f}{row['num_classes_present']:>9d}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
