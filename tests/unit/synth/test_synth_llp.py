"""Tests for ``crab.synth.llp``: LLP scene invariants, the native-layout writer, and reading it back."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from crab.config import ConfigError, SynthLlpConfig, load_params
from crab.datasets.llp import LLP_EVAL_FILES, LLP_SPLIT_FILES, LLP_TRAIN_DENSE_FILES, event_grid, read_llp
from crab.datasets.media import verify_decodes
from crab.datasets.vocab_seg import LLP_CLASSES
from crab.errors import DataError
from crab.synth import llp as llp_module
from crab.synth import world
from crab.synth.llp import (
    LLP_DISTRACTORS,
    LLP_FULL_FILE,
    LLP_SCENE_NAMES,
    llp_events,
    llp_label,
    llp_scene,
    write_llp,
)
from crab.synth.scene import SCENES_FILENAME, Scene, SceneObject, read_scenes
from crab.synth.world import signature_attributes

SYNTH = load_params(Path(__file__).parents[3] / "params.yaml").synth
VIDEO = dataclasses.replace(SYNTH.video, size=32, fps=4)
SEED = 7
WEAK_HEADER = "filename\tevent_labels"
DENSE_HEADER = "filename\tonset\toffset\tevent_labels"
VISUAL = ("shape", "colour", "texture")
AUDIO = ("pitch", "timbre", "rhythm", "noise_band")


def _config(**overrides) -> SynthLlpConfig:
    values = dict(
        num_train=3, num_val=3, num_test=3, duration_s=10, max_events=4, audio_only_prob=0.3, visual_only_prob=0.25
    )
    return SynthLlpConfig(**{**values, **overrides})


# --------------------------------------------------------------------------------------------------
# Class signatures
# --------------------------------------------------------------------------------------------------


def test_scene_names_cover_the_classes_and_map_back():
    assert tuple(LLP_SCENE_NAMES) == LLP_CLASSES
    assert len(set(LLP_SCENE_NAMES.values())) == 25
    assert all(llp_label(name) == label for label, name in LLP_SCENE_NAMES.items())
    assert LLP_SCENE_NAMES["Violin_fiddle"] == "Violin, fiddle" and LLP_SCENE_NAMES["Singing"] == "Vocal music"
    assert all(llp_label(name) is None for name in LLP_DISTRACTORS)


def test_each_modality_alone_determines_the_llp_class():
    attrs = {name: signature_attributes(name) for name in LLP_SCENE_NAMES.values()}
    for a, b in itertools.combinations(attrs, 2):
        assert sum(attrs[a][k] != attrs[b][k] for k in attrs[a]) >= 2, (a, b)
    for keys in (VISUAL, AUDIO):
        combos = {tuple(attrs[name][k] for k in keys) for name in attrs}
        assert len(combos) == 25, keys
    # The raw LLP spellings would not do: Car and Frying_(food) look the same.
    assert all(signature_attributes("Car")[k] == signature_attributes("Frying_(food)")[k] for k in VISUAL)


def test_distractors_never_look_or_sound_like_a_labelled_class():
    for distractor, name in itertools.product(LLP_DISTRACTORS, LLP_SCENE_NAMES.values()):
        d, c = signature_attributes(distractor), signature_attributes(name)
        for keys in (VISUAL, AUDIO):
            assert any(d[k] != c[k] for k in keys), (distractor, name, keys)


# --------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------


def _is_span_list(spans) -> bool:
    """Sorted, inside the clip, non-empty, with at least one second between spans."""
    ok = all(0 <= s < e <= 10 for s, e in spans)
    return ok and all(e1 < s2 for (_, e1), (s2, _) in itertools.pairwise(spans))


def _scenes(count: int, cfg: SynthLlpConfig, num_events: int = 2):
    out = []
    for index in range(count):
        rng = np.random.default_rng(index)
        classes = [str(c) for c in rng.choice(LLP_CLASSES, size=num_events, replace=False)]
        scene = llp_scene(
            rng,
            video_id=f"id{index:09d}",
            split="train",
            classes=classes,
            config=cfg,
            difficulty=SYNTH.difficulty,
            render_seed=index,
        )
        out.append((classes, scene))
    return out


def test_scene_invariants_and_event_kinds():
    cfg = _config()
    kinds: Counter[str] = Counter()
    shapes: Counter[str] = Counter()
    for classes, scene in _scenes(400, cfg):
        events, distractors = scene.objects[: len(classes)], scene.objects[len(classes) :]
        assert [llp_label(o.name) for o in events] == classes
        slots = [o.slot for o in scene.objects if o.slot is not None]
        assert len(slots) == len(set(slots))
        for obj in scene.objects:
            assert _is_span_list(obj.visible) and _is_span_list(obj.audible)
            assert (obj.slot is None) == (not obj.visible)
        for obj in events:
            both = [t for t in range(10) if obj.is_visible_at(t) and obj.is_audible_at(t)]
            if obj.visible and obj.audible:
                assert both, obj  # an audio-visual event is seen and heard together at least once
                kinds["audio_visual"] += 1
                shapes["synchronous" if obj.visible == obj.audible else "partial"] += 1
            else:
                kinds["audio_only" if obj.audible else "visual_only"] += 1
            shapes["two_spans" if max(len(obj.audible), len(obj.visible)) == 2 else "one_span"] += 1
            shapes["whole_clip" if (0, 10) in obj.audible + obj.visible else "part"] += 1
        for obj in distractors:
            assert llp_label(obj.name) is None and obj.name in LLP_DISTRACTORS
            assert not (obj.visible and obj.audible)
    total = sum(kinds.values())
    assert total == 800
    # Two events never run out of the three slots, so the shares are the configured ones (0.3, 0.25).
    assert kinds["audio_only"] / total == pytest.approx(0.3, abs=0.05)
    assert kinds["visual_only"] / total == pytest.approx(0.25, abs=0.05)
    assert min(shapes["synchronous"], shapes["partial"], shapes["two_spans"], shapes["whole_clip"]) > 50


def test_events_without_a_free_slot_are_heard_off_screen():
    cfg = _config(max_events=6, audio_only_prob=0.0, visual_only_prob=1.0)
    for classes, scene in _scenes(20, cfg, num_events=6):
        events = scene.objects[:6]
        assert sum(o.slot is not None for o in events) == 3
        assert all(o.audible and not o.visible for o in events if o.slot is None)


def test_llp_events_are_the_dense_rows_of_a_scene():
    scene = Scene(
        video_id="aB3dE_f9Gh1",
        dataset="llp",
        split="val",
        duration_s=10,
        background="indoor",
        objects=(
            SceneObject("Violin, fiddle", "left", ((0, 4),), ((2, 10),), 1.0, 0.0),
            SceneObject("Vocal music", None, (), ((5, 7), (0, 3)), 1.0, 0.0),
            SceneObject("Church bell", None, (), ((0, 10),), 1.0, 0.0),  # distractor: no row
        ),
        render_seed=0,
    )
    assert llp_events(scene) == {
        "audio": [("Singing", 0, 3), ("Singing", 5, 7), ("Violin_fiddle", 2, 10)],  # class 11 before 13
        "visual": [("Violin_fiddle", 0, 4)],
    }


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(duration_s=5), "duration_s: LLP clips are 10 s"),
        (dict(max_events=0), "max_events"),
        (dict(max_events=26), "max_events"),
        (dict(num_val=0), "num_val"),
        (dict(audio_only_prob=1.5), "audio_only_prob"),
        (dict(audio_only_prob=0.6, visual_only_prob=0.5), "audio_only_prob + visual_only_prob"),
    ],
)
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("+", r"\+")):
        _config(**overrides)


def test_llp_has_its_own_branch_of_the_seed_tree():
    """LLP items never share a random stream with another AV-Synth dataset's items."""
    assert world.DATASET_INDEX["llp"] not in {v for k, v in world.DATASET_INDEX.items() if k != "llp"}
    stream = llp_module._class_stream(SEED, "train")
    expected = world.split_rng(SEED, "llp", "train").permutation(25)
    assert [next(stream) for _ in range(25)] == [LLP_CLASSES[i] for i in expected]


