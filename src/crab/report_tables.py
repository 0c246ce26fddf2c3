"""The report's tables as pandas DataFrames: the paper's Tables 1-3 with our numbers beside them.

The ``report`` stage (:mod:`crab.report`) executes the notebooks in ``notebooks/``; every piece of logic they
need lives here so tests can reach it (DESIGN.md section 3). Inputs are the evaluate stage's outputs
(``metrics/<task>.json``, ``predictions/<task>.jsonl``), the train stages' dvclive TSVs and the data stages'
reports (``data/avuie/stats.json``, ``reports/validation/*.json``).

Published numbers are constants with their source: the Crab paper (Du et al., CVPR 2025, arXiv:2503.13068)
Table 1 (general models, every column; a check or a cross in a cell is ``None`` here), Table 2 (temporal localization: AVE accuracy and
AVVP segment- / event-level F), Table 3 (MUSIC-AVQA test, per modality group), plus the best specialised AVE
number reported elsewhere (DG-SCT, listed in the project's evaluation reference). The paper's two AVVP
columns are Event@AV (audio and visual events pooled) at segment and at event level (evaluation.md), our
``segment_event_av`` / ``event_event_av``; :func:`avvp_table` shows all ten AVVP F values. Published
numbers are percentages (except Table 1's ARIG AUC and Ref-AVS F, printed as fractions); our metrics files hold
fractions and are shown x100 where the paper prints percentages. Table 5 (segmentation) is in
:mod:`crab.report_segmentation`.

Every row says what it is (``Kind``: published / ours / trivial baseline) and what it was measured on
(``Evaluated on``): in the tiny profile our numbers come from AV-Synth, a synthetic benchmark in the real
datasets' layouts, so they are NOT comparable with the published ones as numbers; the published rows are a
sanity reference only. The dataset label comes from the metrics file (``"dataset": "AV-Synth" | "real"``).
Trivial baselines are ranked by the task's headline score (the ``evaluate`` stage's
``crab.eval.scoring.HEADLINE_SCORES``, a torch-free module), the one its summary line reports.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from crab.errors import DataError
from crab.eval.metrics_avvp import AVVP_LEVELS, AVVP_SCORES
from crab.eval.scoring import HEADLINE_SCORES
from crab.tasks import AUDIO_PROMPT, IMAGE_PROMPT, VIDEO_PROMPT

__all__ = [
    "AVQA_GROUP_COLUMNS",
    "AVVP_KEYS",
    "FRACTION_COLUMNS",
    "PAPER",
    "PAPER_TABLE1",
    "PAPER_TABLE2",
    "PAPER_TABLE3_AVQA",
    "PublishedRow",
    "TABLE1_COLUMNS",
    "avqa_table",
    "avqa_type_table",
    "avvp_table",
    "best_baseline",
    "comparability_note",
    "comparison_table",
    "dataset_label",
    "example_predictions",
    "headline_score",
    "load_training_curves",
    "parse_failure_table",
    "percent",
    "published_records",
    "published_rows",
    "read_json",
    "read_metrics",
    "read_predictions",
    "results_frame",
    "table1",
    "temporal_table",
    "to_html",
]

PAPER = "Crab (Du et al., CVPR 2025, arXiv:2503.13068)"
PUBLISHED, OURS, BASELINE = "published", "ours", "trivial baseline"
OUR_METHOD = "Crab (ours)"
#: Table 3's columns, in the paper's order; "Avg" is the overall accuracy pooled over all questions.
AVQA_GROUP_COLUMNS: tuple[str, ...] = ("Audio", "Visual", "Audio-Visual", "Avg")
#: The ten AVVP result keys of ``metrics/avvp.json`` (model and every baseline), ``avvp_f``'s names.
AVVP_KEYS: tuple[str, ...] = tuple(f"{level}_{score}" for level in AVVP_LEVELS for score in AVVP_SCORES)
_AVVP_SCORE_NAMES = {"audio": "Audio", "visual": "Visual", "audio_visual": "Audio-Visual", "type_av": "Type@AV",
                     "event_av": "Event@AV"}  # fmt: skip
_REAL = {"ave": "AVE test (real)", "avvp": "LLP test (real)", "avqa": "MUSIC-AVQA test (real)",
         "arig": "AVSBench S4 test (real)", "s4": "AVSBench S4 test (real)", "ms3": "AVSBench MS3 test (real)",
         "avss": "AVSBench-semantic test (real)", "ref_avs": "Ref-AVS test (real)"}  # fmt: skip
#: How a task is written in prose where its acronym is not its name upper-cased.
_TASK_ACRONYMS = {"ref_avs": "Ref-AVS"}
#: The columns each task fills in Tables 1 and 2: column -> result key in ``metrics/<task>.json``. AVVP's are
#: the paper's "Segment-level" / "Event-level", i.e. Event@AV at each level (evaluation.md).
_TASK_COLUMNS: dict[str, dict[str, str]] = {
    "ave": {"AVE Acc": "accuracy"},
    "avvp": {"AVVP Segment-level": "segment_event_av", "AVVP Event-level": "event_event_av"},
    "arig": {"ARIG cIoU": "ciou", "ARIG AUC": "auc"},
    "avqa": {"AVQA Acc": "accuracy"},
    "ms3": {"MS3 mIoU": "miou", "MS3 F-score": "f_score"},
    "avss": {"AVSS mIoU": "miou", "AVSS F-score": "f_score"},
    "ref_avs": {"Ref-AVS Seen mIoU": "seen_miou", "Ref-AVS Seen F-score": "seen_f_score"},
}
#: The evaluated tasks with a Table 1 column, in its order.
_TABLE1_TASKS = ("ave", "avvp", "arig", "avqa", "ms3", "avss", "ref_avs")
_TABLE2_TASKS = ("ave", "avvp")
# What the tables read from a metrics file (checked by read_metrics) and which score ranks the baselines.
# Restated here, not imported from crab.eval.run: that imports torch and transformers (~5 s), which the report
# driver must not, and inside the notebook kernel tqdm prints a widget warning into the report. A unit test
# keeps them equal to crab.eval.run's _RESULT_KEYS.
_REQUIRED_KEYS = {
    "ave": ("task", "split", "dataset", "num_samples", "accuracy", "parse_failure_rate", "baselines"),
    "avqa": ("task", "split", "dataset", "num_samples", "accuracy", "accuracy_per_group", "accuracy_per_type",
             "parse_failure_rate", "baselines"),
    "avvp": ("task", "split", "dataset", "num_samples", *AVVP_KEYS, "parse_failure_rate", "baselines"),
    "arig": ("task", "split", "dataset", "num_samples", "ciou", "auc", "mean_ciou", "parse_failure_rate", "baselines"),
    **{task: ("task", "split", "dataset", "num_samples", "num_videos", "miou", "f_score", "object_accuracy",
              "parse_failure_rate", "baselines") for task in ("s4", "ms3")},
    "avss": ("task", "split", "dataset", "num_samples", "num_videos", "miou", "f_score", "miou_no_background",
             "f_score_no_background", "object_accuracy", "parse_failure_rate", "baselines"),
    "ref_avs": ("task", "split", "dataset", "num_samples", "num_seen", "num_unseen", "num_null", "seen_miou",
                "seen_f_score", "unseen_miou", "unseen_f_score", "null_s", "object_accuracy", "parse_failure_rate",
                "baselines"),
}  # fmt: skip
#: The keys every trivial baseline of a task must carry (at least the headline score that ranks them).
_BASELINE_KEYS = {"ave": ("accuracy",), "avqa": ("accuracy",), "avvp": AVVP_KEYS, "arig": ("ciou", "auc", "mean_ciou"),
                  "s4": ("miou", "f_score"), "ms3": ("miou", "f_score"),
                  "avss": ("miou", "f_score"), "ref_avs": ("seen_miou", "seen_f_score", "unseen_miou", "unseen_f_score", "null_s")}  # fmt: skip


@dataclass(frozen=True)
class PublishedRow:
    """One published result.

    Attributes:
        method: the method's name as printed in the source.
        values: column -> percentage (``None`` where the source gives none).
        source: where the number is printed.
        evaluated_on: the benchmark it was measured on.
    """

    method: str
    values: dict[str, float | None]
    source: str
    evaluated_on: str


def published_rows(
    source: str, evaluated_on: str, columns: Sequence[str], rows: Sequence[tuple]
) -> tuple[PublishedRow, ...]:
    """``(method, *values)`` tuples in ``columns`` order as :class:`PublishedRow` s of one source."""
    return tuple(PublishedRow(m, dict(zip(columns, vals, strict=True)), source, evaluated_on) for m, *vals in rows)


def _temporalpublished_rows(source: str, rows: Sequence[tuple]) -> tuple[PublishedRow, ...]:
    """Table 2 rows, each labelled with the benchmarks it has a number on (AVE, LLP or both)."""
    columns = [c for t in _TABLE2_TASKS for c in _TASK_COLUMNS[t]]
    published = []
    for method, *values in rows:
        by_column = dict(zip(columns, values, strict=True))
        tasks = [t for t in _TABLE2_TASKS if any(by_column[c] is not None for c in _TASK_COLUMNS[t])]
        published.append(PublishedRow(method, by_column, source, "; ".join(_REAL[t] for t in tasks)))
    return tuple(published)


#: Table 1's columns in the paper's order. ARIG AUC and Ref-AVS Seen F are printed as fractions in the paper and
#: are kept so (:data:`FRACTION_COLUMNS`); every other column is a percentage.
TABLE1_COLUMNS: tuple[str, ...] = (
    "AVE Acc", "AVVP Segment-level", "AVVP Event-level", "ARIG cIoU", "ARIG AUC", "AVQA Acc", "MS3 mIoU",
    "MS3 F-score", "AVSS mIoU", "AVSS F-score", "Ref-AVS Seen mIoU", "Ref-AVS Seen F-score",
)  # fmt: skip
FRACTION_COLUMNS = frozenset({"ARIG AUC", "Ref-AVS Seen F-score"})
#: Table 1 (comparison with general models), every column. A check or a cross in the paper is ``None`` here;
#: X-InstructBLIP's AVQA is zero-shot.
PAPER_TABLE1 = published_rows(
    f"{PAPER}, Table 1",
    "real benchmarks",
    TABLE1_COLUMNS,
    [
        ("TimeChat", None, 51.28, None, None, None, None, None, None, None, None, None, None),
        ("MEERKAT", None, 54.96, None, None, None, None, None, None, None, None, None, None),
        ("GroundingGPT", None, None, None, 44.02, 0.45, None, None, None, None, None, None, None),
        ("X-InstructBLIP (zero-shot)", None, None, None, None, None, 44.50, None, None, None, None, None, None),
        ("VALOR", None, None, None, None, None, 78.90, None, None, None, None, None, None),
        ("AnyRef", None, None, None, None, None, None, 55.6, 66.30, None, None, None, None),
        ("Crab", 80.15, 59.00, 54.44, 41.78, 0.42, 78.94, 58.21, 66.24, 26.52, 32.10, 40.54, 0.58),
    ],
)
#: Table 2 (specialised models, temporal localization: AVE accuracy, AVVP segment / event level; "-" is None)
#: + DG-SCT, the best specialised AVE number published elsewhere.
PAPER_TABLE2 = _temporalpublished_rows(
    f"{PAPER}, Table 2",
    [
        ("AVT", 75.80, None, None),
        ("PSP", 77.80, None, None),
        ("MM-Pyramid", 77.80, 59.20, 53.04),
        ("CMBS", None, 55.00, 48.48),
        ("MPN", 77.60, None, None),
        ("DHHN", None, 60.32, 55.06),
        ("Crab", 80.15, 59.00, 54.44),
    ],
) + _temporalpublished_rows("DG-SCT (Duan et al., NeurIPS 2023)", [("DG-SCT", 82.18, None, None)])
#: Table 3 (specialised models on the MUSIC-AVQA test set), accuracy per modality group and overall.
PAPER_TABLE3_AVQA = published_rows(
    f"{PAPER}, Table 3",
    _REAL["avqa"],
    AVQA_GROUP_COLUMNS,
    [
        ("ST-AVQA", 73.87, 74.40, 69.53, 71.59),
        ("COCA", 75.42, 75.23, 69.96, 72.33),
        ("PSTP-Net", 70.91, 77.26, 72.57, 73.52),
        ("LAVISH", 75.97, 80.22, 71.26, 74.46),
        ("TSPM", 76.91, 83.61, 73.51, 76.79),
        ("Crab", 76.58, 90.73, 74.13, 78.94),
    ],
)


# --------------------------------------------------------------------------------------------------
# Reading stage outputs
# --------------------------------------------------------------------------------------------------


def read_json(path: str | Path) -> Any:
    """Read a JSON file.

    Raises:
        DataError: the file is missing or not valid JSON.
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except json.JSONDecodeError as err:
        raise DataError(path, f"not valid JSON ({err})") from None


