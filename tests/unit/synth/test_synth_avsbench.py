"""Tests for ``crab.synth.avsbench`` and ``crab.synth.masks``: exact masks, scenes, the S4 / MS3 writers."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crab.config import ConfigError, SynthAvsConfig, load_params
from crab.datasets.avsbench import read_ms3, read_s4
from crab.datasets.vocab_seg import S4_CATEGORIES
from crab.synth import world
from crab.synth.avsbench import (
    MS3_NUM_SOURCES,
    S4_SCENE_NAMES,
    avs_frame_indices,
    avs_scene,
    s4_category,
    sounding_masks,
    write_ms3,
    write_s4,
)
from crab.synth.masks import object_masks
from crab.synth.render import render_audio, render_frames
from crab.synth.scene import SCENES_FILENAME, Scene, SceneObject, read_scenes
from crab.synth.world import signature_attributes

SYNTH = load_params(Path(__file__).parents[3] / "params.yaml").synth
VIDEO = dataclasses.replace(SYNTH.video, size=48, fps=4)
AUDIO = SYNTH.audio
DIFFICULTY = SYNTH.difficulty
SEED = 11
CFG = SynthAvsConfig(num_train=3, num_val=3, num_test=3, partly_visible_prob=0.5, partly_audible_prob=0.5)
VISUAL = ("shape", "colour", "texture")
AUDIO_KEYS = ("pitch", "timbre", "rhythm", "noise_band")
FOLDERS = {"s4": "Single-source", "ms3": "Multi-sources"}


# --------------------------------------------------------------------------------------------------
# Vocabulary, config, frame times
# --------------------------------------------------------------------------------------------------


def test_scene_names_cover_the_s4_categories_and_map_back():
    assert tuple(S4_SCENE_NAMES) == S4_CATEGORIES
    assert len(set(S4_SCENE_NAMES.values())) == 23
    assert all(s4_category(name) == category for category, name in S4_SCENE_NAMES.items())
    assert S4_SCENE_NAMES["playing_violin"] == "Violin, fiddle" and s4_category("Violin") is None


def test_each_modality_alone_determines_the_s4_category():
    attrs = {name: signature_attributes(name) for name in S4_SCENE_NAMES.values()}
    for a, b in itertools.combinations(attrs, 2):
        assert sum(attrs[a][k] != attrs[b][k] for k in attrs[a]) >= 2, (a, b)
    for keys in (VISUAL, AUDIO_KEYS):
        assert len({tuple(attrs[name][k] for k in keys) for name in attrs}) == 23, keys


def test_config_is_validated():
    with pytest.raises(ConfigError, match="num_val: must be > 0"):
        dataclasses.replace(CFG, num_val=0)
    with pytest.raises(ConfigError, match=r"partly_audible_prob: must be in \[0, 1\]"):
        dataclasses.replace(CFG, partly_audible_prob=1.5)


def test_frame_indices_sample_each_second_at_fifteen_sixteenths():
    assert avs_frame_indices(8) == [7, 15, 23, 31, 39]
    assert avs_frame_indices(4) == [3, 7, 11, 15, 19]
    assert avs_frame_indices(1) == [0, 1, 2, 3, 4]
    assert avs_frame_indices(16) == [15, 31, 47, 63, 79]


def test_dataset_indices_are_registered_and_distinct():
    assert world.DATASET_INDEX["s4"] == 4 and world.DATASET_INDEX["ms3"] == 5
    assert len(set(world.DATASET_INDEX.values())) == len(world.DATASET_INDEX)


# --------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------


def _scene(index: int, num_sources: int, cfg: SynthAvsConfig = CFG) -> tuple[list[str], Scene]:
    rng = np.random.default_rng(index)
    categories = [str(c) for c in rng.choice(S4_CATEGORIES, size=num_sources, replace=False)]
    scene = avs_scene(
        rng,
        video_id=f"v{index}",
        dataset="s4" if num_sources == 1 else "ms3",
        split="test",
        categories=categories,
        config=cfg,
        difficulty=DIFFICULTY,
        render_seed=index,
    )
    return categories, scene


@pytest.mark.parametrize("num_sources", [1, 2, 3])
def test_scene_invariants(num_sources: int):
    partly_seen = partly_heard = distracted = 0
    for index in range(300):
        categories, scene = _scene(index, num_sources)
        sources, distractors = scene.objects[:num_sources], scene.objects[num_sources:]
        assert [s4_category(o.name) for o in sources] == categories
        assert scene.duration_s == 5 and len(scene.on_screen) == len(scene.objects) <= 3
        assert len({o.slot for o in scene.objects}) == len(scene.objects)
        for obj in scene.objects:
            assert len(obj.visible) == 1 and 0 <= obj.visible[0][0] < obj.visible[0][1] <= 5
        for obj in sources:
            assert len(obj.audible) == 1 and 0 <= obj.audible[0][0] < obj.audible[0][1] <= 5
        for obj in distractors:
            assert obj.audible == () and s4_category(obj.name) not in categories
        partly_seen += sum(o.visible != ((0, 5),) for o in sources)
        partly_heard += sum(o.audible != ((0, 5),) for o in sources)
        distracted += bool(distractors)
    total = 300 * num_sources
    assert 0.4 * total < partly_seen < 0.6 * total and 0.4 * total < partly_heard < 0.6 * total
    # distractor_prob 0.8, but only into free slots.
    assert (distracted == 0) if num_sources == 3 else (0.7 * 300 < distracted < 0.9 * 300)


@pytest.mark.parametrize("categories", [[], ["playing_piano"] * 2, ["helicopter", "piano"], list(S4_CATEGORIES[:4])])
def test_scene_rejects_bad_categories(categories: list[str]):
    with pytest.raises(ValueError, match="v0: expected 1..3 distinct S4 categories"):
        avs_scene(
            np.random.default_rng(0),
            video_id="v0",
            dataset="ms3",
            split="train",
            categories=categories,
            config=CFG,
            difficulty=DIFFICULTY,
            render_seed=0,
        )


# --------------------------------------------------------------------------------------------------
# Exact masks
# --------------------------------------------------------------------------------------------------


def _hide(scene: Scene, hidden: set[int]) -> Scene:
    """The scene with the objects at these positions of ``scene.objects`` never visible (same render draws)."""
    objects = tuple(dataclasses.replace(o, visible=()) if i in hidden else o for i, o in enumerate(scene.objects))
    return dataclasses.replace(scene, objects=objects)


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., H, W) bool: pixels where any channel of two RGB frame stacks differs."""
    return (a != b).any(axis=-1)


