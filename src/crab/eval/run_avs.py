"""Evaluation of the mask tasks (S4, MS3, Ref-AVS, AVSS): generate the answer, decode its mask tokens, score.

The text tasks' flow (:mod:`crab.eval.run`) with the segmentation model of the task's stage
(:func:`crab.train.finetune_avs.load_finetuned_avs`: ``finetune_avs`` for the binary tasks, ``finetune_avss``
for AVSS's 71-class head): for one task it

1. reads the split's records (one per labelled frame) minus the quarantine, and builds their prompts with the
   training stages' dataset (``AvuieDataset(..., with_targets=False)``);
2. decodes each answer greedily (:func:`crab.eval.generation.generate_greedy`, router statistics hooked in as
   for the text tasks), parses it (``crab.avuie.avs.parse_answer``: the mask block, the ``<object>`` tag);
3. for every answer with its six mask tokens runs one teacher-forced forward over prompt + answer
   (:meth:`CrabForConditionalGeneration.predict_masks`, the states training used) with the labelled frame's
   CLIP levels from the feature store, giving mask logits at the decoder's size; logits at another size than
   the ground truth are resized bilinearly (:func:`crab.eval.metrics_avs.resize_logits`), and AVSS's class map
   is their argmax. An answer without a well-formed mask block predicts an **empty mask** (logits -20
   everywhere; AVSS all background) and counts as a parse failure;
4. scores as the official code does, through the local ``evaluate`` modules (checked against the pure
   functions): S4 / MS3 mIoU and F per video (``avs_segmentation``), Ref-AVS per expression in test order,
   seen / unseen mIoU and F in batches of 4 and null S (its ``ref_avs`` / ``ref_avs_null`` configs), AVSS mIoU
   and F over the 71 classes per clip (``avss_segmentation``); with trivial baselines on the same ground truth
   (``empty_mask`` / ``full_frame_mask``; AVSS ``all_background`` / ``frequent_class_full_frame``) and the
   share of answers whose ``<object>`` names the label's objects exactly;
5. writes ``predictions/<task>.jsonl`` (text, parsed objects, label, media, the frame's IoU (AVSS: mIoU) as
   ``correct``, its predicted mask file relative to ``predictions/`` as ``mask``),
   ``predictions/<task>_masks/<item_id>.png`` (every predicted mask at the ground truth's resolution: binarised
   at probability 0.5 as the IoU is, 255 / 0 grey like AVSBench's ground truth; AVSS the class-index map like
   ``labels_semantic``), ``metrics/<task>.json`` and ``metrics/router_<task>.json``, each atomically (the mask
   folder as a whole).

This is the ``evaluate_avs`` / ``evaluate_avss`` stage (DVC ``foreach`` over ``finetune_avs.tasks`` /
``finetune_avss.tasks``; ``crab evaluate_avs --task s4``, ``crab evaluate_avss --task avss``).
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crab.atomic import replace_dir, write_text_atomic
from crab.avuie.avs import AvsAnswer
from crab.config import Params
from crab.datasets.media import read_binary_mask, read_class_mask, write_binary_mask, write_class_mask
from crab.datasets.vocab_seg import AVSS_CLASSES
from crab.eval.generation import generate_greedy
from crab.eval.loading import load_metric
from crab.eval.metrics_avss import avss_scores
from crab.eval.metrics_avs import (
    AVS_IOU_THRESHOLD,
    avs_scores,
    frame_ious,
    ref_avs_null_score,
    ref_avs_scores,
    resize_logits,
)
from crab.eval.router_stats import record_router_stats, router_stats_filename
from crab.eval.run import (
    METRICS_DIR,
    PREDICTIONS_DIR,
    EvaluateResult,
    dataset_kind,
    read_split,
    targets_over_limit,
)
from crab.eval.scoring import HEADLINE_SCORES, parse_failure_rate
from crab.features.store import FeatureStore, levels_key
from crab.models.collator import pad_token_id
from crab.models.mask_decoder import ClassHead, class_map
from crab.quality.avuie import REPORT_PATH as AVUIE_REPORT
from crab.quality.quarantine import load_quarantined_avuie
from crab.tasks import TASKS, Task
from crab.train.data import AvuieDataset
from crab.train.finetune_avs import load_finetuned_avs, mask_stage

__all__ = [
    "EMPTY_LOGIT",
    "binary_mask",
    "decode_mask_answers",
    "evaluate_masks",
    "mask_baselines",
    "masks_dir",
    "frequent_class",
    "predict_frame_logits",
    "predict_frame_mask",
]

log = logging.getLogger(__name__)

#: Logit of a pixel predicted as background with certainty (sigmoid ~ 2e-9): the empty-mask prediction.
EMPTY_LOGIT = -20.0
_RESULT_KEYS = ("miou", "f_score")


def decode_mask_answers(tokenizer: Any, answer_ids: Sequence[Sequence[int]]) -> list[str]:
    """Answer texts of a mask task: ``<mask_start>`` ... ``<mask_end>`` are special tokens and ARE the answer, so
    only EOS and padding are dropped (``skip_special_tokens`` would drop the mask block too)."""
    eos_id = tokenizer.eos_token_id
    pad_id = pad_token_id(tokenizer)
    return [tokenizer.decode([t for t in ids if t not in (eos_id, pad_id)]) for ids in answer_ids]


def binary_mask(logits: torch.Tensor) -> np.ndarray:
    """``(H, W)`` bool mask of ``(H, W)`` logits: probability above the IoU threshold, as the metric counts it."""
    return (torch.sigmoid(logits) > AVS_IOU_THRESHOLD).numpy()


def masks_dir(task: str) -> Path:
    """``predictions/<task>_masks``: the folder of a mask task's predicted masks (one PNG per frame)."""
    return PREDICTIONS_DIR / f"{task}_masks"


