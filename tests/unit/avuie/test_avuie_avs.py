"""Tests for ``crab.avuie.avs`` (S4 / MS3 answer format and parser) and ``crab.avuie.avs_build`` (the builder)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from crab.avuie.avs import MASK_BLOCK, AvsAnswer, AvsLabel, format_answer, nth_second, parse_answer
from crab.avuie.avs_build import S4_WORDS, build_avs, frame_objects
from crab.datasets.avsbench import AvsObjectRecord
from crab.datasets.vocab_seg import S4_CATEGORIES
from crab.synth.avsbench import S4_SCENE_NAMES
from crab.synth.scene import Scene, SceneObject
from crab.tasks import TASKS, Task

MASK = "gt/v_1.png"


# --------------------------------------------------------------------------------------------------
# Answer format
# --------------------------------------------------------------------------------------------------


def test_final_sentences_written_out():
    one = AvsLabel(frame=2, mask=MASK, objects=("dog_barking",))
    assert format_answer(one, "A dog barks.") == (
        "A dog barks. So the object making the sound at the third second is <object> dog_barking </object>, "
        "and its mask is <mask_start><mask_0><mask_1><mask_2><mask_3><mask_4><mask_5><mask_end>."
    )
    two = AvsLabel(frame=0, mask=MASK, objects=("female_singing", "playing_piano"))
    assert format_answer(two, None) == (
        "The objects making the sound at the first second are <object> female_singing, playing_piano </object>, "
        f"and their mask is {MASK_BLOCK}."
    )
    none = AvsLabel(frame=4, mask=MASK, objects=())
    assert format_answer(none, None) == (
        f"No object makes the sound at the fifth second (<object> none </object>), so the mask is empty: {MASK_BLOCK}."
    )
    unknown = AvsLabel(frame=1, mask=MASK, objects=None)
    assert (
        format_answer(unknown, "R.")
        == f"R. So the mask of the objects making the sound at the second second is {MASK_BLOCK}."
    )


@pytest.mark.parametrize("objects", [("dog_barking",), ("cat_meowing", "race_car", "helicopter"), (), None])
@pytest.mark.parametrize("reasoning", [None, "", "The audio contains <b> odd </b> brackets and <object> x </object>."])
def test_round_trip(objects, reasoning):
    label = AvsLabel(frame=3, mask=MASK, objects=objects)
    assert parse_answer(format_answer(label, reasoning)) == AvsAnswer(objects=objects)


def test_parser_needs_exactly_one_ordered_mask_block():
    assert parse_answer("<object> dog_barking </object>") is None
    assert parse_answer(f"{MASK_BLOCK}{MASK_BLOCK}") is None
    swapped = MASK_BLOCK.replace("<mask_0><mask_1>", "<mask_1><mask_0>")
    assert parse_answer(f"<object> dog_barking </object> {swapped}") is None
    assert parse_answer(MASK_BLOCK.replace("<mask_5>", "")) is None
    assert parse_answer(f"x {MASK_BLOCK} y") == AvsAnswer(objects=None)


def test_parser_reads_the_object_tag_of_the_mask_sentence_only():
    text = f"<object> cat_meowing </object> then <object> dog_barking , race_car </object> {MASK_BLOCK}"
    assert parse_answer(text) == AvsAnswer(objects=("dog_barking", "race_car"))
    assert parse_answer(f"<object> cat_meowing </object>. The mask is {MASK_BLOCK}") == AvsAnswer(objects=None)
    assert parse_answer(f"{MASK_BLOCK} <object> cat_meowing </object>") == AvsAnswer(objects=None)
    assert parse_answer(f"<object> none </object> {MASK_BLOCK}") == AvsAnswer(objects=())
    assert parse_answer(f"<object> a,, b </object> {MASK_BLOCK}") is None


@pytest.mark.parametrize(
    ("objects", "frame", "message"),
    [(("a,b",), 0, "cannot be tagged"), (("none",), 0, "cannot be tagged"), (("x", "x"), 0, "repeated"),
     (("x",), 10, "0..9")],
)  # fmt: skip
def test_format_rejects_labels_that_cannot_round_trip(objects, frame, message):
    with pytest.raises(ValueError, match=message):
        format_answer(AvsLabel(frame=frame, mask=MASK, objects=objects), None)


def test_nth_second_and_label_dict_round_trip():
    assert [nth_second(i) for i in range(5)] == ["first", "second", "third", "fourth", "fifth"]
    label = AvsLabel(frame=1, mask=MASK, objects=("lawn_mowing",))
    assert label.to_dict() == {"frame": 1, "mask": MASK, "objects": ["lawn_mowing"]}
    assert AvsLabel.from_dict(label.to_dict()) == label
    assert AvsLabel.from_dict({"frame": 0, "mask": MASK, "objects": None}).objects is None


# --------------------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------------------


def _video(task: str, name: str, split: str, num_masks: int, category: str = "") -> AvsObjectRecord:
    base = Path("raw") / name
    return AvsObjectRecord(
        item_id=name,
        video_id=name,
        task=task,  # type: ignore[arg-type]
        category=category,
        split=split,  # type: ignore[arg-type]
        video_path=base / f"{name}.mp4",
        audio_path=base / f"{name}.wav",
        frame_paths=tuple(base / "frames" / f"{name}_{i}.png" for i in range(1, 6)),
        mask_paths=tuple(base / "masks" / f"{name}_{i}.png" for i in range(1, num_masks + 1)),
        source=f"meta.csv:{name}",
    )


def _obj(category: str, slot, visible, audible) -> SceneObject:
    return SceneObject(S4_SCENE_NAMES[category], slot, tuple(visible), tuple(audible), 0.8, 0.0)


def _scene(name: str, *objects: SceneObject) -> Scene:
    return Scene(name, "s4", "test", 5, "indoor", tuple(objects), 0)


def test_s4_words_cover_every_category():
    assert set(S4_WORDS) == set(S4_CATEGORIES) == set(S4_SCENE_NAMES)


def test_frame_objects_are_the_seen_and_heard_ones_left_to_right():
    scene = _scene(
        "v",
        _obj("playing_piano", "right", [(0, 5)], [(2, 5)]),  # heard from second 2
        _obj("dog_barking", "left", [(0, 3)], [(0, 5)]),  # seen until second 3
        _obj("race_car", "middle", [(0, 5)], []),  # silent distractor
    )
    assert [frame_objects(scene, s) for s in range(5)] == [
        ("dog_barking",), ("dog_barking",), ("dog_barking", "playing_piano"), ("playing_piano",), ("playing_piano",)
    ]  # fmt: skip


def test_s4_records_one_per_labelled_frame_with_scene_reasoning():
    train, test = _video("s4", "a", "train", 1, "dog_barking"), _video("s4", "b", "test", 5, "dog_barking")
    scenes = {
        "a": _scene("a", _obj("dog_barking", "left", [(0, 5)], [(0, 5)]), _obj("race_car", "right", [(0, 5)], [])),
        "b": _scene("b", _obj("dog_barking", "middle", [(0, 5)], [(1, 3)])),
    }
    tally: Counter[str] = Counter()
    out = build_avs([train, test], scenes, None, True, random.Random(0), tally)
    assert [r.id for r in out] == ["s4/train/a_1"] + [f"s4/test/b_{i}" for i in range(1, 6)]
    assert tally == Counter(scene=6, frames_without_object=3)
    first = out[0]
    assert first.media == {"video": "raw/a/frames", "audio": "raw/a/a.wav"}
    assert first.instruction == TASKS[Task.S4].instruction(nth="first")
    assert first.label == {"frame": 0, "mask": "raw/a/masks/a_1.png", "objects": ["dog_barking"]}
    assert first.reasoning and "dog" in first.target and "race car on the right" in first.target
    assert "silent" in first.target or "no sound" in first.target
    assert parse_answer(first.target) == AvsAnswer(objects=("dog_barking",))
    # b: heard in seconds 1-2 only, so frames 1, 4 and 5 have no sounding object
    assert [r.label["objects"] for r in out[1:]] == [[], ["dog_barking"], ["dog_barking"], [], []]
    assert out[4].instruction.endswith("at the fourth second of the video.")
    assert "<object> none </object>" in out[4].target


def test_real_data_without_scenes():
    s4, ms3 = _video("s4", "c", "val", 5, "playing_violin"), _video("ms3", "d", "test", 5)
    tally: Counter[str] = Counter()
    out = build_avs([s4, ms3], {}, None, True, random.Random(0), tally)
    assert tally == Counter(label_only=10)
    assert all(r.label["objects"] == ["playing_violin"] and "violin" in r.target for r in out[:5])
    ms3_records = out[5:]
    assert all(r.id.startswith("ms3/test/d_") and r.label["objects"] is None and not r.reasoning for r in ms3_records)
    assert parse_answer(ms3_records[0].target) == AvsAnswer(objects=None)


def test_scene_that_contradicts_the_category_is_not_used():
    rec = _video("s4", "e", "test", 5, "helicopter")
    scenes = {"e": _scene("e", _obj("dog_barking", "left", [(0, 5)], [(0, 5)]))}
    tally: Counter[str] = Counter()
    out = build_avs([rec], scenes, None, True, random.Random(0), tally)
    assert tally["scene_mismatched"] == 1 and tally["label_only"] == 5
    assert all(r.label["objects"] == ["helicopter"] for r in out)


def test_without_reasoning_and_determinism():
    rec = _video("ms3", "f", "train", 5)
    scenes = {
        "f": _scene(
            "f", _obj("cat_meowing", "left", [(0, 5)], [(0, 5)]), _obj("lawn_mowing", "right", [(0, 5)], [(0, 5)])
        )
    }
    plain = build_avs([rec], scenes, None, False, random.Random(0))
    assert plain[0].target == format_answer(AvsLabel(0, "raw/f/masks/f_1.png", ("cat_meowing", "lawn_mowing")), None)
    assert not any(r.reasoning for r in plain)
    once = [r.to_json() for r in build_avs([rec], scenes, None, True, random.Random(7))]
    assert once == [r.to_json() for r in build_avs([rec], scenes, None, True, random.Random(7))]
