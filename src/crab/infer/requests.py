"""The inputs of ``crab infer``: one validated request per clip, and batch files like Crab's ``example.json``.

A request is a task (``ave``, ``avvp`` or ``avqa``), a video, its audio (by default the video's own track) and, for
AVQA, a question. Crab's quick start reads ``data/example.json``, a list of objects with ``task``,
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
from crab.tasks import TASKS, Task

__all__ = ["INFER_TASKS", "InferRequest", "read_batch"]

#: The tasks ``finetune`` trains and ``evaluate`` scores today, so the ones ``crab infer`` answers.
INFER_TASKS: tuple[Task, ...] = (Task.AVE, Task.AVVP, Task.AVQA)
#: Batch-entry keys: ours, and Crab's ``example.json`` spelling of the media keys.
_ENTRY_KEYS = frozenset({"task", "video", "video_path", "audio", "audio_path", "question"})


@dataclass(frozen=True)
class InferRequest:
    """One input: a task, a video, its audio and, for AVQA, a question. Build it with :meth:`create`."""

    task: Task
    video: str
    audio: str
    question: str | None = None

    @classmethod
    def create(cls, task: str, video: str, audio: str | None = None, question: str | None = None) -> InferRequest:
        """A validated request; the audio defaults to the video, the question is whitespace-normalised.

        Raises:
            CrabError: unknown or unsupported task, empty paths, AVQA without a question or AVE with one.
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
        return cls(Task(task), video, audio or video, question)

    def instruction(self) -> str:
        """The task's canonical instruction (placeholders included), with the question filled in."""
        spec = TASKS[self.task]
        return spec.instruction(question=self.question) if self.question else spec.instruction()

    def inputs(self) -> dict[str, str | None]:
        """The inputs, for the output record."""
        return {"video": self.video, "audio": self.audio, "question": self.question}


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
        raise DataError(path, "expected a non-empty JSON list of {task, video, audio?, question?} objects")
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
    return InferRequest.create(entry["task"], video, entry.get("audio", entry.get("audio_path")), entry.get("question"))