HAND_SCENE = Scene(
    video_id="hand",
    dataset="ms3",
    split="test",
    duration_s=5,
    background="outdoor",
    objects=(
        SceneObject("Piano", "right", ((0, 5),), ((0, 5),), 1.0, 0.0),
        SceneObject("Helicopter", "left", ((1, 3),), (), 1.0, 0.0),
        SceneObject("Cap gun", "middle", ((2, 5),), ((0, 2),), 1.0, 0.0),
    ),
    render_seed=12345,
)


@pytest.mark.parametrize(
    "difficulty",
    [
        DIFFICULTY,
        dataclasses.replace(DIFFICULTY, motion=False, signature_jitter=0.0),
        dataclasses.replace(DIFFICULTY, visual_noise=0.0, signature_jitter=0.2),
    ],
    ids=["default", "still", "noiseless"],
)
def test_object_masks_are_exactly_the_pixels_the_renderer_changes(difficulty):
    """Showing vs hiding one object changes exactly its mask in every frame (noise fields are identical)."""
    num_frames = 5 * VIDEO.fps
    frames = render_frames(HAND_SCENE, VIDEO, difficulty)  # (T, H, W, 3)
    masks = object_masks(HAND_SCENE, VIDEO, difficulty, range(num_frames))  # (K, T, H, W)
    assert masks.shape == (3, num_frames, 48, 48)
    for k, obj in enumerate(HAND_SCENE.on_screen):
        hidden = render_frames(_hide(HAND_SCENE, {HAND_SCENE.objects.index(obj)}), VIDEO, difficulty)
        np.testing.assert_array_equal(masks[k], _changed(frames, hidden), err_msg=obj.name)
        seen = np.array([obj.is_visible_at(i // VIDEO.fps) for i in range(num_frames)])
        assert np.array_equal(masks[k].any(axis=(1, 2)), seen), obj.name
    # Left / middle / right slots: each mask lies in its third of the frame (sprites fit their slots here).
    columns = [np.flatnonzero(masks[k].any(axis=(0, 1))) for k in range(3)]
    assert columns[0].max() < 16 <= columns[1].min() and columns[1].max() < 32 <= columns[2].min()


def test_a_fully_covered_pixel_belongs_to_the_object_drawn_last():
    """With full size jitter the left sprite (seed 43: 22 px) spills into the middle slot, under the tabla."""
    difficulty = dataclasses.replace(DIFFICULTY, signature_jitter=1.0)
    scene = dataclasses.replace(
        HAND_SCENE,
        objects=(
            SceneObject("Piano", "left", ((0, 5),), (), 1.0, 0.0),
            SceneObject("Tabla", "middle", ((0, 5),), (), 1.0, 0.0),
        ),
        background="indoor",
        render_seed=43,
    )
    frames = render_frames(scene, VIDEO, difficulty)
    masks = object_masks(scene, VIDEO, difficulty, range(20))
    alone = object_masks(_hide(scene, {1}), VIDEO, difficulty, range(20))[0]  # the piano without the tabla
    covered = alone & ~masks[0]
    assert (masks[0] <= alone).all() and covered.sum() > 0 and (covered <= masks[1]).all()
    for k in range(2):
        np.testing.assert_array_equal(masks[k], _changed(frames, render_frames(_hide(scene, {k}), VIDEO, difficulty)))


def test_sounding_masks_are_the_heard_and_seen_objects_of_each_second():
    masks = sounding_masks(HAND_SCENE, VIDEO, DIFFICULTY)  # (5, H, W)
    per_object = object_masks(HAND_SCENE, VIDEO, DIFFICULTY, avs_frame_indices(VIDEO.fps))  # (3, 5, H, W)
    left, middle, right = per_object  # helicopter (silent), cap gun (heard in 0..1, seen in 2..4), piano
    np.testing.assert_array_equal(masks, right)  # the cap gun is never heard while it is seen
    assert not (masks & (left | middle)).any()
    assert left[1].any() and middle[2].any()  # the distractors are on screen, just not in the mask


def test_object_masks_reject_frames_outside_the_clip():
    with pytest.raises(ValueError, match=r"hand: frame indices \[20\] outside the clip's 20 frames"):
        object_masks(HAND_SCENE, VIDEO, DIFFICULTY, [0, 20])


# --------------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------------


def _write_both(root: Path) -> Path:
    assert write_s4(root, CFG, VIDEO, AUDIO, DIFFICULTY, SEED) == 9
    assert write_ms3(root, CFG, VIDEO, AUDIO, DIFFICULTY, SEED) == 9
    return root


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    return _write_both(tmp_path_factory.mktemp("avsbench_data"))


def _scenes(root: Path, task: str) -> dict[str, Scene]:
    return read_scenes((root / FOLDERS[task] / SCENES_FILENAME).read_text(encoding="utf-8"))


def _records(root: Path, task: str):
    result = (read_s4 if task == "s4" else read_ms3)(root)
    assert result.rejected == []
    return result.records


@pytest.mark.parametrize("task", ["s4", "ms3"])
def test_written_dataset_reads_back_without_rejections(written, task):
    records = _records(written, task)
    scenes = _scenes(written, task)
    assert [r.split for r in records] == ["train"] * 3 + ["val"] * 3 + ["test"] * 3
    assert sorted(r.item_id for r in records) == sorted(scenes)
    for record in records:
        scene = scenes[record.item_id]
        assert scene.dataset == task and scene.split == record.split
        expected_masks = 1 if (task, record.split) == ("s4", "train") else 5
        assert len(record.mask_paths) == expected_masks
        assert record.video_path.is_file()  # listed, not required by the reader, written like the release
        if task == "s4":
            assert record.category == s4_category(scene.objects[0].name)
            sources = [o for o in scene.objects if o.audible]
            assert len(sources) == 1
        else:
            assert MS3_NUM_SOURCES[0] <= sum(bool(o.audible) for o in scene.objects) <= MS3_NUM_SOURCES[1]


def test_metadata_csvs_have_the_public_columns(written):
    s4_lines = (written / "Single-source" / "s4_meta_data.csv").read_text(encoding="utf-8").splitlines()
    ms3_lines = (written / "Multi-sources" / "ms3_meta_data.csv").read_text(encoding="utf-8").splitlines()
    assert s4_lines[0] == "name,start_time,category,split" and ms3_lines[0] == "name,split"
    for line in s4_lines[1:]:
        name, start, category, split = line.split(",")
        assert re.fullmatch(r"[A-Za-z0-9_-]{11}", name) and 0 <= int(start) <= 5
        assert category in S4_CATEGORIES and split in {"train", "val", "test"}
    for line in ms3_lines[1:]:
        name, split = line.split(",")
        assert re.fullmatch(r"[A-Za-z0-9_-]{11}_\d", name) and split in {"train", "val", "test"}
    assert len(s4_lines) == len(ms3_lines) == 10


def test_s4_train_has_only_the_first_mask(written):
    for record in _records(written, "s4"):
        files = sorted(p.name for p in record.mask_paths[0].parent.iterdir())
        expected = 1 if record.split == "train" else 5
        assert files == [f"{record.item_id}_{i}.png" for i in range(1, expected + 1)]


@pytest.mark.parametrize("task", ["s4", "ms3"])
def test_frames_and_masks_match_a_pixel_level_rerender(written, task):
    """Frames are the renderer's own; each mask is exactly what hiding that second's sources changes."""
    scenes = _scenes(written, task)
    indices = avs_frame_indices(VIDEO.fps)
    empty = with_silent_distractor = 0
    for record in _records(written, task):
        scene = scenes[record.item_id]
        rendered = render_frames(scene, VIDEO, DIFFICULTY)  # (T, H, W, 3)
        for s, frame_path in enumerate(record.frame_paths):
            with Image.open(frame_path) as image:
                assert image.mode == "RGB" and image.size == (48, 48)
                np.testing.assert_array_equal(np.asarray(image), rendered[indices[s]])
        for s, mask_path in enumerate(record.mask_paths):
            with Image.open(mask_path) as image:
                assert image.mode == "L"
                mask = np.asarray(image)
            assert mask.shape == rendered.shape[1:3]
            assert set(np.unique(mask)) <= {0, 255}
            sounding = {i for i, o in enumerate(scene.objects) if o.is_audible_at(s)}
            hidden = render_frames(_hide(scene, sounding), VIDEO, DIFFICULTY)[indices[s]]
            np.testing.assert_array_equal(mask == 255, _changed(rendered[indices[s]], hidden), err_msg=str(mask_path))
            heard_and_seen = any(o.is_audible_at(s) and o.is_visible_at(s) for o in scene.objects)
            assert mask.any() == heard_and_seen, mask_path
            empty += not heard_and_seen
            with_silent_distractor += any(o.is_visible_at(s) and not o.is_audible_at(s) for o in scene.objects)
    assert empty > 0 and with_silent_distractor > 0  # the fixture exercises both cases


@pytest.mark.parametrize("task", ["s4", "ms3"])
def test_wavs_are_the_rendered_soundtrack(written, task):
    scenes = _scenes(written, task)
    for record in _records(written, task)[:2]:
        with wave.open(str(record.audio_path), "rb") as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        samples = render_audio(scenes[record.item_id], AUDIO, DIFFICULTY)
        assert len(pcm) == 5 * 16000
        np.testing.assert_array_equal(pcm, np.round(samples * 32767.0).astype(np.int16))


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def test_writers_are_byte_deterministic(written, tmp_path):
    again = _digests(_write_both(tmp_path))
    assert again == _digests(written)
    # csv + scenes per task, mp4, wav, 5 frames per clip, S4 masks (train: 1), MS3 masks
    assert len(again) == 2 * 2 + 2 * 9 + 2 * 9 + 2 * 9 * 5 + (3 * 1 + 6 * 5) + 9 * 5


def test_a_different_seed_gives_different_frames(tmp_path):
    small = dataclasses.replace(CFG, num_train=1, num_val=1, num_test=1)
    write_s4(tmp_path / "a", small, VIDEO, AUDIO, DIFFICULTY, SEED)
    write_s4(tmp_path / "b", small, VIDEO, AUDIO, DIFFICULTY, SEED + 1)
    frames = [set(_digests(tmp_path / x / "Single-source" / "s4_data" / "visual_frames").values()) for x in "ab"]
    assert len(frames[0]) == len(frames[1]) == 15 and not frames[0] & frames[1]


def test_a_sprite_wider_than_the_right_slot_stays_in_the_frame():
    """Full size jitter: a right-slot sprite wider than its 16-px third is shifted left, and masks still match."""
    difficulty = dataclasses.replace(DIFFICULTY, signature_jitter=1.0)
    shifted = []
    for seed in range(30):
        scene = dataclasses.replace(HAND_SCENE, objects=(SceneObject("Piano", "right", ((0, 5),), (), 1.0, 0.0),),
                                    render_seed=seed)  # fmt: skip
        mask = object_masks(scene, VIDEO, difficulty, range(20))[0]  # (T, H, W)
        if np.flatnonzero(mask.any(axis=(0, 1))).min() < 32:  # reaches into the middle third
            shifted.append((scene, mask))
    assert shifted, "no seed gave a sprite wider than its slot"
    for scene, mask in shifted[:2]:
        frames = render_frames(scene, VIDEO, difficulty)  # raised a broadcast error before
        assert mask.any(axis=(1, 2)).all() and mask[:, :, -1].any()  # whole sprite, up to the frame's edge
        np.testing.assert_array_equal(mask, _changed(frames, render_frames(_hide(scene, {0}), VIDEO, difficulty)))
