"""Tests for ``crab.synth.lvis``: AV-Synth stills written in Crab's LVIS sample layout (P3 pre-training data)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crab.config import ConfigError, SynthLvisConfig, load_params
from crab.datasets.lvis import LVIS_FIELDS, read_lvis
from crab.datasets.vocab_seg import S4_CATEGORIES
from crab.synth import world
from crab.synth.avsbench import S4_SCENE_NAMES
from crab.synth.lvis import (
    LVIS_CATEGORIES,
    image_samples,
    lvis_category,
    lvis_scene,
    still_masks,
    still_video,
    write_lvis,
)
from crab.synth.render import render_frames
from crab.synth.scene import SCENES_FILENAME, Scene, SceneObject, read_scenes

SYNTH = load_params(Path(__file__).parents[3] / "params.yaml").synth
VIDEO = dataclasses.replace(SYNTH.video, size=48)
DIFFICULTY = SYNTH.difficulty
SEED = 21
CFG = SynthLvisConfig(num_train_images=10, num_val_images=4)


# --------------------------------------------------------------------------------------------------
# Vocabulary, config, seeds, scenes
# --------------------------------------------------------------------------------------------------


def test_every_s4_category_has_a_distinct_lvis_style_name_and_a_definition():
    assert list(LVIS_CATEGORIES) == list(S4_CATEGORIES)  # ids = positions: the S4 order, pinned below
    names = [name for name, _ in LVIS_CATEGORIES.values()]
    assert len(set(names)) == len(names) == 23
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*(_\([a-z_]+\))?", name) for name in names), names
    assert all(
        4 <= len(d.split()) <= 16 and d[0].islower() and not d.endswith(".") for _, d in LVIS_CATEGORIES.values()
    )
    assert lvis_category(S4_SCENE_NAMES["baby_laughter"]) == (1, "baby", LVIS_CATEGORIES["baby_laughter"][1])
    assert lvis_category("Bark")[:2] == (4, "dog")
    assert lvis_category("Bus")[:2] == (18, "bus_(vehicle)")
    assert lvis_category("Lawn mower")[:2] == (23, "lawn_mower")
    assert lvis_category("Church bell") is None


def test_config_is_validated_and_defaults_are_the_brief_sizes():
    with pytest.raises(ConfigError, match="num_val_images: must be > 0"):
        dataclasses.replace(CFG, num_val_images=0)
    assert SYNTH.lvis == SynthLvisConfig(num_train_images=400, num_val_images=40)


def test_seed_index_is_registered():
    assert world.DATASET_INDEX["lvis"] == 8
    assert len(set(world.DATASET_INDEX.values())) == len(world.DATASET_INDEX)


def test_scene_is_a_silent_one_second_still_of_distinct_objects_in_distinct_slots():
    rng = np.random.default_rng(0)
    scene = lvis_scene(
        rng, video_id="000000000007", split="val", categories=["dog_barking", "playing_piano"], render_seed=3
    )
    assert (scene.dataset, scene.split, scene.duration_s, scene.video_id) == ("lvis", "val", 1, "000000000007")
    assert [o.name for o in scene.objects] == ["Bark", "Piano"]
    assert len({o.slot for o in scene.objects}) == 2
    assert all(o.visible == ((0, 1),) and o.audible == () for o in scene.objects)
    for bad in ([], ["dog_barking"] * 2, ["dog_barking", "cat_meowing", "playing_piano", "helicopter"], ["dog"]):
        with pytest.raises(ValueError, match="expected 1..3 distinct S4 categories"):
            lvis_scene(rng, video_id="x", split="train", categories=bad, render_seed=0)


def test_still_video_keeps_the_size_and_renders_one_frame():
    scene = lvis_scene(np.random.default_rng(1), video_id="s", split="train", categories=["helicopter"], render_seed=5)
    assert still_video(VIDEO) == dataclasses.replace(VIDEO, fps=1)
    assert render_frames(scene, still_video(VIDEO), DIFFICULTY).shape == (1, 48, 48, 3)
    assert still_masks(scene, VIDEO, DIFFICULTY).shape == (1, 48, 48)


def test_samples_skip_empty_masks_and_take_box_and_area_from_the_mask():
    scene = Scene(
        video_id="000000000042",
        dataset="lvis",
        split="train",
        duration_s=1,
        background="indoor",
        objects=(
            SceneObject("Piano", "right", ((0, 1),), (), 1.0, 0.0),
            SceneObject("Bark", "left", ((0, 1),), (), 1.0, 0.0),
            SceneObject("Bus", "middle", ((0, 1),), (), 1.0, 0.0),
        ),
        render_seed=1,
    )
    masks = np.zeros((3, 10, 12), dtype=bool)  # on-screen order: Bark (left), Bus (middle, fully covered), Piano
    masks[0, 2:5, 3:9] = True
    masks[0, 4, 3] = False
    masks[2, 7, 11] = True
    samples = image_samples(scene, masks, 42)
    assert [list(s) for s in samples] == [list(LVIS_FIELDS)] * 2
    assert samples[0] == {
        "id": 420,
        "image_id": 42,
        "category_id": 4,
        "bbox": [3.0, 2.0, 6.0, 3.0],
        "name": "dog",
        "def": LVIS_CATEGORIES["dog_barking"][1],
        "area": 17.0,
    }
    assert (samples[1]["id"], samples[1]["name"], samples[1]["bbox"], samples[1]["area"]) == (
        422, "piano", [11.0, 7.0, 1.0, 1.0], 1.0
    )  # fmt: skip
    with pytest.raises(ValueError, match="'Church bell' is not an S4 scene object"):
        image_samples(
            dataclasses.replace(scene, objects=(SceneObject("Church bell", "left", ((0, 1),), (), 1.0, 0.0),)),
            masks[:1],
            42,
        )


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lvis")
    assert write_lvis(root, CFG, VIDEO, DIFFICULTY, SEED) == 14
    return root


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _scenes(root: Path) -> dict[str, Scene]:
    return read_scenes((root / SCENES_FILENAME).read_text(encoding="utf-8"))


def test_layout_reads_back_without_rejections(written: Path):
    assert sorted(p.name for p in written.iterdir()) == [
        SCENES_FILENAME, "binary_mask", "train2017", "train_samples.json", "val2017", "val_samples.json"
    ]  # fmt: skip
    result = read_lvis(written)
    assert result.rejected == []
    scenes = _scenes(written)
    assert len(scenes) == 14 and {s.split for s in scenes.values()} == {"train", "val"}
    assert sorted(p.stem for p in (written / "train2017").iterdir()) == sorted(
        k for k, s in scenes.items() if s.split == "train"
    )
    assert len(list((written / "val2017").iterdir())) == 4
    records = result.records
    assert len(records) == sum(len(s.objects) for s in scenes.values())  # no object is hidden at these settings
    assert len({r.item_id for r in records}) == len(records) == len(list((written / "binary_mask").iterdir()))
    for record in records:
        scene = scenes[f"{record.image_id:012d}"]
        assert record.split == scene.split and int(record.item_id) // 10 == record.image_id
        obj = scene.on_screen[int(record.item_id) % 10]
        assert (record.category_id, record.name, record.definition) == lvis_category(obj.name)
    raw = json.loads((written / "train_samples.json").read_text(encoding="utf-8"))
    assert [list(entry) for entry in raw] == [list(LVIS_FIELDS)] * len(raw)
    assert all(isinstance(v, float) for entry in raw for v in [*entry["bbox"], entry["area"]])


def test_masks_are_exactly_what_hiding_the_object_changes_and_fit_box_and_area(written: Path):
    scenes = _scenes(written)
    video = still_video(VIDEO)
    records = read_lvis(written).records
    frames: dict[int, np.ndarray] = {}
    decoded: dict[int, np.ndarray] = {}
    for record in records:
        scene = scenes[f"{record.image_id:012d}"]
        k = int(record.item_id) % 10
        frame = render_frames(scene, video, DIFFICULTY)[0]  # (H, W, 3)
        index = scene.objects.index(scene.on_screen[k])
        hidden = dataclasses.replace(
            scene,
            objects=tuple(dataclasses.replace(o, visible=()) if i == index else o for i, o in enumerate(scene.objects)),
        )
        changed = (frame != render_frames(hidden, video, DIFFICULTY)[0]).any(axis=-1)  # (H, W)
        with Image.open(record.mask_path) as image:
            assert image.mode == "L" and image.size == (48, 48)
            mask = np.asarray(image)
        assert set(np.unique(mask)) == {0, 255}
        np.testing.assert_array_equal(mask == 255, changed, err_msg=str(record.mask_path))
        rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
        assert record.bbox == (cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1)
        assert record.area == changed.sum() > 0
        with Image.open(record.image_path) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (48, 48))
            decoded[record.image_id] = np.asarray(image).astype(int)
        frames[record.image_id] = frame
    # Each JPEG is its own still up to q95 (4:2:0) loss (the noise grain), closer to it than to another still.
    ids = list(frames)
    own = [np.abs(decoded[i] - frames[i]).mean() for i in ids]
    other = [np.abs(decoded[i] - frames[j]).mean() for i, j in zip(ids, ids[1:] + ids[:1], strict=True)]
    assert max(own) < 10 and all(o < x for o, x in zip(own, other, strict=True)), (own, other)


def test_rerun_writes_identical_bytes_and_another_seed_does_not(written: Path, tmp_path: Path):
    assert write_lvis(tmp_path / "again", CFG, VIDEO, DIFFICULTY, SEED) == 14
    assert _digest(tmp_path / "again") == _digest(written)
    write_lvis(tmp_path / "other", CFG, VIDEO, DIFFICULTY, SEED + 1)
    assert _digest(tmp_path / "other")["train_samples.json"] != _digest(written)["train_samples.json"]


def test_an_item_does_not_depend_on_how_many_others_exist(written: Path, tmp_path: Path):
    small = SynthLvisConfig(num_train_images=3, num_val_images=1)
    write_lvis(tmp_path / "small", small, VIDEO, DIFFICULTY, SEED)
    big = _digest(written)
    for name, digest in _digest(tmp_path / "small").items():
        if name.endswith((".jpg", ".png")):
            assert big[name] == digest, name
