"""The inputs of ``crab infer``: one validated request per clip, and batch files like Crab's ``example.json``.

A request is a task (``ave``, ``avvp``, ``avqa``, ``arig``, ``s4`` or ``ms3``), a video (ARIG: the frame, an image
or a clip's middle frame), its audio (by default the video's own track) and, for AVQA, a question; for S4 / MS3,
the second whose frame to segment (default 1). Crab's quick start reads ``data/example.json``, a list of objects with ``task``,
``video_path``, ``audio_path`` and ``question`` (crab-reference section 6); a batch file here is the same
list, with ``video`` / ``audio`` accepted as shorter spellings. Paths are used as given (relative to the
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
from crab.tasks import NUM_AVS_OBJECT_FRAMES, TASKS, Task

__all__ = ["INFER_TASKS", "InferRequest", "read_batch"]

#: The tasks the pipeline trains and scores today, so the ones ``crab infer`` answers (S4 / MS3 with a mask).
INFER_TASKS: tuple[Task, ...] = (Task.AVE, Task.AVVP, Task.AVQA, Task.ARIG, Task.S4, Task.MS3)
#: Batch-entry keys: ours, and Crab's ``example.json`` spelling of the media keys.
_ENTRY_KEYS = frozenset({"task", "video", "video_path", "audio", "audio_path", "question", "second"})


@dataclass(frozen=True)
class InferRequest:
    """One input: a task, a video, its audio and, for AVQA, a question; for S4 / MS3 the second to segment.

    Build it with :meth:`create`. A mask task's video is an mp4 (its five frames sampled as AVSBench's one per
    second of a 5-s clip) or an AVSBench frame folder (then the audio is a separate file).
    """

    task: Task
    video: str
    audio: str
    question: str | None = None
    second: int | None = None  # S4 / MS3: which second's frame to segment, 1-based (the prompt's "{nth}")

    @classmethod
    def create(
        cls, task: str, video: str, audio: str | None = None, question: str | None = None, second: int | None = None
    ) -> InferRequest:
        """A validated request; the audio defaults to the video, the question is whitespace-normalised, a mask
        task's second defaults to 1.

        Raises:
            CrabError: unknown or unsupported task, empty paths, AVQA without a question or AVE with one, a
                second outside 1..5 or given to a task without masks, a frame folder without a separate audio.
        """
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
        if TASKS[Task(task)].masks:
            second = 1 if second is None else second
            if isinstance(second, bool) or not isinstance(second, int) or not 1 <= second <= NUM_AVS_OBJECT_FRAMES:
                raise CrabError(
                    f"task {task}: the second must be an integer in 1..{NUM_AVS_OBJECT_FRAMES}, got {second!r}"
                )
            if Path(video).is_dir() and not audio:
                raise CrabError(f'task {task}: {video} is a frame folder; give its audio file (--audio / "audio")')
        elif second is not None:
            raise CrabError(f"task {task} takes no second (only the mask tasks: s4, ms3)")
        return cls(Task(task), video, audio or video, question, second)

    def instruction(self) -> str:
        """The task's canonical instruction (placeholders included), with the question filled in."""
        spec = TASKS[self.task]
        if self.second is not None:
            return spec.instruction(nth=nth_second(self.second - 1))
        return spec.instruction(question=self.question) if self.question else spec.instruction()

    def inputs(self) -> dict[str, str | int | None]:
        """The inputs, for the output record (``second`` only for a mask task)."""
        inputs: dict[str, str | int | None] = {"video": self.video, "audio": self.audio, "question": self.question}
        if self.second is not None:
            inputs["second"] = self.second
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
        raise DataError(path, "expected a non-empty JSON list of {task, video, audio?, question?, second?} objects")
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
    for ours, crabs in (("video", "video_path"), ("audio", "audio_path")):
        if ours in entry and crabs in entry:
            raise CrabError(f'both "{ours}" and "{crabs}"; give one')
    video = entry.get("video", entry.get("video_path"))
    if video is None:
        raise CrabError('no "video" (or "video_path")')
    return InferRequest.create(
        entry["task"], video, entry.get("audio", entry.get("audio_path")), entry.get("question"), entry.get("second")
    )
