"""The report's tables as pandas DataFrames: the paper's Tables 1-3 with our numbers beside them.

The ``report`` stage (:mod:`crab.report`) executes the notebooks in ``notebooks/``; every piece of logic they
need lives here so tests can reach it (DESIGN.md section 3). Inputs are the evaluate stage's outputs
(``metrics/<task>.json``, ``predictions/<task>.jsonl``), the train stages' dvclive TSVs and the data stages'
reports (``data/avuie/stats.json``, ``reports/validation/*.json``).

Published numbers are constants with their source: the Crab paper (Du et al., CVPR 2025, arXiv:2503.13068)
Table 1 (general models; only the rows with an AVE or AVQA number, the others are marked there with a check
or a cross), Table 2 (AVE rows; CMBS and DHHN report only AVVP), Table 3 (MUSIC-AVQA test, per modality
group), plus the best specialised AVE number reported elsewhere (DG-SCT, listed in the project's evaluation
reference). Published numbers are percentages; our metrics files hold fractions and are shown x100.

Every row says what it is (``Kind``: published / ours / trivial baseline) and what it was measured on
(``Evaluated on``): in the tiny profile our numbers come from AV-Synth, a synthetic benchmark in the real
datasets' layouts, so they are NOT comparable with the published ones as numbers; the published rows are a
sanity reference only. The dataset label comes from the metrics file (``"dataset": "AV-Synth" | "real"``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from crab.errors import DataError
from crab.tasks import AUDIO_PROMPT, VIDEO_PROMPT

__all__ = [
    "AVQA_GROUP_COLUMNS",
    "PAPER",
    "PAPER_TABLE1",
    "PAPER_TABLE2_AVE",
    "PAPER_TABLE3_AVQA",
    "PublishedRow",
    "avqa_table",
    "avqa_type_table",
    "ave_table",
    "best_baseline",
    "comparability_note",
    "dataset_label",
    "example_predictions",
    "load_training_curves",
    "parse_failure_table",
    "read_json",
    "read_metrics",
    "read_predictions",
    "table1",
    "to_html",
]

PAPER = "Crab (Du et al., CVPR 2025, arXiv:2503.13068)"
PUBLISHED, OURS, BASELINE = "published", "ours", "trivial baseline"
OUR_METHOD = "Crab (ours)"
#: Table 3's columns, in the paper's order; "Avg" is the overall accuracy pooled over all questions.
AVQA_GROUP_COLUMNS: tuple[str, ...] = ("Audio", "Visual", "Audio-Visual", "Avg")
_REAL = {"ave": "AVE test (real)", "avqa": "MUSIC-AVQA test (real)"}
_TABLE1_COLUMNS = {"ave": "AVE Acc", "avqa": "AVQA Acc"}
_REQUIRED_KEYS = {
    "ave": ("task", "split", "dataset", "num_samples", "accuracy", "parse_failure_rate", "baselines"),
    "avqa": ("task", "split", "dataset", "num_samples", "accuracy", "accuracy_per_group", "accuracy_per_type",
             "parse_failure_rate", "baselines"),
}  # fmt: skip


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


def _rows(source: str, evaluated_on: str, columns: Sequence[str], rows: Sequence[tuple]) -> tuple[PublishedRow, ...]:
    return tuple(PublishedRow(m, dict(zip(columns, vals, strict=True)), source, evaluated_on) for m, *vals in rows)


#: Table 1 (comparison with general models), AVE and AVQA columns. X-InstructBLIP's AVQA is zero-shot.
PAPER_TABLE1 = _rows(
    f"{PAPER}, Table 1",
    "real benchmarks",
    ("AVE Acc", "AVQA Acc"),
    [("X-InstructBLIP (zero-shot)", None, 44.50), ("VALOR", None, 78.90), ("Crab", 80.15, 78.94)],
)
#: Table 2 (specialised models, AVE accuracy) + DG-SCT, the best specialised AVE number published elsewhere.
PAPER_TABLE2_AVE = _rows(
    f"{PAPER}, Table 2",
    _REAL["ave"],
    ("AVE Acc",),
    [("AVT", 75.80), ("PSP", 77.80), ("MM-Pyramid", 77.80), ("MPN", 77.60), ("Crab", 80.15)],
) + _rows("DG-SCT (Duan et al., NeurIPS 2023)", _REAL["ave"], ("AVE Acc",), [("DG-SCT", 82.18)])
#: Table 3 (specialised models on the MUSIC-AVQA test set), accuracy per modality group and overall.
PAPER_TABLE3_AVQA = _rows(
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

    Raises:
        DataError: missing, unreadable, or without a required key (the message names it).
    """
    metrics = read_json(path)
    task = metrics.get("task") if isinstance(metrics, dict) else None
    if task is None:
        raise DataError(path, "not a metrics file (no 'task' key)")
    for key in _REQUIRED_KEYS.get(task, ("task", "dataset", "split")):
        if key not in metrics:
            raise DataError(path, f"missing key {key!r}")
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
        Columns ``stage, metric, step, value`` (``metric`` like ``"train/loss"``), sorted; empty if none.

    Raises:
        DataError: a TSV without a ``step`` column or a value column.
    """
    frames = []
    for stage, run_dir in run_dirs.items():
        for tsv in sorted(Path(run_dir).rglob("*.tsv")):
            parts = tsv.relative_to(run_dir).parts
            at = next((i for i in range(len(parts) - 2) if parts[i : i + 2] == ("plots", "metrics")), None)
            if at is None:
                continue  # not a dvclive metric history
            metric = Path(*parts[at + 2 :]).with_suffix("").as_posix()
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
        return f"AV-Synth {task.upper()} {split} (synthetic)"
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


def best_baseline(metrics: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The trivial baseline with the highest overall accuracy (ties: first name in alphabetical order)."""
    baselines = metrics["baselines"]
    if not baselines:
        raise ValueError(f"{metrics['task']}: the metrics hold no baselines")
    name = min(baselines, key=lambda n: (-baselines[n]["accuracy"], n))
    return name, baselines[name]


