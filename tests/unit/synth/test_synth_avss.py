"""Tests for ``crab.synth.avss``: AVSS scenes and the AVSBench-semantic v2 native-layout writer."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crab.config import ConfigError, SynthAvssConfig, load_params
from crab.datasets.avss import AVSS_SPLITS, read_avss, read_label2idx
from crab.datasets.vocab_seg import AVSS_CLASSES, AVSS_PALETTE
from crab.synth import world
from crab.synth.avsbench import S4_SCENE_NAMES
from crab.synth.avss import (
    AVSS_SCENE_NAMES,
    avss_class,
    avss_frame_indices,
    avss_scene,
    semantic_maps,
    write_avss,
)
from crab.synth.masks import object_masks
from crab.synth.render import render_frames
from crab.synth.scene import SCENES_FILENAME, Scene, SceneObject, read_scenes

SYNTH = load_params(Path(__file__).parents[3] / "params.yaml").synth
VIDEO = dataclasses.replace(SYNTH.video, size=32, fps=4)
AUDIO = SYNTH.audio
DIFFICULTY = SYNTH.difficulty
SEED = 13
CFG = SynthAvssConfig(num_train=6, num_val=3, num_test=3, partly_visible_prob=0.5)
PALETTE = np.array(AVSS_PALETTE, dtype=np.uint8)  # (71, 3)


# --------------------------------------------------------------------------------------------------
# Vocabulary, config, seeds
# --------------------------------------------------------------------------------------------------


def test_classes_are_avss_classes_rendered_as_distinct_s4_scene_objects():
    assert set(AVSS_SCENE_NAMES) <= set(AVSS_CLASSES[1:])
    assert set(AVSS_SCENE_NAMES.values()) <= set(S4_SCENE_NAMES.values())
    assert len(set(AVSS_SCENE_NAMES.values())) == len(AVSS_SCENE_NAMES) == 21
    assert all(avss_class(name) == cls for cls, name in AVSS_SCENE_NAMES.items())
    assert avss_class("Howl") is None and avss_class("dog") is None


def test_config_is_validated():
    with pytest.raises(ConfigError, match="num_val: must be > 0"):
        dataclasses.replace(CFG, num_val=0)
    with pytest.raises(ConfigError, match=r"partly_visible_prob: must be in \[0, 1\]"):
        dataclasses.replace(CFG, partly_visible_prob=-0.1)
    assert SYNTH.avss == SynthAvssConfig(num_train=60, num_val=10, num_test=20, partly_visible_prob=0.1)


def test_seed_index_is_registered_and_existing_ones_unchanged():
    assert world.DATASET_INDEX == {
        "ave": 0, "music_avqa": 1, "valor": 2, "llp": 3, "s4": 4, "ms3": 5, "ref_avs": 6, "avss": 7, "lvis": 8
    }  # fmt: skip


def test_frame_indices_sample_each_second_at_its_middle():
    assert avss_frame_indices(4) == [2, 6, 10, 14, 18, 22, 26, 30, 34, 38]
    assert avss_frame_indices(1) == list(range(10))


# --------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------


def test_scene_invariants():
    partly_seen = silent = heard = 0
    classes = list(AVSS_SCENE_NAMES)
    for index in range(300):
        rng = np.random.default_rng(index)
        count = 2 + index % 2
        chosen = [str(c) for c in rng.choice(classes, size=count, replace=False)]
        scene = avss_scene(
            rng, video_id=f"v{index}", split="train", classes=chosen, partly_visible_prob=0.3, render_seed=index
        )
        assert scene.dataset == "avss" and scene.duration_s == 10 and scene.split == "train"
        assert [avss_class(o.name) for o in scene.objects] == chosen
        assert len({o.slot for o in scene.objects}) == count == len(scene.on_screen)
        assert any(o.audible for o in scene.objects), scene
        for obj in scene.objects:
            ((start, end),) = obj.visible
            assert (start, end) == (0, 10) or (0 <= start and 3 <= end - start <= 9 and end <= 10)
            partly_seen += (start, end) != (0, 10)
            if obj.audible:
                ((start, end),) = obj.audible
                assert 0 <= start and 2 <= end - start <= 10 and end <= 10
                heard += 1
            else:
                silent += 1
    assert partly_seen > 50 and heard > silent > 150  # about a third of the objects are silent


def test_scene_rejects_bad_classes():
    rng = np.random.default_rng(0)
    for classes in (["dog"], ["dog", "dog"], ["dog", "clarinet"], ["dog", "cat", "piano", "man"]):
        with pytest.raises(ValueError, match="expected 2-3 distinct"):
            avss_scene(rng, video_id="v", split="train", classes=classes, partly_visible_prob=0, render_seed=0)


def test_semantic_map_of_a_hand_built_scene():
    # dog (left) heard 2..6, seen all clip; piano (middle) silent; cat (right) heard 0..10, seen 5..10
    def obj(name: str, slot: str, visible: tuple, audible: tuple) -> SceneObject:
        return SceneObject(name=name, slot=slot, visible=visible, audible=audible, loudness=0.8, rhythm=0.0)  # type: ignore[arg-type]

    scene = Scene(
        "v_0_10000",
        "avss",
        "train",
        10,
        "indoor",
        (
            obj("Bark", "left", ((0, 10),), ((2, 6),)),
            obj("Piano", "middle", ((0, 10),), ()),
            obj("Cat", "right", ((5, 10),), ((0, 10),)),
        ),
        3,
    )
    maps = semantic_maps(scene, VIDEO, DIFFICULTY)  # (10, 32, 32)
    assert maps.shape == (10, 32, 32) and maps.dtype == np.uint8
    masks = object_masks(scene, VIDEO, DIFFICULTY, avss_frame_indices(VIDEO.fps))  # left, middle, right
    dog, cat = AVSS_CLASSES.index("dog"), AVSS_CLASSES.index("cat")
    for second in range(10):
        expected = np.zeros((32, 32), np.uint8)
        if 2 <= second < 6:
            expected[masks[0, second]] = dog
        if second >= 5:
            expected[masks[2, second]] = cat  # later in on-screen order: overwrites the dog
        assert np.array_equal(maps[second], expected), second
    # second 3: the dog only (heard and seen), the cat is off screen, the piano silent
    assert set(np.unique(maps[3])) == {0, dog} and np.array_equal(maps[3] == dog, masks[0, 3])
    assert set(np.unique(maps[7])) == {0, cat}  # the dog is silent, the cat heard and seen
    assert set(np.unique(maps[1])) == {0}  # the dog is silent, the cat off screen
    assert not np.any(maps[:, masks[1].any(axis=0)] == AVSS_CLASSES.index("piano"))


# --------------------------------------------------------------------------------------------------
# The writer
# --------------------------------------------------------------------------------------------------


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("avss") / "AVSBench_semantic"
    assert write_avss(root, CFG, VIDEO, AUDIO, DIFFICULTY, SEED) == 12
    return root


def _scenes(root: Path) -> dict[str, Scene]:
    return read_scenes((root / SCENES_FILENAME).read_text(encoding="utf-8"))


def test_writes_are_byte_deterministic(written: Path, tmp_path: Path):
    write_avss(tmp_path / "again", CFG, VIDEO, AUDIO, DIFFICULTY, SEED)
    assert _digest(tmp_path / "again") == _digest(written)
    other = dataclasses.replace(CFG, num_train=1, num_val=1, num_test=1)
    write_avss(tmp_path / "other", other, VIDEO, AUDIO, DIFFICULTY, SEED + 1)
    assert (tmp_path / "other/metadata.csv").read_bytes() != (written / "metadata.csv").read_bytes()


def test_reader_reads_every_clip_of_every_split(written: Path):
    text = (written / "metadata.csv").read_text(encoding="utf-8")
    assert text.startswith("vid,uid,s_min,s_sec,a_obj,split,label\n")
    rows = list(csv.reader(io.StringIO(text)))[1:]
    assert len(rows) == 12 and {row[6] for row in rows} == {"v2"}
    assert read_label2idx(written) == {name: k for k, name in enumerate(AVSS_CLASSES)}
    assert list(json.loads((written / "label2idx.json").read_text(encoding="utf-8")).values()) == list(range(1, 72))
    total = 0
    for split, size in zip(AVSS_SPLITS, (CFG.num_train, CFG.num_val, CFG.num_test), strict=True):
        result = read_avss(written, split, subset="v2")  # type: ignore[arg-type]
        assert result.rejected == [] and len(result.records) == size, split
        total += len(result.records)
    assert total == len(rows) and read_avss(written).rejected == []
    scenes = _scenes(written)
    assert set(scenes) == {r.item_id for r in read_avss(written).records}
    for r in read_avss(written).records:
        assert r.subset == "v2" and r.task == "avss" and r.item_id.startswith(r.video_id + "_")
        assert len(r.frame_paths) == len(r.semantic_mask_paths) == len(r.rgb_mask_paths) == 10
        start, end = (int(x) for x in r.item_id[len(r.video_id) + 1 :].split("_"))
        assert end - start == 10_000 and start % 1000 == 0 and (r.s_min, r.s_sec) == divmod(start // 1000, 60)
        scene = scenes[r.item_id]
        assert scene.split == r.split and scene.dataset == "avss" and scene.duration_s == 10
        sounding = [avss_class(o.name) for o in scene.objects if o.audible]
        assert r.sounding_object == "_".join(sounding) and sounding  # type: ignore[arg-type]


def test_media_are_ten_frames_and_a_ten_second_wav(written: Path):
    record = read_avss(written, "train", subset="v2").records[0]
    with wave.open(str(record.audio_path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, AUDIO.sample_rate)
        assert wav.getnframes() == 10 * AUDIO.sample_rate
    rendered = render_frames(_scenes(written)[record.item_id], VIDEO, DIFFICULTY)[avss_frame_indices(VIDEO.fps)]
    assert sorted(p.name for p in record.frame_paths[0].parent.iterdir()) == sorted(f"{i}.jpg" for i in range(10))
    for path, frame in zip(record.frame_paths, rendered, strict=True):
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB" and image.size == (32, 32)
            assert np.abs(np.asarray(image, dtype=np.float32) - frame).mean() < 12  # JPEG q95, noisy 32 px


def test_masks_are_the_scene_semantic_maps_and_their_palette_colours(written: Path):
    scenes = _scenes(written)
    partly = silent = 0
    for r in read_avss(written, subset="v2").records:
        scene = scenes[r.item_id]
        expected = semantic_maps(scene, VIDEO, DIFFICULTY)  # (10, 32, 32)
        object_pixels = object_masks(scene, VIDEO, DIFFICULTY, avss_frame_indices(VIDEO.fps))  # (K, 10, 32, 32)
        for second, (sem_path, rgb_path) in enumerate(zip(r.semantic_mask_paths, r.rgb_mask_paths, strict=True)):
            with Image.open(sem_path) as image:
                assert image.mode == "L" and image.size == (32, 32)
                semantic = np.asarray(image)
            with Image.open(rgb_path) as image:
                assert image.mode == "RGB" and image.size == (32, 32)
                rgb = np.asarray(image)
            assert np.array_equal(semantic, expected[second])
            assert np.array_equal(rgb, PALETTE[semantic])
            present = {AVSS_CLASSES[k] for k in np.unique(semantic) if k}
            assert present <= set(r.sounding_object.split("_"))
            for obj, mask in zip(scene.on_screen, object_pixels, strict=True):
                cls = AVSS_CLASSES.index(avss_class(obj.name) or "")
                if not (obj.is_audible_at(second) and obj.is_visible_at(second)):
                    assert not np.any(semantic[mask[second]] == cls)  # other classes may not overlap it
                    partly += obj.is_audible_at(second)
                    silent += not obj.is_audible_at(second)
                else:
                    assert np.any(semantic == cls)
    assert partly > 0 and silent > 0  # some sounding object is off screen, some visible object silent
