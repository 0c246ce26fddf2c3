"""Tests for ``crab.synth.ref_avs``: scenes, unique referring expressions, the Ref-AVS native-layout writer."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crab.config import ConfigError, SynthRefAvsConfig, load_params
from crab.datasets.ref_avs import REF_AVS_SPLITS, read_ref_avs
from crab.datasets.vocab_seg import REF_AVS_OBJECTS
from crab.synth import world
from crab.synth.avsbench import S4_SCENE_NAMES
from crab.synth.masks import object_masks
from crab.synth.ref_avs import (
    EXPRESSION_KINDS,
    REF_AVS_SCENE_NAMES,
    REF_AVS_SEEN,
    REF_AVS_UNSEEN,
    expression_referent,
    object_noun,
    ref_avs_frame_indices,
    ref_avs_object,
    ref_avs_scene,
    unique_expressions,
    write_ref_avs,
)
from crab.synth.render import render_frames
from crab.synth.scene import SCENES_FILENAME, Scene, SceneObject, read_scenes

SYNTH = load_params(Path(__file__).parents[3] / "params.yaml").synth
VIDEO = dataclasses.replace(SYNTH.video, size=32, fps=4)
AUDIO = SYNTH.audio
DIFFICULTY = SYNTH.difficulty
SEED = 11
CFG = SynthRefAvsConfig(
    num_train_videos=6,
    num_val_videos=3,
    num_test_s_videos=3,
    num_test_u_videos=4,
    expressions_per_video=2,
    null_prob=0.5,
    partly_visible_prob=0.5,
)
UNSEEN_NAMES = {REF_AVS_SCENE_NAMES[c] for c in REF_AVS_UNSEEN}


# --------------------------------------------------------------------------------------------------
# Vocabulary, config, seeds
# --------------------------------------------------------------------------------------------------


def test_categories_are_ref_avs_objects_rendered_as_s4_scene_objects():
    assert set(REF_AVS_SCENE_NAMES) <= set(REF_AVS_OBJECTS)
    assert set(REF_AVS_SCENE_NAMES.values()) <= set(S4_SCENE_NAMES.values())
    assert len(set(REF_AVS_SCENE_NAMES.values())) == len(REF_AVS_SCENE_NAMES) == 16
    assert len(REF_AVS_SEEN) == 12 and REF_AVS_UNSEEN == ("keyboard", "mower", "saw", "emergency-car")
    assert not set(REF_AVS_SEEN) & set(REF_AVS_UNSEEN)
    assert all(ref_avs_object(name) == obj for obj, name in REF_AVS_SCENE_NAMES.items())
    assert ref_avs_object("Horse") is None
    assert object_noun("Bark") == "dog" and object_noun("Ambulance (siren)") == "ambulance"


def test_config_is_validated():
    with pytest.raises(ConfigError, match="num_test_u_videos: must be > 0"):
        dataclasses.replace(CFG, num_test_u_videos=0)
    with pytest.raises(ConfigError, match=r"null_prob: must be in \[0, 1\]"):
        dataclasses.replace(CFG, null_prob=1.5)


def test_seed_indices_are_registered_and_existing_ones_unchanged():
    assert world.DATASET_INDEX["ref_avs"] == 6 and len(set(world.DATASET_INDEX.values())) == len(world.DATASET_INDEX)
    assert world.SPLIT_INDEX == {"train": 0, "val": 1, "test": 2, "test_s": 3, "test_u": 4, "test_n": 5}


def test_frame_indices_sample_each_second_at_its_middle():
    assert ref_avs_frame_indices(8) == [4, 12, 20, 28, 36, 44, 52, 60, 68, 76]
    assert ref_avs_frame_indices(4) == [2, 6, 10, 14, 18, 22, 26, 30, 34, 38]
    assert ref_avs_frame_indices(1) == list(range(10))


# --------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------


def test_scene_invariants():
    partly_seen = silent = 0
    for index in range(300):
        rng = np.random.default_rng(index)
        count = 2 + index % 2
        objects = [str(c) for c in rng.choice(REF_AVS_SEEN, size=count, replace=False)]
        scene = ref_avs_scene(
            rng, video_id=f"v{index}", split="train", objects=objects, partly_visible_prob=0.3, render_seed=index
        )
        assert scene.dataset == "ref_avs" and scene.duration_s == 10
        assert [ref_avs_object(o.name) for o in scene.objects] == objects
        assert len({o.slot for o in scene.objects}) == count and len(scene.on_screen) == count
        sounding = [o for o in scene.objects if o.audible]
        assert sounding, scene
        onsets = [o.onset for o in sounding]
        assert len(set(onsets)) == len(onsets)
        assert len(sounding) < count or len(set(onsets)) > 1  # someone is silent or starts later
        loud = sorted(o.loudness for o in sounding)
        assert all(b - a >= 0.15 - 1e-9 for a, b in zip(loud, loud[1:], strict=False))
        for obj in scene.objects:
            assert 0.4 <= obj.loudness <= 1.0 and round(obj.loudness, 3) == obj.loudness
            ((start, end),) = obj.visible
            assert (start, end) == (0, 10) or (0 <= start and 3 <= end - start <= 9 and end <= 10)
            partly_seen += (start, end) != (0, 10)
            if obj.audible:
                ((start, end),) = obj.audible
                assert 0 <= start and 2 <= end - start <= 10 and end <= 10
            silent += not obj.audible
    assert partly_seen > 50 and silent > 50


def test_scene_rejects_bad_categories():
    rng = np.random.default_rng(0)
    for objects in (["dog"], ["dog", "dog"], ["dog", "horse"], ["dog", "cat", "piano", "man"]):
        with pytest.raises(ValueError, match="expected 2-3 distinct"):
            ref_avs_scene(rng, video_id="v", split="train", objects=objects, partly_visible_prob=0, render_seed=0)


# --------------------------------------------------------------------------------------------------
# Expressions on hand-built scenes
# --------------------------------------------------------------------------------------------------


def _obj(name: str, slot: str, audible: tuple = (), loudness: float = 0.5) -> SceneObject:
    return SceneObject(name=name, slot=slot, visible=((0, 10),), audible=audible, loudness=loudness, rhythm=0.0)  # type: ignore[arg-type]


def _scene(*objects: SceneObject) -> Scene:
    return Scene("v", "ref_avs", "train", 10, "indoor", tuple(objects), 0)


# dog (left) starts at 2 and is quiet, piano (middle) is silent, cat (right) starts at 0 and is loud
THREE = _scene(
    _obj("Bark", "left", ((2, 8),), 0.5),
    _obj("Piano", "middle"),
    _obj("Cat", "right", ((0, 5),), 0.9),
)
# one sounding object (violin, right), two silent ones: the middle slot is empty
TWO_SILENT = _scene(_obj("Violin, fiddle", "right", ((3, 9),), 0.7), _obj("Tabla", "left"), _obj("Cat", "middle"))
ONE_SOUNDING = _scene(_obj("Violin, fiddle", "right", ((3, 9),), 0.7), _obj("Tabla", "left"))


def test_each_template_singles_out_its_referent_by_the_scene():
    got = {text: (kind, ref) for kind, text, ref in unique_expressions(THREE)}
    expected = {
        "The object making the loudest sound.": ("audio", 2),
        "The first object to make a sound.": ("audio", 2),
        "The object that makes no sound.": ("audio", 1),  # exactly one silent object
        "The object on the left.": ("visual", 0),
        "The object in the middle.": ("visual", 1),
        "The object on the right.": ("visual", 2),
        "The dog.": ("visual", 0),
        "The piano.": ("visual", 1),
        "The cat.": ("visual", 2),
        "The dog that makes a sound.": ("audio-visual", 0),
        "The cat that makes a sound.": ("audio-visual", 2),
        "The sounding object on the left.": ("audio-visual", 0),
        "The sounding object on the right.": ("audio-visual", 2),
        "The object on the left that starts making a sound second.": ("audio-visual", 0),
        "The object on the right that starts making a sound first.": ("audio-visual", 2),
    }
    assert got == expected
    for text, (_, ref) in expected.items():
        assert expression_referent(THREE, text) == ref
    # Not unique or not true: two objects sound, the piano is silent, nobody is third.
    for text in (
        "The object making a sound.",
        "The piano that makes a sound.",
        "The sounding object in the middle.",
        "The object in the middle that starts making a sound third.",
        "The guitar.",
    ):
        assert expression_referent(THREE, text) is None, text


def test_order_templates_need_two_sounding_objects_and_silence_needs_one_silent_object():
    got = {text: ref for _, text, ref in unique_expressions(TWO_SILENT)}
    assert got["The object making a sound."] == 0  # the only sounding object
    assert "The object that makes no sound." not in got  # two silent objects
    assert "The object making the loudest sound." not in got and "The first object to make a sound." not in got
    assert not any("starts making a sound" in text for text in got)
    got = {text: ref for _, text, ref in unique_expressions(ONE_SOUNDING)}
    assert got["The object that makes no sound."] == 1 and got["The object making a sound."] == 0
    # null expressions: an empty slot, an absent category
    for text in ("The object in the middle.", "The dog.", "The dog making a sound.", "The tabla making a sound."):
        assert expression_referent(ONE_SOUNDING, text) is None
    assert all(kind in EXPRESSION_KINDS for kind, _, _ in unique_expressions(THREE))


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
    root = tmp_path_factory.mktemp("ref_avs") / "REFAVS"
    assert write_ref_avs(root, CFG, VIDEO, AUDIO, DIFFICULTY, SEED) == 16  # test_n has no clips of its own
    return root


def _scenes(root: Path) -> dict[str, Scene]:
    return read_scenes((root / SCENES_FILENAME).read_text(encoding="utf-8"))


def test_writes_are_byte_deterministic(written: Path, tmp_path: Path):
    write_ref_avs(tmp_path / "again", CFG, VIDEO, AUDIO, DIFFICULTY, SEED)
    assert _digest(tmp_path / "again") == _digest(written)
    other = dataclasses.replace(CFG, num_train_videos=1, num_val_videos=1, num_test_s_videos=1, num_test_u_videos=1)
    write_ref_avs(tmp_path / "other", other, VIDEO, AUDIO, DIFFICULTY, SEED + 1)
    assert (tmp_path / "other/metadata.csv").read_bytes() != (written / "metadata.csv").read_bytes()


def test_reader_reads_every_row_of_every_split(written: Path):
    text = (written / "metadata.csv").read_bytes().decode("utf-8")
    assert text.startswith("vid,uid,split,fid,exp\r\n") and text.count("\n") == text.count("\r\n")
    rows = list(csv.reader(io.StringIO(text, newline="")))[1:]
    total = 0
    for split in REF_AVS_SPLITS:
        result = read_ref_avs(written, split)  # type: ignore[arg-type]
        assert result.rejected == [] and result.records, split
        total += len(result.records)
    assert total == len(rows)
    records = read_ref_avs(written).records
    assert {r.split for r in records} == set(REF_AVS_SPLITS)
    assert sum(r.is_null for r in records if r.split in ("train", "val")) > 0
    for r in records:
        assert r.expression[0].isupper() and r.expression.endswith(".")
        start, end = (int(x) for x in r.video_id.rsplit("_", 2)[1:])
        assert end - start == 10_000 and start % 1000 == 0
    assert not any(p.name.startswith("null_") for p in (written / "media").iterdir())  # null rows share media


def test_media_are_ten_frames_and_a_ten_second_wav(written: Path):
    scenes = _scenes(written)
    record = read_ref_avs(written, "train").records[0]
    with wave.open(str(record.audio_path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, AUDIO.sample_rate)
        assert wav.getnframes() == 10 * AUDIO.sample_rate
    rendered = render_frames(scenes[record.video_id], VIDEO, DIFFICULTY)[ref_avs_frame_indices(VIDEO.fps)]
    assert sorted(p.name for p in record.frame_paths[0].parent.iterdir()) == sorted(f"{i}.jpg" for i in range(10))
    for path, frame in zip(record.frame_paths, rendered, strict=True):
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB" and image.size == (32, 32)
            assert (
                np.abs(np.asarray(image, dtype=np.float32) - frame).mean() < 12
            )  # JPEG q95, 4:2:0 chroma, noisy 32 px


def test_unseen_categories_only_in_test_u_and_test_u_refers_to_them(written: Path):
    scenes = _scenes(written)
    assert {s.split for s in scenes.values()} == {"train", "val", "test_s", "test_u"}
    for scene in scenes.values():
        names = {o.name for o in scene.objects}
        if scene.split == "test_u":
            assert names & UNSEEN_NAMES
        else:
            assert not names & UNSEEN_NAMES, scene
    test_u = read_ref_avs(written, "test_u").records
    assert test_u and all(r.object_name in REF_AVS_UNSEEN for r in test_u)
    for r in read_ref_avs(written).records:  # no unseen noun anywhere outside test_u
        if r.split != "test_u":
            assert not any(object_noun(name) in r.expression for name in UNSEEN_NAMES), r


def test_masks_are_the_referents_exact_masks(written: Path):
    scenes = _scenes(written)
    partly = 0
    for r in read_ref_avs(written).records:
        if r.is_null:
            continue
        scene = scenes[r.video_id]
        obj = scene.objects[r.fid]
        assert ref_avs_object(obj.name) == r.object_name
        assert r.mask_paths[0].parent == written / "gt_mask" / r.video_id / f"fid_{r.fid}"
        expected = object_masks(scene, VIDEO, DIFFICULTY, ref_avs_frame_indices(VIDEO.fps))[scene.on_screen.index(obj)]
        for second, (path, mask) in enumerate(zip(r.mask_paths, expected, strict=True)):
            with Image.open(path) as image:
                assert image.mode == "L" and image.size == (32, 32)
                pixels = np.asarray(image)
            assert set(np.unique(pixels)) <= {0, 255}
            assert np.array_equal(pixels > 0, mask)
            if not obj.is_visible_at(second):
                assert not pixels.any()
                partly += 1
            else:
                assert pixels.any()
    assert partly > 0  # some referent is off screen in some frame


def test_every_expression_singles_out_its_referent_and_all_kinds_occur(written: Path):
    scenes = _scenes(written)
    kinds = set()
    for r in read_ref_avs(written).records:
        if r.is_null:
            continue
        scene = scenes[r.video_id]
        assert expression_referent(scene, r.expression) == r.fid, r
        matches = [kind for kind, text, ref in unique_expressions(scene) if text == r.expression and ref == r.fid]
        assert len(matches) == 1
        kinds.add(matches[0])
    assert kinds == set(EXPRESSION_KINDS)


def test_null_rows_name_only_absent_things_and_have_empty_masks(written: Path):
    scenes = _scenes(written)
    records = read_ref_avs(written).records
    nulls = [r for r in records if r.is_null]
    assert nulls and all(r.fid == 0 and r.item_id == f"null_c-{r.video_id}_null_1" for r in nulls)
    for r in nulls:
        scene = scenes[r.video_id]
        assert expression_referent(scene, r.expression) is None
        nouns = {object_noun(o.name) for o in scene.objects}
        slots = {o.slot for o in scene.objects}
        assert not any(f"The {noun} " in r.expression or f"The {noun}." == r.expression for noun in nouns)
        if r.expression.startswith("The object"):
            assert len(scene.objects) == 2 and not any(w in r.expression for w in slots)  # type: ignore[operator]
        assert r.media_id == f"null_c-{r.video_id}" and len(r.mask_paths) == 10
        for path in r.mask_paths:
            with Image.open(path) as image:
                assert image.mode == "L" and not np.asarray(image).any()
        assert r.audio_path == written / "media" / r.video_id / "audio.wav"  # the clip's own media


def test_test_n_reuses_every_test_s_clip_once(written: Path):
    records = read_ref_avs(written).records
    test_s = [r.video_id for r in records if r.split == "test_s"]
    test_n = [r.video_id for r in records if r.split == "test_n"]
    assert sorted(test_n) == sorted(set(test_s)) and len(set(test_s)) == CFG.num_test_s_videos
    assert all(r.is_null for r in records if r.split == "test_n")
    assert not any(r.is_null for r in records if r.split in ("test_s", "test_u"))
    others = {r.video_id for r in records if r.split in ("train", "val", "test_u")}
    assert not others & set(test_s)
