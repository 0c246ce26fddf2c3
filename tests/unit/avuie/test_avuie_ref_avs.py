"""Tests for ``crab.avuie.ref_avs`` (Ref-AVS answer format) and ``crab.avuie.ref_avs_build`` (the builder)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from crab.avuie.avs import MASK_BLOCK, AvsAnswer
from crab.avuie.ref_avs import RefAvsLabel, format_answer, parse_answer, phrase
from crab.avuie.ref_avs_build import TRAIN_FRAMES_PER_EXPRESSION, avuie_split, build_ref_avs, referent
from crab.datasets.ref_avs import RefAvsRecord
from crab.synth.scene import Scene, SceneObject
from crab.tasks import TASKS, Task

MASK = "gt/fid_0/00003.png"


# --------------------------------------------------------------------------------------------------
# Answer format
# --------------------------------------------------------------------------------------------------


def test_final_sentences_written_out():
    label = RefAvsLabel(3, MASK, ("guitar",), "The object making the loudest sound.", "seen")
    assert format_answer(label, "A guitar is heard.") == (
        "A guitar is heard. So at the fourth second, the object making the loudest sound is <object> guitar "
        f"</object>, and its mask is {MASK_BLOCK}."
    )
    null = RefAvsLabel(0, MASK, (), "The dog making a sound.", "null")
    assert format_answer(null, None) == (
        f"At the first second, nothing matches the dog making a sound (<object> none </object>), so the mask is "
        f"empty: {MASK_BLOCK}."
    )


@pytest.mark.parametrize("objects", [("guitar",), ("emergency-car",), ()])
@pytest.mark.parametrize("reasoning", [None, "", "The violin. <object> cat </object> is quoted."])
@pytest.mark.parametrize("expression", ["The object on the left.", "The sounding object on the right", "A. B. c."])
def test_round_trip(objects, reasoning, expression):
    label = RefAvsLabel(9, MASK, objects, expression, "train")
    assert parse_answer(format_answer(label, reasoning)) == AvsAnswer(objects=objects)


def test_phrase_drops_stops_and_lowercases_the_first_letter():
    assert phrase("The object making the loudest sound.") == "the object making the loudest sound"
    assert phrase("  Mr. Smith's  piano . ") == "mr Smith's piano"
    with pytest.raises(ValueError, match="empty"):
        phrase(" . ")


@pytest.mark.parametrize(("objects", "message"), [(("a", "b"), "one object"), (("none",), "cannot be tagged"),
                                                   (("a,b",), "cannot be tagged")])  # fmt: skip
def test_format_rejects_labels_that_cannot_round_trip(objects, message):
    with pytest.raises(ValueError, match=message):
        format_answer(RefAvsLabel(0, MASK, objects, "The dog.", "train"), None)


def test_label_dict_round_trip_and_task_spec():
    label = RefAvsLabel(2, MASK, ("dog",), "The dog.", "unseen")
    assert RefAvsLabel.from_dict(label.to_dict()) == label
    spec = TASKS[Task.REF_AVS]
    assert spec.masks and spec.visual == "video" and spec.dataset == "ref_avs"
    assert spec.label_from_dict(label.to_dict()) == label
    assert spec.instruction(expression="the dog", nth="third").endswith(
        "Please segment out the dog at the third second in the video."
    )


@pytest.mark.parametrize(("split", "expected"), [("train", ("train", "train")), ("val", ("val", "val")),
    ("test_s", ("test", "seen")), ("test_u", ("test", "unseen")), ("test_n", ("test", "null"))])  # fmt: skip
def test_test_splits_become_one_test_split_with_a_subset(split, expected):
    assert avuie_split(split) == expected


def test_unknown_split_is_an_error():
    with pytest.raises(ValueError, match="TODO"):
        avuie_split("TODO")


# --------------------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------------------


def _scene() -> Scene:
    guitar = SceneObject("Acoustic guitar", "left", ((0, 10),), ((2, 7),), 0.9, 0.0)
    dog = SceneObject("Bark", "right", ((0, 4),), (), 0.5, 2.0)  # silent, on screen for seconds 0..3
    return Scene("vid_0_10000", "ref_avs", "train", 10, "indoor", (guitar, dog), 7)


def _record(split: str, uid: str, expression: str, object_name: str, tmp: Path) -> RefAvsRecord:
    media = tmp / "media" / "vid_0_10000"
    return RefAvsRecord(
        item_id=uid, video_id="vid_0_10000", media_id=uid.rsplit("_", 2)[0], object_name=object_name, fid=0,
        expression=expression, split=split, audio_path=media / "audio.wav",  # type: ignore[arg-type]
        frame_paths=tuple(media / "frames" / f"{i}.jpg" for i in range(10)),
        mask_paths=tuple(tmp / "gt" / uid / f"{i:05d}.png" for i in range(10)), source=f"metadata.csv:{len(uid)}",
    )  # fmt: skip


def test_referent_is_the_single_on_screen_object_of_the_category():
    scene = _scene()
    assert referent(scene, "guitar") is scene.objects[0]
    assert referent(scene, "dog") is scene.objects[1]
    assert referent(scene, "piano") is None


def test_records_per_frame_with_scene_reasoning(tmp_path):
    rows = [
        _record("train", "vid_0_10000_dog_1", "The object that makes no sound.", "dog", tmp_path),
        _record("test_s", "vid_0_10000_guitar_1", "The object making the loudest sound.", "guitar", tmp_path),
        _record("test_n", "null_c-vid_0_10000_null_1", "The piano.", "null", tmp_path),
    ]
    tally: Counter[str] = Counter()
    out = build_ref_avs(rows, {"vid_0_10000": _scene()}, None, True, random.Random(0), tally)
    train = [r for r in out if r.split == "train"]
    assert len(train) == TRAIN_FRAMES_PER_EXPRESSION and len({r.label["frame"] for r in train}) == 3
    test = [r for r in out if r.split == "test"]
    assert len(test) == 20 and {r.label["subset"] for r in test} == {"seen", "null"}
    assert tally == Counter(scene=2, null=1)
    dog = train[0]
    assert dog.id == f"ref_avs/train/vid_0_10000_dog_1_{dog.label['frame'] + 1}"
    assert any(f"the object that makes no sound {verb} the dog on the right" in dog.target.lower()
               for verb in ("is", "refers to"))  # fmt: skip
    assert dog.label["mask"] == (tmp_path / "gt" / "vid_0_10000_dog_1" / f"{dog.label['frame']:05d}.png").as_posix()
    # the dog is on screen for seconds 0..3 only: the reasoning says so for the labelled frame
    for record in train:
        text = record.target.lower()
        says_on = "it is on screen" in text or "it can be seen" in text
        says_off = "it is not on screen" in text or "it is out of sight" in text
        assert (says_on, says_off) == ((True, False) if record.label["frame"] < 4 else (False, True))
    guitar = next(r for r in test if r.label["subset"] == "seen" and r.label["frame"] == 5)
    assert parse_answer(guitar.target) == AvsAnswer(objects=("guitar",))
    assert "the object making the loudest sound at the sixth second" in guitar.instruction
    assert guitar.media == {"video": (tmp_path / "media/vid_0_10000/frames").as_posix(),
                            "audio": (tmp_path / "media/vid_0_10000/audio.wav").as_posix()}  # fmt: skip
    null = next(r for r in test if r.label["subset"] == "null")
    assert parse_answer(null.target) == AvsAnswer(objects=()) and null.label["objects"] == []
    assert "matches the piano" in null.target or "no object in the video is the piano" in null.target.lower()


def test_real_data_without_scenes_and_without_reasoning(tmp_path):
    rows = [_record("val", "vid_0_10000_guitar_1", "The guitar.", "guitar", tmp_path)]
    tally: Counter[str] = Counter()
    out = build_ref_avs(rows, {}, None, True, random.Random(0), tally)
    assert tally == Counter(label_only=1) and len(out) == 10
    assert out[0].target.startswith("The guitar refers to the guitar. So at the first second")
    plain = build_ref_avs(rows, {}, None, False, random.Random(0))
    assert plain[0].target.startswith("At the first second, the guitar is <object> guitar </object>")
    assert not plain[0].reasoning


def test_scene_without_the_named_object_falls_back_to_the_label(tmp_path):
    rows = [_record("val", "vid_0_10000_piano_1", "The piano.", "piano", tmp_path)]
    tally: Counter[str] = Counter()
    out = build_ref_avs(rows, {"vid_0_10000": _scene()}, None, True, random.Random(0), tally)
    assert tally == Counter(scene_mismatched=1, label_only=1)
    assert parse_answer(out[0].target) == AvsAnswer(objects=("piano",))


def test_null_rows_without_masks_are_skipped_and_counted(tmp_path):
    row = _record("test_n", "null_c-vid_0_10000_null_1", "The piano.", "null", tmp_path)
    row = RefAvsRecord(**{**row.__dict__, "mask_paths": ()})
    tally: Counter[str] = Counter()
    assert build_ref_avs([row], {}, None, True, random.Random(0), tally) == []
    assert tally == Counter(null_without_masks=1)


def test_deterministic(tmp_path):
    rows = [_record("train", f"vid_0_10000_guitar_{k}", "The guitar.", "guitar", tmp_path) for k in (1, 2)]
    first = build_ref_avs(rows, {"vid_0_10000": _scene()}, None, True, random.Random(3))
    assert first == build_ref_avs(rows, {"vid_0_10000": _scene()}, None, True, random.Random(3))
