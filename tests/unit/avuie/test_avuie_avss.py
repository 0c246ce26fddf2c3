"""Tests for ``crab.avuie.avss_build``: AVSS records per frame with the S4 / MS3 answer format and AVSS classes."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from crab.avuie.avs import AvsAnswer, parse_answer
from crab.avuie.avss_build import build_avss, frame_classes
from crab.datasets.avss import AvssRecord
from crab.synth.scene import Scene, SceneObject
from crab.tasks import TASKS, Task


def _scene() -> Scene:
    guitar = SceneObject("Acoustic guitar", "left", ((0, 10),), ((2, 7),), 0.9, 0.0)
    man = SceneObject("Male speech, man speaking", "right", ((0, 5),), ((0, 10),), 0.7, 2.0)  # seen 0..4, heard all
    return Scene("yt_0_10000", "avss", "test", 10, "indoor", (man, guitar), 3)


def _record(tmp: Path, split: str = "test", a_obj: str = "man_guitar") -> AvssRecord:
    folder = tmp / "v2" / "yt_0_10000"
    return AvssRecord(
        item_id="yt_0_10000", video_id="yt", subset="v2", s_min=0, s_sec=0, sounding_object=a_obj, split=split,  # type: ignore[arg-type]
        audio_path=folder / "audio.wav", frame_paths=tuple(folder / "frames" / f"{i}.jpg" for i in range(10)),
        rgb_mask_paths=tuple(folder / "labels_rgb" / f"{i}.png" for i in range(10)),
        semantic_mask_paths=tuple(folder / "labels_semantic" / f"{i}.png" for i in range(10)),
        source="metadata.csv:2",
    )  # fmt: skip


def test_frame_classes_are_the_seen_and_heard_objects_left_to_right():
    scene = _scene()
    assert frame_classes(scene, 0) == ("man",)  # the guitar is silent before second 2
    assert frame_classes(scene, 3) == ("guitar", "man")  # left to right
    assert frame_classes(scene, 6) == ("guitar",)  # the man is off screen from second 5
    assert frame_classes(scene, 8) == ()


def test_one_record_per_frame_with_scene_reasoning_and_the_label_map(tmp_path):
    tally: Counter[str] = Counter()
    out = build_avss([_record(tmp_path)], {"yt_0_10000": _scene()}, None, True, random.Random(0), tally)
    assert [r.label["frame"] for r in out] == list(range(10))
    assert tally == Counter(scene=10, frames_without_object=3)  # seconds 7, 8, 9
    third = out[3]
    assert third.id == "avss/test/yt_0_10000_4" and third.dataset == "avss" and third.task == "avss"
    assert third.video_id == "yt_0_10000"  # the clip: evaluation scores per clip
    assert third.label == {"frame": 3, "objects": ["guitar", "man"],
                           "mask": (tmp_path / "v2/yt_0_10000/labels_semantic/3.png").as_posix()}  # fmt: skip
    assert parse_answer(third.target) == AvsAnswer(objects=("guitar", "man"))
    assert third.instruction == TASKS[Task.AVSS].instruction(nth="fourth")
    assert third.media == {"video": (tmp_path / "v2/yt_0_10000/frames").as_posix(),
                           "audio": (tmp_path / "v2/yt_0_10000/audio.wav").as_posix()}  # fmt: skip
    assert parse_answer(out[9].target) == AvsAnswer(objects=())


def test_real_data_without_scene_names_a_obj_and_without_reasoning(tmp_path):
    tally: Counter[str] = Counter()
    out = build_avss([_record(tmp_path, a_obj="emergency-car_man_man")], {}, None, True, random.Random(0), tally)
    assert tally == Counter(label_only=10)
    assert parse_answer(out[0].target) == AvsAnswer(objects=("emergency-car", "man"))
    assert out[0].target.startswith("The audio and the frames show what makes the sound: emergency car, man.")
    plain = build_avss([_record(tmp_path)], {}, None, False, random.Random(0))
    assert not plain[0].reasoning and plain[0].target.startswith("The objects making the sound at the first second")


def test_a_train_clip_gives_a_few_seeded_frames(tmp_path):
    from crab.avuie.avss_build import TRAIN_FRAMES_PER_CLIP

    first = build_avss([_record(tmp_path, split="train")], {"yt_0_10000": _scene()}, None, True, random.Random(5))
    frames = [r.label["frame"] for r in first]
    assert len(frames) == len(set(frames)) == TRAIN_FRAMES_PER_CLIP and frames == sorted(frames)
    again = build_avss([_record(tmp_path, split="train")], {"yt_0_10000": _scene()}, None, True, random.Random(5))
    assert again == first
