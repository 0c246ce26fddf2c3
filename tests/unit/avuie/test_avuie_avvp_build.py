"""Tests for ``crab.avuie.avvp_build``: canonical labels, AVVP reasoning content and the builder."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from crab.avuie.avvp import AvvpEvent, AvvpLabel, parse_answer
from crab.avuie.avvp_build import (
    LLP_EVENT_WORDS,
    build_avvp,
    dense_label,
    reasoning_from_label,
)
from crab.datasets.llp import LlpEvent, LlpRecord, event_grid
from crab.datasets.vocab_seg import LLP_CLASSES
from crab.eval.metrics_avvp import events_to_matrix, modality_spans
from crab.tasks import AUDIO_PROMPT, TASKS, VIDEO_PROMPT, Task

KINDS = ("audio-visual", "audio-only", "visual-only")


class FirstChoice(random.Random):
    """An rng that always picks the first pattern, so a target can be written out by hand."""

    def choice(self, seq):
        return seq[0]


def _event(label: str, onset: int, offset: int, row: int = 2) -> LlpEvent:
    return LlpEvent(label=label, onset_s=onset, offset_s=offset, source=f"data/raw/llp/AVVP_eval_audio.csv:{row}")


def _record(
    audio: list[LlpEvent] | None,
    visual: list[LlpEvent] | None,
    vid: str = "6aV6c8mY0lg",
    split: str = "test",
    labels: tuple[str, ...] = ("Chainsaw",),
) -> LlpRecord:
    return LlpRecord(
        item_id=f"{vid}_0_10",
        video_id=vid,
        labels=labels,
        audio_events=None if audio is None else tuple(audio),
        visual_events=None if visual is None else tuple(visual),
        split=split,
        video_path=Path("data/raw/llp/LLP_dataset/video") / f"{vid}.mp4",
        source=f"data/raw/llp/AVVP_{split}.csv:2",
    )


def _chainsaw() -> LlpRecord:
    """Crab's AVVP sample (README): audio Chainsaw [0, 10], visual Chainsaw [0, 1], [3, 6], [9, 10]."""
    return _record(
        [_event("Chainsaw", 0, 10)], [_event("Chainsaw", 0, 1), _event("Chainsaw", 3, 6), _event("Chainsaw", 9, 10)]
    )


def _mixed() -> LlpRecord:
    """Speech heard only; dog heard 2-10, seen 2-8; car seen only; cello heard 0-3, seen 5-8 (disjoint)."""
    audio = [_event("Speech", 0, 4), _event("Speech", 6, 10), _event("Dog", 2, 10), _event("Cello", 0, 3)]
    visual = [_event("Dog", 2, 8), _event("Car", 0, 10), _event("Cello", 5, 8)]
    return _record(audio, visual, vid="mixedvideo1", labels=("Speech", "Dog", "Car", "Cello"))


def _random_records(n: int, seed: int) -> list[LlpRecord]:
    """Val / test videos with 0-3 rows per modality: repeated classes, overlaps, touching and empty spans."""
    rng = random.Random(seed)

    def rows() -> list[LlpEvent]:
        out = []
        for _ in range(rng.randint(0, 3)):
            onset = rng.randint(0, 10)
            offset = rng.randint(0, 10) if rng.random() < 0.1 else rng.randint(min(onset + 1, 10), 10)
            out.append(_event(rng.choice(LLP_CLASSES[:6]), onset, offset))
        return out

    return [_record(rows(), rows(), vid=f"v{i:010d}", split=rng.choice(["val", "test"])) for i in range(n)]


def _grid(spans) -> np.ndarray:
    return events_to_matrix(spans, LLP_CLASSES)  # (25, 10)


def test_every_llp_class_has_distinct_readable_words():
    assert set(LLP_EVENT_WORDS) == set(LLP_CLASSES)
    nouns = [words.noun for words in LLP_EVENT_WORDS.values()]
    assert len(set(nouns)) == len(nouns)


def test_prompt_is_crab_wording_with_both_modalities_and_the_grid():
    assert TASKS[Task.AVVP].prompt.startswith(VIDEO_PROMPT + AUDIO_PROMPT)
    text = TASKS[Task.AVVP].prompt.removeprefix(VIDEO_PROMPT + AUDIO_PROMPT)
    assert text.startswith("Please determine the events that occur based on the visual and audio information")
    assert "audio events" in text and "visual events" in text and "1-second grid" in text


def test_avvp_is_registered_on_llp():
    assert TASKS[Task.AVVP].dataset == "llp"
    assert TASKS[Task.AVVP].parse_answer is parse_answer


