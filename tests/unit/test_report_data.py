"""Data-overview tables from hand-made AV-UIE stats and quality-gate reports."""

import pytest

from crab.report_data import (
    avqa_majority_table,
    avuie_sizes_table,
    avuie_tasks_table,
    failed_checks_table,
    quarantine_table,
    quarantined_items_table,
    source_kind,
)


def split(num_records, excluded=0, majority=None):
    out = {"num_records": num_records, "num_excluded": excluded, "num_with_reasoning": num_records,
           "avg_target_words": 42.5}  # fmt: skip
    if majority is not None:
        out["majority_answer"] = majority
    return out


STATS = {
    "seed": 0,
    "use_reasoning": True,
    "tasks": {
        "ave": {"dataset": "ave", "num_read": 13, "num_rejected_by_reader": 1, "num_excluded": 2, "num_duplicates": 0,
                "duplicates": [], "targets": {"scene": 10},
                "splits": {"test": split(3), "train": split(6, excluded=2), "val": split(1)}},
        "avqa": {"dataset": "music_avqa", "num_read": 5, "num_rejected_by_reader": 0, "num_excluded": 0,
                 "num_duplicates": 1, "duplicates": ["f[3]"], "targets": {"released": 3, "template": 1},
                 "splits": {"test": split(4, majority={"Audio/Counting": {"answer": "two", "rate": 0.25,
                                                                          "num_questions": 4}})}},
    },
}  # fmt: skip

REPORT = {
    "stage": "validate_raw",
    "max_failure_rate": 0.05,
    "datasets": {
        "music_avqa": {"root": "m", "present": False, "num_items": 0, "num_passed": 0, "num_quarantined": 0,
                       "failure_rate": 0.0, "quarantined": [], "expectations": []},
        "ave": {"root": "a", "present": True, "num_items": 4, "num_passed": 2, "num_quarantined": 2, "failure_rate": 0.5,
                "quarantined": [{"item_id": "1", "split": "train", "source": "a:1", "reasons": ["bad", "worse"]},
                                {"item_id": "2", "split": "test", "source": "a:2", "reasons": ["bad"]}],
                "expectations": [
                    {"expectation": "e_ok", "column": "c", "success": True, "unexpected_count": 0,
                     "severity": "critical", "reason": "r"},
                    {"expectation": "e_bad", "column": "d", "success": False, "unexpected_count": 2,
                     "severity": "warning", "reason": "d is {d}"}]},
    },
}  # fmt: skip


def test_source_kind():
    assert source_kind(STATS["tasks"]["ave"]) == "AV-Synth (synthetic)"
    assert source_kind(STATS["tasks"]["avqa"]) == "real"


def test_avuie_sizes_table_orders_splits():
    frame = avuie_sizes_table(STATS)
    assert list(frame.columns) == ["Task", "Dataset", "Data", "Split", "Records", "With reasoning", "Excluded",
                                   "Avg target words"]  # fmt: skip
    assert frame[["Task", "Split", "Records", "Excluded"]].values.tolist() == [
        ["ave", "train", 6, 2], ["ave", "val", 1, 0], ["ave", "test", 3, 0], ["avqa", "test", 4, 0]
    ]  # fmt: skip


def test_avuie_tasks_table():
    frame = avuie_tasks_table(STATS)
    avqa = frame[frame["Task"] == "avqa"].iloc[0]
    assert (avqa["Read"], avqa["Duplicates"], avqa["Target sources"]) == (5, 1, "released: 3, template: 1")
    assert frame[frame["Task"] == "ave"].iloc[0]["Rejected by reader"] == 1


def test_quarantine_and_failed_checks_tables():
    frame = quarantine_table(REPORT)
    assert list(frame["Group"]) == ["ave", "music_avqa"]
    ave = frame.iloc[0]
    assert (ave["Items"], ave["Quarantined"], ave["Failure rate (%)"], ave["Limit (%)"]) == (4, 2, 50.0, 5.0)
    failed = failed_checks_table(REPORT)
    assert failed[["Group", "Expectation", "Severity", "Rows", "Reason"]].values.tolist() == [
        ["ave", "e_bad", "warning", 2, "d is {d}"]
    ]
    assert failed_checks_table({**REPORT, "datasets": {"x": REPORT["datasets"]["music_avqa"]}}).empty


def test_quarantined_items_table_caps_per_group():
    frame = quarantined_items_table(REPORT, max_items=1)
    assert frame.values.tolist() == [["validate_raw", "ave", "train", "a:1", "bad; worse"]]


def test_quarantine_table_reads_the_avuie_gate():
    report = {"stage": "validate_avuie", "max_failure_rate": 0.1, "tasks": {"ave": REPORT["datasets"]["ave"]}}
    assert quarantine_table(report)[["Gate", "Group"]].values.tolist() == [["validate_avuie", "ave"]]


def test_avqa_majority_table():
    frame = avqa_majority_table(STATS)
    assert frame.values.tolist() == [["test", "Audio/Counting", 4, "two", pytest.approx(25.0)]]
    assert avqa_majority_table({"tasks": {"ave": STATS["tasks"]["ave"]}}).empty
