"""Tests of crab.datasets.ave.read_ave on hand-written split files (format: dataset-layouts.md section 1.2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crab.datasets.ave import read_ave
from crab.datasets.records import AveRecord
from crab.errors import DataError

HEADER = "Category&VideoID&Quality&StartTime&EndTime"


def _write(root: Path, name: str, lines: list[str], newline: str = "\n") -> Path:
    path = root / name
    path.write_text(newline.join(lines) + newline, encoding="utf-8")
    return path


def test_reads_rows_after_the_header_keeping_quirky_ids_and_categories(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "trainSet.txt",
        [HEADER, "Male speech, man speaking&-67UNKFmRLk&good&0&8", "Frying (food)&aB3dE_f9Gh1&good&3&10"],
    )
    result = read_ave(tmp_path, "train")
    assert result.rejected == []
    assert result.records == [
        AveRecord(
            item_id="-67UNKFmRLk_0_8",
            video_id="-67UNKFmRLk",
            category="Male speech, man speaking",
            quality="good",
            start_s=0,
            end_s=8,
            split="train",
            video_path=tmp_path / "AVE" / "-67UNKFmRLk.mp4",
            source=f"{path}:2",
        ),
        AveRecord(
            item_id="aB3dE_f9Gh1_3_10",
            video_id="aB3dE_f9Gh1",
            category="Frying (food)",
            quality="good",
            start_s=3,
            end_s=10,
            split="train",
            video_path=tmp_path / "AVE" / "aB3dE_f9Gh1.mp4",
            source=f"{path}:3",
        ),
    ]


def test_a_file_without_header_keeps_its_first_row(tmp_path: Path) -> None:
    _write(tmp_path, "testSet.txt", ["Church bell&RUhOCu3LNXM&good&0&10", "Church bell&VWi2ENBuTbw&good&0&0"])
    result = read_ave(tmp_path, "test")
    assert [r.item_id for r in result.records] == ["RUhOCu3LNXM_0_10", "VWi2ENBuTbw_0_0"]  # zero-length row parses
    assert all(r.split == "test" for r in result.records)


def test_a_header_that_is_not_on_line_1_is_a_bad_row(tmp_path: Path) -> None:
    path = _write(tmp_path, "valSet.txt", ["Bark&x7QpLm2ZrTa&good&1&2", HEADER])
    result = read_ave(tmp_path, "val")
    assert len(result.records) == 1
    assert [(r.source, r.reason) for r in result.rejected] == [(f"{path}:2", "StartTime 'StartTime' is not a number")]


def test_multi_event_videos_give_one_record_per_row(tmp_path: Path) -> None:
    _write(tmp_path, "trainSet.txt", [HEADER, "Goat&-x7QpLm2ZrT&good&0&3", "Goat&-x7QpLm2ZrT&good&5&9"])
    records = read_ave(tmp_path, "train").records
    assert [r.item_id for r in records] == ["-x7QpLm2ZrT_0_3", "-x7QpLm2ZrT_5_9"]
    assert records[0].video_path == records[1].video_path


def test_bad_rows_are_rejected_with_file_line_and_reason(tmp_path: Path) -> None:
    lines = [
        HEADER,
        "Bark&aaaaaaaaaaa&good&0&10",  # 2: fine
        "Bark&bbbbbbbbbbb&good&0",  # 3: 4 fields
        "Bark&ccccccccccc&good&0&10&extra",  # 4: 6 fields
        "Bark&ddddddddddd&good&3.5&10",  # 5: not whole
        "Bark&eeeeeeeeeee&good&two&10",  # 6: not a number
        "Bark&fffffffffff&good&3.0&10.0",  # 7: integer-valued floats are fine
        "Bark&&good&0&10",  # 8: empty id
        "&ggggggggggg&good&0&10",  # 9: empty category
        "Bark&hhhhhhhhhhh&good&1&nan",  # 10: nan
        "",  # 11: blank, skipped
        "Bark&../../etc&good&0&1",  # 12: id that escapes the media folder
    ]
    path = _write(tmp_path, "trainSet.txt", lines)
    result = read_ave(tmp_path, "train")
    assert [(r.item_id, r.start_s, r.end_s) for r in result.records] == [
        ("aaaaaaaaaaa_0_10", 0, 10),
        ("fffffffffff_3_10", 3, 10),
    ]
    rejected = {int(r.source.rsplit(":", 1)[1]): r for r in result.rejected}
    assert sorted(rejected) == [3, 4, 5, 6, 8, 9, 10, 12]
    assert all(r.source.startswith(str(path)) and r.dataset == "ave" for r in result.rejected)
    assert "expected 5 '&'-separated fields" in rejected[3].reason and "got 4" in rejected[3].reason
    assert "got 6" in rejected[4].reason
    assert rejected[5].reason == "StartTime '3.5' is not a whole number of seconds"
    assert rejected[5].item_id == "ddddddddddd"
    assert rejected[6].reason == "StartTime 'two' is not a number"
    assert rejected[8].reason == "empty VideoID"
    assert rejected[9].reason == "empty Category"
    assert rejected[10].reason == "EndTime 'nan' is not a whole number of seconds"
    assert "not a file name" in rejected[12].reason


def test_crlf_and_bom_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "trainSet.txt"
    path.write_bytes(("\ufeff" + HEADER + "\r\nBanjo&aB3dE_f9Gh1&good&0&10\r\n").encode("utf-8"))
    result = read_ave(tmp_path, "train")
    assert [r.item_id for r in result.records] == ["aB3dE_f9Gh1_0_10"] and result.rejected == []


def test_unusable_files_raise(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_ave(tmp_path, "val")
    (tmp_path / "valSet.txt").write_bytes(b"Bark&\xff\xfe&good&0&1\n")
    with pytest.raises(DataError, match="not UTF-8 text"):
        read_ave(tmp_path, "val")
    with pytest.raises(ValueError, match="unknown AVE split"):
        read_ave(tmp_path, "dev")  # type: ignore[arg-type]