def _pct(value: float | None) -> float:
    return float("nan") if value is None else 100.0 * value


def _frame(rows: list[dict[str, Any]], value_columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["Method", "Kind", "Evaluated on", "Source", *value_columns])
    frame[list(value_columns)] = frame[list(value_columns)].astype(float)
    return frame


def _published(rows: Sequence[PublishedRow]) -> list[dict[str, Any]]:
    return [{"Method": r.method, "Kind": PUBLISHED, "Evaluated on": r.evaluated_on, "Source": r.source,
             **{c: _pct(None) if v is None else v for c, v in r.values.items()}} for r in rows]  # fmt: skip


def table1(metrics_by_task: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Table 1 layout (AVE Acc, AVQA Acc): the published rows, our row and the best trivial baselines.

    Args:
        metrics_by_task: task -> its ``metrics/<task>.json`` content; tasks other than ``ave`` / ``avqa``
            are ignored, a missing one leaves its column empty in our rows.

    Returns:
        Columns ``Method, Kind, Evaluated on, Source, AVE Acc, AVQA Acc`` (percent; NaN = not reported).
    """
    tasks = [t for t in _TABLE1_COLUMNS if t in metrics_by_task]
    on = "; ".join(dataset_label(metrics_by_task[t]) for t in tasks)
    ours = {"Method": OUR_METHOD, "Kind": OURS, "Evaluated on": on, "Source": "metrics/<task>.json"}
    best = {"Kind": BASELINE, "Evaluated on": on, "Source": "metrics/<task>.json baselines"}
    names = []
    for task in tasks:
        name, result = best_baseline(metrics_by_task[task])
        names.append(f"{task}: {name}")
        ours[_TABLE1_COLUMNS[task]] = _pct(metrics_by_task[task]["accuracy"])
        best[_TABLE1_COLUMNS[task]] = _pct(result["accuracy"])
    best["Method"] = f"Best trivial baseline ({', '.join(names)})"
    return _frame([*_published(PAPER_TABLE1), ours, best], tuple(_TABLE1_COLUMNS.values()))


def ave_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Table 2 layout (AVE accuracy): the published rows, our row and every trivial baseline.

    Returns:
        Columns ``Method, Kind, Evaluated on, Source, AVE Acc`` (percent).
    """
    on, src = dataset_label(metrics), "metrics/ave.json"
    rows = _published(PAPER_TABLE2_AVE)
    rows.append({"Method": OUR_METHOD, "Kind": OURS, "Evaluated on": on, "Source": src,
                 "AVE Acc": _pct(metrics["accuracy"])})  # fmt: skip
    for name, result in sorted(metrics["baselines"].items()):
        rows.append({"Method": name, "Kind": BASELINE, "Evaluated on": on, "Source": src,
                     "AVE Acc": _pct(result["accuracy"])})  # fmt: skip
    return _frame(rows, ("AVE Acc",))


def _avqa_values(result: Mapping[str, Any]) -> dict[str, float]:
    groups = result.get("accuracy_per_group", {})
    values = {g: _pct(groups.get(g)) for g in AVQA_GROUP_COLUMNS[:-1]}
    return {**values, "Avg": _pct(result["accuracy"])}


def avqa_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Table 3 layout (MUSIC-AVQA per modality group): published rows, our row and every trivial baseline.

    Returns:
        Columns ``Method, Kind, Evaluated on, Source, Audio, Visual, Audio-Visual, Avg`` (percent; a group
        without questions is NaN).
    """
    on, src = dataset_label(metrics), "metrics/avqa.json"
    rows = _published(PAPER_TABLE3_AVQA)
    rows.append({"Method": OUR_METHOD, "Kind": OURS, "Evaluated on": on, "Source": src, **_avqa_values(metrics)})
    for name, result in sorted(metrics["baselines"].items()):
        rows.append({"Method": name, "Kind": BASELINE, "Evaluated on": on, "Source": src, **_avqa_values(result)})
    return _frame(rows, AVQA_GROUP_COLUMNS)


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
    frame[OUR_METHOD] = [_pct(metrics["accuracy_per_type"][t]) for t in types]
    for name, result in sorted(metrics["baselines"].items()):
        frame[name] = [_pct(result.get("accuracy_per_type", {}).get(t)) for t in types]
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
                     "Parse failures (%)": _pct(m.get("parse_failure_rate")),
                     "Max new tokens": gen.get("max_new_tokens"), "Generation (s)": gen.get("seconds"),
                     "Tokens/s": gen.get("tokens_per_s")})  # fmt: skip
    return pd.DataFrame(rows, columns=["Task", "Evaluated on", "Samples", "Parse failures (%)", "Max new tokens",
                                       "Generation (s)", "Tokens/s"])  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Examples and rendering
# --------------------------------------------------------------------------------------------------


def _question(instruction: str) -> str:
    """The instruction without the video / audio placeholder blocks."""
    return instruction.replace(VIDEO_PROMPT, "").replace(AUDIO_PROMPT, "").strip()


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
    a correct one) until ``num_examples`` are chosen or both kinds run out.

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
