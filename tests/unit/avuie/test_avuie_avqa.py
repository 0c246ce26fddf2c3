"""Tests for ``crab.avuie.avqa``: AVQA answer format, parser, reasoning content and builder."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from crab.avuie.avqa import AvqaLabel, answers_match, build_avqa, format_answer, parse_answer
from crab.datasets.music_avqa import fill_question
from crab.datasets.records import AvqaRecord
from crab.datasets.vocab import AVQA_ANSWERS, AVQA_INSTRUMENTS, AVQA_PLACEHOLDER_VALUES, AVQA_TEMPLATES
from crab.synth.scene import Scene, SceneObject
from crab.tasks import TASKS, Task


TH = "What is the <TH> instrument that comes in?"
THIS_SOUND = "Is this sound from the instrument in the video?"


def _obj(name, slot, audible, loudness=1.0, rhythm=0.0, visible=((0, 10),)) -> SceneObject:
    return SceneObject(name, slot, tuple(visible) if slot else (), tuple(audible), loudness, rhythm)


def _scene(vid: str, *objects: SceneObject, background: str = "indoor") -> Scene:
    return Scene(vid, "music_avqa", "train", 10, background, tuple(objects), render_seed=0)


def _question(qid: int, vid: str, qtype, content: str, values, answer: str, split: str = "train") -> AvqaRecord:
    return AvqaRecord(
        item_id=str(qid),
        question_id=qid,
        video_id=vid,
        question_type=tuple(qtype),
        question_content=content,
        templ_values=tuple(values),
        question=fill_question(content, values),
        answer=answer,
        split=split,
        video_path=Path("data/raw/music_avqa/video") / f"{vid}.mp4",
        source=f"data/raw/music_avqa/json_update/avqa-{split}.json[{qid}]",
    )


#: violin left (0-6, loud, steady), guitar right (3-10, soft, 2.5 pulses/s), piano middle silent, narrator 1-4.
SCENE = _scene(
    "q0000001",
    _obj("violin", "left", [(0, 6)], loudness=1.2),
    _obj("acoustic_guitar", "right", [(3, 10)], loudness=0.6, rhythm=2.5),
    _obj("piano", "middle", []),
    _obj("voiceover", None, [(1, 4)], loudness=0.6),
)


def _random_set(n: int, seed: int) -> tuple[list[AvqaRecord], dict[str, Scene]]:
    """n questions over every template with random fills and answers, on random instrument scenes."""
    rng = random.Random(seed)
    templates = [(t, c) for t, cs in AVQA_TEMPLATES.items() for c in cs]
    records, scenes = [], {}
    for i in range(n):
        vid = f"{i // 3:08d}"
        if vid not in scenes:
            slots = rng.sample(["left", "middle", "right"], rng.randint(1, 3))
            objs = [
                _obj(rng.choice(AVQA_INSTRUMENTS), s,
                     [(rng.randint(0, 4), rng.randint(5, 10))] if rng.random() < 0.8 else [],
                     loudness=rng.choice([0.5, 1.0, 1.5]), rhythm=rng.choice([0.0, 2.0, 4.0]))
                for s in slots
            ]  # fmt: skip
            if rng.random() < 0.3:
                objs.append(_obj("voiceover", None, [(2, 5)]))
            scenes[vid] = _scene(vid, *objs, background=rng.choice(["indoor", "outdoor"]))
        qtype, content = templates[i % len(templates)]
        values = [rng.choice(AVQA_PLACEHOLDER_VALUES[w.rstrip("?？")]) for w in content.split() if w.startswith("<")]
        records.append(_question(i, vid, qtype, content, values, rng.choice(AVQA_ANSWERS)))
    return records, scenes


def test_format_and_erp_off_format():
    expected = "I see. So the answer is <answer> acoustic_guitar </answer>."
    assert format_answer(AvqaLabel("acoustic_guitar"), "I see.") == expected
    assert format_answer(AvqaLabel("more than ten"), None) == "<answer> more than ten </answer>"
    for bad in ("", " two", "two  three", "a<b"):
        with pytest.raises(ValueError):
            format_answer(AvqaLabel(bad), None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer>two</answer>", AvqaLabel("two")),
        ("So the answer is <answer>    more   than ten  </answer>.", AvqaLabel("more than ten")),
        ("The <video> has a <b>drum</b> on the <LR>; <answer> Acoustic_guitar </answer>", AvqaLabel("Acoustic_guitar")),
        ("<answer> left </answer> ... on second thought <answer> right </answer>", AvqaLabel("right")),
        ("So the answer is left.", None),
        ("<answer>   </answer>", None),
        ("<answer> left", None),
    ],
)
def test_parser_tolerant_outside_strict_inside(text, expected):
    assert parse_answer(text) == expected


def test_answers_match_case_insensitive_and_trimmed():
    assert answers_match(parse_answer("<answer> Acoustic_Guitar </answer>"), "acoustic_guitar")
    assert answers_match(AvqaLabel("yes"), " yes ")
    assert not answers_match(AvqaLabel("acoustic guitar"), "acoustic_guitar")
    assert not answers_match(None, "yes")


def _target(qtype, content, values, answer, seed=0, scene=SCENE) -> str:
    rec = _question(1, scene.video_id, qtype, content, values, answer)
    (built,) = build_avqa([rec], {scene.video_id: scene}, None, True, random.Random(seed))
    assert built.reasoning and parse_answer(built.target) == AvqaLabel(answer)
    return built.target


@pytest.mark.parametrize("seed", range(6))
def test_temporal_reasoning_names_positions_and_order(seed):
    text = _target(("Audio-Visual", "Temporal"), TH, ["first"], "violin", seed)
    for fact in ("violin", "on the left", "acoustic guitar", "on the right", "piano", "in the middle"):
        assert fact in text
    assert "acoustic_guitar" not in text.replace("<answer> acoustic_guitar", "")  # readable names in prose
    order = text.index("the violin on the left at second 0"), text.index("the acoustic guitar on the right at second 3")
    assert order[0] < order[1]
    assert "voice-over at second" not in text  # the narrator is not an instrument entry
    assert text.endswith("So the answer is <answer> violin </answer>.")


@pytest.mark.parametrize("seed", range(4))
def test_comparative_reasoning_uses_the_right_fact(seed):
    pair = ["violin", "acoustic_guitar"]
    louder = _target(("Audio", "Comparative"), "Is the <Object> louder than the <Object>?", pair, "yes", seed)
    assert "loud" in louder.split("So the answer")[0].lower()
    template = "Is the <Object> on the <LR> more rhythmic than the <Object> on the <LR>?"
    values = ["acoustic_guitar", "right", "violin", "left"]
    rhythm = _target(("Audio-Visual", "Comparative"), template, values, "yes", seed)
    assert "2.5 times per second" in rhythm and "steady tone" in rhythm
    longer = _target(("Audio", "Comparative"), "Is the <Object> playing longer than the <Object>?", pair, "no", seed)
    assert "seven seconds" in longer and "six seconds" in longer


def test_visual_question_has_no_audio_facts_and_location_has_background():
    text = _target(("Visual", "Location"), "Where is the performance?", [], "indoor")
    assert "second 6" not in text and "indoor" in text.split("So the answer")[0]
    template = "How many types of musical instruments appeared in the entire video?"
    counting = _target(("Visual", "Counting"), template, [], "three")
    assert "three instruments" in counting or "a violin on the left, a piano in the middle and an acoustic" in counting


def test_existential_voiceover_and_offscreen_sources():
    voice = _target(("Audio-Visual", "Existential"), "Is there a voiceover?", [], "yes")
    assert "second 1 to second 4" in voice
    quiet = _scene("q2", _obj("violin", "left", [(0, 10)]))
    none = _target(("Audio-Visual", "Existential"), "Is there a voiceover?", [], "no", scene=quiet)
    assert any(p in none for p in ("No narrator", "Nobody speaks", "no voice-over", "no speech"))
    offscreen = _scene("q3", _obj("violin", "left", [(0, 10)]), _obj("drum", None, [(2, 5)]))
    src = _target(("Audio-Visual", "Existential"), THIS_SOUND, [], "no", scene=offscreen)
    assert "a drum" in src and "not on screen" in src
    narrated = _scene("q4", _obj("violin", "left", [(0, 10)]), _obj("voiceover", None, [(2, 5)]))
    yes = _target(("Audio-Visual", "Existential"), THIS_SOUND, [], "yes", scene=narrated)
    assert "voice-over is heard from second 2 to second 5" in yes  # heard, but no off-screen instrument
    assert yes.count("voice-over") == 1
    all_on_screen = ("Every instrument heard", "All of the music", "No instrument is heard", "Each instrument")
    assert any(p in yes for p in all_on_screen)


def test_round_trip_on_every_generated_target_erp_on_and_off():
    records, scenes = _random_set(99, seed=0)  # three rounds over the 33 templates
    for use_reasoning in (True, False):
        for scene_map in (scenes, {}):
            built = build_avqa(records, scene_map, None, use_reasoning, random.Random(1))
            assert len(built) == len(records)
            for rec, raw in zip(built, records, strict=True):
                assert parse_answer(rec.target) == AvqaLabel(raw.answer)
                assert rec.reasoning is (use_reasoning and bool(scene_map))


def test_erp_off_and_no_scene_give_the_bare_tag():
    records, scenes = _random_set(12, seed=1)
    for rec in build_avqa(records, scenes, None, False, random.Random(0)):
        assert rec.target == f"<answer> {rec.label['answer']} </answer>" and not rec.reasoning
    tally: Counter[str] = Counter()
    build_avqa(records, {}, None, True, random.Random(0), tally)
    assert tally == {"answer_only": 12}


def test_phrasing_variety():
    records, scenes = _random_set(50, seed=2)
    built = build_avqa(records, scenes, None, True, random.Random(0))
    assert len({" ".join(r.target.split()[:2]) for r in built}) >= 4


def test_record_fields_and_label():
    template = "Which <Object> makes the sound <FL>?"
    rec = _question(42, "q0000001", ("Audio-Visual", "Temporal"), template, ["violin", "first"], "left", "test")
    (built,) = build_avqa([rec], {}, None, True, random.Random(0))
    assert built.id == "avqa/test/42" and built.dataset == "music_avqa" and built.video_id == "q0000001"
    assert built.instruction == TASKS[Task.AVQA].instruction(question="Which violin makes the sound first?")
    assert built.label == {
        "answer": "left",
        "question": "Which violin makes the sound first?",
        "question_type": ["Audio-Visual", "Temporal"],
        "question_id": 42,
    }


def test_released_file_overrides_when_its_answer_matches(tmp_path):
    released = "In the video, a saxophone is on the left. So the answer is <answer> Saxophone </answer>.\n"
    (tmp_path / "7.txt").write_text(released, encoding="utf-8")
    (tmp_path / "8.txt").write_text("So the answer is <answer> piano </answer>.", encoding="utf-8")
    rows = [
        _question(7, "q0000001", ("Visual", "Location"), "What kind of musical instrument is it?", [], "saxophone"),
        _question(8, "q0000001", ("Visual", "Location"), "What kind of musical instrument is it?", [], "violin"),
    ]
    tally: Counter[str] = Counter()
    built = build_avqa(rows, {"q0000001": SCENE}, tmp_path, True, random.Random(0), tally)
    assert built[0].target == released.rstrip() and built[0].reasoning
    assert parse_answer(built[1].target) == AvqaLabel("violin") and "piano </answer>" not in built[1].target
    assert tally == {"released": 1, "released_mismatched": 1, "scene": 1}
