"""Exact answers of the 33 MUSIC-AVQA templates on hand-built scenes, and the candidates' invariants."""

from __future__ import annotations

import re

import numpy as np
import pytest

from crab.config import SynthMusicAvqaConfig
from crab.datasets.vocab import AVQA_ANSWERS, AVQA_PLACEHOLDER_VALUES, AVQA_TEMPLATES
from crab.synth.avqa_questions import ALLOWED_ANSWERS, answer_for, candidate_questions, fill_question, number_word
from crab.synth.music_avqa import make_scene
from crab.synth.scene import Scene, SceneObject

D = 10


def obj(name, slot, audible, loudness=0.7, rhythm=1.0):
    visible = ((0, D),) if slot is not None else ()
    return SceneObject(name, slot, visible, tuple(audible), loudness, rhythm)


def scene(*objects, background="indoor"):
    return Scene("00000001", "music_avqa", "train", D, background, tuple(objects), 7)


# left violin plays throughout (loud, sustained), middle piano comes in at 3 (quiet, 2 pulses/s),
# right cello never sounds, an off-screen flute plays 5..8 (quietest, 4 pulses/s), a voiceover 0..4.
TRIO = scene(
    obj("violin", "left", [(0, 10)], 1.0, 0.0),
    obj("piano", "middle", [(3, 10)], 0.45, 2.0),
    obj("cello", "right", [], 0.7, 1.0),
    obj("flute", None, [(5, 8)], 0.3, 4.0),
    obj("voiceover", None, [(0, 4)], 0.7, 3.0),
)
# two violins (left from 0, middle 2..6) and a quiet trumpet on the right from 0
TWINS = scene(
    obj("violin", "left", [(0, 10)], 0.45, 1.0),
    obj("violin", "middle", [(2, 6)], 1.0, 4.0),
    obj("trumpet", "right", [(0, 10)], 0.3, 0.0),
)
SOLO = scene(obj("guzheng", "middle", [(0, 10)]), background="outdoor")
DUET = scene(obj("drum", "left", [(0, 10)], 1.0, 4.0), obj("pipa", "right", [(0, 10)], 0.3, 0.0))