# --------------------------------------------------------------------------------------------------
# Writer (annotations only)
# --------------------------------------------------------------------------------------------------


def _weak(path: Path) -> dict[str, list[str]]:
    text = path.read_text(encoding="utf-8")
    assert "\r" not in text and text.endswith("\n")
    header, *rows = text.split("\n")[:-1]
    assert header == WEAK_HEADER
    return {row.split("\t")[0]: row.split("\t")[1].split(",") for row in rows}


def test_classes_are_balanced_within_each_split(tmp_path, monkeypatch):
    monkeypatch.setattr(llp_module, "render_clips", lambda jobs, synth, desc: None)
    write_llp(tmp_path, _config(num_train=50, num_val=10, num_test=20), VIDEO, SYNTH.audio, SYNTH.difficulty, SEED)
    for file_name in LLP_SPLIT_FILES.values():
        counts = Counter(label for labels in _weak(tmp_path / file_name).values() for label in labels)
        if file_name == LLP_SPLIT_FILES["train"]:
            assert set(counts) == set(LLP_CLASSES)
        assert max(counts.values()) - min(counts.values()) <= 2, (file_name, counts)


def test_annotations_depend_on_the_seed(tmp_path, monkeypatch):
    monkeypatch.setattr(llp_module, "render_clips", lambda jobs, synth, desc: None)
    for sub, seed in (("a", SEED), ("b", SEED + 1)):
        write_llp(tmp_path / sub, _config(), VIDEO, SYNTH.audio, SYNTH.difficulty, seed)
    assert (tmp_path / "a" / LLP_FULL_FILE).read_bytes() != (tmp_path / "b" / LLP_FULL_FILE).read_bytes()