def read_metrics(path: str | Path) -> dict[str, Any]:
    """Read ``metrics/<task>.json`` and check it has the keys the tables use (evaluation outputs contract).

    For AVE, AVQA and AVVP every trivial baseline must also carry the keys the tables read (AVVP: all ten F
    values). Imports nothing heavy: the report driver calls it before any notebook runs.

    Raises:
        DataError: missing, unreadable, or without a required key (the message names it and the baseline).
    """
    metrics = read_json(path)
    task = metrics.get("task") if isinstance(metrics, dict) else None
    if task is None:
        raise DataError(path, "not a metrics file (no 'task' key)")
    for key in _REQUIRED_KEYS.get(task, ("task", "dataset", "split")):
        if key not in metrics:
            raise DataError(path, f"missing key {key!r}")
    if task in _BASELINE_KEYS:
        if not isinstance(metrics["baselines"], dict):
            raise DataError(path, "'baselines' is not an object (name -> result)")
        for name, result in metrics["baselines"].items():
            missing = [k for k in _BASELINE_KEYS[task] if not isinstance(result, dict) or k not in result]
            if missing:
                raise DataError(path, f"baseline {name!r} is missing key {missing[0]!r}")
    return metrics


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Read ``predictions/<task>.jsonl`` (one JSON object per line).

    Raises:
        DataError: missing, or a line that is not a JSON object (names the line).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}", f"not valid JSON ({err})") from None
    return records


