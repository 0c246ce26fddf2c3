"""Tests of crab.datasets.avsbench (S4, MS3 and the shared CSV helpers; format: dataset-layouts.md section 4)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from crab.datasets.avsbench import AvsObjectRecord, read_ms3, read_s4
from crab.datasets.tables import read_csv_rows
from crab.datasets.vocab_seg import S4_CATEGORIES
from crab.errors import DataError


def _touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def _s4_media(root: Path, split: str, category: str, name: str, num_masks: int) -> None:
    base = root / "Single-source" / "s4_data"
    _touch(base / "audio_wav" / split / category / f"{name}.wav")
    _touch(*(base / "visual_frames" / split / category / name / f"{name}_{i}.png" for i in range(1, 6)))
    _touch(*(base / "gt_masks" / split / category / name / f"{name}_{i}.png" for i in range(1, num_masks + 1)))


def _ms3_media(root: Path, split: str, name: str) -> None:
    base = root / "Multi-sources" / "ms3_data"
    _touch(base / "audio_wav" / split / f"{name}.wav")
    _touch(*(base / "visual_frames" / name / f"{name}.mp4_{i}.png" for i in range(1, 6)))
    _touch(*(base / "gt_masks" / split / name / f"{name}_{i}.png" for i in range(1, 6)))


def _csv(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_vocabulary_has_s4s_23_categories() -> None:
    assert len(S4_CATEGORIES) == 23 and len(set(S4_CATEGORIES)) == 23
    assert "horse_clip-clop" in S4_CATEGORIES and "lawn_mowing" in S4_CATEGORIES


def test_s4_train_has_one_mask_and_test_five(tmp_path: Path) -> None:
    path = _csv(
        tmp_path / "Single-source" / "s4_meta_data.csv",
        ["name,start_time,category,split", "aB3dE_f9Gh1_1,0,playing_violin,train", "-x7QpLm2ZrT,3,helicopter,test"],
    )
    _s4_media(tmp_path, "train", "playing_violin", "aB3dE_f9Gh1_1", num_masks=1)
    _s4_media(tmp_path, "test", "helicopter", "-x7QpLm2ZrT", num_masks=5)
    result = read_s4(tmp_path)
    assert result.rejected == []
    train, test = result.records
    base = tmp_path / "Single-source" / "s4_data"
    frames = base / "visual_frames" / "train" / "playing_violin" / "aB3dE_f9Gh1_1"
    assert train == AvsObjectRecord(
        item_id="aB3dE_f9Gh1_1",
        video_id="aB3dE_f9Gh1_1",
        task="s4",
        category="playing_violin",
        split="train",
        video_path=base / "raw_videos" / "train" / "playing_violin" / "aB3dE_f9Gh1_1.mp4",
        audio_path=base / "audio_wav" / "train" / "playing_violin" / "aB3dE_f9Gh1_1.wav",
        frame_paths=tuple(frames / f"aB3dE_f9Gh1_1_{i}.png" for i in (1, 2, 3, 4, 5)),
        mask_paths=(base / "gt_masks" / "train" / "playing_violin" / "aB3dE_f9Gh1_1" / "aB3dE_f9Gh1_1_1.png",),
        source=f"{path}:2",
    )
    assert len(test.mask_paths) == 5 and test.mask_paths[4].name == "-x7QpLm2ZrT_5.png"
    assert [r.item_id for r in read_s4(tmp_path, "test").records] == ["-x7QpLm2ZrT"]


def test_ms3_frames_carry_the_mp4_quirk_and_live_outside_the_split_folder(tmp_path: Path) -> None:
    _csv(tmp_path / "Multi-sources" / "ms3_meta_data.csv", ["video_id,split", "3vheOi4y540_1,val"])
    _ms3_media(tmp_path, "val", "3vheOi4y540_1")
    (record,) = read_ms3(tmp_path, "val").records
    base = tmp_path / "Multi-sources" / "ms3_data"
    assert record.task == "ms3" and record.category == ""
    assert record.frame_paths[0] == base / "visual_frames" / "3vheOi4y540_1" / "3vheOi4y540_1.mp4_1.png"
    assert record.mask_paths[-1] == base / "gt_masks" / "val" / "3vheOi4y540_1" / "3vheOi4y540_1_5.png"
    assert record.audio_path == base / "audio_wav" / "val" / "3vheOi4y540_1.wav"
    assert record.video_path == base / "raw_videos" / "3vheOi4y540_1.mp4"


def test_bad_s4_rows_are_rejected_with_line_and_reason(tmp_path: Path) -> None:
    lines = [
        "name,start_time,category,split",
        "good_video1,0,dog_barking,val",  # 2: fine
        "bad_split01,0,dog_barking,dev",  # 3: unknown split
        "bad_categor,0,dog_barkin,val",  # 4: unknown category
        "no_media001,0,dog_barking,val",  # 5: nothing on disk
        "good_video1,0,dog_barking,val",  # 6: duplicate
        "short_row01,0,val",  # 7: 3 fields
        "../escape01,0,dog_barking,val",  # 8: not a file name
        "half_media1,0,dog_barking,val",  # 9: one mask missing
    ]
    path = _csv(tmp_path / "Single-source" / "s4_meta_data.csv", lines)
    _s4_media(tmp_path, "val", "dog_barking", "good_video1", num_masks=5)
    _s4_media(tmp_path, "val", "dog_barking", "half_media1", num_masks=4)
    result = read_s4(tmp_path)
    assert [r.item_id for r in result.records] == ["good_video1"]
    reasons = {int(r.source.rsplit(":", 1)[1]): r.reason for r in result.rejected}
    assert all(r.source.startswith(str(path)) and r.dataset == "s4" for r in result.rejected)
    missing_wav = tmp_path / "Single-source" / "s4_data" / "audio_wav" / "val" / "dog_barking" / "no_media001.wav"
    missing_mask = tmp_path / "Single-source/s4_data/gt_masks/val/dog_barking/half_media1/half_media1_5.png"
    assert reasons == {
        3: "unknown split 'dev' (expected one of ['train', 'val', 'test'])",
        4: "unknown category 'dog_barkin' (not one of S4's 23)",
        5: f"missing media file {missing_wav} (and 10 more)",  # wav + 5 frames + 5 masks
        6: "duplicate name (first at line 2)",
        7: "expected 4 comma-separated fields like the header, got 3",
        8: "name '../escape01' is not a file name",
        9: f"missing media file {missing_mask}",
    }
    assert len(read_s4(tmp_path, check_media=False).records) == 3


def test_a_per_split_read_reports_only_its_rows_and_logs_the_unplaceable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = ["name,start_time,category,split", "a1,0,dog_barking,val", "b1,0,dog_barkin,test", "c1,0,dog_barking,dev"]
    _csv(tmp_path / "Single-source" / "s4_meta_data.csv", lines)
    with caplog.at_level(logging.WARNING, logger="crab.datasets.avsbench"):
        test = read_s4(tmp_path, "test", check_media=False)
    assert test.records == [] and [r.reason for r in test.rejected] == [
        "unknown category 'dog_barkin' (not one of S4's 23)"
    ]
    assert "1 row(s) have no usable split" in caplog.text
    assert [r.item_id for r in read_s4(tmp_path, "val", check_media=False).records] == ["a1"]


def test_metadata_problems_raise_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="s4_meta_data.csv: file not found"):
        read_s4(tmp_path)
    path = _csv(tmp_path / "Multi-sources" / "ms3_meta_data.csv", ["3vheOi4y540_1,train"])
    with pytest.raises(DataError, match="no 'split' column in the header") as caught:
        read_ms3(tmp_path)
    assert caught.value.path == str(path)
    with pytest.raises(ValueError, match="unknown MS3 split"):
        read_ms3(tmp_path, "dev")  # type: ignore[arg-type]


def test_read_csv_rows_numbers_lines_across_quotes_crlf_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b'\xef\xbb\xbfa,b\r\n\r\n1,"x, y"\r\n2,"two\r\nlines"\r\n3,z\r\n')
    assert read_csv_rows(path) == [(1, ["a", "b"]), (3, ["1", "x, y"]), (4, ["2", "two\nlines"]), (6, ["3", "z"])]
    path.write_bytes(b"a,b\n\xff,1\n")
    with pytest.raises(DataError, match="not UTF-8 text"):
        read_csv_rows(path)
