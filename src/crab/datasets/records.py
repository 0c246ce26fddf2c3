"""Typed records read from the native dataset layouts, and the rejections a reader reports.

Readers (``crab.datasets.ave``, ``crab.datasets.music_avqa``, ``crab.datasets.valor``) parse annotation
files *syntactically* into these records: field counts, integer fields, JSON shapes. Rows that cannot be
parsed become :class:`Rejection` s (file, line, reason) instead of exceptions, so a batch stage can
quarantine them and go on. Semantic checks (vocabulary, ranges, media decodability) are the quality
gates' job (``crab.quality``). Paths in records are as found on disk (relative to the working directory
when the dataset root is relative).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Literal, TypeVar

__all__ = ["AveRecord", "AvqaRecord", "ReadResult", "Rejection", "Split", "ValorRecord"]

Split = Literal["train", "val", "test"]


@dataclass(frozen=True)
class Rejection:
    """An annotation item that could not be used, and why.

    Attributes:
        dataset: dataset name (``"ave"``, ``"music_avqa"``, ``"valor"``).
        item_id: the item's id if it could be read, else ``""``.
        source: where it came from, ``"<file>:<line>"`` for text files, ``"<file>[<index>]"`` for JSON arrays.
        reason: one line saying what is wrong.
    """

    dataset: str
    item_id: str
    source: str
    reason: str


@dataclass(frozen=True)
class AveRecord:
    """One row of AVE's ``Category&VideoID&Quality&StartTime&EndTime`` files.

    ``item_id`` is ``"{video_id}_{start_s}_{end_s}"``: AVE has multi-event videos (one row per event),
    so the video id alone is not a row key.
    """

    item_id: str
    video_id: str
    category: str
    quality: str
    start_s: int
    end_s: int
    split: Split
    video_path: Path
    source: str


@dataclass(frozen=True)
class AvqaRecord:
    """One MUSIC-AVQA question (``avqa-{split}.json`` entry).

    Attributes:
        question_type: the parsed ``type`` string, e.g. ``("Audio-Visual", "Temporal")``.
        question_content: the template with ``<Object>``-style placeholders, verbatim.
        templ_values: the placeholder values, in placeholder order.
        question: the filled question text (Crab's rule, crab-reference section 4.1).
        answer: the ``anser`` field.
    """

    item_id: str
    question_id: int
    video_id: str
    question_type: tuple[str, str]
    question_content: str
    templ_values: tuple[str, ...]
    question: str
    answer: str
    split: Split
    video_path: Path
    source: str


@dataclass(frozen=True)
class ValorRecord:
    """One captioned clip in the VALOR layout (``{split}_samples.json``: ``video_id``, ``desc``)."""

    item_id: str
    video_id: str
    caption: str
    split: Split
    video_path: Path
    source: str


R = TypeVar("R")


@dataclass
class ReadResult(Generic[R]):
    """What a reader returns: the parsed records and the items it had to reject."""

    records: list[R] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