def load_training_curves(run_dirs: Mapping[str, str | Path]) -> pd.DataFrame:
    """Every dvclive metric history under each training stage's dvclive folder, in one long table.

    dvclive writes ``<dvclive dir>/plots/metrics/<name>.tsv`` with columns ``step`` and the metric's last
    name component (``train/loss`` -> ``.../plots/metrics/train/loss.tsv``, columns ``step loss``).

    Args:
        run_dirs: stage name -> its dvclive folder, or a folder holding it (``{"pretrain":
            "models/pretrain_log", ...}``, see ``crab.train.loop.StagePaths``); folders that do not exist
            are skipped (no training run yet).

    Returns:
        Columns ``stage, metric, step, value`` (``metric`` like ``"train/loss"``; an earlier phase's,
        logged in a sub-folder of the stage's dvclive folder, like ``"language/train/loss"``), sorted;
        empty if none.

    Raises:
        DataError: a TSV without a ``step`` column or a value column.
    """
    frames = []
    for stage, run_dir in run_dirs.items():
        # a stage's own dvclive folder holds its earlier phases' folders (models/pretrain_log/language/, ...):
        # their metrics are named after the phase, or every phase's loss would draw as one zigzag line
        phased = (Path(run_dir) / "plots" / "metrics").is_dir()
        for tsv in sorted(Path(run_dir).rglob("*.tsv")):
            parts = tsv.relative_to(run_dir).parts
            at = next((i for i in range(len(parts) - 2) if parts[i : i + 2] == ("plots", "metrics")), None)
            if at is None:
                continue  # not a dvclive metric history
            metric = Path(*parts[:at] if phased else (), *parts[at + 2 :]).with_suffix("").as_posix()
            frame = pd.read_csv(tsv, sep="\t")
            value_columns = [c for c in frame.columns if c not in ("step", "timestamp")]
            if "step" not in frame.columns or len(value_columns) != 1:
                raise DataError(tsv, f"expected columns 'step' and one metric, got {list(frame.columns)}")
            frames.append(pd.DataFrame({"stage": stage, "metric": metric, "step": frame["step"],
                                        "value": frame[value_columns[0]].astype(float)}))  # fmt: skip
    if not frames:  # typed columns, so string methods on the empty table work (pandas 3)
        return pd.DataFrame({"stage": pd.Series([], dtype="str"), "metric": pd.Series([], dtype="str"),
                             "step": pd.Series([], dtype="int64"), "value": pd.Series([], dtype="float64")})  # fmt: skip
    return pd.concat(frames, ignore_index=True).sort_values(["stage", "metric", "step"], ignore_index=True)


