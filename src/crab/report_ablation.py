"""Table 4 of the paper from ``crab ablate``'s results: mean and spread over seeds, the paper beside ours,
and which of the paper's orderings hold on our data.

Input is ``reports/table4.json`` (:func:`crab.ablate.collect_results`): per experiment its row, seed and
metrics files. A column is read from the metrics file of its task (:data:`TABLE4_COLUMNS`); a task the
pipeline does not evaluate yet is left empty, never filled in.

Orderings: for every metric and every pair of rows whose published values differ, the paper claims the
higher row is better. On our results the claim *holds* when our mean difference has the same sign and is
larger than the noise (the sum of the two rows' standard deviations over seeds), is *reversed* when it has
the opposite sign beyond the noise, and is *within noise* otherwise; with a single seed there is no
spread, and the verdict says so.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from crab.report_tables import PAPER

__all__ = [
    "PAPER_TABLE4",
    "TABLE4_COLUMNS",
    "Table4Column",
    "column_value",
    "orderings",
    "row_summary",
    "source_note",
    "table4",
]


@dataclass(frozen=True)
class Table4Column:
    """A Table 4 column: the metrics file that holds it, the key path inside, and the scale to the paper's."""

    metrics_file: str
    key: tuple[str, ...]
    scale: float  # ours x scale = the paper's unit (percent, or a fraction for AUC)


#: Table 4's columns in the paper's order. AVVP and ARIG are read once the pipeline evaluates them.
TABLE4_COLUMNS: dict[str, Table4Column] = {
    "AVQA Avg": Table4Column("metrics/avqa.json", ("accuracy",), 100.0),
    "AVE Acc": Table4Column("metrics/ave.json", ("accuracy",), 100.0),
    "AVVP Segment": Table4Column("metrics/avvp.json", ("segment_event_av",), 100.0),
    "AVVP Event": Table4Column("metrics/avvp.json", ("event_event_av",), 100.0),
    "ARIG cIoU": Table4Column("metrics/arig.json", ("ciou",), 100.0),
    "ARIG AUC": Table4Column("metrics/arig.json", ("auc",), 1.0),
}

#: The paper's Table 4 (row label -> column -> value), Du et al., CVPR 2025.
PAPER_TABLE4: dict[str, dict[str, float]] = {
    label: dict(zip(TABLE4_COLUMNS, values, strict=True))
    for label, *values in [
        ("Single task", 75.87, 79.10, 56.11, 51.32, 39.93, 0.40),
        ("LoRA baseline", 75.78, 79.55, 56.91, 52.13, 39.87, 0.40),
        ("LoRA MoE", 77.60, 80.02, 58.21, 53.32, 41.36, 0.42),
        ("w/o. ERP", 76.05, 78.62, 52.01, 51.36, 40.92, 0.41),
        ("w/o. IA-LoRA", 76.92, 79.93, 53.43, 53.15, 40.22, 0.40),
        ("Crab(Ours)", 78.94, 80.15, 59.00, 54.44, 41.78, 0.42),
    ]
}


def column_value(metrics: Mapping[str, Any], column: Table4Column) -> float | None:
    """One experiment's value of ``column`` in the paper's unit, ``None`` if its metrics do not hold it."""
    node: Any = metrics.get(column.metrics_file)
    for key in column.key:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return float(node) * column.scale if isinstance(node, (int, float)) else None


def row_summary(results: Mapping[str, Any]) -> pd.DataFrame:
    """Per row and column: the mean, standard deviation and number of seeds with a value, and the paper's.

    Returns:
        Columns ``row, label, column, mean, std, n, paper`` in the params' row order and the paper's column
        order; ``std`` is NaN below two seeds, ``mean`` NaN where no seed has the value.
    """
    by_row: dict[str, list[Mapping[str, Any]]] = {}
    labels: dict[str, str] = {}
    for run in results.get("runs", []):
        by_row.setdefault(run["row"], []).append(run)
        labels[run["row"]] = run["label"]
    records = []
    for row, runs in by_row.items():
        for name, column in TABLE4_COLUMNS.items():
            values = [v for v in (column_value(run.get("metrics", {}), column) for run in runs) if v is not None]
            records.append({
                "row": row, "label": labels[row], "column": name,
                "mean": statistics.fmean(values) if values else math.nan,
                "std": statistics.stdev(values) if len(values) >= 2 else math.nan,
                "n": len(values), "paper": PAPER_TABLE4.get(labels[row], {}).get(name, math.nan),
            })  # fmt: skip
    return pd.DataFrame(records, columns=["row", "label", "column", "mean", "std", "n", "paper"])


def _cell(mean: float, std: float, n: int) -> str:
    if n == 0:
        return "n/a"
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def table4(results: Mapping[str, Any], dataset: str = "AV-Synth") -> pd.DataFrame:
    """The paper's Table 4 layout: one row per method; per column ours (mean ± sd over seeds) and the paper's.

    Args:
        results: ``reports/table4.json``.
        dataset: what our numbers were measured on (the column header says it).
    """
    summary = row_summary(results)
    rows = []
    for (row, label), group in summary.groupby(["row", "label"], sort=False):
        record: dict[str, Any] = {"Method": label, "seeds": int(group["n"].max())}
        for item in group.itertuples():
            record[f"{item.column} (ours, {dataset})"] = _cell(item.mean, item.std, item.n)
            record[f"{item.column} (paper, real)"] = item.paper
        rows.append(record)
    return pd.DataFrame(rows)


def orderings(results: Mapping[str, Any]) -> pd.DataFrame:
    """Every ordering the paper's Table 4 states (module docstring) and whether ours agrees.

    Returns:
        Columns ``column, better, worse, paper_diff, our_diff, noise, verdict``; only columns where we have
        values for both rows.
    """
    summary = row_summary(results)
    records = []
    for column, group in summary.groupby("column", sort=False):
        rows = [r for r in group.itertuples() if r.n > 0 and not math.isnan(r.paper)]
        for a, b in itertools.combinations(rows, 2):
            if a.paper == b.paper:
                continue
            better, worse = (a, b) if a.paper > b.paper else (b, a)
            diff = better.mean - worse.mean
            noise = better.std + worse.std
            if math.isnan(noise):
                verdict = "holds (1 seed)" if diff > 0 else "reversed (1 seed)" if diff < 0 else "tie (1 seed)"
            elif diff > noise:
                verdict = "holds"
            elif diff < -noise:
                verdict = "reversed"
            else:
                verdict = "within noise"
            records.append({"column": column, "better": better.label, "worse": worse.label,
                            "paper_diff": better.paper - worse.paper, "our_diff": diff, "noise": noise,
                            "verdict": verdict})  # fmt: skip
    return pd.DataFrame(records, columns=["column", "better", "worse", "paper_diff", "our_diff", "noise", "verdict"])


def source_note(results: Mapping[str, Any]) -> str:
    """Where the numbers come from, for the notebook's header."""
    runs: Sequence[Mapping[str, Any]] = results.get("runs", [])
    done = sum(run.get("state") == "success" for run in runs)
    commits = sorted({str(run.get("baseline"))[:10] for run in runs if run.get("state") == "success"})
    source = f"commit {commits[0]}" if len(commits) == 1 else f"commits {', '.join(commits)} (mixed!)"
    return (f"Paper: {PAPER}, Table 4 (real benchmarks). Ours: {done} of {len(runs)} experiments finished, "
            f"from {source}, on AV-Synth.")  # fmt: skip
