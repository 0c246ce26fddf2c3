"""Tests of crab.datasets.music_avqa on hand-written question files (format: dataset-layouts.md 3.2-3.6)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crab.datasets.music_avqa import count_placeholders, fill_question, read_music_avqa
from crab.datasets.vocab import AVQA_PLACEHOLDER_VALUES, AVQA_TEMPLATES
from crab.errors import DataError


def _entry(**overrides: Any) -> dict[str, Any]:
    """A verbatim-style entry: the 7 keys in their order, string-held lists with ", " separators."""
    entry = {
        "video_id": "00006835",
        "question_id": 777,
        "type": '["Audio-Visual", "Location"]',
        "question_content": "What is the <LR> instrument of the <FL> sounding instrument?",
        "templ_values": '["left", "first"]',
        "question_deleted": 0,
        "anser": "saxophone",
    }
    entry.update(overrides)
    return entry


def _write(root: Path, entries: list[Any], folder: str = "json_update", split: str = "test") -> Path:
    path = root / folder / f"avqa-{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def test_reads_an_entry_into_a_record(tmp_path: Path) -> None:
    path = _write(tmp_path, [_entry()])
    result = read_music_avqa(tmp_path, "test")
    assert result.rejected == []
    (record,) = result.records
    assert record.item_id == "777" and record.question_id == 777 and record.video_id == "00006835"
    assert record.question_type == ("Audio-Visual", "Location")  # "[..., ...]" with the space after the comma
    assert record.templ_values == ("left", "first")
    assert record.question == "What is the left instrument of the first sounding instrument?"
    assert record.answer == "saxophone" and record.split == "test"
    assert record.video_path == tmp_path / "video" / "00006835.mp4"
    assert record.source == f"{path}[0]"


LEFTEST_Q = "What kind of instrument is the leftest instrument? ?"  # trailing-space template: Crab's "? ?"
LOUDER_Q = "Is the acoustic_guitar louder than the drum?"  # "<Object>?" loses its "?" and gets it back


@pytest.mark.parametrize(
    ("content", "values", "question"),
    [
        ("How many sounding <Object> in the video\uff1f", ["piano"], "How many sounding piano in the video?"),
        ("Are there <Object> and <Object> sound? ", ["cello", "flute"], "Are there cello and flute sound? ?"),
        ("What kind of instrument is the <LRer> instrument? ", ["leftest"], LEFTEST_Q),
        ("Is the <Object> louder than the <Object>?", ["acoustic_guitar", "drum"], LOUDER_Q),
        ("Where is the performance?", [], "Where is the performance?"),
        ("Is there a voiceover", [], "Is there a voiceover?"),
    ],
)
def test_fill_question_follows_crabs_rule_with_its_quirks(content: str, values: list[str], question: str) -> None:
    assert fill_question(content, values) == question


def test_fill_question_rejects_a_value_count_mismatch() -> None:
    with pytest.raises(ValueError, match="1 value"):
        fill_question("Is the <Object> louder than the <Object>?", ["drum"])
    with pytest.raises(ValueError, match="3 value"):
        fill_question("Is the <Object> louder than the <Object>?", ["drum", "cello", "tuba"])


def test_every_real_template_fills_with_one_value_per_placeholder() -> None:
    for templates in AVQA_TEMPLATES.values():
        for template in templates:
            slots = [w for w in template.replace("\uff1f", "?").split(" ") if "<" in w]
            values = [AVQA_PLACEHOLDER_VALUES[w.rstrip("?")][0] for w in slots]
            assert count_placeholders(template) == len(slots)
            question = fill_question(template, values)
            assert "<" not in question and question.endswith("?") and "\uff1f" not in question


def test_json_update_is_preferred_and_json_is_the_fallback(tmp_path: Path) -> None:
    original = _write(tmp_path, [_entry(anser="piano")], folder="json", split="val")
    assert read_music_avqa(tmp_path, "val").records[0].source == f"{original}[0]"
    _write(tmp_path, [_entry(anser="violin")], folder="json_update", split="val")
    assert read_music_avqa(tmp_path, "val").records[0].answer == "violin"


def test_crabs_video_data_folder_is_used_when_video_is_absent(tmp_path: Path) -> None:
    _write(tmp_path, [_entry()])
    (tmp_path / "video_data").mkdir()
    assert read_music_avqa(tmp_path, "test").records[0].video_path == tmp_path / "video_data" / "00006835.mp4"
    (tmp_path / "video").mkdir()
    assert read_music_avqa(tmp_path, "test").records[0].video_path == tmp_path / "video" / "00006835.mp4"


def test_python_style_quoted_lists_parse_like_crabs_literal_eval(tmp_path: Path) -> None:
    entry = _entry(type="['Audio', 'Counting']", question_content="Is there a <Object> sound?", templ_values="['erhu']")
    _write(tmp_path, [entry])
    (record,) = read_music_avqa(tmp_path, "test").records
    assert record.question_type == ("Audio", "Counting") and record.question == "Is there a erhu sound?"


def test_bad_entries_are_rejected_with_index_and_reason(tmp_path: Path) -> None:
    no_anser = _entry(question_id=6)
    no_anser["answer"] = no_anser.pop("anser")
    no_video = _entry(question_id=7)
    del no_video["video_id"]
    entries = [
        _entry(question_id=1),
        _entry(question_id=2, type='["Audio", "Counting"'),
        _entry(question_id=3, type='["Audio", "Counting", "Extra"]'),
        _entry(question_id=4, type='[1, 2]'),
        _entry(question_id=5, templ_values="left, first"),
        no_anser,
        no_video,
        _entry(question_id="8"),
        _entry(question_id=9, templ_values='["left"]'),
        _entry(question_id=10, question_deleted=1),
        ["not", "an", "object"],
        _entry(question_id=12, anser=""),
        _entry(question_id=13, video_id=6835),
        _entry(question_id=14, type=["Audio", "Counting"]),
    ]
    path = _write(tmp_path, entries)
    result = read_music_avqa(tmp_path, "test")
    assert [r.item_id for r in result.records] == ["1"]
    reasons = {int(r.source[len(str(path)) + 1 : -1]): r.reason for r in result.rejected}
    assert sorted(reasons) == list(range(1, 14))
    assert reasons[1].startswith("type '[\"Audio\", \"Counting\"' is not a list literal")
    assert reasons[2] == "type '[\"Audio\", \"Counting\", \"Extra\"]' has 3 item(s), expected 2"
    assert "is not a list of strings" in reasons[3]
    assert reasons[4] == "templ_values 'left, first' is not a list literal"
    assert reasons[5] == "missing key(s): anser (found 'answer'; MUSIC-AVQA spells it 'anser')"
    assert reasons[6] == "missing key(s): video_id"
    assert reasons[7] == "question_id must be a JSON number (int), got str"
    assert "1 value(s) for 2 placeholder(s)" in reasons[8]
    assert reasons[9] == "question_deleted is 1"
    assert reasons[10] == "entry is a JSON list, not an object"
    assert reasons[11] == "empty anser"
    assert reasons[12] == "video_id must be a JSON string, got int"
    assert reasons[13] == "type must be a JSON string, got list"
    by_index = {int(r.source[len(str(path)) + 1 : -1]): r for r in result.rejected}
    assert by_index[1].item_id == "2" and by_index[10].item_id == "" and by_index[1].dataset == "music_avqa"


def test_unusable_files_raise(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_music_avqa(tmp_path, "train")
    path = tmp_path / "json_update" / "avqa-train.json"
    path.parent.mkdir()
    path.write_text('[{"video_id": "1",', encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON") as caught:
        read_music_avqa(tmp_path, "train")
    assert caught.value.path == str(path)
    path.write_text('{"video_id": "1"}', encoding="utf-8")
    with pytest.raises(DataError, match="expected a JSON array, got a JSON dict"):
        read_music_avqa(tmp_path, "train")
    with pytest.raises(ValueError, match="unknown MUSIC-AVQA split"):
        read_music_avqa(tmp_path, "dev")  # type: ignore[arg-type]