# --------------------------------------------------------------------------------------------------
# Results tables
# --------------------------------------------------------------------------------------------------


def dataset_label(metrics: Mapping[str, Any]) -> str:
    """What our numbers of one task were measured on, e.g. ``"AV-Synth AVQA test (synthetic)"``."""
    task, split = metrics["task"], metrics.get("split", "test")
    if metrics["dataset"] == "AV-Synth":
        return f"AV-Synth {_TASK_ACRONYMS.get(task, task.upper())} {split} (synthetic)"
    return _REAL.get(task, f"{task} (real)").replace("test", split)


def comparability_note(metrics_by_task: Mapping[str, Mapping[str, Any]]) -> str:
    """One paragraph saying, per task, whether our numbers can be compared with the published ones."""
    synth = sorted(t for t, m in metrics_by_task.items() if m["dataset"] == "AV-Synth")
    real = sorted(t for t, m in metrics_by_task.items() if m["dataset"] != "AV-Synth")
    parts = []
    if synth:
        parts.append(
            f"Our {', '.join(synth)} numbers are measured on AV-Synth, a synthetic benchmark written in the real "
            "datasets' layouts; they are NOT comparable with the published numbers (real benchmarks) as "
            "numbers; the published rows are a sanity reference only."
        )
    if real:
        splits = "/".join(sorted({metrics_by_task[t]["split"] for t in real}))
        parts.append(
            f"Our {', '.join(real)} numbers are measured on the real benchmarks' {splits} split with the official "
            "metric definitions, so they are comparable with the published ones."
        )
    return " ".join(parts)


