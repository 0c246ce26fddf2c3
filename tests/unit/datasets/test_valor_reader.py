"""Tests of crab.datasets.valor.read_valor on hand-written sample files (Crab's layout, dataset-layouts.md 7.2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crab.datasets.records import ValorRecord
from crab.datasets.valor import read_valor
from crab.errors import DataError


def _write(root: Path, split: str, entries: Any) -> Path:
    path = root / f"{split}_samples.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def test_reads_captions_and_joins_video_paths(tmp_path: Path) -> None:
    path = _write(tmp_path, "val", [{"video_id": "-abc_DEF123", "desc": "A man plays the guitar while a dog barks."}])
    result = read_valor(tmp_path, "val")
    assert result.rejected == []
    assert result.records == [
        ValorRecord(
            item_id="-abc_DEF123",
            video_id="-abc_DEF123",
            caption="A man plays the guitar while a dog barks.",
            split="val",
            video_path=tmp_path / "video_data" / "-abc_DEF123.mp4",
            source=f"{path}[0]",
        )
    ]


def test_bad_entries_are_rejected_with_index_and_reason(tmp_path: Path) -> None:
    entries = [
        {"video_id": "ok1", "desc": "fine"},
        {"video_id": "no_desc"},
        {"desc": "no id"},
        {"video_id": 42, "desc": "numeric id"},
        {"video_id": "list_desc", "desc": ["a", "b"]},
        {"video_id": "blank", "desc": "   "},
        "just a string",
        {"video_id": "a/b", "desc": "path in id"},
    ]
    path = _write(tmp_path, "train", entries)
    result = read_valor(tmp_path, "train")
    assert [r.item_id for r in result.records] == ["ok1"]
    reasons = {r.source: (r.item_id, r.reason) for r in result.rejected}
    assert reasons == {
        f"{path}[1]": ("no_desc", "missing key(s): desc"),
        f"{path}[2]": ("", "missing key(s): video_id"),
        f"{path}[3]": ("", "video_id must be a JSON string, got int"),
        f"{path}[4]": ("list_desc", "desc must be a JSON string, got list"),
        f"{path}[5]": ("blank", "empty desc"),
        f"{path}[6]": ("", "entry is a JSON str, not an object"),
        f"{path}[7]": ("a/b", "video_id 'a/b' is not a file name"),
    }


def test_unusable_files_raise(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_valor(tmp_path, "train")
    (tmp_path / "train_samples.json").write_text("[{]", encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON"):
        read_valor(tmp_path, "train")
    _write(tmp_path, "train", {"video_id": "x", "desc": "y"})
    with pytest.raises(DataError, match="expected a JSON array"):
        read_valor(tmp_path, "train")
    with pytest.raises(ValueError, match="unknown VALOR split"):
        read_valor(tmp_path, "test")  # type: ignore[arg-type]
