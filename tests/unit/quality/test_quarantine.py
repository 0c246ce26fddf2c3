"""The quality-gate report: JSON shape, atomic writing, the helpers downstream stages read it with, and
the failure-rate threshold. No Great Expectations needed here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crab.errors import CrabError, DataError
from crab.quality.quarantine import (
    ExpectationOutcome,
    GroupReport,
    QuarantinedItem,
    ValidationResult,
    load_quarantined,
    load_quarantined_avuie,
    write_report,
)
from crab.quality.runner import enforce_max_failure_rate


def _raw_result(max_failure_rate: float = 0.05) -> ValidationResult:
    ave = GroupReport(
        name="ave",
        root="data/raw/ave",
        present=True,
        num_items=40,
        quarantined=(
            QuarantinedItem("v2_0_3", "val", "data/raw/ave/valSet.txt:9", ("unknown category 'Dog'",)),
            QuarantinedItem("v1_0_3", "train", "data/raw/ave/trainSet.txt:2", ("duplicate row", "reversed range")),
        ),
        expectations=(
            ExpectationOutcome("expect_column_values_to_be_in_set", "category", False, 1, "critical", "unknown ..."),
        ),
    )
    valor = GroupReport(name="valor", root="data/raw/valor", present=False, num_items=0)
    return ValidationResult("validate_raw", max_failure_rate, {"valor": valor, "ave": ave}, Path("raw.json"))


def test_report_shape_is_sorted_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "raw.json"
    write_report(_raw_result(), path)
    first = path.read_bytes()
    write_report(_raw_result(), path)
    assert path.read_bytes() == first  # no timestamps: a stable DVC output
    report = json.loads(first)
    ave = report["datasets"]["ave"]
    assert (ave["num_items"], ave["num_passed"], ave["num_quarantined"], ave["failure_rate"]) == (40, 38, 2, 0.05)
    assert [q["source"] for q in ave["quarantined"]] == ["data/raw/ave/trainSet.txt:2", "data/raw/ave/valSet.txt:9"]
    assert ave["quarantined"][0] == {
        "item_id": "v1_0_3",
        "split": "train",
        "source": "data/raw/ave/trainSet.txt:2",
        "reasons": ["duplicate row", "reversed range"],
    }
    assert ave["expectations"][0]["unexpected_count"] == 1
    assert report["datasets"]["valor"]["present"] is False
    assert [p.name for p in path.parent.iterdir()] == ["raw.json"]  # the temp file was renamed away


def test_load_quarantined_returns_sources_per_dataset(tmp_path: Path) -> None:
    path = tmp_path / "raw.json"
    write_report(_raw_result(), path)
    assert load_quarantined(path) == {
        "ave": {"data/raw/ave/trainSet.txt:2", "data/raw/ave/valSet.txt:9"},
        "valor": set(),
    }
    with pytest.raises(DataError, match="expected a validate_avuie report, got validate_raw"):
        load_quarantined_avuie(path)


def test_load_quarantined_avuie_returns_record_ids(tmp_path: Path) -> None:
    items = (
        QuarantinedItem(
            "q3", "train", "data/avuie/avqa/train.jsonl:3", ("answer 'maybe' ...",), record_id="avqa/train/q3"
        ),
        QuarantinedItem("", "train", "data/avuie/avqa/train.jsonl:6", ("malformed JSON line",), record_id=""),
    )
    group = GroupReport(name="avqa", root="data/avuie/avqa", present=True, num_items=7, quarantined=items)
    path = tmp_path / "avuie.json"
    write_report(ValidationResult("validate_avuie", 0.05, {"avqa": group}), path)
    assert set(json.loads(path.read_text())) == {"stage", "max_failure_rate", "tasks"}
    assert load_quarantined_avuie(path) == {"avqa/train/q3"}


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "file not found"), ("{not json", "not valid JSON"), ('{"stage": "train"}', "not a quality-gate report")],
)
def test_unusable_report_is_a_data_error(tmp_path: Path, content: str | None, reason: str) -> None:
    path = tmp_path / "raw.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=reason):
        load_quarantined(path)


def test_threshold_is_exclusive_and_names_the_dataset() -> None:
    enforce_max_failure_rate(_raw_result(max_failure_rate=0.05))  # 2 of 40 = 5.0%: not above the threshold
    with pytest.raises(CrabError, match=r"^validate_raw: ave quarantined 2 of 40 items \(5\.0%\), above validation"):
        enforce_max_failure_rate(_raw_result(max_failure_rate=0.049))