#: The trivial masks every mask task is compared with, as constant logits: nothing sounds, everything sounds.
TRIVIAL_MASKS: dict[str, float] = {"empty_mask": EMPTY_LOGIT, "full_frame_mask": -EMPTY_LOGIT}


def mask_baselines(truths: Sequence[torch.Tensor]) -> dict[str, dict[str, float]]:
    """mIoU and F of the trivial masks on per-video ground truth ``(T, H, W)``: empty and full frame.

    The empty mask's F is not 0: the official F curve starts at threshold 0, where every pixel (probability
    >= 0) counts as foreground, so its F is the full frame's F at that threshold.
    """
    out = {}
    for name, logit in TRIVIAL_MASKS.items():
        scores = avs_scores([torch.full(t.shape, logit) for t in truths], list(truths))
        out[name] = {k: scores[k] for k in _RESULT_KEYS}
    return out


def _frame_prediction(logits: torch.Tensor | None, size: tuple[int, int], class_head: ClassHead | None) -> torch.Tensor:
    """A frame's prediction at the ground truth's size from ``(C, S, S)`` decoder logits (None: no mask block):
    binary ``(H, W)`` logits (``class_head`` None; empty mask without logits), or AVSS ``(H, W)`` classes
    (:func:`crab.models.mask_decoder.class_map` of the head's kind; all background without logits)."""
    if logits is None:
        return torch.zeros(size, dtype=torch.long) if class_head else torch.full(size, EMPTY_LOGIT)
    if tuple(logits.shape[-2:]) != size:
        logits = resize_logits(logits, size)  # (C, H, W), bilinear as the official code upsamples
    return class_map(logits[None], class_head)[0] if class_head else logits[0]


def frequent_class(records: Sequence[Any]) -> int:
    """The object class named most often in ``records``' labels (AVSS train records; ties: lowest index), the
    ``frequent_class_full_frame`` baseline's class; background (0) when none names a class."""
    counts = Counter(AVSS_CLASSES.index(o) for r in records for o in r.label["objects"] or () if o in AVSS_CLASSES)
    return min(counts, key=lambda c: (-counts[c], c)) if counts else 0


