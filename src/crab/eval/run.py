"""The ``evaluate`` stage: greedy answers to the test prompts, parsed and scored, with trivial baselines.

DESIGN.md sections 3 and 7; a DVC ``foreach`` stage run once per fine-tuned task (``crab evaluate --task
ave``). For one task it:

1. reads ``data/avuie/<task>/<evaluate.split>.jsonl`` minus the records ``validate_avuie`` quarantined
   (and the train split, whose labels fit the baselines' priors);
2. builds each prompt exactly as training does, with the training stages' own dataset
   (``crab.train.data.AvuieDataset(..., with_targets=False)``: chat template, placeholders expanded to
   the features of the ``features`` store) and decodes it greedily in length-sorted, left-padded batches
   with the KV cache (:mod:`crab.eval.generation`);
3. parses each answer with the task's parser (``crab.tasks.TASKS[task].parse_answer``); an unparsable
   answer counts as wrong (AVE: all ten seconds background; AVVP: no event in either modality; ARIG: an
   empty box) and is counted in the parse-failure rate;
4. scores the model with our ``evaluate`` modules (``ave_accuracy``, ``avqa_accuracy``, ``avvp_f``,
   ``arig_ciou``, loaded from the package, offline) and checks that they agree with the pure metric
   functions, so a wrapper bug cannot change a published number; scores the trivial baselines (chance,
   majority / prior; :mod:`crab.eval.baselines`, :mod:`crab.eval.baselines_avvp`,
   :mod:`crab.eval.baselines_arig`) on the same test labels, their priors fitted on the train labels only;
5. writes ``predictions/<task>.jsonl`` (every record's generation, parsed answer, label, media and per-record score
   ``correct``, sorted by id) and ``metrics/<task>.json`` (the model's scores, parse-failure rate, baselines
   and decoding speed; the ``report`` stage reads both), each atomically (temp file + rename), and logs a
   one-line summary with the task's headline score (:data:`HEADLINE_SCORES`);
6. writes ``metrics/router_<task>.json``: the mean router weight of every head in every adapted layer over
   the tokens decoded in step 2 (paper Figure 5), gathered by hooks during that same generation, no second
   forward pass (:mod:`crab.eval.router_stats`); with plain LoRA it says ``"layers": []``.

``dataset`` in the metrics says what was evaluated: ``"AV-Synth"`` when the task's raw dataset root holds
AV-Synth's ``avsynth_scenes.jsonl`` side file, ``"real"`` otherwise, so a report can never present
numbers on the synthetic benchmark as numbers on the real one.

How it differs from the authors' code (crab-reference section 5.1): Crab decodes with whatever sampling
settings the checkpoint carries and without an attention mask (answers depend on the batch), and it
releases no parser or scorer for AVE, AVVP or AVQA; here decoding is greedy and batch-independent, and
parsing, scoring and baselines are part of the stage, with every generation kept for inspection.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from crab.atomic import write_text_atomic
from crab.avuie.avvp import AvvpLabel
from crab.avuie.build import OUT_DIR as AVUIE_DIR
from crab.avuie.schema import AvuieRecord
from crab.config import Params
from crab.datasets.vocab_seg import LLP_CLASSES
from crab.errors import CrabError
from crab.eval.baselines import ave_baselines, avqa_baselines
from crab.eval.baselines_arig import arig_baselines
from crab.eval.baselines_avvp import avvp_baselines
from crab.eval.generation import GenerationStats, generate_greedy
from crab.eval.loading import load_metric
from crab.eval.metrics_arig import arig_ciou, arig_sample_ciou, box_fields, box_map
from crab.eval.metrics_ave import ave_accuracy
from crab.eval.metrics_avqa import avqa_accuracy, normalise_answer
from crab.eval.metrics_avvp import AVVP_LEVELS, AVVP_SCORES, avvp_f
from crab.eval.router_stats import record_router_stats, router_stats_filename
from crab.eval.scoring import HEADLINE_SCORES, parse_failure_rate
from crab.features.store import FeatureStore
from crab.models.collator import pad_token_id
from crab.quality.avuie import REPORT_PATH as AVUIE_REPORT
from crab.quality.quarantine import load_quarantined_avuie
from crab.synth.scene import SCENES_FILENAME
from crab.tasks import TASKS, Task
from crab.train.data import AvuieDataset, load_records
from crab.train.finetune import load_finetuned, use_task_adapter

__all__ = [
    "EVALUATED_TASKS",
    "HEADLINE_SCORES",
    "METRICS_DIR",
    "PREDICTIONS_DIR",
    "EvaluateResult",
    "dataset_kind",
    "evaluate",
    "read_split",
    "score_predictions",
]

log = logging.getLogger(__name__)

PREDICTIONS_DIR = Path("predictions")
METRICS_DIR = Path("metrics")

#: Tasks with a metric, and the ``evaluate`` module that scores each.
EVALUATED_TASKS: dict[Task, str] = {
    Task.AVE: "ave_accuracy", Task.AVQA: "avqa_accuracy", Task.AVVP: "avvp_f", Task.ARIG: "arig_ciou"
}  # fmt: skip
#: The result keys the metrics file keeps per task, for the model and for every baseline. AVVP keeps the ten
#: F values as ``avvp_f`` names them (``segment_audio`` ... ``event_event_av``), not its ``num_videos`` and
#: ``num_parse_failures``: the file already holds ``num_samples`` and ``parse_failure_rate``, and for a
#: baseline they would be n and 0 by construction.
_RESULT_KEYS: dict[Task, tuple[str, ...]] = {
    Task.AVE: ("accuracy",),
    Task.AVQA: ("accuracy", "accuracy_per_group", "accuracy_per_type"),
    Task.AVVP: tuple(f"{level}_{score}" for level in AVVP_LEVELS for score in AVVP_SCORES),
    Task.ARIG: ("ciou", "auc", "mean_ciou"),
}
#: The trivial baselines of each task: ``fit(train_labels, test_labels) -> {name: result dict}``.
_BASELINES: dict[Task, Callable[[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]], dict[str, dict]]] = {
    Task.AVE: ave_baselines,
    Task.AVQA: avqa_baselines,
    Task.AVVP: avvp_baselines,
    Task.ARIG: arig_baselines,
}


@dataclass(frozen=True)
class EvaluateResult:
    """What one ``evaluate`` run produced.

    Attributes:
        task: the evaluated task.
        split: the evaluated AV-UIE split (``evaluate.split``).
        dataset: ``"AV-Synth"`` or ``"real"`` (module docstring).
        num_samples: records scored.
        num_excluded: records of the split left out because ``validate_avuie`` quarantined them.
        score_name: the task's headline result key (:data:`HEADLINE_SCORES`): ``"accuracy"`` for AVE
            (per second) and AVQA (overall, over questions), ``"segment_event_av"`` for AVVP.
        score: the model's value of it.
        parse_failure_rate: share of answers without a well-formed answer tag.
        best_baseline: name of the trivial baseline with the highest headline score.
        best_baseline_score: its headline score.
        generation: decoding statistics.
        predictions_path: ``predictions/<task>.jsonl``.
        metrics_path: ``metrics/<task>.json``.
        router_path: ``metrics/router_<task>.json`` (router statistics, :mod:`crab.eval.router_stats`).
    """

    task: str
    split: str
    dataset: str
    num_samples: int
    num_excluded: int
    score_name: str
    score: float
    parse_failure_rate: float
    best_baseline: str
    best_baseline_score: float
    generation: GenerationStats
    predictions_path: Path
    metrics_path: Path
    router_path: Path


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def read_split(
    task: str, split: str, quarantined: set[str], avuie_dir: Path = AVUIE_DIR
) -> tuple[list[AvuieRecord], int]:
    """The AV-UIE records of one task and split minus the quarantined ones, sorted by id.

    Args:
        task: task name.
        split: ``"train"``, ``"val"`` or ``"test"``.
        quarantined: record ids ``validate_avuie`` quarantined (``load_quarantined_avuie``).
        avuie_dir: the AV-UIE folder (``data/avuie``).

    Returns:
        The kept records and the number of quarantined records of this task and split.

    Raises:
        DataError: the split file is missing or malformed, or no record is left.
    """
    records = load_records(avuie_dir, [task], split, quarantined)  # the training stages' reader
    prefix = f"{task}/{split}/"  # record ids are "<task>/<split>/<item_id>"
    return sorted(records, key=lambda r: r.id), sum(1 for q in quarantined if q.startswith(prefix))


def dataset_kind(params: Params, task: str) -> str:
    """``"AV-Synth"`` if the task's raw dataset root (or a sub-folder: AVSBench's) holds ``avsynth_scenes.jsonl``,
    else ``"real"``."""
    root = Path(getattr(params.datasets, TASKS[Task(task)].dataset))
    return "AV-Synth" if (root / SCENES_FILENAME).is_file() or any(root.glob(f"*/{SCENES_FILENAME}")) else "real"


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------


def _evaluated_task(task: str) -> Task:
    try:
        parsed = Task(task)
    except ValueError:
        raise CrabError(f"evaluate: unknown task {task!r}") from None
    if parsed not in EVALUATED_TASKS:
        known = ", ".join(EVALUATED_TASKS)
        raise CrabError(f"evaluate: task {task!r} has no metric; evaluated tasks: {known}")
    return parsed


def _parsed_dict(parsed: Any) -> dict[str, Any] | None:
    """A parsed answer as JSON: AVVP as its label dict (the ``label`` layout), the others field by field."""
    if parsed is None:
        return None
    return parsed.to_dict() if isinstance(parsed, AvvpLabel) else dataclasses.asdict(parsed)


def _model_scores(task: Task, parsed: Sequence[Any], labels: Sequence[Mapping[str, Any]]) -> tuple[dict, list]:
    """The model's result dict from the ``evaluate`` module (checked against the pure function) and per-row scores."""
    metric = load_metric(EVALUATED_TASKS[task])
    if task is Task.AVE:
        predictions = [_parsed_dict(p) for p in parsed]
        result = metric.compute(predictions=predictions, references=list(labels))
        expected = ave_accuracy(predictions, labels)
        # Share of the 10 seconds right, per video (every video has 10, so the mean is the accuracy).
        correct: list = [ave_accuracy([p], [label])["accuracy"] for p, label in zip(predictions, labels, strict=True)]
    elif task is Task.AVVP:
        predictions = [_parsed_dict(p) for p in parsed]  # None stays None: an empty prediction
        result = metric.compute(predictions=predictions, references=list(labels))
        # The class list only validates the references (scores do not depend on it), so the module may skip it.
        expected = avvp_f(predictions, labels, LLP_CLASSES)
        # The video's segment-level Event@AV: every AVVP score is a mean over videos, so the mean of this
        # column is exactly the headline ``segment_event_av``, and it covers both modalities at once.
        correct = [
            avvp_f([p], [label], LLP_CLASSES)["segment_event_av"] for p, label in zip(predictions, labels, strict=True)
        ]
    elif task is Task.ARIG:
        predictions = [_parsed_dict(p) for p in parsed]  # None stays None: an empty map
        result = metric.compute(predictions=predictions, references=list(labels))
        expected = arig_ciou(predictions, labels)
        # the frame's own cIoU (the metric's "ciou" is the share of these >= 0.5)
        correct = [
            arig_sample_ciou(box_map(None if p is None else box_fields(p)), box_map(box_fields(label)))
            for p, label in zip(predictions, labels, strict=True)
        ]
    else:
        answers = [None if p is None else p.answer for p in parsed]
        references = [label["answer"] for label in labels]
        types = [label["question_type"] for label in labels]
        result = metric.compute(predictions=answers, references=references, question_types=types)
        expected = avqa_accuracy(answers, references, types)
        correct = [
            a is not None and normalise_answer(a) == normalise_answer(r)
            for a, r in zip(answers, references, strict=True)
        ]
    if result != expected:  # a wrapper (Arrow round trip) bug must not change a reported number
        raise RuntimeError(f"{EVALUATED_TASKS[task]} module disagrees with the pure function: {result} != {expected}")
    return result, correct