T = AVQA_TEMPLATES
CASES = [
    # Audio / Counting
    (TRIO, T["Audio", "Counting"][0], [], "three"),
    (TRIO, T["Audio", "Counting"][1], ["flute"], "yes"),
    (TRIO, T["Audio", "Counting"][1], ["cello"], "no"),
    (TRIO, T["Audio", "Counting"][2], ["violin", "flute"], "yes"),
    (TRIO, T["Audio", "Counting"][2], ["violin", "cello"], "no"),
    # Audio / Comparative
    (TRIO, T["Audio", "Comparative"][0], ["violin", "piano"], "yes"),
    (TRIO, T["Audio", "Comparative"][0], ["piano", "violin"], "no"),
    (TRIO, T["Audio", "Comparative"][0], ["cello", "piano"], None),  # the cello is never heard
    (TRIO, T["Audio", "Comparative"][1], ["flute", "violin"], "yes"),
    (TRIO, T["Audio", "Comparative"][2], ["violin", "flute"], "yes"),
    (TRIO, T["Audio", "Comparative"][2], ["piano", "violin"], "no"),
    # Visual / Counting
    (TRIO, T["Visual", "Counting"][0], ["cello"], "yes"),
    (TRIO, T["Visual", "Counting"][0], ["flute"], "no"),  # heard, never seen
    (TRIO, T["Visual", "Counting"][1], ["violin", "cello"], "yes"),
    (TRIO, T["Visual", "Counting"][1], ["violin", "flute"], "no"),
    (TRIO, T["Visual", "Counting"][2], ["violin"], "one"),
    (TWINS, T["Visual", "Counting"][2], ["violin"], "two"),
    (TRIO, T["Visual", "Counting"][3], [], "three"),
    (TWINS, T["Visual", "Counting"][3], [], "two"),
    # Visual / Location
    (TRIO, T["Visual", "Location"][0], ["right", "violin"], "piano"),
    (TRIO, T["Visual", "Location"][0], ["left", "cello"], "piano"),
    (TRIO, T["Visual", "Location"][0], ["left", "violin"], None),
    (TWINS, T["Visual", "Location"][0], ["right", "violin"], None),  # "the violin" is ambiguous
    (TRIO, T["Visual", "Location"][1], [], None),
    (SOLO, T["Visual", "Location"][1], [], "guzheng"),
    (TRIO, T["Visual", "Location"][2], [], "indoor"),
    (SOLO, T["Visual", "Location"][2], [], "outdoor"),
    (TRIO, T["Visual", "Location"][3], ["leftest"], "violin"),
    (TRIO, T["Visual", "Location"][3], ["rightest"], "cello"),
    # Audio-Visual / Existential
    (TRIO, T["Audio-Visual", "Existential"][0], [], "yes"),
    (SOLO, T["Audio-Visual", "Existential"][0], [], "no"),
    (TRIO, T["Audio-Visual", "Existential"][1], ["violin"], "yes"),
    (TRIO, T["Audio-Visual", "Existential"][1], ["piano"], "no"),
    (TRIO, T["Audio-Visual", "Existential"][1], ["cello"], "no"),
    (TRIO, T["Audio-Visual", "Existential"][2], [], "no"),  # the flute is off screen
    (SOLO, T["Audio-Visual", "Existential"][2], [], "yes"),
    # Audio-Visual / Counting
    (TRIO, T["Audio-Visual", "Counting"][0], ["violin"], "one"),
    (TRIO, T["Audio-Visual", "Counting"][0], ["flute"], "zero"),
    (TWINS, T["Audio-Visual", "Counting"][0], ["violin"], "two"),
    (TRIO, T["Audio-Visual", "Counting"][1], [], "two"),
    (TRIO, T["Audio-Visual", "Counting"][2], [], "two"),  # piano (late) and cello (silent)
    (TWINS, T["Audio-Visual", "Counting"][2], [], "one"),
    (TRIO, T["Audio-Visual", "Counting"][3], [], "two"),
    (TWINS, T["Audio-Visual", "Counting"][3], [], "two"),
    # Audio-Visual / Location
    (TRIO, T["Audio-Visual", "Location"][0], ["piano"], None),  # overlaps violin and flute
    (TWINS, T["Audio-Visual", "Location"][0], ["trumpet"], "violin"),
    (DUET, T["Audio-Visual", "Location"][0], ["drum"], "pipa"),
    (TRIO, T["Audio-Visual", "Location"][1], ["loudest"], "left"),
    (TRIO, T["Audio-Visual", "Location"][1], ["lowest"], None),  # the quietest is off screen
    (TWINS, T["Audio-Visual", "Location"][1], ["loudest"], "middle"),
    (TWINS, T["Audio-Visual", "Location"][1], ["lowest"], "right"),
    (TRIO, T["Audio-Visual", "Location"][2], ["first", "left"], "yes"),
    (TRIO, T["Audio-Visual", "Location"][2], ["first", "middle"], "no"),
    (TRIO, T["Audio-Visual", "Location"][2], ["last", "middle"], "no"),  # the flute comes in last
    (DUET, T["Audio-Visual", "Location"][2], ["first", "left"], None),  # tie
    (TRIO, T["Audio-Visual", "Location"][3], ["right", "first"], "piano"),
    (TRIO, T["Audio-Visual", "Location"][3], ["left", "first"], None),
    (TWINS, T["Audio-Visual", "Location"][3], ["left", "last"], "violin"),
    # Audio-Visual / Comparative
    (TRIO, T["Audio-Visual", "Comparative"][0], ["left", "middle"], "no"),
    (TRIO, T["Audio-Visual", "Comparative"][0], ["middle", "left"], "yes"),
    (TRIO, T["Audio-Visual", "Comparative"][1], ["left", "middle"], "yes"),
    (TRIO, T["Audio-Visual", "Comparative"][1], ["left", "right"], None),  # the cello is silent
    (TRIO, T["Audio-Visual", "Comparative"][2], ["violin", "left", "piano", "middle"], "no"),
    (TRIO, T["Audio-Visual", "Comparative"][3], ["violin", "left", "piano", "middle"], "yes"),
    (TRIO, T["Audio-Visual", "Comparative"][3], ["cello", "left", "piano", "middle"], None),  # wrong name
    # Audio-Visual / Temporal
    (TRIO, T["Audio-Visual", "Temporal"][0], ["first"], "violin"),
    (TRIO, T["Audio-Visual", "Temporal"][0], ["second"], "piano"),
    (TRIO, T["Audio-Visual", "Temporal"][0], ["third"], "flute"),
    (TRIO, T["Audio-Visual", "Temporal"][0], ["fourth"], None),
    (TWINS, T["Audio-Visual", "Temporal"][0], ["first"], None),  # violin and trumpet both at 0
    (TRIO, T["Audio-Visual", "Temporal"][1], ["first"], "left"),
    (TRIO, T["Audio-Visual", "Temporal"][1], ["last"], None),  # off screen
    (TWINS, T["Audio-Visual", "Temporal"][1], ["last"], "middle"),
    (TRIO, T["Audio-Visual", "Temporal"][2], ["before", "piano"], "violin"),
    (TRIO, T["Audio-Visual", "Temporal"][2], ["after", "piano"], "flute"),
    (TRIO, T["Audio-Visual", "Temporal"][2], ["after", "violin"], "piano"),
    (TRIO, T["Audio-Visual", "Temporal"][2], ["before", "violin"], None),
    (TWINS, T["Audio-Visual", "Temporal"][2], ["after", "trumpet"], "violin"),
    (DUET, T["Audio-Visual", "Temporal"][2], ["before", "drum"], "simultaneously"),
    (DUET, T["Audio-Visual", "Temporal"][2], ["after", "pipa"], "simultaneously"),
    (TWINS, T["Audio-Visual", "Temporal"][3], ["violin", "first"], "left"),
    (TWINS, T["Audio-Visual", "Temporal"][3], ["violin", "last"], "middle"),
    (TRIO, T["Audio-Visual", "Temporal"][3], ["violin", "first"], None),  # one violin only
]


