"""Tests for ``crab.avuie.ave``: AVE answer format, parser, reasoning content and builder."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest

from crab.avuie.ave import EVENT_WORDS, AveLabel, build_ave, format_answer, parse_answer
from crab.datasets.records import AveRecord
from crab.datasets.vocab import AVE_CATEGORIES
from crab.synth.scene import Scene, SceneObject
from crab.tasks import TASKS, Task


def _record(category: str, start: int, end: int, vid: str = "vid00000001", split: str = "train") -> AveRecord:
    return AveRecord(
        item_id=f"{vid}_{start}_{end}",
        video_id=vid,
        category=category,
        quality="good",
        start_s=start,
        end_s=end,
        split=split,
        video_path=Path("data/raw/ave/AVE") / f"{vid}.mp4",
        source=f"data/raw/ave/trainSet.txt:{start + 2}",
    )


def _obj(name, slot, visible, audible) -> SceneObject:
    return SceneObject(name=name, slot=slot, visible=tuple(visible), audible=tuple(audible), loudness=1.0, rhythm=0.0)


def _scene(vid: str, *objects: SceneObject) -> Scene:
    return Scene(vid, "ave", "train", 10, "outdoor", tuple(objects), render_seed=0)


def _random_set(n: int, seed: int) -> tuple[list[AveRecord], dict[str, Scene]]:
    """n AVE rows with consistent scenes: one event, plus off-screen sounds and silent visible distractors."""
    rng = random.Random(seed)
    records, scenes = [], {}
    for i in range(n):
        vid = f"v{i:010d}"
        category = rng.choice(AVE_CATEGORIES)
        start = rng.randint(0, 6)
        end = rng.randint(start + 2, 10)
        visible = (max(0, start - rng.randint(0, 2)), end)
        audible = (start, min(10, end + rng.randint(0, 2)))
        objects = [_obj(category, rng.choice(["left", "middle", "right"]), [visible], [audible])]
        if rng.random() < 0.5:
            objects.append(_obj(rng.choice(AVE_CATEGORIES), None, [], [(0, rng.randint(1, 10))]))
        if rng.random() < 0.5:
            objects.append(_obj(rng.choice(AVE_CATEGORIES), "right", [(0, 10)], []))
        records.append(_record(category, start, end, vid))
        scenes[vid] = _scene(vid, *objects)
    return records, scenes


def test_every_category_has_readable_words():
    assert set(AVE_CATEGORIES) <= set(EVENT_WORDS)
    assert EVENT_WORDS["Bark"].a == "a dog" and EVENT_WORDS["Bark"].verb == "barks"


def test_format_final_sentence_and_plain_sentence():
    label = AveLabel("Male speech, man speaking", 0, 8)
    assert format_answer(label, "A man speaks.") == (
        "A man speaks. So the audible and visible event in the video is <event> Male speech, man speaking </event>, "
        "and the time range is <range> 0,8 </range>."
    )
    assert format_answer(label, None) == (
        "The audible and visible event in the video is <event> Male speech, man speaking </event>, "
        "and the time range is <range> 0,8 </range>."
    )
    with pytest.raises(ValueError):
        format_answer(AveLabel("Bark</event>", 0, 1), None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<event>Bark</event><range>2,6</range>", AveLabel("Bark", 2, 6)),
        ("The <video> shows a <b>dog</b>. <event>   Race car, auto racing  </event> and <range>  3 ,  10 </range>",
         AveLabel("Race car, auto racing", 3, 10)),
        ("first <event> Cat </event> <range> 0,1 </range>, finally <event> Bark </event> <range> 4,9 </range>.",
         AveLabel("Bark", 4, 9)),
        ("<event> Bark </event> but no range", None),
        ("<range> 2,6 </range> but no event", None),
        ("<event> Bark </event> <range> 2-6 </range>", None),
        ("<event> Bark </event> <range> two,six </range>", None),
        ("<event>  </event> <range> 2,6 </range>", None),
        ("", None),
    ],
)
def test_parser_tolerant_outside_strict_inside(text, expected):
    assert parse_answer(text) == expected


def test_dog_seen_0_6_heard_2_8_gives_2_6_and_states_both_facts():
    scene = _scene("vdog", _obj("Bark", "left", [(0, 6)], [(2, 8)]))
    for seed in range(8):  # every phrasing must state both facts
        tally: Counter[str] = Counter()
        (rec,) = build_ave([_record("Bark", 2, 6, "vdog")], {"vdog": scene}, None, True, random.Random(seed), tally)
        assert tally == {"scene": 1}
        assert rec.reasoning and rec.label == {"event": "Bark", "start": 2, "end": 6}
        assert parse_answer(rec.target) == AveLabel("Bark", 2, 6)
        seen, heard, both = rec.target.split(". ")[:3]
        assert "dog" in seen and re.search(r"\b0\b.*\b6\b|beginning.*\b6\b", seen), seen
        assert "dog" in heard and re.search(r"\b2\b.*\b8\b", heard), heard
        assert re.search(r"\b2\b.*\b6\b", both), both


def test_offscreen_sound_and_silent_object_are_mentioned():
    scene = _scene(
        "vmix",
        _obj("Bark", "left", [(0, 6)], [(2, 8)]),
        _obj("Helicopter", None, [], [(0, 3)]),
        _obj("Cat", "right", [(0, 10)], []),
    )
    (rec,) = build_ave([_record("Bark", 2, 6, "vmix")], {"vmix": scene}, None, True, random.Random(0))
    text = rec.target
    assert "helicopter" in text and re.search(r"never|off screen|without being visible", text)
    silent = r"cat on the right (makes no sound|stays silent|is never heard)|no sound comes from the cat"
    assert re.search(silent, text, re.I)


def test_scene_that_contradicts_the_label_falls_back_to_label_reasoning():
    scene = _scene("vdog", _obj("Bark", "left", [(0, 6)], [(2, 8)]))
    tally: Counter[str] = Counter()
    (rec,) = build_ave([_record("Bark", 0, 6, "vdog")], {"vdog": scene}, None, True, random.Random(0), tally)
    assert tally == {"scene_mismatched": 1}
    assert parse_answer(rec.target) == AveLabel("Bark", 0, 6)
    assert not re.search(r"\b8\b", rec.target)


def test_round_trip_on_every_generated_target_erp_on_and_off():
    records, scenes = _random_set(60, seed=1)
    for use_reasoning in (True, False):
        for scene_map in (scenes, {}):
            built = build_ave(records, scene_map, None, use_reasoning, random.Random(3))
            assert len(built) == len(records)
            for rec, raw in zip(built, records, strict=True):
                assert parse_answer(rec.target) == AveLabel(raw.category, raw.start_s, raw.end_s)
                assert rec.reasoning is use_reasoning


def test_erp_off_targets_have_no_reasoning():
    records, scenes = _random_set(10, seed=2)
    for rec in build_ave(records, scenes, None, False, random.Random(0)):
        label = AveLabel(**rec.label)
        assert rec.target == format_answer(label, None)
        assert rec.target.startswith("The audible and visible event")


def test_phrasing_variety_over_50_records():
    records, scenes = _random_set(50, seed=4)
    built = build_ave(records, scenes, None, True, random.Random(0))
    openings = {" ".join(r.target.split()[:2]) for r in built}
    assert len(openings) >= 4, openings
    no_scene = build_ave(records, {}, None, True, random.Random(0))
    assert len({" ".join(r.target.split()[:2]) for r in no_scene}) >= 4


def test_record_fields(tmp_path):
    (rec,) = build_ave([_record("Bark", 2, 6, "vdog", split="val")], {}, None, True, random.Random(0))
    assert rec.id == "ave/val/vdog_2_6" and rec.task == "ave" and rec.split == "val" and rec.dataset == "ave"
    assert rec.instruction == TASKS[Task.AVE].instruction()
    assert rec.media == {"video": "data/raw/ave/AVE/vdog.mp4", "audio": "data/raw/ave/AVE/vdog.mp4"}
    assert rec.source == "data/raw/ave/trainSet.txt:4"


def test_released_file_used_verbatim_when_it_matches(tmp_path):
    released = "A dog barks on the left. " + format_answer(AveLabel("Bark", 2, 6), "").replace("So the", "Thus the")
    (tmp_path / "vdog.txt").write_text(released + "\n", encoding="utf-8")
    rows = [_record("Bark", 2, 6, "vdog"), _record("Cat", 7, 9, "vdog")]  # a multi-event video: one file
    tally: Counter[str] = Counter()
    built = build_ave(rows, {}, tmp_path, True, random.Random(0), tally)
    assert built[0].target == released and built[0].reasoning
    assert parse_answer(built[1].target) == AveLabel("Cat", 7, 9)
    assert tally == {"released": 1, "released_mismatched": 1, "label_only": 1}
    (plain,) = build_ave(rows[:1], {}, tmp_path, False, random.Random(0))
    assert plain.target == format_answer(AveLabel("Bark", 2, 6), None)


def test_untaggable_label_is_skipped_and_counted():
    tally: Counter[str] = Counter()
    built = build_ave([_record("Bark <x>", 2, 6), _record("Bark", 2, 6)], {}, None, True, random.Random(0), tally)
    assert [r.label["event"] for r in built] == ["Bark"]
    assert tally["skipped"] == 1