def score_predictions(
    task: str, records: Sequence[AvuieRecord], texts: Sequence[str], train_labels: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Parse the generated answers and score them and the trivial baselines.

    Args:
        task: ``"ave"``, ``"avqa"`` or ``"avvp"``.
        records: the evaluated records (sorted by id).
        texts: the decoded answer of each record, same order.
        train_labels: the ``label`` of every (kept) train record: the baselines' priors.

    Returns:
        The prediction rows (``predictions/<task>.jsonl`` lines, in the records' order) and the scores:
        the model's result keys (AVE ``accuracy``; AVQA also ``accuracy_per_group``, ``accuracy_per_type``;
        AVVP the ten F values ``segment_audio`` ... ``event_event_av``), ``parse_failure_rate`` and
        ``baselines`` (name -> the same result keys). A row's ``correct`` is the record's own score: AVE the
        share of its seconds right, AVQA whether the answer matches, AVVP the video's segment-level Event@AV.

    Raises:
        CrabError: the task has no metric.
        ValueError: lengths differ, no records, or invalid labels (no train labels for the baselines).
    """
    evaluated = _evaluated_task(task)
    if len(texts) != len(records):
        raise ValueError(f"{len(texts)} answers for {len(records)} records")
    parse = TASKS[evaluated].parse_answer
    parsed = [parse(text) for text in texts]
    labels = [record.label for record in records]
    result, correct = _model_scores(evaluated, parsed, labels)
    keys = _RESULT_KEYS[evaluated]
    fitted = _BASELINES[evaluated](train_labels, labels)
    baselines = {name: {k: scores[k] for k in keys} for name, scores in fitted.items()}
    rows = [
        {
            "id": record.id,
            "task": record.task,
            "video_id": record.video_id,
            "instruction": record.instruction,
            "target": record.target,
            "prediction": text,
            "parsed": _parsed_dict(p),
            "label": record.label,
            "media": record.media,  # the report's figures read the frame (ARIG's image)
            "correct": c,
        }
        for record, text, p, c in zip(records, texts, parsed, correct, strict=True)
    ]
    scores = {k: result[k] for k in keys}
    scores["parse_failure_rate"] = parse_failure_rate(parsed)
    scores["baselines"] = baselines
    return rows, scores


# --------------------------------------------------------------------------------------------------
# Stage
# --------------------------------------------------------------------------------------------------


def targets_over_limit(tokenizer: Any, records: Sequence[AvuieRecord], max_new_tokens: int) -> int:
    """How many reference targets (+ the EOS that ends them) are longer than ``max_new_tokens`` tokens.

    A generation cut at ``max_new_tokens`` loses its answer tags and counts as a parse failure, so a limit
    below the task's own targets turns truncation into "wrong answers"; the stage warns and records it.
    """
    lengths = [len(ids) + 1 for ids in tokenizer([r.target for r in records], add_special_tokens=False).input_ids]
    return sum(length > max_new_tokens for length in lengths)


def evaluate(params: Params, task: str) -> EvaluateResult:
    """Run the ``evaluate`` stage for one task (module docstring).

    Args:
        params: reads ``evaluate`` (split, batch size, max_new_tokens), ``pretrain`` and ``finetune``
            (model folders), ``features`` (store folder), ``media`` (audio keys) and ``datasets`` (AV-Synth
            or real).
        task: a task with a metric (``"ave"``, ``"avqa"``, ``"avvp"``).

    Returns:
        The :class:`EvaluateResult`; the files are written.

    Raises:
        CrabError: the task has no metric, or a model folder is missing.
        DataError: a split has no records left, or an input file is missing or invalid.
        FeatureStoreError: the store is missing or lacks a record's features.
    """
    evaluated = _evaluated_task(task)
    cfg = params.evaluate
    quarantined = load_quarantined_avuie(AVUIE_REPORT)
    records, num_excluded = read_split(evaluated, cfg.split, quarantined)
    train_records, _ = read_split(evaluated, "train", quarantined)
    dataset = dataset_kind(params, evaluated)
    log.info(
        "evaluate %s: %d %s records (%d quarantined), dataset %s", task, len(records), cfg.split, num_excluded, dataset
    )

    model, tokenizer = load_finetuned(params.pretrain.out_dir, params.finetune.out_dir)
    use_task_adapter(model, evaluated.value)  # the single-task baseline: this task's own adapter
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    # The training stages' dataset without targets: the prompts are built exactly as in training.
    prompts = AvuieDataset(
        records, tokenizer, model.get_base_model().config, FeatureStore(params.features.out_dir), params,
        with_targets=False,
    )  # fmt: skip
    eos_id = tokenizer.eos_token_id
    pad_id = pad_token_id(tokenizer)
    with record_router_stats(model, eos_token_id=eos_id) as router:  # hooks on the generation's own forwards
        answer_ids, stats = generate_greedy(
            model, prompts, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens, eos_token_id=eos_id,
            pad_token_id=pad_id, lengths=[len(item.prompt_ids) for item in prompts.items], cache=cfg.cache,
        )  # fmt: skip
    texts = tokenizer.batch_decode(answer_ids, skip_special_tokens=True)
    num_over = targets_over_limit(tokenizer, records, cfg.max_new_tokens)
    if num_over:
        log.warning(
            "evaluate %s: %d of %d reference answers are longer than evaluate.max_new_tokens=%d tokens; "
            "answers cut there lose their tags and count as parse failures",
            task, num_over, len(records), cfg.max_new_tokens,
        )  # fmt: skip
    rows, scores = score_predictions(evaluated, records, texts, [r.label for r in train_records])

    metrics = {
        "task": str(evaluated),
        "split": cfg.split,
        "dataset": dataset,
        "num_samples": len(records),
        **scores,
        "generation": {
            "max_new_tokens": cfg.max_new_tokens,
            "targets_over_max_new_tokens": num_over,
            "seconds": stats.seconds,
            "tokens_per_s": stats.tokens_per_s,
        },
    }
    predictions_path = PREDICTIONS_DIR / f"{evaluated}.jsonl"
    metrics_path = METRICS_DIR / f"{evaluated}.json"
    router_path = METRICS_DIR / router_stats_filename(str(evaluated))
    write_text_atomic(
        predictions_path, "".join(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n" for row in rows)
    )
    write_text_atomic(metrics_path, json.dumps(metrics, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    write_text_atomic(router_path, json.dumps(router.summary(str(evaluated)), indent=2, ensure_ascii=False) + "\n")

    headline = HEADLINE_SCORES[evaluated]
    best = max(scores["baselines"], key=lambda name: scores["baselines"][name][headline])  # first on ties
    result = EvaluateResult(
        task=str(evaluated),
        split=cfg.split,
        dataset=dataset,
        num_samples=len(records),
        num_excluded=num_excluded,
        score_name=headline,
        score=scores[headline],
        parse_failure_rate=scores["parse_failure_rate"],
        best_baseline=best,
        best_baseline_score=scores["baselines"][best][headline],
        generation=stats,
        predictions_path=predictions_path,
        metrics_path=metrics_path,
        router_path=router_path,
    )
    log.info(
        "evaluate %s (%s, %s, n=%d): %s %.4f | best baseline %s %.4f | parse failures %.1f%% | %.0f tokens/s",
        result.task, result.split, result.dataset, result.num_samples, result.score_name, result.score,
        result.best_baseline, result.best_baseline_score, 100 * result.parse_failure_rate, stats.tokens_per_s,
    )  # fmt: skip
    return result
