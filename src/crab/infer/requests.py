"""The inputs of ``crab infer``: one validated request per clip, and batch files like Crab's ``example.json``.

A request is a task (``ave``, ``avvp``, ``avqa``, ``arig``, ``s4``, ``ms3``, ``avss`` or ``ref_avs``), a video (ARIG: the
frame, an image or a clip's middle frame), its audio (by default the video's own track) and, for AVQA, a question;
for Ref-AVS, a referring expression; for the mask tasks, the second whose frame to segment (default 1). Crab's
quick start reads ``data/example.json``, a list of objects with ``task``, ``video_path``, ``audio_path``,
``question`` and ``exp`` (crab-reference section 6); a batch file here is the same list, with ``video`` /
``audio`` / ``expression`` accepted as the spellings of the CLI. Paths are used as given (relative to the
working directory). Entries are checked strictly (unknown keys are errors, so a typo such as ``audo`` cannot
silently fall back to the video's track); a bad entry becomes an error naming ``<file>[<index>]`` and the
reason, and the other entries still run. This module imports no torch, so validation is instant.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crab.errors import CrabError, DataError
from crab.avuie.avs import nth_second
from crab.avuie.ref_avs import phrase
from crab.tasks import NUM_AVS_OBJECT_FRAMES, NUM_AVSS_FRAMES, NUM_REF_AVS_FRAMES, TASKS, Task

__all__ = ["INFER_TASKS", "MASK_TASK_FRAMES", "InferRequest", "read_batch"]

#: The tasks the pipeline trains and scores today, so the ones ``crab infer`` answers (the mask tasks with a mask).
INFER_TASKS: tuple[Task, ...] = (Task.AVE, Task.AVVP, Task.AVQA, Task.ARIG, Task.S4, Task.MS3, Task.AVSS,
                                  Task.REF_AVS)  # fmt: skip
#: Frames of a mask task's clip, one per second: an AVSBench-object clip's 5, an AVSS or Ref-AVS clip's 10.
MASK_TASK_FRAMES: dict[Task, int] = {Task.S4: NUM_AVS_OBJECT_FRAMES, Task.MS3: NUM_AVS_OBJECT_FRAMES,
                                     Task.AVSS: NUM_AVSS_FRAMES, Task.REF_AVS: NUM_REF_AVS_FRAMES}  # fmt: skip
#: Batch-entry keys: ours, and Crab's ``example.json`` spellings of the media keys and of the expression.
_ENTRY_KEYS = frozenset({"task", "video", "video_path", "audio", "audio_path", "question", "second", "expression",
                         "exp"})  # fmt: skip


@dataclass(frozen=True)
class InferRequest:
    """One input: a task, a video, its audio and, for AVQA, a question; for Ref-AVS the expression; for the mask
    tasks the second to segment.

    Build it with :meth:`create`. A mask task's video is an mp4 (its frames sampled one per second: an AVSBench
    5-s clip's five, an AVSS or Ref-AVS 10-s clip's ten) or a frame folder (then the audio is a separate file).
    """

    task: Task
    video: str
    audio: str
    question: str | None = None
    second: int | None = None  # mask tasks: which second's frame to segment, 1-based (the prompt's "{nth}")
    expression: str | None = None  # Ref-AVS: what to segment ("The object making the loudest sound.")

    @classmethod
    def create(
        cls,
        task: str,
        video: str,
        audio: str | None = None,
        question: str | None = None,
        second: int | None = None,
        expression: str | None = None,
    ) -> InferRequest:
        """A validated request; the audio defaults to the video, the question and expression are
        whitespace-normalised, a mask task's second defaults to 1.

        Raises:
            CrabError: unknown or unsupported task, empty paths, AVQA without a question or AVE with one, Ref-AVS
                without an expression or another task with one, a second outside the clip's seconds (1..5, AVSS and
                Ref-AVS 1..10) or given to a task without masks, a frame folder without a separate audio.
        """  # fmt: skip
        if task not in INFER_TASKS:
            raise CrabError(f"task {task!r} is not supported by crab infer (supported: {', '.join(INFER_TASKS)})")
        if not isinstance(video, str) or not video:
            raise CrabError("a video path is required")
        if audio is not None and (not isinstance(audio, str) or not audio):
            raise CrabError("the audio path must be a non-empty string")
        if question is not None and not isinstance(question, str):
            raise CrabError("the question must be a string")
        needs_question = "{question}" in TASKS[Task(task)].prompt
        question = " ".join(question.split()) if question else None
        if needs_question and not question:
            raise CrabError(f'task {task} needs a question (--question / "question")')
        if question and not needs_question:
            raise CrabError(f"task {task} takes no question")
        if expression is not None and not isinstance(expression, str):
            raise CrabError("the expression must be a string")
        needs_expression = "{expression}" in TASKS[Task(task)].prompt
        expression = " ".join(expression.split()) if expression else None
        if needs_expression and not (expression and expression.replace(".", "").strip()):
            raise CrabError(f'task {task} needs a referring expression (--expression / "expression")')
        if expression and not needs_expression:
            raise CrabError(f"task {task} takes no expression (only ref_avs)")
        if TASKS[Task(task)].masks:
            second = 1 if second is None else second
            last = MASK_TASK_FRAMES[Task(task)]
            if isinstance(second, bool) or not isinstance(second, int) or not 1 <= second <= last:
                raise CrabError(f"task {task}: the second must be an integer in 1..{last}, got {second!r}")
            if Path(video).is_dir() and not audio:
                raise CrabError(f'task {task}: {video} is a frame folder; give its audio file (--audio / "audio")')
        elif second is not None:
            raise CrabError(f"task {task} takes no second (only the mask tasks: {', '.join(MASK_TASK_FRAMES)})")
        return cls(Task(task), video, audio or video, question, second, expression)

    def instruction(self) -> str:
        """The task's canonical instruction (placeholders included), with the question or expression filled in."""
        spec = TASKS[self.task]
        fields: dict[str, str] = {}
        if self.second is not None:
            fields["nth"] = nth_second(self.second - 1)
        if self.expression is not None:
            fields["expression"] = phrase(self.expression)
        if self.question is not None:
            fields["question"] = self.question
        return spec.instruction(**fields)

    def inputs(self) -> dict[str, str | int | None]:
        """The inputs, for the output record (``second`` only for a mask task, ``expression`` only for Ref-AVS)."""
        inputs: dict[str, str | int | None] = {"video": self.video, "audio": self.audio, "question": self.question}
        if self.second is not None:
            inputs["second"] = self.second
        if self.expression is not None:
            inputs["expression"] = self.expression
        return inputs