# --------------------------------------------------------------------------------------------------
# Writer (with media), read back with crab.datasets.llp
# --------------------------------------------------------------------------------------------------


def _write(root: Path) -> Path:
    assert write_llp(root, _config(), VIDEO, SYNTH.audio, SYNTH.difficulty, SEED) == 9
    return root


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("llp"))


def test_writer_writes_the_native_layout(written):
    files = {*LLP_SPLIT_FILES.values(), *LLP_EVAL_FILES.values(), *LLP_TRAIN_DENSE_FILES.values()}
    assert sorted(p.name for p in written.iterdir()) == sorted({"LLP_dataset", LLP_FULL_FILE, SCENES_FILENAME, *files})
    splits = {split: _weak(written / name) for split, name in LLP_SPLIT_FILES.items()}
    assert {split: len(rows) for split, rows in splits.items()} == {"train": 3, "val": 3, "test": 3}
    full = (written / LLP_FULL_FILE).read_text(encoding="utf-8")
    train, val, test = ((written / LLP_SPLIT_FILES[s]).read_text(encoding="utf-8") for s in ("train", "val", "test"))
    assert full == train + val.split("\n", 1)[1] + test.split("\n", 1)[1]  # one header, then the three splits
    for filename in (name for rows in splits.values() for name in rows):
        video_id, start, end = filename.rsplit("_", 2)
        assert len(video_id) == 11 and int(end) == int(start) + 10
        assert (written / "LLP_dataset" / "video" / f"{video_id}.mp4").is_file()
    for name in (*LLP_EVAL_FILES.values(), *LLP_TRAIN_DENSE_FILES.values()):
        text = (written / name).read_text(encoding="utf-8")
        assert text.split("\n", 1)[0] == DENSE_HEADER and text.endswith("\n") and "\r" not in text