@pytest.mark.parametrize(("scene_", "template", "values", "expected"), CASES)
def test_known_answer(scene_, template, values, expected):
    assert answer_for(scene_, template, values) == expected


def test_hand_cases_cover_every_template_with_an_answer():
    answered = {template for _, template, _, expected in CASES if expected is not None}
    assert answered == {t for templates in AVQA_TEMPLATES.values() for t in templates}


def test_close_values_are_not_compared():
    close = scene(obj("violin", "left", [(0, 10)], 1.0, 1.0), obj("piano", "right", [(1, 10)], 0.8, 1.5))
    for template in (*AVQA_TEMPLATES["Audio", "Comparative"], *AVQA_TEMPLATES["Audio-Visual", "Comparative"]):
        assert not [q for q in candidate_questions(close) if q.question_content == template]


def _random_scenes(count, duration=10):
    cfg = SynthMusicAvqaConfig(1, 1, 1, 6, duration, 3)
    rngs = (np.random.default_rng(i) for i in range(count))
    return [make_scene(rng, video_id=f"{i:08d}", split="train", cfg=cfg, render_seed=i) for i, rng in enumerate(rngs)]


@pytest.mark.parametrize("duration", [2, 10])
def test_candidates_are_well_formed(duration):
    for sc in _random_scenes(40, duration):
        for q in candidate_questions(sc):
            assert q.question_content in AVQA_TEMPLATES[q.question_type]
            assert q.answer in AVQA_ANSWERS and q.answer in ALLOWED_ANSWERS[q.question_type]
            placeholders = re.findall(r"<[A-Za-z]+>", q.question_content)
            assert len(placeholders) == len(q.templ_values)
            for placeholder, value in zip(placeholders, q.templ_values, strict=True):
                assert value in AVQA_PLACEHOLDER_VALUES[placeholder]
            assert "<" not in q.question


def test_candidates_are_unique_and_deterministic():
    for sc in _random_scenes(20):
        first = candidate_questions(sc)
        keys = [(q.question_content, q.templ_values) for q in first]
        assert len(keys) == len(set(keys))  # one answer per filled template
        assert candidate_questions(sc) == first


def test_fill_question_uses_crab_rule():
    assert fill_question(T["Audio-Visual", "Counting"][0], ["violin"]) == "How many sounding violin in the video?"
    assert fill_question(T["Audio", "Counting"][2], ["drum", "piano"]) == "Are there drum and piano sound? ?"
    with pytest.raises(ValueError):
        fill_question(T["Audio", "Counting"][1], [])


def test_number_word():
    assert [number_word(n) for n in (0, 3, 10, 11)] == ["zero", "three", "ten", "more than ten"]