def test_dense_label_merges_runs_orders_classes_and_drops_empty_spans():
    audio = [_event("Speech", 6, 10), _event("Dog", 2, 5), _event("Speech", 0, 4), _event("Dog", 4, 7)]
    audio += [_event("Cat", 10, 10), _event("Car", 3, 0)]  # the real release's two kinds of empty span
    visual = [_event("Dog", 3, 4), _event("Dog", 4, 6), _event("Dog", 8, 9)]
    label, num_empty = dense_label(audio, visual)
    assert num_empty == 2
    assert label == AvvpLabel(
        audio=(AvvpEvent("Speech", ((0, 4), (6, 10))), AvvpEvent("Dog", ((2, 7),))),
        visual=(AvvpEvent("Dog", ((3, 6), (8, 9))),),
    )


def test_dense_label_rejects_a_span_off_the_grid_naming_the_row():
    with pytest.raises(ValueError, match=r"AVVP_eval_audio\.csv:7.*'Dog' \(8 11\) is off the 0\.\.10 s grid"):
        dense_label([_event("Dog", 8, 11, row=7)], [])


def test_hand_example_exact_target():
    tally: Counter[str] = Counter()
    (rec,) = build_avvp([_chainsaw()], {}, None, True, FirstChoice(), tally)
    assert rec.target == (
        "Listening to the audio, the buzzing of the chainsaw is heard from second 0 to second 10. "
        "In the frames, a chainsaw is visible from second 0 to second 1, from second 3 to second 6 and from "
        "second 9 to second 10. "
        "The chainsaw is both seen and heard from second 0 to second 1, from second 3 to second 6 and from "
        "second 9 to second 10, so it is an audio-visual event. "
        "The chainsaw is heard but not seen from second 1 to second 3 and from second 6 to second 9, so there "
        "it is an audio-only event. "
        "Therefore, visual and audio events are: <visual_event>Chainsaw,(0 1)(3 6)(9 10)</visual_event> and "
        "<audio_event>Chainsaw,(0 10)</audio_event>"
    )
    assert rec.reasoning and tally == {"dense": 1}
    assert rec.id == "avvp/test/6aV6c8mY0lg_0_10" and rec.task == "avvp" and rec.dataset == "llp"
    assert rec.instruction == TASKS[Task.AVVP].prompt and rec.source == "data/raw/llp/AVVP_test.csv:2"
    clip = "data/raw/llp/LLP_dataset/video/6aV6c8mY0lg.mp4"
    assert rec.media == {"video": clip, "audio": clip}
    assert rec.label == {
        "audio": [{"event": "Chainsaw", "start": 0, "end": 10}],
        "visual": [
            {"event": "Chainsaw", "start": 0, "end": 1},
            {"event": "Chainsaw", "start": 3, "end": 6},
            {"event": "Chainsaw", "start": 9, "end": 10},
        ],
    }


def test_empty_modalities_say_nothing_is_heard_or_seen():
    label = AvvpLabel(audio=(), visual=(AvvpEvent("Dog", ((0, 10),)),))
    assert reasoning_from_label(label, FirstChoice()) == (
        "Listening to the audio, none of the event sounds can be heard. "
        "In the frames, a dog is visible from second 0 to second 10. "
        "The dog is seen but never heard, so it is a visual-only event."
    )
    (rec,) = build_avvp([_record([], [], labels=("Dog",))], {}, None, True, FirstChoice())
    assert rec.target.endswith("<visual_event></visual_event> and <audio_event></audio_event>")
    assert parse_answer(rec.target) == AvvpLabel()


def _kinds_by_noun(reasoning: str, nouns: list[str]) -> dict[str, set[str]]:
    """For each noun, the kinds of event named in the sentences that mention it."""
    sentences = reasoning.split(". ")
    return {
        noun: {kind for s in sentences if re.search(rf"\b{noun}\b", s) for kind in KINDS if kind in s} for noun in nouns
    }


@pytest.mark.parametrize("seed", range(40))  # every phrasing must name the right kinds
def test_reasoning_names_audio_only_visual_only_and_audio_visual_correctly(seed):
    (rec,) = build_avvp([_mixed()], {}, None, True, random.Random(seed))
    reasoning = rec.target.split("Therefore, ")[0]
    assert _kinds_by_noun(reasoning, ["person", "dog", "car", "cello"]) == {
        "person": {"audio-only"},  # Speech: heard, never seen
        "dog": {"audio-visual", "audio-only"},  # heard 2-10, seen 2-8
        "car": {"visual-only"},  # seen, never heard
        "cello": {"audio-only", "visual-only"},  # heard 0-3, seen 5-8: never both
    }
    sentences = reasoning.split(". ")
    dog_av = next(s for s in sentences if "audio-visual" in s)
    assert re.search(r"\b2\b.*\b8\b", dog_av) and not re.search(r"\b10\b", dog_av), dog_av
    dog_audio_only = next(s for s in sentences if "dog" in s and "audio-only" in s)
    assert re.search(r"\b8\b.*\b10\b", dog_audio_only) and not re.search(r"\b2\b", dog_audio_only)
    assert parse_answer(rec.target) == AvvpLabel.from_dict(rec.label)