def headline_score(task: str) -> str:
    """The result key that ranks a task's baselines, as ``crab.eval.scoring.HEADLINE_SCORES`` (AVE, AVQA:
    ``accuracy``; AVVP: ``segment_event_av``, the paper's "Segment-level" column).

    Raises:
        ValueError: the task has no headline score (not evaluated).
    """
    scores = {str(t): key for t, key in HEADLINE_SCORES.items()}
    if task not in scores:
        raise ValueError(f"{task!r} has no headline score; evaluated tasks: {', '.join(scores)}")
    return scores[task]


def best_baseline(metrics: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The trivial baseline with the highest headline score (:func:`headline_score`; ties: first name in
    alphabetical order; the ``evaluate`` summary line takes the first in its own dict order, so the two can
    differ only on an exact tie).

    Raises:
        ValueError: the metrics hold no baselines, or the task has no headline score.
    """
    baselines = metrics["baselines"]
    if not baselines:
        raise ValueError(f"{metrics['task']}: the metrics hold no baselines")
    key = headline_score(metrics["task"])
    name = min(baselines, key=lambda n: (-baselines[n][key], n))
    return name, baselines[name]


def percent(value: float | None) -> float:
    """A fraction as a percentage; ``None`` (not reported) as NaN."""
    return float("nan") if value is None else 100.0 * value


def results_frame(rows: list[dict[str, Any]], value_columns: Sequence[str]) -> pd.DataFrame:
    """A results table: ``Method, Kind, Evaluated on, Source`` then the value columns as floats (missing: NaN)."""
    frame = pd.DataFrame(rows, columns=["Method", "Kind", "Evaluated on", "Source", *value_columns])
    frame[list(value_columns)] = frame[list(value_columns)].astype(float)
    return frame


def published_records(rows: Sequence[PublishedRow]) -> list[dict[str, Any]]:
    """Published rows as :func:`results_frame` rows (``Kind`` published; a cell without a number NaN)."""
    return [{"Method": r.method, "Kind": PUBLISHED, "Evaluated on": r.evaluated_on, "Source": r.source,
             **{c: percent(None) if v is None else v for c, v in r.values.items()}} for r in rows]  # fmt: skip


def _task_values(task: str, result: Mapping[str, Any]) -> dict[str, float]:
    """A task's Table 1 / 2 columns from a result dict (the model's or a baseline's): percent, or a fraction in the
    columns the paper prints as fractions (:data:`FRACTION_COLUMNS`)."""
    return {column: float(result[key]) if column in FRACTION_COLUMNS else percent(result[key])
            for column, key in _TASK_COLUMNS[task].items()}  # fmt: skip


def _columns(tasks: Sequence[str]) -> tuple[str, ...]:
    return tuple(column for task in tasks for column in _TASK_COLUMNS[task])


def table1(metrics_by_task: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Table 1 layout (every column, :data:`TABLE1_COLUMNS`): published rows, ours, best baselines.

    Args:
        metrics_by_task: task -> its ``metrics/<task>.json`` content; ``ave``, ``avvp``, ``arig``, ``avqa``,
            ``ms3``, ``avss`` and ``ref_avs`` fill their columns, other tasks are ignored; a column without our
            number (a task not evaluated) is empty in our rows (no task at all: no our rows).

    Returns:
        Columns ``Method, Kind, Evaluated on, Source`` and :data:`TABLE1_COLUMNS` (percent, except the
        :data:`FRACTION_COLUMNS`; NaN = not reported). The last row is the best trivial baseline of each task by
        its headline score, named per task (``"Best trivial baseline (ave: segment_majority, ...)"``).
    """
    columns = TABLE1_COLUMNS
    tasks = [t for t in _TABLE1_TASKS if t in metrics_by_task]
    if not tasks:
        return results_frame(published_records(PAPER_TABLE1), columns)
    on = "; ".join(dataset_label(metrics_by_task[t]) for t in tasks)
    ours = {"Method": OUR_METHOD, "Kind": OURS, "Evaluated on": on, "Source": "metrics/<task>.json"}
    best = {"Kind": BASELINE, "Evaluated on": on, "Source": "metrics/<task>.json baselines"}
    names = []
    for task in tasks:
        name, result = best_baseline(metrics_by_task[task])
        names.append(f"{task}: {name}")
        ours.update(_task_values(task, metrics_by_task[task]))
        best.update(_task_values(task, result))
    best["Method"] = f"Best trivial baseline ({', '.join(names)})"
    return results_frame([*published_records(PAPER_TABLE1), ours, best], columns)


def temporal_table(metrics_by_task: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Table 2 layout (temporal localization: AVE accuracy, AVVP segment / event level): published rows, our
    row and every trivial baseline of each task.

    Args:
        metrics_by_task: task -> its metrics; only ``ave`` and ``avvp`` are read, a missing one leaves its
            columns empty (neither: the published rows only).

    Returns:
        Columns ``Method, Kind, Evaluated on, Source, AVE Acc, AVVP Segment-level, AVVP Event-level``
        (percent; NaN = not reported). Our row joins both tasks' dataset labels; each baseline row is one
        task's (its name as in the metrics file, alphabetical per task, AVE's first) with its own label.
    """
    tasks = [t for t in _TABLE2_TASKS if t in metrics_by_task]
    return comparison_table(PAPER_TABLE2, metrics_by_task, tasks, _task_values, _columns(_TABLE2_TASKS))


def comparison_table(
    published: Sequence[PublishedRow],
    metrics_by_task: Mapping[str, Mapping[str, Any]],
    tasks: Sequence[str],
    values: Callable[[str, Mapping[str, Any]], dict[str, float]],
    columns: Sequence[str],
) -> pd.DataFrame:
    """Published rows, then our row over ``tasks`` and every trivial baseline of each task, as one results frame.

    Args:
        published: the paper's rows.
        metrics_by_task: task -> its metrics (every task of ``tasks`` present).
        tasks: the evaluated tasks with columns here, in column order.
        values: ``(task, result dict) -> {column: value}``, the same for our result and each baseline's.
        columns: the value columns.

    Returns:
        :func:`results_frame` rows: our row joins the tasks' dataset labels and sources; each baseline row is one
        task's (alphabetical per task, tasks in order) with its own label.
    """
    rows = published_records(published)
    if tasks:
        rows.append({"Method": OUR_METHOD, "Kind": OURS,
                     "Evaluated on": "; ".join(dataset_label(metrics_by_task[t]) for t in tasks),
                     "Source": "; ".join(f"metrics/{t}.json" for t in tasks),
                     **{c: v for t in tasks for c, v in values(t, metrics_by_task[t]).items()}})  # fmt: skip
    for task in tasks:
        metrics = metrics_by_task[task]
        for name, result in sorted(metrics["baselines"].items()):
            rows.append({"Method": name, "Kind": BASELINE, "Evaluated on": dataset_label(metrics),
                         "Source": f"metrics/{task}.json", **values(task, result)})  # fmt: skip
    return results_frame(rows, columns)


def avvp_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """All ten AVVP F values (evaluation.md): ours and every trivial baseline, in percent.

    Audio / Visual / Audio-Visual are the per-modality F (audio-visual: events both heard and seen); Type@AV
    is their mean; Event@AV pools the audio and visual counts, and is the paper's AVVP number.

    Returns:
        One row per level and score (``Segment`` then ``Event``; ``Audio``, ``Visual``, ``Audio-Visual``,
        ``Type@AV``, ``Event@AV``); columns ``Level``, ``Score``, ``Crab (ours)`` and one per baseline
        (alphabetical).
    """
    frame = pd.DataFrame({"Level": [level.capitalize() for level in AVVP_LEVELS for _ in AVVP_SCORES],
                          "Score": [_AVVP_SCORE_NAMES[score] for _ in AVVP_LEVELS for score in AVVP_SCORES]})  # fmt: skip
    frame[OUR_METHOD] = [percent(metrics[key]) for key in AVVP_KEYS]
    for name, result in sorted(metrics["baselines"].items()):
        frame[name] = [percent(result[key]) for key in AVVP_KEYS]
    return frame


def _avqa_values(result: Mapping[str, Any]) -> dict[str, float]:
    groups = result.get("accuracy_per_group", {})
    values = {g: percent(groups.get(g)) for g in AVQA_GROUP_COLUMNS[:-1]}
    return {**values, "Avg": percent(result["accuracy"])}


def avqa_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Table 3 layout (MUSIC-AVQA per modality group): published rows, our row and every trivial baseline.

    Returns:
        Columns ``Method, Kind, Evaluated on, Source, Audio, Visual, Audio-Visual, Avg`` (percent; a group
        without questions is NaN).
    """
    on, src = dataset_label(metrics), "metrics/avqa.json"
    rows = published_records(PAPER_TABLE3_AVQA)
    rows.append({"Method": OUR_METHOD, "Kind": OURS, "Evaluated on": on, "Source": src, **_avqa_values(metrics)})
    for name, result in sorted(metrics["baselines"].items()):
        rows.append({"Method": name, "Kind": BASELINE, "Evaluated on": on, "Source": src, **_avqa_values(result)})
    return results_frame(rows, AVQA_GROUP_COLUMNS)


def avqa_type_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Accuracy per MUSIC-AVQA question type: ours and every trivial baseline (percent).

    Returns:
        One row per type in the metrics' order; columns ``Question type``, ``Questions`` (if the metrics
        carry ``num_questions_per_type``), ``Crab (ours)`` and one per baseline (alphabetical).
    """
    types = list(metrics["accuracy_per_type"])
    frame = pd.DataFrame({"Question type": types})
    if "num_questions_per_type" in metrics:
        frame["Questions"] = [metrics["num_questions_per_type"].get(t, 0) for t in types]
    frame[OUR_METHOD] = [percent(metrics["accuracy_per_type"][t]) for t in types]
    for name, result in sorted(metrics["baselines"].items()):
        frame[name] = [percent(result.get("accuracy_per_type", {}).get(t)) for t in types]
    return frame


def parse_failure_table(metrics_by_task: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per task: samples, parse-failure rate (percent) and generation speed.

    Returns:
        Columns ``Task, Evaluated on, Samples, Parse failures (%), Max new tokens, Generation (s),
        Tokens/s`` (NaN where the metrics have no ``generation`` block).
    """
    rows = []
    for task, m in sorted(metrics_by_task.items()):
        gen = m.get("generation", {})
        rows.append({"Task": task, "Evaluated on": dataset_label(m), "Samples": m.get("num_samples"),
                     "Parse failures (%)": percent(m.get("parse_failure_rate")),
                     "Max new tokens": gen.get("max_new_tokens"), "Generation (s)": gen.get("seconds"),
                     "Tokens/s": gen.get("tokens_per_s")})  # fmt: skip
    return pd.DataFrame(rows, columns=["Task", "Evaluated on", "Samples", "Parse failures (%)", "Max new tokens",
                                       "Generation (s)", "Tokens/s"])  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Examples and rendering
