"""The data-overview tables of the report (``notebooks/data.ipynb``) as pandas DataFrames.

Companion of :mod:`crab.report_tables` (results) for the data side of the pipeline (DESIGN.md section 3):
how many AV-UIE records each task and split has and where their targets come from
(``data/avuie/stats.json``, written by ``avuie_build``), what the quality gates quarantined and why
(``reports/validation/{raw,avuie}.json``, written by ``validate_raw`` / ``validate_avuie``), and the
MUSIC-AVQA majority-answer rate per question type, the answer prior any AVQA number must beat.

Whether a task's data is AV-Synth or a real release is read from the stats' target sources: AV-UIE targets
built from AV-Synth's exact scenes are counted as ``"scene"`` (``crab.avuie.build``), so no raw folder has
to be opened here and the report depends only on stage outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

__all__ = [
    "avqa_majority_table",
    "avuie_sizes_table",
    "avuie_tasks_table",
    "failed_checks_table",
    "quarantine_table",
    "quarantined_items_table",
    "source_kind",
]


def source_kind(task_stats: Mapping[str, Any]) -> str:
    """``"AV-Synth (synthetic)"`` if the task's targets were built from AV-Synth scenes, else ``"real"``."""
    return "AV-Synth (synthetic)" if task_stats.get("targets", {}).get("scene", 0) > 0 else "real"


def avuie_sizes_table(stats: Mapping[str, Any]) -> pd.DataFrame:
    """AV-UIE records per task and split.

    Args:
        stats: the content of ``data/avuie/stats.json``.

    Returns:
        Columns ``Task, Dataset, Data, Split, Records, With reasoning, Excluded, Avg target words``, one row
        per task and split (task order of the stats, splits train / val / test first).
    """
    order = {"train": 0, "val": 1, "test": 2}
    rows = []
    for task, ts in stats["tasks"].items():
        for split in sorted(ts["splits"], key=lambda s: (order.get(s, 3), s)):
            ss = ts["splits"][split]
            rows.append({"Task": task, "Dataset": ts["dataset"], "Data": source_kind(ts), "Split": split,
                         "Records": ss["num_records"], "With reasoning": ss["num_with_reasoning"],
                         "Excluded": ss["num_excluded"], "Avg target words": ss["avg_target_words"]})  # fmt: skip
    columns = ["Task", "Dataset", "Data", "Split", "Records", "With reasoning", "Excluded", "Avg target words"]
    return pd.DataFrame(rows, columns=columns)


def avuie_tasks_table(stats: Mapping[str, Any]) -> pd.DataFrame:
    """Per task: raw items read, reader rejections, quarantine exclusions, duplicates and target sources.

    Returns:
        Columns ``Task, Dataset, Read, Rejected by reader, Excluded (quarantine), Duplicates, Target sources``.
    """
    rows = [{"Task": task, "Dataset": ts["dataset"], "Read": ts["num_read"],
             "Rejected by reader": ts["num_rejected_by_reader"], "Excluded (quarantine)": ts["num_excluded"],
             "Duplicates": ts["num_duplicates"],
             "Target sources": ", ".join(f"{k}: {v}" for k, v in sorted(ts.get("targets", {}).items()))}
            for task, ts in stats["tasks"].items()]  # fmt: skip
    columns = ["Task", "Dataset", "Read", "Rejected by reader", "Excluded (quarantine)", "Duplicates", "Target sources"]
    return pd.DataFrame(rows, columns=columns)


def _groups(report: Mapping[str, Any]) -> Mapping[str, Any]:
    return report.get("datasets", report.get("tasks", {}))


def quarantine_table(report: Mapping[str, Any]) -> pd.DataFrame:
    """One row per dataset (raw gate) or task (AV-UIE gate) of a quality-gate report.

    Returns:
        Columns ``Gate, Group, Present, Items, Passed, Quarantined, Failure rate (%), Limit (%)``.
    """
    limit = 100.0 * report["max_failure_rate"]
    rows = [{"Gate": report["stage"], "Group": name, "Present": g["present"], "Items": g["num_items"],
             "Passed": g["num_passed"], "Quarantined": g["num_quarantined"],
             "Failure rate (%)": 100.0 * g["failure_rate"], "Limit (%)": limit}
            for name, g in sorted(_groups(report).items())]  # fmt: skip
    columns = ["Gate", "Group", "Present", "Items", "Passed", "Quarantined", "Failure rate (%)", "Limit (%)"]
    return pd.DataFrame(rows, columns=columns)


def failed_checks_table(report: Mapping[str, Any]) -> pd.DataFrame:
    """The expectations that failed, with their reason template and how many rows failed them.

    Returns:
        Columns ``Gate, Group, Expectation, Column, Severity, Rows, Reason``; empty if every check passed.
    """
    rows = [{"Gate": report["stage"], "Group": name, "Expectation": e["expectation"], "Column": e["column"],
             "Severity": e["severity"], "Rows": e["unexpected_count"], "Reason": e["reason"]}
            for name, g in sorted(_groups(report).items()) for e in g.get("expectations", []) if not e["success"]]  # fmt: skip
    return pd.DataFrame(rows, columns=["Gate", "Group", "Expectation", "Column", "Severity", "Rows", "Reason"])


def quarantined_items_table(report: Mapping[str, Any], max_items: int) -> pd.DataFrame:
    """The first ``max_items`` quarantined items per group (sorted by source, as in the report).

    Returns:
        Columns ``Gate, Group, Split, Source, Reasons`` (reasons joined with ``"; "``).
    """
    rows = [{"Gate": report["stage"], "Group": name, "Split": q["split"], "Source": q["source"],
             "Reasons": "; ".join(q["reasons"])}
            for name, g in sorted(_groups(report).items()) for q in g["quarantined"][:max_items]]  # fmt: skip
    return pd.DataFrame(rows, columns=["Gate", "Group", "Split", "Source", "Reasons"])


def avqa_majority_table(stats: Mapping[str, Any]) -> pd.DataFrame:
    """MUSIC-AVQA majority answer and its rate per question type and split, from the AV-UIE stats.

    Returns:
        Columns ``Split, Question type, Questions, Majority answer, Majority rate (%)``; empty if the stats
        have no ``avqa`` task.
    """
    splits = stats["tasks"].get("avqa", {}).get("splits", {})
    rows = [{"Split": split, "Question type": qtype, "Questions": entry["num_questions"],
             "Majority answer": entry["answer"], "Majority rate (%)": 100.0 * entry["rate"]}
            for split, ss in splits.items() for qtype, entry in ss.get("majority_answer", {}).items()]  # fmt: skip
    return pd.DataFrame(rows, columns=["Split", "Question type", "Questions", "Majority answer", "Majority rate (%)"])