def _avss_scores(
    predictions: list[torch.Tensor], truths: list[torch.Tensor], prior: int
) -> tuple[dict[str, float], dict[str, int], dict[str, dict[str, float]]]:
    """AVSS mIoU / F over the 71 classes per video (the ``avss_segmentation`` module, checked against the pure
    function) and the trivial class maps: ``all_background`` and ``frequent_class_full_frame`` (every pixel the
    train split's most named object class, :func:`frequent_class`)."""
    keys = ("miou", "f_score", "miou_no_background", "f_score_no_background")

    def score(maps: list[torch.Tensor]) -> dict[str, float]:
        result = load_metric("avss_segmentation").compute(predictions=maps, references=truths)
        expected = avss_scores(maps, truths)
        if result != expected:  # a wrapper (Arrow round trip) bug must not change a reported number
            raise RuntimeError(f"avss_segmentation disagrees with the pure function: {result} != {expected}")
        return {k: result[k] for k in keys} | {"num_classes_present": result["num_classes_present"]}

    baselines = {
        "all_background": score([torch.zeros_like(t) for t in truths]),
        "frequent_class_full_frame": score([torch.full_like(t, prior) for t in truths]),
    }
    return score(predictions), {"num_videos": len(truths)}, baselines


def _sample_key(record: Any) -> str:
    """What one scored sample is: an S4 / MS3 video (its frames), a Ref-AVS expression (its row's ``source``)."""
    return record.source if record.task == Task.REF_AVS.value else record.video_id


def _module_scores(config: str, predictions: list[torch.Tensor], truths: list[torch.Tensor] | None) -> dict:
    """The ``avs_segmentation`` module's scores, checked against the pure function (``config``: ``s4``, ``ms3``,
    ``ref_avs`` or ``ref_avs_null``); a wrapper (Arrow round trip) bug must not change a reported number."""
    metric = load_metric("avs_segmentation", config_name=config)
    result = metric.compute(predictions=predictions, references=truths)
    if config == "ref_avs_null":
        expected = ref_avs_null_score(predictions)
    elif config == "ref_avs":
        expected = ref_avs_scores(predictions, truths or [])
    else:
        expected = avs_scores(predictions, truths or [])
    if result != expected:
        raise RuntimeError(f"avs_segmentation[{config}] disagrees with the pure function: {result} != {expected}")
    return result


def _ref_avs_scores(
    samples: Sequence[str], subsets: dict[str, str], predictions: dict, truths: dict
) -> tuple[dict[str, float], dict[str, int], dict[str, dict[str, float]]]:
    """Ref-AVS's official scores per test subset (evaluation.md): seen and unseen mIoU / F in batches of 4
    expressions, null S; the same for the trivial masks. A subset without samples is left out.

    Returns:
        ``(scores, counts, baselines)``: scores ``seen_miou``, ``seen_f_score``, ``unseen_miou``,
        ``unseen_f_score``, ``null_s``; counts ``num_<subset>`` expressions.
    """
    chosen = {subset: [k for k in samples if subsets[k] == subset] for subset in ("seen", "unseen", "null")}
    counts = {f"num_{subset}": len(keys) for subset, keys in chosen.items()}

    def score(masks: dict) -> dict[str, float]:
        out: dict[str, float] = {}
        for subset in ("seen", "unseen"):
            if chosen[subset]:
                keys = chosen[subset]
                result = _module_scores("ref_avs", [masks[k] for k in keys], [truths[k] for k in keys])
                out.update({f"{subset}_{k}": result[k] for k in _RESULT_KEYS})
        if chosen["null"]:
            out["null_s"] = _module_scores("ref_avs_null", [masks[k] for k in chosen["null"]], None)["null_s"]
        return out

    baselines = {name: score({k: torch.full(t.shape, logit) for k, t in truths.items()})
                 for name, logit in TRIVIAL_MASKS.items()}  # fmt: skip
    return score(predictions), counts, baselines


def predict_frame_mask(model: Any, example: Any, answer: list[int], levels: torch.Tensor) -> torch.Tensor | None:
    """``(S, S)`` binary-head mask logits of one labelled frame, or None if the answer lacks a well-formed mask block."""
    logits = predict_frame_logits(model, example, answer, levels)
    return None if logits is None else logits[0]