def read_batch(path: str | Path) -> list[InferRequest | CrabError]:
    """Read a batch file: a JSON list of ``{task, video | video_path, audio | audio_path?, question?}``.

    Args:
        path: the JSON file.

    Returns:
        Per entry, in order: its :class:`InferRequest`, or a :class:`CrabError` ``"<file>[<index>]: <reason>"``.

    Raises:
        DataError: the file is missing, is not JSON, or is not a non-empty list.
    """
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(path, f"not a JSON file ({err})") from None
    if not isinstance(entries, list) or not entries:
        raise DataError(
            path, "expected a non-empty JSON list of {task, video, audio?, question?, second?, expression?} objects"
        )
    requests: list[InferRequest | CrabError] = []
    for index, entry in enumerate(entries):
        try:
            requests.append(_request_from_entry(entry))
        except CrabError as err:
            requests.append(CrabError(f"{path}[{index}]: {err}"))
    return requests


def _request_from_entry(entry: Any) -> InferRequest:
    if not isinstance(entry, Mapping):
        raise CrabError(f"expected an object, got {type(entry).__name__}")
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise CrabError(f"unknown keys {unknown} (allowed: {', '.join(sorted(_ENTRY_KEYS))})")
    if "task" not in entry:
        raise CrabError('no "task"')
    for ours, crabs in (("video", "video_path"), ("audio", "audio_path"), ("expression", "exp")):
        if ours in entry and crabs in entry:
            raise CrabError(f'both "{ours}" and "{crabs}"; give one')
    video = entry.get("video", entry.get("video_path"))
    if video is None:
        raise CrabError('no "video" (or "video_path")')
    return InferRequest.create(
        entry["task"], video, entry.get("audio", entry.get("audio_path")), entry.get("question"), entry.get("second"),
        entry.get("expression", entry.get("exp")),
    )  # fmt: skip
