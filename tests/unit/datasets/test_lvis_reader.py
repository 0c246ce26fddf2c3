"""Tests of crab.datasets.lvis.read_lvis on hand-written sample files (Crab's LVIS layout, crab-reference 3.4)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from crab.datasets.lvis import LvisRecord, read_lvis
from crab.errors import DataError


def _entry(ann_id: Any = 17, image_id: Any = 9, **fields: Any) -> dict[str, Any]:
    entry = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 3,
        "bbox": [10.5, 20, 30.25, 40],
        "name": "bus_(vehicle)",
        "def": "a large motor vehicle carrying passengers",
        "area": 812.5,
    }
    return {**entry, **fields}


def _write(root: Path, split: str, entries: Any, media: bool = True) -> Path:
    """Write ``{split}_samples.json`` and (``media``) an empty file for every image and mask it names."""
    path = root / f"{split}_samples.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries), encoding="utf-8")
    if media:
        for e in entries if isinstance(entries, list) else []:
            ids = (
                [str(e.get(k, "")).strip().removesuffix(".0") for k in ("id", "image_id")]
                if isinstance(e, dict)
                else []
            )
            if len(ids) == 2 and all(i.isdigit() for i in ids):
                (root / f"{split}2017").mkdir(exist_ok=True)
                (root / f"{split}2017" / f"{int(ids[1]):012d}.jpg").touch()
                (root / "binary_mask").mkdir(exist_ok=True)
                (root / "binary_mask" / f"{int(ids[0])}.png").touch()
    return path


def test_reads_numbers_and_digit_strings_into_typed_records(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "train",
        [
            _entry(17, 9, extra_key="ignored", synonyms=["bus"]),
            _entry("18", " 000123 ", category_id="4", bbox=[0, 0, 1, 1], area=0, name="dog", **{"def": ""}),
            _entry(19.0, 9, area=5),  # an integral float is an integer
        ],
    )
    result = read_lvis(tmp_path)
    assert result.rejected == []
    first, second, third = result.records
    assert first == LvisRecord(
        item_id="17",
        image_id=9,
        category_id=3,
        name="bus_(vehicle)",
        definition="a large motor vehicle carrying passengers",
        bbox=(10.5, 20.0, 30.25, 40.0),
        area=812.5,
        split="train",
        image_path=tmp_path / "train2017" / "000000000009.jpg",
        mask_path=tmp_path / "binary_mask" / "17.png",
        source=f"{path}[0]",
    )
    assert (second.item_id, second.image_id, second.category_id, second.area) == ("18", 123, 4, 0.0)
    assert second.image_path == tmp_path / "train2017" / "000000000123.jpg" and second.definition == ""
    assert all(isinstance(v, float) for v in second.bbox)
    assert (third.item_id, third.mask_path.name) == ("19", "19.png")


def test_val_samples_use_val2017_and_every_split_is_read_by_default(tmp_path: Path) -> None:
    _write(tmp_path, "train", [_entry(1, 5)])
    val = _write(tmp_path, "val", [_entry(2, 6)])
    both = read_lvis(tmp_path)
    assert [(r.item_id, r.split) for r in both.records] == [("1", "train"), ("2", "val")]
    (only_val,) = read_lvis(tmp_path, "val").records
    assert only_val.image_path == tmp_path / "val2017" / "000000000006.jpg" and only_val.source == f"{val}[0]"
    assert [r.item_id for r in read_lvis(tmp_path, "train").records] == ["1"]


def test_missing_val_file_means_no_val_samples_and_is_logged(tmp_path: Path, caplog) -> None:
    _write(tmp_path, "train", [_entry(1, 5)])
    with caplog.at_level(logging.INFO, logger="crab.datasets.lvis"):
        assert [r.split for r in read_lvis(tmp_path).records] == ["train"]
        val = read_lvis(tmp_path, "val")
    assert val.records == [] and val.rejected == []
    assert f"{tmp_path / 'val_samples.json'} not found; no val samples" in caplog.text


@pytest.mark.parametrize(
    "entry, reason",
    [
        ("just text", "entry is a JSON str, not an object"),
        ({"id": 17}, "missing or null field(s): image_id, category_id, bbox, name, def, area"),
        (_entry(area=None), "missing or null field(s): area"),
        (_entry(True), "id must be a non-negative integer or a string of digits, got bool True"),
        (_entry(-3), "id must be a non-negative integer or a string of digits, got int -3"),
        (_entry(image_id="12a"), "image_id must be a non-negative integer or a string of digits, got str '12a'"),
        (_entry(image_id=9.5), "image_id must be a non-negative integer or a string of digits, got float 9.5"),
        (_entry(category_id=[3]), "category_id must be a non-negative integer or a string of digits, got list [3]"),
        (_entry(name=5), "name must be a JSON string, got int 5"),
        (_entry(name="  "), "empty name"),
        (_entry(**{"def": None}), "missing or null field(s): def"),
        (_entry(**{"def": ["x"]}), "def must be a JSON string, got list ['x']"),
        (_entry(bbox=[1, 2, 3]), "bbox must be a list of 4 numbers [x, y, w, h], got list [1, 2, 3]"),
        (_entry(bbox=[1, 2, "3", 4]), "bbox must be a list of 4 numbers [x, y, w, h], got list [1, 2, '3', 4]"),
        (_entry(bbox=[1, 2, True, 4]), "bbox must be a list of 4 numbers [x, y, w, h], got list [1, 2, True, 4]"),
        (_entry(bbox="1,2,3,4"), "bbox must be a list of 4 numbers [x, y, w, h], got str '1,2,3,4'"),
        (_entry(bbox=[1, 2, 0, 4]), "non-positive bbox size 0 x 4"),
        (_entry(bbox=[1, 2, 3, -4.5]), "non-positive bbox size 3 x -4.5"),
        (_entry(area="812"), "area must be a number, got str '812'"),
        (_entry(area=-1.5), "negative area -1.5"),
    ],
)
def test_bad_entries_are_rejected_with_index_and_reason(tmp_path: Path, entry: Any, reason: str) -> None:
    path = _write(tmp_path, "train", [_entry(1, 5), entry])
    result = read_lvis(tmp_path)
    assert [r.item_id for r in result.records] == ["1"]
    (rejection,) = result.rejected
    assert (rejection.dataset, rejection.source, rejection.reason) == ("lvis", f"{path}[1]", reason)
    readable_id = isinstance(entry, dict) and entry.get("id") == 17
    assert rejection.item_id == ("17" if readable_id else "")


def test_duplicate_ids_are_rejected_within_and_across_files(tmp_path: Path) -> None:
    train = _write(tmp_path, "train", [_entry(1, 5), _entry("1", 6), _entry(2, 6)])
    val = _write(tmp_path, "val", [_entry(2, 7), _entry(3, 7)])
    result = read_lvis(tmp_path)
    assert [r.item_id for r in result.records] == ["1", "2", "3"]
    assert [(r.item_id, r.source, r.reason) for r in result.rejected] == [
        ("1", f"{train}[1]", f"duplicate id 1 (first at {train}[0])"),
        ("2", f"{val}[0]", f"duplicate id 2 (first at {train}[2])"),
    ]
    # One split at a time sees no cross-file duplicate (the quality gate's id check covers all splits).
    assert [r.item_id for r in read_lvis(tmp_path, "val").records] == ["2", "3"]


def test_missing_image_or_mask_is_rejected_unless_media_are_not_checked(tmp_path: Path) -> None:
    path = _write(tmp_path, "train", [_entry(1, 5), _entry(2, 6), _entry(3, 7)])
    (tmp_path / "train2017" / "000000000006.jpg").unlink()
    (tmp_path / "binary_mask" / "3.png").unlink()
    result = read_lvis(tmp_path)
    assert [r.item_id for r in result.records] == ["1"]
    assert [(r.source, r.reason) for r in result.rejected] == [
        (f"{path}[1]", f"missing media file {tmp_path / 'train2017' / '000000000006.jpg'}"),
        (f"{path}[2]", f"missing media file {tmp_path / 'binary_mask' / '3.png'}"),
    ]
    assert [r.item_id for r in read_lvis(tmp_path, check_media=False).records] == ["1", "2", "3"]


def test_unusable_files_and_splits_raise(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"train_samples\.json: file not found"):
        read_lvis(tmp_path)
    with pytest.raises(DataError, match=r"train_samples\.json: file not found"):
        read_lvis(tmp_path, "train")
    (tmp_path / "train_samples.json").write_text('{"id": 1}', encoding="utf-8")
    with pytest.raises(DataError, match="expected a JSON array, got a JSON dict"):
        read_lvis(tmp_path)
    _write(tmp_path, "train", [])
    (tmp_path / "val_samples.json").write_text("[{", encoding="utf-8")
    with pytest.raises(DataError, match=r"val_samples\.json: not valid JSON"):
        read_lvis(tmp_path)
    with pytest.raises(ValueError, match="unknown LVIS split 'test'"):
        read_lvis(tmp_path, "test")  # type: ignore[arg-type]