def test_read_back_matches_the_scenes(written):
    scenes = read_scenes((written / SCENES_FILENAME).read_text(encoding="utf-8"))
    kinds: Counter[str] = Counter()
    for split in ("train", "val", "test"):
        result = read_llp(written, split, check_media=True)
        assert result.rejected == [] and len(result.records) == 3
        for rec in result.records:
            assert rec.audio_events is not None and rec.visual_events is not None  # train too (AV-Synth)
            dense = rec.audio_events + rec.visual_events
            assert set(rec.labels) == {e.label for e in dense}  # weak labels = union of dense labels
            assert list(rec.labels) == sorted(rec.labels, key=LLP_CLASSES.index)
            assert all(0 <= e.onset_s < e.offset_s <= 10 for e in dense)
            scene = scenes[rec.video_id]
            assert scene.split == split and scene.dataset == "llp"
            audio, visual = event_grid(rec.audio_events), event_grid(rec.visual_events)  # (25, 10)
            for obj in scene.objects:
                label = llp_label(obj.name)
                if label is not None:
                    row = LLP_CLASSES.index(label)
                    assert audio[row].tolist() == [int(obj.is_audible_at(t)) for t in range(10)]
                    assert visual[row].tolist() == [int(obj.is_visible_at(t)) for t in range(10)]
            kinds["audio_visual"] += int((audio & visual).sum())
            kinds["audio_only"] += int((audio & (1 - visual)).sum())
            kinds["visual_only"] += int((visual & (1 - audio)).sum())
    assert min(kinds.values()) > 0 and len(kinds) == 3, kinds


def test_clips_decode_as_10_s_with_audio(written):
    for clip in (written / "LLP_dataset" / "video").iterdir():
        info = verify_decodes(clip, need_video=True, need_audio=True)
        assert info.num_frames == 10 * VIDEO.fps and (info.width, info.height) == (32, 32)
        assert info.duration_s == pytest.approx(10.0, abs=0.2)
        assert info.audio_sample_rate == SYNTH.audio.sample_rate


def test_writer_is_byte_deterministic(written, tmp_path):
    assert _hashes(_write(tmp_path / "again")) == _hashes(written)


# --------------------------------------------------------------------------------------------------
# Reader: the AV-Synth train dense files
# --------------------------------------------------------------------------------------------------


def _tiny_train(root: Path, audio_rows: list[str] | None, visual_rows: list[str] | None) -> None:
    (root / "LLP_dataset" / "video").mkdir(parents=True)
    (root / "LLP_dataset" / "video" / "aB3dE_f9Gh1.mp4").write_bytes(b"")
    (root / "AVVP_train.csv").write_text(f"{WEAK_HEADER}\naB3dE_f9Gh1_30_40\tSpeech,Dog\n", encoding="utf-8")
    for rows, name in ((audio_rows, LLP_TRAIN_DENSE_FILES["audio"]), (visual_rows, LLP_TRAIN_DENSE_FILES["visual"])):
        if rows is not None:
            (root / name).write_text("".join(f"{r}\n" for r in [DENSE_HEADER, *rows]), encoding="utf-8")


def test_reader_gives_train_dense_events_and_rejects_rows_of_other_videos(tmp_path):
    _tiny_train(
        tmp_path,
        ["aB3dE_f9Gh1_30_40\t0\t4\tSpeech", "zzzzzzzzzzz_0_10\t0\t10\tCat"],
        ["aB3dE_f9Gh1_30_40\t2\t10\tDog"],
    )
    result = read_llp(tmp_path, "train")
    (rec,) = result.records
    assert [(e.label, e.onset_s, e.offset_s) for e in rec.audio_events] == [("Speech", 0, 4)]
    assert [(e.label, e.onset_s, e.offset_s) for e in rec.visual_events] == [("Dog", 2, 10)]
    ((_, item_id, source, reason),) = [dataclasses.astuple(r) for r in result.rejected]
    assert item_id == "zzzzzzzzzzz_0_10" and source.endswith(f"{LLP_TRAIN_DENSE_FILES['audio']}:3")
    assert reason == "video 'zzzzzzzzzzz_0_10' is not in AVVP_train.csv"


def test_reader_refuses_one_train_dense_file_without_the_other(tmp_path):
    _tiny_train(tmp_path, ["aB3dE_f9Gh1_30_40\t0\t4\tSpeech"], None)
    with pytest.raises(DataError, match=LLP_TRAIN_DENSE_FILES["visual"]):
        read_llp(tmp_path, "train")
