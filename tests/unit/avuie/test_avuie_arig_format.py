"""Tests for ``crab.avuie.arig``: the ARIG box label, its answer format and its parser."""

from __future__ import annotations

import random

import pytest

from crab.avuie.arig import ARIG_FRAME_SIZE, ArigLabel, format_answer, parse_answer


def _random_box(rng: random.Random) -> ArigLabel:
    x0, x1 = sorted(rng.sample(range(ARIG_FRAME_SIZE + 1), 2))
    y0, y1 = sorted(rng.sample(range(ARIG_FRAME_SIZE + 1), 2))
    return ArigLabel(x0, y0, x1, y1)


def test_format_final_sentence_and_plain_sentence():
    label = ArigLabel(12, 30, 200, 224)
    assert format_answer(label, "A dog barks on the left.") == (
        "A dog barks on the left. So the top left and bottom right corners of the sounding object are "
        "<obj>(12,30)(200,224)</obj>."
    )
    assert format_answer(label, "") == (
        "So the top left and bottom right corners of the sounding object are <obj>(12,30)(200,224)</obj>."
    )
    assert format_answer(label, None) == (
        "The top left and bottom right corners of the sounding object are <obj>(12,30)(200,224)</obj>."
    )


def test_round_trip_on_random_boxes_with_and_without_reasoning():
    rng = random.Random(0)
    reasonings = [
        None,
        "",
        "The dog at (3, 4) barks; its box is not (0,0)(10,10).",
        "A stray <obj> tag and <obj>(1,1)(2,2)</obj> in the reasoning.",
    ]
    for _ in range(200):
        label = _random_box(rng)
        for reasoning in reasonings:
            assert parse_answer(format_answer(label, reasoning)) == label
    full = ArigLabel(0, 0, ARIG_FRAME_SIZE, ARIG_FRAME_SIZE)
    assert parse_answer(format_answer(full, None)) == full


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<obj>(1,2)(3,4)</obj>", ArigLabel(1, 2, 3, 4)),
        ("Some <b>text</b> (9,9). <obj> ( 10 , 20 ) ( 110 ,120 ) </obj> and more", ArigLabel(10, 20, 110, 120)),
        ("<obj>(0,0)(5,5)</obj> then finally <obj>(1,2)(3,4)</obj>.", ArigLabel(1, 2, 3, 4)),
        ("<obj>(10,20)(300,500)</obj>", ArigLabel(10, 20, 224, 224)),  # clipped to the frame
        ("<obj>(-5,-1)(30,40)</obj>", ArigLabel(0, 0, 30, 40)),  # clipped to the frame
        ("<obj>(30,20)(10,40)</obj>", None),  # reversed x
        ("<obj>(10,20)(30,20)</obj>", None),  # empty in y
        ("<obj>(230,20)(240,40)</obj>", None),  # empty after clipping: both x at 224
        ("<obj>(1,2)(3,4)(5,6)</obj>", None),  # three points
        ("<obj>(1,2)</obj>", None),  # one point
        ("<obj>(1.5,2)(3,4)</obj>", None),  # not integers
        ("<obj>(1,2),(3,4)</obj>", None),  # a comma between the points
        ("<obj>(1,2)(3,4) dog</obj>", None),  # extra text inside the tag
        ("<obj>(١,2)(3,4)</obj>", None),  # non-ASCII digits
        ("<obj></obj>", None),
        ("Its coordinate of top left corner is (1,2) and coordinate of bottom right corner is (3,4)", None),
        ("<obj>(1,2)(3,4)", None),  # unclosed
        ("", None),
    ],
)
def test_parser_tolerant_outside_strict_inside(text, expected):
    assert parse_answer(text) == expected


@pytest.mark.parametrize(
    "corners",
    [(0, 0, 0, 10), (5, 0, 4, 10), (0, 10, 10, 10), (0, 0, 225, 10), (-1, 0, 10, 10), (0, 0, 10, 225)],
)
def test_label_rejects_empty_reversed_or_outside_boxes(corners):
    with pytest.raises(ValueError, match="must satisfy"):
        ArigLabel(*corners)


def test_label_rejects_non_int_coordinates_and_converts_to_dict():
    with pytest.raises(ValueError, match="must be an int"):
        ArigLabel(0, 0, 10.0, 10)
    with pytest.raises(ValueError, match="must be an int"):
        ArigLabel(False, 0, 10, 10)
    label = ArigLabel(1, 2, 3, 4)
    assert label.to_dict() == {"x0": 1, "y0": 2, "x1": 3, "y1": 4}
    assert label.box == (1, 2, 3, 4)
