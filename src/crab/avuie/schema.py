"""The AV-UIE record: one instruction-tuning example, and its JSONL files.

AV-UIE (the paper's audio-visual unified instruction-tuning data, section 3) pairs a task's canonical
instruction with a target answer that carries an explicit reasoning process (ERP). ``avuie_build`` writes
``data/avuie/<task>/<split>.jsonl``; training, ``validate_avuie`` and evaluation read it back with
:func:`read_jsonl`.

Schema (one JSON object per line, keys sorted, ``ensure_ascii=False``, lines sorted by ``id``):

``id`` (str)
    ``"<task>/<split>/<item_id>"``, unique across the whole AV-UIE set.
``task`` (str)
    a task of ``crab.tasks.TASKS`` (``"ave"``, ``"avvp"``, ``"avqa"``, ``"s4"``, ``"ms3"``, ``"avcap"``).
``split`` (str)
    ``"train"``, ``"val"`` or ``"test"``.
``dataset`` (str)
    the raw dataset (``TASKS[task].dataset``): ``"ave"``, ``"llp"``, ``"music_avqa"``, ``"avsbench"`` or ``"valor"``.
``item_id``, ``source`` (str)
    the raw record's id and its annotation row (``"<file>:<line>"`` or ``"<file>[<index>]"``), for
    traceability back to the raw data and to the quarantine report.
``video_id`` (str)
    the clip's id (media file stem).
``media`` (object)
    ``{"video": path, "audio": path}`` as the reader gave them (relative to the repository root with
    the default params); audio is the same mp4 when the clip carries its own audio track. For S4 / MS3
    ``video`` is the clip's frame folder (AVSBench's PNG frames) and ``audio`` its wav; ARIG has
    ``{"image": path, "audio": path}`` instead (one frame, the clip's wav), SEG ``{"image": path}`` (an image, no
    audio: the mask decoder's pre-training).
``instruction`` (str)
    the task's ONE canonical prompt (``crab.tasks.TASKS[task].instruction(...)``), placeholders included.
``target`` (str)
    the answer text, with or without the reasoning process.
``reasoning`` (bool)
    whether ``target`` carries a reasoning process.
``label`` (object)
    the structured label for scoring: AVE ``{"event", "start", "end"}`` (AVE category verbatim,
    interval ``[start, end)`` on the 1 s grid); AVQA ``{"answer", "question", "question_type",
    "question_id"}``; AVCAP ``{"caption"}``; S4 / MS3 ``{"frame", "mask", "objects"}`` (0-based labelled
    frame, its ground-truth PNG, the S4 categories seen and heard then or null; :mod:`crab.avuie.avs`).

Importing Crab's released AV-UIE annotations (dataset-layouts.md section 7): Crab's explicit-reasoning
answers are per-sample text files, ``converted_label/{question_id}.txt`` for MUSIC-AVQA and
``converted_label/{vid}.txt`` for AVE. To use them, copy the ``converted_label/`` folder into the dataset
root next to the native annotations (``data/raw/music_avqa/converted_label/``,
``data/raw/ave/converted_label/`` for the default params; version it with ``dvc add`` like the rest of
``data/raw``) and run ``crab avuie_build`` (or ``dvc repro``). With ``avuie.use_reasoning: true`` the
builder then takes a file's text verbatim as the target (trailing whitespace removed, since Crab's files
may end with a newline) instead of generating a reasoning process, provided its tagged answer parses to
the annotation's label. A file whose tags do not match (e.g. AVE's one file per video for a video with
several annotated events) is not used for that item: the item gets a generated target and is counted in
``stats.json`` under ``tasks.<task>.targets.released_mismatched`` (``released`` counts the files used).
Crab's JSON sample lists are not needed: the native annotations carry the same labels (to train on the lists
themselves, import them with :mod:`crab.avuie.released`). With
``use_reasoning: false`` the released files are ignored. Note that MUSIC-AVQA's real annotations have no
scenes, so without released files its targets are the bare ``<answer> x </answer>`` tag.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from crab.errors import DataError

__all__ = ["AvuieRecord", "make_id", "media_paths", "read_jsonl", "read_released_target", "write_jsonl"]


def make_id(task: str, split: str, item_id: str) -> str:
    """The record id ``"<task>/<split>/<item_id>"``."""
    return f"{task}/{split}/{item_id}"


def media_paths(video_path: Path) -> dict[str, str]:
    """The ``media`` field for a clip whose mp4 carries its own audio track (all our readers' layouts)."""
    return {"video": video_path.as_posix(), "audio": video_path.as_posix()}


def read_released_target(released_dir: Path | None, key: str) -> str | None:
    """The text of Crab's released ``converted_label/{key}.txt``, or None if there is no such file.

    The text is used verbatim except for trailing whitespace (see the module docstring).
    """
    if released_dir is None:
        return None
    path = released_dir / f"{key}.txt"
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8").rstrip()


@dataclass(frozen=True)
class AvuieRecord:
    """One AV-UIE example; fields as in the module docstring."""

    id: str
    task: str
    split: str
    dataset: str
    item_id: str
    source: str
    video_id: str
    media: dict[str, str]
    instruction: str
    target: str
    reasoning: bool
    label: dict[str, Any]

    @classmethod
    def from_raw(
        cls,
        task: str,
        dataset: str,
        raw: Any,
        *,
        instruction: str,
        target: str,
        reasoning: bool,
        label: dict[str, Any],
    ) -> AvuieRecord:
        """The record for one raw item (an ``AveRecord``, ``AvqaRecord`` or ``ValorRecord``): id, split,
        provenance and media come from ``raw``; the rest is the task's."""
        return cls(
            id=make_id(task, raw.split, raw.item_id),
            task=str(task),
            split=raw.split,
            dataset=dataset,
            item_id=raw.item_id,
            source=raw.source,
            video_id=raw.video_id,
            media=media_paths(raw.video_path),
            instruction=instruction,
            target=target,
            reasoning=reasoning,
            label=label,
        )

    def to_json(self) -> str:
        """One JSON line (no newline), keys sorted: byte-deterministic."""
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> AvuieRecord:
        """Parse one JSONL line strictly.

        Raises:
            ValueError: not JSON, not an object, a missing or unknown key, or a value of the wrong type.
        """
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"not valid JSON ({err.msg})") from None
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        expected = {f.name for f in fields(cls)}
        missing = sorted(expected - raw.keys())
        unknown = sorted(raw.keys() - expected)
        if missing:
            raise ValueError(f"missing key {missing[0]!r}")
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}")
        for name in ("id", "task", "split", "dataset", "item_id", "source", "video_id", "instruction", "target"):
            if not isinstance(raw[name], str):
                raise ValueError(f"{name}: expected a string, got {type(raw[name]).__name__}")
        if not isinstance(raw["reasoning"], bool):
            raise ValueError(f"reasoning: expected true/false, got {type(raw['reasoning']).__name__}")
        media = raw["media"]
        if not (isinstance(media, dict) and set(media) in ({"video", "audio"}, {"image", "audio"}, {"image"})):
            raise ValueError(
                'media: expected {"video": path, "audio": path}, {"image": path, "audio": path} or {"image": path}'
            )
        if not all(isinstance(v, str) for v in media.values()):
            raise ValueError("media: paths must be strings")
        if not isinstance(raw["label"], dict):
            raise ValueError("label: expected an object")
        return cls(**raw)


def write_jsonl(path: Path, records: Iterable[AvuieRecord]) -> int:
    """Write records to ``path`` in the given order, one JSON line each (UTF-8, ``\\n`` endings).

    Returns:
        The number of records written.
    """
    lines = [r.to_json() + "\n" for r in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        f.writelines(lines)
    return len(lines)


def read_jsonl(path: Path) -> list[AvuieRecord]:
    """Read an AV-UIE JSONL file (blank lines are skipped).

    Raises:
        DataError: the file is missing, or a line does not match the schema (the reason names the line).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(AvuieRecord.from_json(line))
        except ValueError as err:
            raise DataError(path, f"line {number}: {err}") from None
    return records