@torch.no_grad()
def predict_frame_logits(model: Any, example: Any, answer: list[int], levels: torch.Tensor) -> torch.Tensor | None:
    """``(C, S, S)`` decoder logits of one labelled frame (C = the head's classes), or None if the answer lacks a
    well-formed mask block."""
    crab = model.get_base_model()
    device = next(crab.parameters()).device
    input_ids = torch.tensor([list(example.input_ids) + answer], device=device)  # (1, L)
    features = [level[None, None].to(device) for level in levels]  # L levels of (1, 1, P, Dv)
    prediction = crab.predict_masks(
        input_ids, features, video_features=example.video_features[None].to(device),
        audio_features=example.audio_features[None].to(device),
    )  # fmt: skip
    if not bool(prediction.has_masks[0]):
        return None
    return prediction.mask_logits[0, 0].float().cpu()  # (C, S, S): sample 0, frame 0


def evaluate_masks(params: Params, task: str) -> EvaluateResult:
    """Evaluate one mask task (module docstring).

    Args:
        params: reads ``evaluate``, ``pretrain`` / ``finetune`` / ``finetune_avs`` (model folders), ``features``,
            ``media`` and ``datasets``.
        task: a task of ``finetune_avs.tasks`` or ``finetune_avss.tasks``.

    Raises:
        CrabError: a model folder is missing. DataError: a split or mask file is missing or invalid.
    """
    evaluated = Task(task)
    if not TASKS[evaluated].masks:
        raise ValueError(f"evaluate_masks: {task} is not a mask task")
    cfg = params.evaluate
    records, num_excluded = read_split(evaluated, cfg.split, load_quarantined_avuie(AVUIE_REPORT))
    dataset = dataset_kind(params, evaluated)
    model_dir = getattr(params, mask_stage(evaluated.value)).out_dir
    model, tokenizer = load_finetuned_avs(params.pretrain.out_dir, params.finetune.out_dir, model_dir)
    semantic = TASKS[evaluated].mask_classes > 1  # AVSS: class maps, not binary masks
    class_head = model.get_base_model().config.mask_decoder_config.class_head if semantic else None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    store = FeatureStore(params.features.out_dir)
    prompts = AvuieDataset(records, tokenizer, model.get_base_model().config, store, params, with_targets=False)
    eos_id = tokenizer.eos_token_id
    pad_id = pad_token_id(tokenizer)
    with record_router_stats(model, eos_token_id=eos_id) as router:
        answer_ids, stats = generate_greedy(
            model, prompts, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens, eos_token_id=eos_id,
            pad_token_id=pad_id, lengths=[len(item.prompt_ids) for item in prompts.items], cache=cfg.cache,
        )  # fmt: skip
    # <mask_start> / <mask_end> are special tokens: keep them (they are the answer), drop only EOS and padding
    texts = decode_mask_answers(tokenizer, answer_ids)
    parse = TASKS[evaluated].parse_answer
    parsed: list[AvsAnswer | None] = [parse(text) for text in texts]

    # binary: (H, W) logits against a bool truth; AVSS: (H, W) predicted classes against the label map
    by_sample: dict[str, list[tuple[int, torch.Tensor, torch.Tensor]]] = defaultdict(list)  # frame, prediction, truth
    subsets: dict[str, str] = {}  # sample -> Ref-AVS test subset
    rows, masks = [], {}
    for index, (record, text, answer) in enumerate(zip(records, texts, parsed, strict=True)):
        label = TASKS[evaluated].label_from_dict(record.label)
        read = read_class_mask if semantic else read_binary_mask
        truth = torch.from_numpy(read(label.mask))  # (H, W) at the ground truth's resolution
        logits = None
        if answer is not None:
            levels = store.levels(levels_key(record))[label.frame]  # (L, P, Dv)
            logits = predict_frame_logits(model, prompts[index], list(answer_ids[index]), levels)  # cut after EOS
        if logits is None:
            parsed[index] = None  # no usable mask tokens: an empty mask / all background, counted as a parse failure
        prediction = _frame_prediction(logits, tuple(truth.shape), class_head)
        sample = _sample_key(record)
        by_sample[sample].append((label.frame, prediction, truth))
        subsets[sample] = record.label.get("subset", "")
        found = None if parsed[index] is None else parsed[index].to_dict()
        mask_name = f"{record.id.rsplit('/', 1)[-1]}.png"  # ids are "<task>/<split>/<item_id>"
        if semantic:
            iou = avss_scores([prediction[None]], [truth[None]])["miou"]  # the frame's mIoU over its classes
            masks[mask_name] = prediction.numpy()
        else:
            iou = float(frame_ious(torch.sigmoid(prediction)[None], truth[None], AVS_IOU_THRESHOLD)[0])
            masks[mask_name] = binary_mask(prediction)
        rows.append({"id": record.id, "task": record.task, "video_id": record.video_id,
                     "instruction": record.instruction, "target": record.target, "prediction": text, "parsed": found,
                     "label": record.label, "media": record.media, "correct": iou,
                     "mask": f"{masks_dir(evaluated.value).name}/{mask_name}"})  # fmt: skip

    samples = sorted(by_sample) if evaluated is not Task.REF_AVS else list(by_sample)  # Ref-AVS: test order
    predictions = {k: torch.stack([f[1] for f in sorted(by_sample[k], key=lambda f: f[0])]) for k in samples}
    truths = {k: torch.stack([f[2] for f in sorted(by_sample[k], key=lambda f: f[0])]) for k in samples}  # (T, H, W)
    if evaluated is Task.REF_AVS:
        scores, counts, baselines = _ref_avs_scores(samples, subsets, predictions, truths)
    elif semantic:
        prior = frequent_class(read_split(evaluated, "train", load_quarantined_avuie(AVUIE_REPORT))[0])
        scores, counts, baselines = _avss_scores([predictions[k] for k in samples], [truths[k] for k in samples], prior)
    else:
        result = _module_scores(evaluated.value, [predictions[k] for k in samples], [truths[k] for k in samples])
        scores, counts = {k: result[k] for k in _RESULT_KEYS}, {"num_videos": result["num_videos"]}
        baselines = mask_baselines([truths[k] for k in samples])
    named = [(p, r.label["objects"]) for p, r in zip(parsed, records, strict=True) if r.label["objects"] is not None]
    object_accuracy = (
        sum(p is not None and list(p.objects or ()) == o for p, o in named) / len(named) if named else None
    )
    num_over = targets_over_limit(tokenizer, records, cfg.max_new_tokens)
    metrics = {
        "task": evaluated.value, "split": cfg.split, "dataset": dataset, "num_samples": len(records),
        **counts, **scores, "object_accuracy": object_accuracy,
        "parse_failure_rate": parse_failure_rate(parsed), "baselines": baselines,
        "generation": {"max_new_tokens": cfg.max_new_tokens, "targets_over_max_new_tokens": num_over,
                       "seconds": stats.seconds, "tokens_per_s": stats.tokens_per_s},
    }  # fmt: skip
    predictions_path = PREDICTIONS_DIR / f"{evaluated}.jsonl"
    metrics_path = METRICS_DIR / f"{evaluated}.json"
    router_path = METRICS_DIR / router_stats_filename(evaluated.value)
    write_text_atomic(
        predictions_path, "".join(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n" for row in rows)
    )
    with replace_dir(masks_dir(evaluated.value)) as folder:
        for name, mask in masks.items():
            (write_class_mask if semantic else write_binary_mask)(folder / name, mask)
    write_text_atomic(metrics_path, json.dumps(metrics, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    write_text_atomic(router_path, json.dumps(router.summary(evaluated.value), indent=2, ensure_ascii=False) + "\n")
    headline = HEADLINE_SCORES[evaluated]
    best = max(baselines, key=lambda name: baselines[name][headline])
    log.info(
        "evaluate %s (%s, %s, n=%d frames of %d %s): %s | best baseline %s %.4f | parse failures %.1f%%",
        evaluated, cfg.split, dataset, len(records), len(samples),
        "expressions" if evaluated is Task.REF_AVS else "videos",
        " ".join(f"{k} {v:.4f}" for k, v in scores.items()), best, baselines[best][headline],
        100 * metrics["parse_failure_rate"],
    )  # fmt: skip
    return EvaluateResult(
        task=evaluated.value, split=cfg.split, dataset=dataset, num_samples=len(records), num_excluded=num_excluded,
        score_name=headline, score=scores[headline], parse_failure_rate=metrics["parse_failure_rate"],
        best_baseline=best, best_baseline_score=baselines[best][headline], generation=stats,
        predictions_path=predictions_path, metrics_path=metrics_path, router_path=router_path,
    )  # fmt: skip
