"""Tests for ``crab.avuie.avcap``: captions as targets, unchanged by the ERP switch."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from crab.avuie.avcap import AvcapLabel, build_avcap, format_answer, parse_answer
from crab.datasets.records import ValorRecord
from crab.tasks import TASKS, Task


def _record(vid: str, caption: str, split: str = "train", index: int = 0) -> ValorRecord:
    return ValorRecord(
        item_id=vid,
        video_id=vid,
        caption=caption,
        split=split,
        video_path=Path("data/raw/valor/video_data") / f"{vid}.mp4",
        source=f"data/raw/valor/{split}_samples.json[{index}]",
    )


CAPTIONS = [
    "A man plays the violin on a stage while the audience claps.",
    "  A dog barks\nat a passing car.  ",
    "Rain falls on a tin roof; thunder rumbles <far> away.",
]


def test_format_and_parse():
    assert format_answer(AvcapLabel("A dog barks."), None) == "A dog barks."
    assert parse_answer("  A dog\n barks. ") == AvcapLabel("A dog barks.")
    assert parse_answer(" \n ") is None
    with pytest.raises(ValueError):
        format_answer(AvcapLabel("A dog barks."), "reasoning")
    with pytest.raises(ValueError):
        format_answer(AvcapLabel(" A dog  barks."), None)


def test_targets_are_captions_unchanged_by_erp_and_round_trip():
    records = [_record(f"c{i}", c, index=i) for i, c in enumerate(CAPTIONS)]
    on = build_avcap(records, {}, None, True, random.Random(0))
    off = build_avcap(records, {}, None, False, random.Random(1))
    assert [r.target for r in on] == [r.target for r in off] == [
        "A man plays the violin on a stage while the audience claps.",
        "A dog barks at a passing car.",
        "Rain falls on a tin roof; thunder rumbles <far> away.",
    ]
    for rec in on:
        assert not rec.reasoning
        assert parse_answer(rec.target) == AvcapLabel(rec.label["caption"])
        assert rec.instruction == TASKS[Task.AVCAP].instruction()
    assert on[1].id == "avcap/train/c1" and on[1].dataset == "valor" and on[1].source.endswith("[1]")


def test_empty_caption_is_skipped_and_counted():
    tally: Counter[str] = Counter()
    records = [_record("a", " "), _record("b", "A cat meows.", "val")]
    built = build_avcap(records, {}, None, True, random.Random(0), tally)
    assert [r.id for r in built] == ["avcap/val/b"]
    assert tally == {"skipped": 1, "caption": 1}
