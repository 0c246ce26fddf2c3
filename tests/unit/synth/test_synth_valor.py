"""Tests for ``crab.synth.valor``: scene captions and the VALOR-layout writer."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from crab.config import load_params
from crab.datasets.vocab import AVE_CATEGORIES, AVQA_INSTRUMENTS
from crab.synth.scene import SCENES_FILENAME, Scene, SceneObject, read_scenes
from crab.synth.valor import VALOR_SPLIT_FILES, describe_scene, valor_scene, write_valor
from crab.synth.world import item_seeds

PARAMS = load_params(Path(__file__).parents[3] / "params.yaml")

SCENE = Scene(
    video_id="abcdefghijk",
    dataset="valor",
    split="train",
    duration_s=10,
    background="indoor",
    objects=(
        SceneObject("violin", "left", ((0, 10),), ((2, 7),), 1.0, 0.0),
        SceneObject("Bark", None, (), ((0, 3),), 0.8, 2.0),
        SceneObject("Violin, fiddle", "right", ((4, 9),), (), 0.5, 0.0),
    ),
    render_seed=1,
)


def test_caption_names_every_object_with_position_and_times():
    for seed in range(40):
        desc = describe_scene(SCENE, np.random.default_rng(seed))
        assert desc[0].isupper() and desc.endswith(".")
        for name in ("violin", "Bark", "Violin, fiddle"):
            assert name in desc
        assert "on the left" in desc.lower() and "on the right" in desc.lower() and "middle" not in desc
        assert "off screen" in desc or "not seen" in desc
        assert re.search(r"silent|without making a sound", desc)
        assert re.search(r"(second 2 to second 7|seconds 2 and 7|2 s to 7 s)", desc)
        assert re.search(r"(second 0 to second 3|seconds 0 and 3|0 s to 3 s)", desc)
        assert re.search(r"(second 4 to second 9|seconds 4 and 9|4 s to 9 s)", desc)
        assert re.search(r"whole clip|throughout|start to end", desc)


def test_captions_vary_with_the_seed():
    captions = {describe_scene(SCENE, np.random.default_rng(seed)) for seed in range(40)}
    assert len(captions) > 20


def test_scenes_cover_every_kind_of_object():
    kinds = set()
    for index in range(100):
        rng, render_seed = item_seeds(3, "valor", "train", index)
        scene = valor_scene(rng, video_id="x" * 11, split="train", duration_s=10, render_seed=render_seed)
        assert 1 <= len(scene.objects) <= 3
        slots = [o.slot for o in scene.objects if o.slot]
        assert len(slots) == len(set(slots))
        for obj in scene.objects:
            assert obj.name in AVE_CATEGORIES + AVQA_INSTRUMENTS
            assert obj.visible or obj.audible  # every object is seen or heard
            assert (obj.slot is None) == (not obj.visible)
            kinds.add((bool(obj.visible), bool(obj.audible)))
    assert kinds == {(True, True), (True, False), (False, True)}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    synth = dataclasses.replace(
        PARAMS.synth,
        video=dataclasses.replace(PARAMS.synth.video, size=32, fps=2),
        valor=dataclasses.replace(PARAMS.synth.valor, num_train=2, num_val=1, duration_s=2),
    )
    root = tmp_path_factory.mktemp("valor")
    return root, write_valor(dataclasses.replace(PARAMS, synth=synth), root)


def test_writer_writes_the_valor_layout(written):
    root, count = written
    assert count == 3
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["video_data", SCENES_FILENAME, *VALOR_SPLIT_FILES.values()]
    )
    scenes = read_scenes((root / SCENES_FILENAME).read_text(encoding="utf-8"))
    ids = {}
    for split, name in VALOR_SPLIT_FILES.items():
        text = (root / name).read_text(encoding="utf-8")
        samples = json.loads(text)
        assert text == json.dumps(samples, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        assert all(sorted(s) == ["desc", "video_id"] for s in samples)
        ids[split] = [s["video_id"] for s in samples]
        for sample in samples:
            scene = scenes[sample["video_id"]]
            assert scene.split == split and scene.duration_s == 2
            assert all(obj.name in sample["desc"] for obj in scene.objects)
    assert (len(ids["train"]), len(ids["val"])) == (2, 1)
    assert not set(ids["train"]) & set(ids["val"])
    assert sorted(p.name for p in (root / "video_data").iterdir()) == sorted(f"{i}.mp4" for i in scenes)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{11}", i) for i in scenes)
