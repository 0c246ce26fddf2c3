"""The task table: Crab's tasks, their one canonical instruction and their answer format.

Crab (CVPR'25) solves these tasks with one set of weights; the canonical names are used everywhere
(params, file names, metric keys, dvc ``foreach`` items):

* ``ave``: AVE, audio-visual event localisation (which event is both seen and heard, and when).
* ``avvp``: AVVP, audio-visual video parsing (audio, visual and audio-visual events with time spans; LLP).
* ``avqa``: AVQA, audio-visual question answering (spatio-temporal reasoning on MUSIC-AVQA).
* ``arig``: ARIG, audio-referred image grounding (box of the sounding object in a frame).
* ``s4``: S4, single-sound-source segmentation (AVS, audio-visual segmentation, AVSBench v1s).
* ``ms3``: MS3, multiple-sound-source segmentation (AVS on AVSBench v1m).
* ``avss``: AVSS, audio-visual semantic segmentation (AVSBench v2).
* ``ref_avs``: Ref-AVS, referring audio-visual segmentation (segment the object a text refers to).
* ``avcap``: AV captioning on VALOR (used for pre-training / alignment).
* ``seg``: image segmentation of a named category (LVIS): the mask decoder's pre-training (crab-reference 3.4).

Other acronyms: AV-UIE, the paper's audio-visual unified instruction-tuning data; ERP, its explicit
reasoning process (answers that say what is seen and heard, where and when, before the tagged answer).

:data:`TASKS` maps every task to its :class:`TaskSpec`. Each spec
holds the ONE instruction used by training, evaluation and ``crab infer`` (Crab's scripts disagree between train, test and quick start, crab-reference section 7
item 5; we fix one wording per task, in the standard AV prompt of section 1.6).

This module is imported by the CLI, so it imports only the standard library at module level; the answer
formatters and parsers (``crab.avuie.<task>``) are resolved when first used, the way ``crab.stages``
resolves stage functions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "AUDIO_PROMPT",
    "AVSS_NUM_CLASSES",
    "DIRECT_ANSWER_REQUEST",
    "IMAGE_PROMPT",
    "NUM_AVSS_FRAMES",
    "NUM_AVS_OBJECT_FRAMES",
    "NUM_REF_AVS_FRAMES",
    "TASKS",
    "VIDEO_PROMPT",
    "AudioCutting",
    "Task",
    "TaskSpec",
]

#: ``{V}`` of crab-reference section 4: the video placeholder block that opens an AV instruction.
VIDEO_PROMPT = "This is a video:\n<video_start><video><video_end>\n"
#: ``{A}``: the audio placeholder block, after the video block.
AUDIO_PROMPT = "This is an audio:\n<audio_start><audio><audio_end>\n"
#: ``{I}``: the image placeholder block (ARIG: one frame), before the audio block.
IMAGE_PROMPT = "This is an image:\n<image_start><image><image_end>\n"

#: Appended to a task's instruction to ask for the answer without the reasoning process. Only the tiny profile's
#: pre-training uses it (``pretrain.direct_answers``): it aligns the projectors on direct answers, and the
#: tiny LLM learns both forms in its language phase, so the request, not the media, selects the form.
DIRECT_ANSWER_REQUEST = " Answer directly, without the reasoning."

#: How a clip's audio is cut for the audio encoder: ``segments`` = N equal segments covering the clip
#: (AVE, AVCAP, AVSBench); ``windows`` = fixed-length windows spread over the clip (AVQA; crab-reference 1.4).
AudioCutting = Literal["segments", "windows"]

#: Frames of an AVSBench-object clip (S4, MS3), one per second; each has its 1-s audio segment.
NUM_AVS_OBJECT_FRAMES = 5

#: Classes of AVSBench-semantic's label maps, background (0) included: the AVSS decoder head's size.
AVSS_NUM_CLASSES = 71

#: Frames of an AVSBench-semantic v2 clip (10 s), one per second, each with its label map.
NUM_AVSS_FRAMES = 10

#: Frames of a Ref-AVS clip (10 s), one per second; the audio is cut into ``media.num_audio_segments`` segments.
NUM_REF_AVS_FRAMES = 10

#: The Ref-AVS request: Crab's training prompt (crab-reference 4.6), ``{expression}`` from
#: ``crab.avuie.ref_avs.phrase`` (Crab's test and quick-start prompts say it otherwise; one wording here).
_REF_AVS_REQUEST = "Please segment out {expression} at the {nth} second in the video."

#: The LVIS request of Crab's segmentation pre-training (crab-reference 3.4), its grammar mended ("that
#: corresponding to"); ``{name}`` and ``{definition}`` are the category's (``crab.avuie.seg_build``).
_SEG_REQUEST = "Please segment out the object that corresponds to the {name}, {definition}, in the image."
#: The AVSBench request of crab-reference 4.5 (``{nth}`` = "first" ... "fifth", from ``crab.avuie.avs.nth_second``).
_AVS_REQUEST = (
    "Please recognize the category of object making sound in the video, and then segment out the object "
    "that makes the sound at the {nth} second of the video."
)


class Task(StrEnum):
    """Canonical task names (see the module docstring for the acronyms)."""

    AVE = "ave"
    AVVP = "avvp"
    AVQA = "avqa"
    ARIG = "arig"
    S4 = "s4"
    MS3 = "ms3"
    AVSS = "avss"
    REF_AVS = "ref_avs"
    AVCAP = "avcap"
    SEG = "seg"


@dataclass(frozen=True)
class TaskSpec:
    """Everything that defines one task for data building, training, evaluation and inference.

    Attributes:
        task: the task.
        dataset: the raw dataset it is built from (a ``params.datasets`` key).
        description: one line for humans (CLI help, reports).
        prompt: the canonical instruction, placeholders included; ``str.format`` fields (AVQA's
            ``{question}``) are filled per item with :meth:`instruction`.
        audio_cutting: how the audio is cut for the encoder (:data:`AudioCutting`).
        answer_module: module defining the task's label dataclass, ``format_answer(label,
            reasoning_text)`` and ``parse_answer(text)``; imported on first use.
        num_audio_segments: segments of a ``"segments"`` cut when the dataset fixes them (AVSBench: one 1-s
            clip per frame, 5); None = ``media.num_audio_segments``.
        masks: the answer ends with the six mask tokens and the segmentation decoder reads the frames' CLIP
            levels (the ``features`` stage stores them for these tasks only).
        mask_classes: classes of the decoder head a mask task needs: 1 (binary: S4, MS3, Ref-AVS) or 71 (AVSS,
            background included). A decoder has one head, so tasks of different heads train in different stages
            (``finetune_avs``, ``finetune_avss``), as Crab trained and released two AVS models.
    """

    task: Task
    dataset: str
    description: str
    prompt: str
    audio_cutting: AudioCutting
    answer_module: str
    num_audio_segments: int | None = None
    masks: bool = False
    mask_classes: int = 1

    def instruction(self, **fields: str) -> str:
        """The prompt with its per-item fields filled, e.g. ``instruction(question="Where is ...?")``.

        Raises:
            KeyError: a field the prompt needs is not given.
        """
        return self.prompt.format(**fields)

    @property
    def visual(self) -> Literal["video", "image"]:
        """The visual input the prompt asks for: ``"image"`` (one frame, ARIG) or ``"video"`` (frames)."""
        return "image" if "<image>" in self.prompt else "video"

    @property
    def label_from_dict(self) -> Callable[[dict[str, Any]], Any]:
        """``label_from_dict(record.label) -> label``: a mask task's label object from its JSON form (S4 / MS3
        :class:`crab.avuie.avs.AvsLabel`, Ref-AVS :class:`crab.avuie.ref_avs.RefAvsLabel`).

        Raises:
            AttributeError: the task's answer module has no such function (a text task: its labels are parsed
                from the target).
        """
        return importlib.import_module(self.answer_module).label_from_dict

    @property
    def format_answer(self) -> Callable[..., str]:
        """``format_answer(label, reasoning_text | None) -> str``: the target text for a label."""
        return importlib.import_module(self.answer_module).format_answer

    @property
    def parse_answer(self) -> Callable[[str], Any]:
        """``parse_answer(text) -> label | None``: the label in a generated or target text, if any."""
        return importlib.import_module(self.answer_module).parse_answer


def _avs_spec(task: Task, description: str) -> TaskSpec:
    """S4 and MS3 share everything but the description: AVSBench-object clips, 5 frames, 5 audio segments, masks."""
    return TaskSpec(
        task=task,
        dataset="avsbench",
        description=description,
        prompt=VIDEO_PROMPT + AUDIO_PROMPT + _AVS_REQUEST,
        audio_cutting="segments",
        answer_module="crab.avuie.avs",
        num_audio_segments=NUM_AVS_OBJECT_FRAMES,
        masks=True,
    )


TASKS: dict[Task, TaskSpec] = {
    spec.task: spec
    for spec in (
        TaskSpec(
            task=Task.AVE,
            dataset="ave",
            description="AVE: name the event that is both seen and heard, and its time range in seconds.",
            prompt=VIDEO_PROMPT
            + AUDIO_PROMPT
            + "Please describe the events and time range that occurred in the video.",
            audio_cutting="segments",
            answer_module="crab.avuie.ave",
        ),
        TaskSpec(
            task=Task.AVVP,
            dataset="llp",
            description="AVVP: list the events heard and the events seen, each with its seconds (LLP).",
            # Crab's wording (crab-reference 4.3), plus one sentence asking for the two modalities separately
            # on the 1-s grid, which the answer (crab.avuie.avvp) uses.
            prompt=VIDEO_PROMPT
            + AUDIO_PROMPT
            + "Please determine the events that occur based on the visual and audio information in the video, "
            "as well as the start and end times of these events. List the audio events and the visual events "
            "separately, with times in whole seconds on the video's 1-second grid.",
            audio_cutting="segments",
            answer_module="crab.avuie.avvp",
        ),
        TaskSpec(
            task=Task.AVQA,
            dataset="music_avqa",
            description="AVQA: answer a spatio-temporal question about a music performance (MUSIC-AVQA).",
            prompt=VIDEO_PROMPT + AUDIO_PROMPT + "Please answer this question: {question}",
            audio_cutting="windows",
            answer_module="crab.avuie.avqa",
        ),
        TaskSpec(
            task=Task.ARIG,
            dataset="avsbench",
            description="ARIG: the box of the object making the sound in a frame (AVSBench single source).",
            # Crab's train wording ("its location coordinates"; its test prompt says "the location coordinates")
            prompt=IMAGE_PROMPT
            + AUDIO_PROMPT
            + "Please recognize the category of object that makes the sound and then output its location coordinates.",
            audio_cutting="segments",
            answer_module="crab.avuie.arig",
            num_audio_segments=NUM_AVS_OBJECT_FRAMES,  # the S4 clip's five 1-s segments (its audio features, shared)
        ),
        _avs_spec(Task.S4, "S4: segment the one object making the sound in a frame (AVSBench single source)."),
        # Crab's S4 wording for MS3 too (its MS3 test prompt always says "third second": crab-reference 4.5)
        _avs_spec(Task.MS3, "MS3: segment every object making the sound in a frame (AVSBench multiple sources)."),
        TaskSpec(
            task=Task.AVSS,
            dataset="avss",
            description="AVSS: the class of every pixel of the objects making the sound in a frame (AVSBench v2).",
            # Crab's AVS wording (its AVSS test prompt differs: crab-reference 4.5); 10-s clips, one 1-s audio
            # segment per frame (media.num_audio_segments)
            prompt=VIDEO_PROMPT + AUDIO_PROMPT + _AVS_REQUEST,
            audio_cutting="segments",
            answer_module="crab.avuie.avs",
            masks=True,
            mask_classes=AVSS_NUM_CLASSES,
        ),
        TaskSpec(
            task=Task.REF_AVS,
            dataset="ref_avs",
            description="Ref-AVS: segment the object a referring expression names, by sound, sight or both.",
            prompt=VIDEO_PROMPT + AUDIO_PROMPT + _REF_AVS_REQUEST,
            audio_cutting="segments",
            answer_module="crab.avuie.ref_avs",
            masks=True,
        ),
        TaskSpec(
            task=Task.SEG,
            dataset="lvis",
            description="SEG: segment the object of a named category in an image (LVIS; decoder pre-training).",
            prompt=IMAGE_PROMPT + _SEG_REQUEST,  # an image and no audio, as Crab's P3
            audio_cutting="segments",  # unused: no <audio>
            answer_module="crab.avuie.seg",
            masks=True,
        ),
        TaskSpec(
            task=Task.AVCAP,
            dataset="valor",
            description="AVCAP: describe the video and its audio in one caption (VALOR).",
            prompt=VIDEO_PROMPT + AUDIO_PROMPT + "Please describe this video and audio.",
            audio_cutting="segments",
            answer_module="crab.avuie.avcap",
        ),
    )
}