# --------------------------------------------------------------------------------------------------


def _question(instruction: str) -> str:
    """The instruction without the video / image / audio placeholder blocks."""
    for block in (VIDEO_PROMPT, IMAGE_PROMPT, AUDIO_PROMPT):
        instruction = instruction.replace(block, "")
    return instruction.strip()


def _verdict(record: Mapping[str, Any]) -> str:
    score = float(record["correct"])
    if record.get("parsed") is None:
        return "✗ parse failure"
    if score >= 1.0:
        return "✓ correct"
    if score <= 0.0:
        return "✗ incorrect"
    return f"◐ partly correct ({100 * score:.0f}%)"


def example_predictions(records: Sequence[Mapping[str, Any]], num_examples: int) -> pd.DataFrame:
    """A deterministic mix of correct and incorrect predictions (with their reasoning) for the report.

    Records are taken in id order, alternating fully correct and not fully correct ones (starting with
    a correct one) until ``num_examples`` are chosen or both kinds run out. ``correct`` is each record's own
    score from the ``evaluate`` stage: AVE the share of seconds right, AVQA 0 or 1, AVVP the video's
    segment-level Event@AV F, so "partly correct (70%)" on an AVVP row means F = 0.70.

    Returns:
        Columns ``id, Instruction, Target, Prediction, Result`` (``Result`` like ``"✓ correct"``,
        ``"✗ incorrect"``, ``"✗ parse failure"`` or ``"◐ partly correct (70%)"``).
    """
    ordered = sorted(records, key=lambda r: r["id"])
    right = [r for r in ordered if float(r["correct"]) >= 1.0]
    wrong = [r for r in ordered if float(r["correct"]) < 1.0]
    chosen: list[Mapping[str, Any]] = []
    while len(chosen) < num_examples and (right or wrong):
        for pool in (right, wrong):
            if pool and len(chosen) < num_examples:
                chosen.append(pool.pop(0))
    return pd.DataFrame(
        [{"id": r["id"], "Instruction": _question(r["instruction"]), "Target": r["target"],
          "Prediction": r["prediction"], "Result": _verdict(r)} for r in chosen],
        columns=["id", "Instruction", "Target", "Prediction", "Result"],
    )  # fmt: skip


def to_html(frame: pd.DataFrame, decimals: int = 2) -> str:
    """A static HTML table: floats to ``decimals`` places, NaN as an en dash, text HTML-escaped, no index.

    Escaping matters: predictions contain tags like ``<answer>`` that a browser would otherwise swallow.
    """
    return frame.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.{decimals}f}", escape=True,
                         border=0, classes="crab-table")  # fmt: skip
