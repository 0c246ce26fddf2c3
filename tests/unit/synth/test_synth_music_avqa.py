"""AV-Synth in the MUSIC-AVQA layout: scenes, balanced question sampling and the native-layout writer."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from crab.config import load_params
from crab.datasets.music_avqa import read_music_avqa
from crab.datasets.vocab import AVQA_INSTRUMENTS, AVQA_QUESTION_TYPES, AVQA_TEMPLATES
from crab.synth.avqa_questions import VOICEOVER, AvqaQuestion
from crab.synth.music_avqa import (
    LOUDNESS_LEVELS,
    SPLITS,
    QuestionSampler,
    answer_stats,
    build_split,
    make_scene,
    write_music_avqa,
)
from crab.synth.scene import SCENES_FILENAME, read_scenes

PARAMS = load_params(Path(__file__).parents[3] / "params.yaml")
CFG = PARAMS.synth.music_avqa
KEYS = ["video_id", "question_id", "type", "question_content", "templ_values", "question_deleted", "anser"]


def _scenes(count, **changes):
    cfg = dataclasses.replace(CFG, **changes)
    return [
        make_scene(np.random.default_rng(i), video_id=f"{i:08d}", split="train", cfg=cfg, render_seed=i)
        for i in range(count)
    ]


@pytest.mark.parametrize("duration", [1, 2, 10])
def test_scenes_follow_the_layout_rules(duration):
    for sc in _scenes(60, duration_s=duration):
        shown = sc.on_screen
        assert 1 <= len(shown) <= CFG.max_instruments
        assert len({o.slot for o in shown}) == len(shown)
        assert all(o.visible == ((0, duration),) and o.name in AVQA_INSTRUMENTS for o in shown)
        for o in sc.objects:
            assert all(0 <= s < e <= duration for s, e in o.audible)
            if o.slot is None:
                assert o.visible == () and o.audible  # off-screen sources are heard
        sources = [o for o in sc.objects if o.name != VOICEOVER]
        assert len({o.loudness for o in sources}) == len(sources)
        assert len({o.rhythm for o in sources}) == len(sources)
        assert {o.loudness for o in sources} <= set(LOUDNESS_LEVELS)


def test_scenes_have_variety():
    scenes = _scenes(200)
    assert {len(sc.on_screen) for sc in scenes} == {1, 2, 3}
    assert any(len({o.name for o in sc.on_screen}) < len(sc.on_screen) for sc in scenes)  # a duplicate
    patterns = Counter()
    for sc in scenes:
        for o in sc.on_screen:
            patterns["silent" if not o.audible else "full" if o.audible_seconds == 10 else "partial"] += 1
    assert min(patterns.values()) >= 30
    offscreen = sum(any(o.slot is None and o.name != VOICEOVER for o in sc.objects) for sc in scenes)
    voiceover = sum(any(o.name == VOICEOVER for o in sc.objects) for sc in scenes)
    assert 60 <= offscreen <= 140 and 60 <= voiceover <= 140
    assert 60 <= sum(sc.background == "indoor" for sc in scenes) <= 140


def test_sampler_gives_distinct_questions_over_types():
    sampler = QuestionSampler()
    for i, sc in enumerate(_scenes(30)):
        questions = sampler.sample(sc, 6, np.random.default_rng(i))
        assert len(questions) == 6
        assert len({(q.question_content, q.templ_values) for q in questions}) == 6
        assert len({q.question_type for q in questions}) >= 5


def test_build_split_is_deterministic_and_splits_are_disjoint():
    small = dataclasses.replace(CFG, num_train_videos=8, num_val_videos=8, num_test_videos=8)
    splits = {s: build_split(PARAMS.synth.seed, small, s) for s in SPLITS}
    assert build_split(PARAMS.synth.seed, small, "val") == splits["val"]
    ids = [sc.video_id for items in splits.values() for sc, _ in items]
    assert len(set(ids)) == len(ids) and all(len(i) == 8 and i.isdigit() for i in ids)
    layouts = [tuple(sorted(o.name for o in sc.objects)) for items in splits.values() for sc, _ in items]
    assert len(set(layouts)) > 20  # different streams per split and item
    other = build_split(PARAMS.synth.seed + 1, small, "train")
    assert [sc.objects for sc, _ in other] != [sc.objects for sc, _ in splits["train"]]


@pytest.fixture(scope="module")
def default_train():
    """The default-size train split (120 videos x 6 questions), without media."""
    return [q for _, qs in build_split(PARAMS.synth.seed, CFG, "train") for q in qs]


def test_every_template_is_generated(default_train):
    used = Counter((q.question_type, q.question_content) for q in default_train)
    missing = [(t, c) for t, cs in AVQA_TEMPLATES.items() for c in cs if (t, c) not in used]
    assert not missing


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_answer_priors_are_not_degenerate(seed):
    cfg = dataclasses.replace(CFG, num_train_videos=60)  # 360 questions, 25..60 per type
    questions = [q for _, qs in build_split(seed, cfg, "train") for q in qs]
    stats = answer_stats(questions)
    assert set(stats) == set(AVQA_QUESTION_TYPES)
    for qtype, st in stats.items():
        assert st.num_questions >= 20, qtype
        assert st.majority_rate <= 0.6, (qtype, st)


def test_answer_stats_counts_the_majority():
    qtype = ("Audio", "Comparative")
    questions = [AvqaQuestion(qtype, AVQA_TEMPLATES[qtype][0], ("drum", "flute"), a) for a in "yes yes no".split()]
    (st,) = answer_stats(questions).values()
    assert (st.num_questions, st.majority_answer, st.majority_rate) == (3, "yes", pytest.approx(2 / 3))


def _tiny_params():
    synth = dataclasses.replace(
        PARAMS.synth,
        video=dataclasses.replace(PARAMS.synth.video, size=32, fps=2),
        music_avqa=dataclasses.replace(CFG, num_train_videos=2, num_val_videos=1, num_test_videos=1, duration_s=2),
    )
    return dataclasses.replace(PARAMS, synth=synth)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    roots = [tmp_path_factory.mktemp("avqa_a"), tmp_path_factory.mktemp("avqa_b")]
    counts = [write_music_avqa(_tiny_params(), root) for root in roots]
    return roots, counts


def test_writer_writes_the_native_layout(written):
    (root, _), (count, _) = written
    assert count == 4
    question_ids, video_ids = [], set()
    for split in SPLITS:
        text = (root / "json_update" / f"avqa-{split}.json").read_text(encoding="utf-8")
        rows = json.loads(text)
        assert text == json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
        assert rows
        for row in rows:
            assert list(row) == KEYS
            assert isinstance(row["type"], str) and isinstance(row["templ_values"], str)
            qtype = tuple(json.loads(row["type"]))
            assert row["type"] == json.dumps(list(qtype)) and ", " in row["type"]
            assert row["question_content"] in AVQA_TEMPLATES[qtype]
            assert isinstance(json.loads(row["templ_values"]), list)
            assert row["question_deleted"] == 0 and isinstance(row["question_id"], int)
            question_ids.append(row["question_id"])
            video_ids.add(row["video_id"])
    assert len(question_ids) == len(set(question_ids))
    videos = sorted((root / "video").glob("*.mp4"))
    assert {p.stem for p in videos} == set(read_scenes((root / SCENES_FILENAME).read_text(encoding="utf-8")))
    assert video_ids <= {p.stem for p in videos} and len(videos) == 4
    assert all(p.stat().st_size > 1000 for p in videos)
    with av.open(str(videos[0])) as container:
        assert container.streams.video and container.streams.audio
    stats = json.loads((root / "answer_stats.json").read_text(encoding="utf-8"))
    assert set(stats) == set(SPLITS)
    assert sum(v["num_questions"] for v in stats["train"].values()) == 2 * CFG.questions_per_video


def test_writer_output_reads_back(written):
    (root, _), _ = written
    result = read_music_avqa(root, "train")
    assert not result.rejected
    assert len(result.records) == 2 * CFG.questions_per_video


def test_writer_is_byte_deterministic(written):
    (first, second), _ = written
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
