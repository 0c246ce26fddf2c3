"""Tests for ``crab.synth.ave``: AVE scene invariants and the native-layout writer."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import av
import pytest

from crab.config import load_params
from crab.datasets.vocab import AVE_CATEGORIES
from crab.synth import ave as ave_module
from crab.synth.ave import AVE_HEADER, AVE_SPLIT_FILES, ave_event, ave_scene, write_ave
from crab.synth.scene import SCENES_FILENAME, read_scenes
from crab.synth.world import item_seeds

PARAMS = load_params(Path(__file__).parents[3] / "params.yaml")
ROW = re.compile(r"(?P<cat>[^&]+)&(?P<vid>[A-Za-z0-9_-]{11})&good&(?P<start>\d+)&(?P<end>\d+)")


def _params(num_train=4, num_val=2, num_test=2, duration_s=4, min_event_s=2, **difficulty):
    synth = PARAMS.synth
    synth = dataclasses.replace(
        synth,
        video=dataclasses.replace(synth.video, size=32, fps=2),
        difficulty=dataclasses.replace(synth.difficulty, **difficulty),
        ave=dataclasses.replace(
            synth.ave,
            num_train=num_train,
            num_val=num_val,
            num_test=num_test,
            duration_s=duration_s,
            min_event_s=min_event_s,
        ),
    )
    return dataclasses.replace(PARAMS, synth=synth)


def _scenes(count: int, params=PARAMS):
    scenes = []
    for index in range(count):
        rng, render_seed = item_seeds(99, "ave", "train", index)
        category = AVE_CATEGORIES[index % len(AVE_CATEGORIES)]
        scene = ave_scene(
            rng,
            video_id=f"id{index:09d}",
            split="train",
            category=category,
            config=params.synth.ave,
            difficulty=params.synth.difficulty,
            render_seed=render_seed,
        )
        scenes.append((category, scene))
    return scenes


@pytest.mark.parametrize("duration_s, min_event_s", [(10, 2), (4, 1), (3, 3)])
def test_every_scene_has_exactly_one_audio_visual_event(duration_s, min_event_s):
    params = _params(duration_s=duration_s, min_event_s=min_event_s)
    for category, scene in _scenes(300, params):
        name, start, end = ave_event(scene)  # raises unless exactly one contiguous AV source
        assert name == category == scene.objects[0].name
        assert end - start >= min_event_s and 0 <= start < end <= duration_s
        source = scene.objects[0]
        for second in range(duration_s):
            if not start <= second < end:  # outside its event: seen or heard, never both
                assert not (source.is_visible_at(second) and source.is_audible_at(second))
        for obj in scene.objects:
            for s, e in obj.visible + obj.audible:
                assert 0 <= s < e <= duration_s
        for distractor in scene.objects[1:]:
            assert distractor.name != category and distractor.name in AVE_CATEGORIES
            assert not any(distractor.is_visible_at(t) and distractor.is_audible_at(t) for t in range(duration_s))
            assert (distractor.slot is None) == (not distractor.visible)
        slots = [o.slot for o in scene.objects if o.slot is not None]
        assert len(slots) == len(set(slots))


def test_scenes_have_variety():
    scenes = [scene for _, scene in _scenes(400)]
    events = [ave_event(s)[1:] for s in scenes]
    assert sum(e == (0, 10) for e in events) > 60  # whole-clip events
    assert sum(s > 0 and e == 10 for s, e in events) > 60  # events running to the end
    assert sum(e < 10 for _, e in events) > 60  # events ending early
    assert len(set(events)) > 25
    distractors = [o for s in scenes for o in s.objects[1:]]
    off_screen = sum(o.slot is None for o in distractors)
    assert 0.3 < off_screen / len(distractors) < 0.7  # offscreen_prob = 0.5
    assert 0.7 < sum(len(s.objects) > 1 for s in scenes) / len(scenes) < 0.9  # distractor_prob = 0.8
    seen_outside = heard_outside = 0
    for scene in scenes:
        _, start, end = ave_event(scene)
        outside = [t for t in range(10) if not start <= t < end]
        seen_outside += any(scene.objects[0].is_visible_at(t) for t in outside)
        heard_outside += any(scene.objects[0].is_audible_at(t) for t in outside)
    assert 0.2 < seen_outside / len(scenes) < 0.8  # the source is often on screen but silent around its event
    assert 0.05 < heard_outside / len(scenes) < 0.5  # and sometimes heard off screen around it
    assert {s.background for s in scenes} == {"indoor", "outdoor"}


def test_no_distractors_when_disabled():
    params = _params(duration_s=10, distractor_prob=0.0)
    assert all(len(scene.objects) == 1 for _, scene in _scenes(50, params))


def _rows(path: Path) -> list[re.Match]:
    text = path.read_text(encoding="utf-8")
    assert "\r" not in text and text.endswith("\n")
    lines = text.split("\n")[:-1]
    assert lines[0] == AVE_HEADER
    matches = [ROW.fullmatch(line) for line in lines[1:]]
    assert all(matches), lines
    return matches


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("ave")
    count = write_ave(_params(), root)
    return root, count


def test_writer_writes_the_native_layout(written):
    root, count = written
    assert count == 8
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["AVE", "Annotations.txt", SCENES_FILENAME, *AVE_SPLIT_FILES.values()]
    )
    splits = {split: _rows(root / name) for split, name in AVE_SPLIT_FILES.items()}
    assert {k: len(v) for k, v in splits.items()} == {"train": 4, "val": 2, "test": 2}
    everything = _rows(root / "Annotations.txt")
    assert [m.group(0) for m in everything] == [m.group(0) for split in splits.values() for m in split]
    ids = {split: {m["vid"] for m in rows} for split, rows in splits.items()}
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    all_ids = set().union(*ids.values())
    assert sorted(p.stem for p in (root / "AVE").iterdir()) == sorted(all_ids)
    for match in everything:
        assert match["cat"] in AVE_CATEGORIES
        assert int(match["end"]) - int(match["start"]) >= 2 and int(match["end"]) <= 4


def test_scenes_file_matches_the_annotations(written):
    root, _ = written
    scenes = read_scenes((root / SCENES_FILENAME).read_text(encoding="utf-8"))
    rows = _rows(root / "Annotations.txt")
    assert set(scenes) == {m["vid"] for m in rows}
    for split, name in AVE_SPLIT_FILES.items():
        for match in _rows(root / name):
            scene = scenes[match["vid"]]
            assert scene.split == split and scene.dataset == "ave" and scene.duration_s == 4
            assert ave_event(scene) == (match["cat"], int(match["start"]), int(match["end"]))


def test_clips_decode_with_the_configured_duration(written):
    root, _ = written
    clip = next((root / "AVE").iterdir())
    with av.open(str(clip)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 4 * 2
        assert float(container.duration) / av.time_base == pytest.approx(4.0, abs=0.2)


def test_categories_are_balanced_within_each_split(tmp_path, monkeypatch):
    monkeypatch.setattr(ave_module, "render_clips", lambda jobs, synth, desc: None)  # annotations only
    write_ave(_params(num_train=56, num_val=14, num_test=28, duration_s=10), tmp_path)
    for split, name in AVE_SPLIT_FILES.items():
        counts = Counter(m["cat"] for m in _rows(tmp_path / name))
        expected = {"train": 2, "test": 1}.get(split)
        if expected:
            assert counts == Counter({c: expected for c in AVE_CATEGORIES}), split
        else:
            assert len(counts) == 14 and set(counts.values()) == {1}
    ids = [m["vid"] for m in _rows(tmp_path / "Annotations.txt")]
    assert len(set(ids)) == len(ids) == 98
    assert any(i.startswith("-") for i in ids)


def test_writer_annotations_are_deterministic(tmp_path, monkeypatch):
    monkeypatch.setattr(ave_module, "render_clips", lambda jobs, synth, desc: None)
    texts = []
    for sub in ("a", "b"):
        write_ave(_params(num_train=10, num_val=3, num_test=3, duration_s=10), tmp_path / sub)
        texts.append([(tmp_path / sub / n).read_bytes() for n in ("Annotations.txt", SCENES_FILENAME)])
    assert texts[0] == texts[1]
    other = _params(num_train=10, num_val=3, num_test=3, duration_s=10)
    other = dataclasses.replace(other, synth=dataclasses.replace(other.synth, seed=other.synth.seed + 1))
    write_ave(other, tmp_path / "c")
    assert (tmp_path / "c" / "Annotations.txt").read_bytes() != texts[0][0]
