"""Tests for ``crab.avuie.arig_build``: ARIG records from S4 frames, boxes from the masks, reasoning."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np

from crab.avuie.arig import ArigLabel, format_answer, parse_answer
from crab.avuie.arig_build import build_arig
from crab.datasets.avsbench import AvsObjectRecord
from crab.datasets.media import write_binary_mask
from crab.synth.avsbench import S4_SCENE_NAMES
from crab.synth.scene import Scene, SceneObject
from crab.tasks import TASKS, Task


def _video(root: Path, name: str, split: str, boxes: list[tuple[int, int, int, int] | None]) -> AvsObjectRecord:
    """An S4 video whose i-th mask (112x112) is the box ``boxes[i]`` (rows / cols end-exclusive), or empty."""
    base = root / name
    masks = []
    for index, box in enumerate(boxes, start=1):
        pixels = np.zeros((112, 112), bool)
        if box is not None:
            x0, y0, x1, y1 = box
            pixels[y0:y1, x0:x1] = True
        masks.append(write_binary_mask(base / "masks" / f"{name}_{index}.png", pixels))
    return AvsObjectRecord(
        item_id=name, video_id=name, task="s4", category="dog_barking", split=split,  # type: ignore[arg-type]
        video_path=base / f"{name}.mp4", audio_path=base / f"{name}.wav",
        frame_paths=tuple(base / "frames" / f"{name}_{i}.png" for i in range(1, 6)), mask_paths=tuple(masks),
        source=f"meta.csv:{name}",
    )  # fmt: skip


def _scene(name: str, *objects: SceneObject) -> Scene:
    return Scene(name, "s4", "test", 5, "indoor", tuple(objects), 0)


def _obj(category: str, slot, visible, audible) -> SceneObject:
    return SceneObject(S4_SCENE_NAMES[category], slot, tuple(visible), tuple(audible), 0.8, 0.0)


def test_one_record_per_frame_with_a_sounding_object_and_its_box_in_the_224_frame(tmp_path: Path) -> None:
    train = _video(tmp_path, "a", "train", [(56, 20, 84, 40)])
    test = _video(tmp_path, "b", "test", [None, (0, 0, 112, 112), (10, 11, 12, 13), (0, 100, 1, 112), None])
    tally: Counter[str] = Counter()
    out = build_arig([train, test], {}, None, True, random.Random(0), tally)
    assert [r.id for r in out] == ["arig/train/a_1", "arig/test/b_2", "arig/test/b_3", "arig/test/b_4"]
    assert tally == Counter(label_only=4, frames_without_object=2)  # frames 1 and 5 of b are silent: skipped
    first = out[0]
    # 112 -> 224: every coordinate doubles (nearest resize of a box keeps its edges on even pixels)
    assert first.label == {"x0": 112, "y0": 40, "x1": 168, "y1": 80, "object": "dog_barking", "frame": 0,
                           "mask": (tmp_path / "a/masks/a_1.png").as_posix()}  # fmt: skip
    assert first.media == {
        "image": (tmp_path / "a/frames/a_1.png").as_posix(),
        "audio": (tmp_path / "a/a.wav").as_posix(),
    }
    assert first.instruction == TASKS[Task.ARIG].instruction() and "<image>" in first.instruction
    assert first.dataset == "avsbench" and first.reasoning and "dog" in first.target
    assert parse_answer(first.target) == ArigLabel(112, 40, 168, 80)
    assert [parse_answer(r.target).box for r in out[1:]] == [(0, 0, 224, 224), (20, 22, 24, 26), (0, 200, 2, 224)]
    assert [r.media["image"].rsplit("_", 1)[1] for r in out[1:]] == ["2.png", "3.png", "4.png"]  # the frame's own


def test_scene_reasoning_names_what_is_heard_shown_and_where_the_sound_comes_from(tmp_path: Path) -> None:
    rec = _video(tmp_path, "c", "test", [(0, 0, 20, 20)])
    scenes = {
        "c": _scene("c", _obj("dog_barking", "left", [(0, 5)], [(0, 5)]), _obj("race_car", "right", [(0, 5)], []))
    }
    (record,) = build_arig([rec], scenes, None, True, random.Random(0), tally := Counter())
    assert tally == Counter(scene=1)
    assert "a dog on the left and a race car on the right" in record.target
    sounding = record.target.split(". ")[2]  # heard, shown, then the sounding one
    assert "the dog on the left" in sounding and "race car" not in sounding
    contradicting = {"c": _scene("c", _obj("helicopter", "left", [(0, 5)], [(0, 5)]))}
    (label_only,) = build_arig([rec], contradicting, None, True, random.Random(0), tally := Counter())
    assert tally == Counter(label_only=1) and "helicopter" not in label_only.target


def test_without_reasoning_and_determinism(tmp_path: Path) -> None:
    rec = _video(tmp_path, "d", "val", [(1, 2, 3, 4)] * 5)
    (plain, *_) = build_arig([rec], {}, None, False, random.Random(0))
    assert plain.target == format_answer(ArigLabel(2, 4, 6, 8), None) and not plain.reasoning
    again = build_arig([rec], {}, None, True, random.Random(7))
    assert again == build_arig([rec], {}, None, True, random.Random(7)) and len(again) == 5