def test_round_trip_and_ground_truth_kept_for_every_built_record():
    records = _random_records(200, seed=3)
    for use_reasoning in (True, False):
        tally: Counter[str] = Counter()
        built = build_avvp(records, {}, None, use_reasoning, random.Random(0), tally)
        assert len(built) == len(records) and tally["empty_spans_dropped"] > 0
        for rec, raw in zip(built, records, strict=True):
            assert rec.reasoning is use_reasoning
            parsed = parse_answer(rec.target)
            assert parsed == AvvpLabel.from_dict(rec.label), rec.target
            # the canonical label marks exactly the official ground truth (GT[cls, onset:offset] = 1)
            assert np.array_equal(_grid(modality_spans(parsed, "audio")), event_grid(raw.audio_events))
            assert np.array_equal(_grid(modality_spans(parsed, "visual")), event_grid(raw.visual_events))


def test_same_seed_same_targets_other_seed_other_phrasing():
    records = _random_records(30, seed=5)
    first = [r.target for r in build_avvp(records, {}, None, True, random.Random("7/avvp"))]
    again = [r.target for r in build_avvp(records, {}, None, True, random.Random("7/avvp"))]
    other = [r.target for r in build_avvp(records, {}, None, True, random.Random("8/avvp"))]
    assert first == again
    assert first != other
    assert [parse_answer(t) for t in first] == [parse_answer(t) for t in other]


def test_without_reasoning_the_plain_sentence():
    tally: Counter[str] = Counter()
    (rec,) = build_avvp([_chainsaw()], {}, None, False, random.Random(0), tally)
    assert rec.target == (
        "The visual and audio events are: <visual_event>Chainsaw,(0 1)(3 6)(9 10)</visual_event> and "
        "<audio_event>Chainsaw,(0 10)</audio_event>"
    )
    assert rec.reasoning is False and tally == {"plain": 1}


def test_train_without_dense_labels_is_skipped_and_counted_with_dense_labels_built():
    weak = [_record(None, None, vid=f"t{i:010d}", split="train") for i in range(3)]
    dense = _record([_event("Dog", 0, 5)], [_event("Dog", 0, 5)], vid="tdense00001", split="train")
    tally: Counter[str] = Counter()
    built = build_avvp([*weak, dense], {}, None, True, random.Random(0), tally)
    assert [r.id for r in built] == ["avvp/train/tdense00001_0_10"]
    assert tally == {"no_dense_labels": 3, "dense": 1}


def test_untaggable_name_and_off_grid_span_skip_only_that_video(caplog):
    bad_name = _record([_event("Dog; Cat", 0, 2)], [], vid="badname0001")
    off_grid = _record([_event("Dog", 5, 12)], [], vid="offgrid0001")
    tally: Counter[str] = Counter()
    built = build_avvp([bad_name, off_grid, _chainsaw()], {}, None, True, random.Random(0), tally)
    assert [r.video_id for r in built] == ["6aV6c8mY0lg"]
    assert tally == {"skipped": 2, "dense": 1}
    assert "cannot be tagged" in caplog.text and "off the 0..10 s grid" in caplog.text


def test_released_target_used_when_it_marks_the_same_seconds(tmp_path):
    # written differently (split runs, other order) but the same ground truth: used verbatim
    same = "A chainsaw. <visual_event>Chainsaw,(3 5)(5 6)(0 1)(9 10)</visual_event> <audio_event>Chainsaw,(0 10)</audio_event>"
    (tmp_path / "6aV6c8mY0lg_0_10.txt").write_text(same + "\n", encoding="utf-8")
    wrong = "<visual_event>Dog,(0 10)</visual_event> and <audio_event>Dog,(0 10)</audio_event>"
    (tmp_path / "mixedvideo1_0_10.txt").write_text(wrong, encoding="utf-8")
    tally: Counter[str] = Counter()
    chainsaw, mixed = build_avvp([_chainsaw(), _mixed()], {}, tmp_path, True, random.Random(0), tally)
    assert chainsaw.target == same and chainsaw.reasoning
    assert "Dog,(0 10)" not in mixed.target and parse_answer(mixed.target) == AvvpLabel.from_dict(mixed.label)
    assert tally == {"released": 1, "released_mismatched": 1, "dense": 1}
    (plain,) = build_avvp([_chainsaw()], {}, tmp_path, False, random.Random(0))
    assert plain.target.startswith("The visual and audio events are:")  # w/o ERP ignores released files
