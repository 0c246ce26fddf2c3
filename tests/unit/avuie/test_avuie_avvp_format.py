"""Tests for ``crab.avuie.avvp``: AVVP label, answer format and parser (evaluation.md "Answer parsing")."""

from __future__ import annotations

import random

import pytest

from crab.avuie.avvp import EVENT_SEPARATOR, AvvpEvent, AvvpLabel, format_answer, parse_answer
from crab.eval.metrics_avvp import LLP_CLASSES

SPEECH_DOG = AvvpLabel(
    audio=(AvvpEvent("Speech", ((0, 4), (6, 10))), AvvpEvent("Dog", ((2, 10),))),
    visual=(AvvpEvent("Dog", ((2, 10),)),),
)


def _random_label(rng: random.Random) -> AvvpLabel:
    """0-3 events per modality over the LLP classes (a name may repeat), 1-3 intervals each."""

    def events():
        out = []
        for _ in range(rng.randint(0, 3)):
            intervals = []
            for _ in range(rng.randint(1, 3)):
                start = rng.randint(0, 9)
                intervals.append((start, rng.randint(start + 1, 10)))
            out.append(AvvpEvent(rng.choice(LLP_CLASSES), tuple(intervals)))
        return tuple(out)

    return AvvpLabel(audio=events(), visual=events())


def test_separator_and_delimiters_do_not_occur_in_llp_class_names():
    assert len(LLP_CLASSES) == 25
    for name in LLP_CLASSES:
        assert EVENT_SEPARATOR.strip() not in name and "," not in name and "<" not in name, name


def test_format_final_sentence_plain_sentence_and_empty_tags():
    assert format_answer(SPEECH_DOG, "A man talks while a dog runs in from second 2.") == (
        "A man talks while a dog runs in from second 2. Therefore, visual and audio events are: "
        "<visual_event>Dog,(2 10)</visual_event> and <audio_event>Speech,(0 4)(6 10); Dog,(2 10)</audio_event>"
    )
    assert format_answer(AvvpLabel(visual=(AvvpEvent("Frying_(food)", ((0, 10),)),)), None) == (
        "The visual and audio events are: <visual_event>Frying_(food),(0 10)</visual_event> and "
        "<audio_event></audio_event>"
    )
    assert format_answer(AvvpLabel(), "").startswith("Therefore, visual and audio events are:")


def test_round_trip_on_random_labels_with_and_without_reasoning():
    rng = random.Random(0)
    for i in range(500):
        label = _random_label(rng)
        reasoning = None if i % 3 == 0 else f"Reasoning number {i}: a <b>tag</b>, commas; semicolons (1 2)."
        assert parse_answer(format_answer(label, reasoning)) == label


def test_every_llp_class_round_trips():
    label = AvvpLabel(
        audio=tuple(AvvpEvent(name, ((0, 1), (k % 9, 10))) for k, name in enumerate(LLP_CLASSES)),
        visual=tuple(AvvpEvent(name, ((k % 10, 10),)) for k, name in enumerate(reversed(LLP_CLASSES))),
    )
    assert parse_answer(format_answer(label, None)) == label


def test_dict_and_span_views():
    assert SPEECH_DOG.to_dict() == {
        "audio": [
            {"event": "Speech", "start": 0, "end": 4},
            {"event": "Speech", "start": 6, "end": 10},
            {"event": "Dog", "start": 2, "end": 10},
        ],
        "visual": [{"event": "Dog", "start": 2, "end": 10}],
    }
    assert AvvpLabel.from_dict(SPEECH_DOG.to_dict()) == SPEECH_DOG
    assert AvvpLabel.from_dict({"audio": None, "visual": []}) == AvvpLabel()
    # One event per name, in order of the name's first span; JSON lists compare equal to tuples.
    spans = [["Speech", 0, 4], ["Dog", 2, 10], ["Speech", 6, 10]]
    assert AvvpLabel.from_spans(spans, [("Dog", 2, 10)]) == SPEECH_DOG
    assert AvvpEvent("Dog", [[2, 10]]) == AvvpEvent("Dog", ((2, 10),))


def test_parse_is_tolerant_outside_the_tags():
    text = (
        "I hear <audio_event>Cat,(0 1)</audio_event> first. On reflection:\n"
        "<audio_event>  Speech , (0 4) ( 6 10 );Dog,(2 10) </audio_event> and then "
        "<visual_event>Dog,(2 10)</visual_event>. Done."
    )
    assert parse_answer(text) == SPEECH_DOG  # last tag per modality, loose spacing inside
    assert parse_answer("<audio_event> </audio_event><visual_event></visual_event>") == AvvpLabel()
    # Values are returned as written; the metric clips them.
    assert parse_answer("<audio_event>Dog,(7 3)</audio_event><visual_event>Dog,(0 99)</visual_event>") == AvvpLabel(
        audio=(AvvpEvent("Dog", ((7, 3),)),), visual=(AvvpEvent("Dog", ((0, 99),)),)
    )


@pytest.mark.parametrize(
    "text",
    [
        "no tags at all",
        "<audio_event>Dog,(0 2)</audio_event>",  # visual tag missing
        "<visual_event>Dog,(0 2)</visual_event> and <audio>Dog,(0 2)</audio>",  # README spelling is not ours
        "<audio_event>Dog,(0 2)</visual_event><visual_event></visual_event>",  # mismatched closing tag
        "<audio_event>Dog (0 2)</audio_event><visual_event></visual_event>",  # no comma
        "<audio_event>Dog,(0,2)</audio_event><visual_event></visual_event>",  # comma inside the interval
        "<audio_event>Dog,</audio_event><visual_event></visual_event>",  # no interval
        "<audio_event>,(0 2)</audio_event><visual_event></visual_event>",  # no name
        "<audio_event>Dog,(0 2);</audio_event><visual_event></visual_event>",  # trailing separator
        "<audio_event>Dog,(0 2); ; Cat,(1 2)</audio_event><visual_event></visual_event>",  # empty event
        "<audio_event>Dog,(0 2) Cat,(1 2)</audio_event><visual_event></visual_event>",  # separator missing
        "<audio_event>Dog,(a b)</audio_event><visual_event></visual_event>",  # not integers
        "<audio_event>Dog,(-1 2)</audio_event><visual_event></visual_event>",  # negative
        "<audio_event>Dog,(0 2)\n</audio_event><visual_event></visual_event>",  # newline in the tag
        "<audio_event>Dog,(0 2) extra</audio_event><visual_event></visual_event>",  # trailing words
    ],
)
def test_parse_failures(text):
    assert parse_answer(text) is None


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (AvvpEvent("Dog; Cat", ((0, 1),)), "cannot be tagged"),
        (AvvpEvent("Violin, fiddle", ((0, 1),)), "cannot be tagged"),
        (AvvpEvent(" Dog", ((0, 1),)), "cannot be tagged"),
        (AvvpEvent("Dog  barking", ((0, 1),)), "cannot be tagged"),
        (AvvpEvent("Dog</audio_event>", ((0, 1),)), "cannot be tagged"),
        (AvvpEvent("", ((0, 1),)), "cannot be tagged"),
        (AvvpEvent("Dog", ()), "has no interval"),
        (AvvpEvent("Dog", ((3, 3),)), "not 0 <= start < end"),
        (AvvpEvent("Dog", ((-1, 3),)), "not 0 <= start < end"),
    ],
)
def test_format_rejects_labels_that_cannot_round_trip(event, message):
    with pytest.raises(ValueError, match=message):
        format_answer(AvvpLabel(audio=(event,)), None)
