"""Acceptance test of ``validate_raw``: every planted bad item is quarantined with its reason, every good
item passes, the report and data docs are written, and the failure-rate threshold fails the stage.

The datasets (conftest.py) hold real tiny mp4s: good clips, a truncated file, a clip without an audio
track, one with an empty audio track, a 5 s clip, an 8 kHz clip and a missing file, plus annotation
errors (unknown class, reversed range, range past the end, duplicate and conflicting rows, duplicate
question ids, malformed ``type``, wrong templates and values, empty caption).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Planted, make_params

from crab.errors import CrabError
from crab.quality.quarantine import ValidationResult, load_quarantined
from crab.quality.raw import validate_raw


@pytest.fixture(scope="module")
def raw_run(
    raw_datasets: tuple[Path, dict[str, Planted]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, ValidationResult, dict[str, Planted]]:
    """One run over all three datasets with no threshold (max_failure_rate 1.0), in a fresh folder."""
    root, planted = raw_datasets
    workdir = tmp_path_factory.mktemp("raw_run")
    params = make_params(root, ["ave", "avqa", "avcap"], max_failure_rate=1.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        result = validate_raw(params)
    return workdir, result, planted


@pytest.mark.parametrize("dataset", ["ave", "music_avqa", "valor"])
def test_bad_items_quarantined_with_reason_and_good_items_pass(raw_run, dataset: str) -> None:
    _, result, planted = raw_run
    group = result.groups[dataset]
    by_source = {q.source: q for q in group.quarantined}
    assert set(by_source) == set(planted[dataset].bad)  # no good item quarantined, no bad item missed
    for source, expected in planted[dataset].bad.items():
        assert any(expected in reason for reason in by_source[source].reasons), (source, by_source[source].reasons)
    assert group.num_items == len(planted[dataset].good) + len(planted[dataset].bad)
    assert group.num_passed == len(planted[dataset].good)


def test_report_matches_contract(raw_run) -> None:
    workdir, result, planted = raw_run
    report = json.loads((workdir / "reports/validation/raw.json").read_text(encoding="utf-8"))
    assert report["stage"] == "validate_raw"
    assert report["max_failure_rate"] == 1.0
    ave = report["datasets"]["ave"]
    assert ave["num_quarantined"] == len(planted["ave"].bad)
    assert ave["failure_rate"] == pytest.approx(len(planted["ave"].bad) / ave["num_items"], abs=1e-6)
    sources = [q["source"] for q in ave["quarantined"]]
    assert sources == sorted(sources)
    assert set(ave["quarantined"][0]) == {"item_id", "split", "source", "reasons"}
    assert {e["expectation"] for e in ave["expectations"]} >= {
        "expect_column_values_to_be_in_set",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_column_values_to_be_null",
    }
    expected = {name: set(p.bad) for name, p in planted.items()} | dict.fromkeys(
        ("llp", "s4", "ms3", "ref_avs", "avss", "lvis"), set()
    )  # absent
    assert load_quarantined(workdir / "reports/validation/raw.json") == expected


def test_quality_is_a_warning_not_a_quarantine(raw_run) -> None:
    _, result, planted = raw_run
    (outcome,) = [e for e in result.groups["ave"].expectations if e.column == "quality"]
    assert (outcome.success, outcome.unexpected_count, outcome.severity) == (False, 1, "warning")
    warned = [s for s in planted["ave"].good if s.endswith(":6")]  # the "unsure" row is line 6 of trainSet.txt
    assert warned and not {q.source for q in result.groups["ave"].quarantined} & set(warned)


def test_data_docs_written(raw_run) -> None:
    workdir, _, _ = raw_run
    docs = workdir / "reports/validation/raw_docs"
    assert (docs / "index.html").is_file()
    pages = list((docs / "validations").rglob("*.html"))
    assert len(pages) == 3  # one validation page per dataset
    assert not list((workdir / "reports/validation").glob(".*"))  # no temp folders or files left behind


def test_failure_rate_above_threshold_names_dataset(raw_datasets, tmp_path: Path, monkeypatch) -> None:
    root, planted = raw_datasets
    monkeypatch.chdir(tmp_path)
    params = make_params(root, ["ave"], max_failure_rate=0.05, music_avqa=str(tmp_path / "absent"), valor="absent")
    rate = 100 * len(planted["ave"].bad) / (len(planted["ave"].bad) + len(planted["ave"].good))
    with pytest.raises(CrabError, match=rf"^validate_raw: ave quarantined .* \({rate:.1f}%\), above .* 5\.0%"):
        validate_raw(params)
    report = json.loads((tmp_path / "reports/validation/raw.json").read_text(encoding="utf-8"))
    assert report["datasets"]["ave"]["num_quarantined"] == len(planted["ave"].bad)  # written before failing
    assert report["datasets"]["valor"]["present"] is False


def test_needed_dataset_absent_is_an_error(raw_datasets, tmp_path: Path, monkeypatch) -> None:
    root, _ = raw_datasets
    monkeypatch.chdir(tmp_path)
    params = make_params(root, ["ave", "avcap"], max_failure_rate=1.0, valor=str(tmp_path / "no_valor"))
    with pytest.raises(CrabError, match=r"no_valor \(valor\) not found; avuie.tasks \['avcap'\] need it"):
        validate_raw(params)
    assert not (tmp_path / "reports").exists()
