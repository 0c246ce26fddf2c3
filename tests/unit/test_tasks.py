"""Tests for ``crab.tasks``: canonical names, the one prompt per task, lazy answer formats."""

from __future__ import annotations

import subprocess
import sys

import pytest

from crab.tasks import AUDIO_PROMPT, TASKS, VIDEO_PROMPT, Task

AV = "This is a video:\n<video_start><video><video_end>\nThis is an audio:\n<audio_start><audio><audio_end>\n"


def test_task_names_are_the_canonical_ten():
    assert [t.value for t in Task] == ["ave", "avvp", "avqa", "arig", "s4", "ms3", "avss", "ref_avs", "avcap", "seg"]
    assert Task("ref_avs") is Task.REF_AVS
    assert f"{Task.AVQA}" == "avqa"


def test_table_holds_the_tasks_built_so_far():
    assert set(TASKS) == set(Task)
    datasets = {
        "ave": "ave",
        "avvp": "llp",
        "avqa": "music_avqa",
        "arig": "avsbench",
        "s4": "avsbench",
        "ms3": "avsbench",
        "avss": "avss",
        "ref_avs": "ref_avs",
        "avcap": "valor",
        "seg": "lvis",
    }
    assert {t: s.dataset for t, s in TASKS.items()} == datasets
    assert all(spec.task is task for task, spec in TASKS.items())
    cutting = {"ave": "segments", "avvp": "segments", "avqa": "windows", "arig": "segments", "s4": "segments",
               "ms3": "segments", "avss": "segments", "ref_avs": "segments", "avcap": "segments",
               "seg": "segments"}  # fmt: skip
    assert {t: s.audio_cutting for t, s in TASKS.items()} == cutting
    assert {t for t, s in TASKS.items() if s.visual == "image"} == {"arig", "seg"}  # the others read video frames
    # AVSBench fixes one 1-s audio segment per frame; the others follow media.num_audio_segments
    # (ARIG: the S4 clip's five, so it shares S4's audio features)
    assert {t: s.num_audio_segments for t, s in TASKS.items() if s.num_audio_segments} == {"arig": 5, "s4": 5, "ms3": 5}


def test_prompts_are_the_canonical_wordings():
    assert VIDEO_PROMPT + AUDIO_PROMPT == AV
    assert TASKS[Task.AVE].instruction() == AV + "Please describe the events and time range that occurred in the video."
    assert TASKS[Task.AVCAP].instruction() == AV + "Please describe this video and audio."
    assert TASKS[Task.ARIG].instruction() == (
        "This is an image:\n<image_start><image><image_end>\n" + AUDIO_PROMPT + "Please recognize the category of "
        "object that makes the sound and then output its location coordinates."
    )
    question = "Which {brace} is the <LR> instrument?"  # braces in the value are not format fields
    assert TASKS[Task.AVQA].instruction(question=question) == AV + "Please answer this question: " + question
    with pytest.raises(KeyError):
        TASKS[Task.AVQA].instruction()
    avs = (
        AV + "Please recognize the category of object making sound in the video, and then segment out the object "
        "that makes the sound at the third second of the video."
    )
    assert TASKS[Task.S4].instruction(nth="third") == TASKS[Task.MS3].instruction(nth="third") == avs


@pytest.mark.parametrize(
    ("task", "text", "expected_repr"),
    [
        ("ave", "x <event> Bark </event> y <range> 2,6 </range>.", "AveLabel(event='Bark', start=2, end=6)"),
        ("avqa", "So the answer is <answer> two </answer>.", "AvqaLabel(answer='two')"),
        ("avcap", "  A dog barks.  ", "AvcapLabel(caption='A dog barks.')"),
    ],
)
def test_answer_format_resolves_and_round_trips(task, text, expected_repr):
    spec = TASKS[Task(task)]
    label = spec.parse_answer(text)
    assert repr(label) == expected_repr
    assert spec.parse_answer(spec.format_answer(label, None)) == label


def test_import_is_light():
    code = (
        "import sys, crab.tasks\n"
        "heavy = [m for m in sys.modules\n"
        "         if m.split('.')[0] in ('numpy', 'torch', 'av', 'yaml') or m.startswith('crab.')]\n"
        "assert heavy == ['crab.tasks'], heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_mask_heads_and_frame_counts():
    from crab.datasets.vocab_seg import AVSS_CLASSES
    from crab.tasks import AVSS_NUM_CLASSES

    heads = {t.value: s.mask_classes for t, s in TASKS.items() if s.masks}
    assert heads == {"s4": 1, "ms3": 1, "avss": AVSS_NUM_CLASSES, "ref_avs": 1, "seg": 1}
    assert AVSS_NUM_CLASSES == len(AVSS_CLASSES) == 71  # background + the 70 classes
    assert all(s.mask_classes == 1 for s in TASKS.values() if not s.masks)
