"""Reader of MUSIC-AVQA's native question files (Li et al., CVPR'22), and Crab's question-filling rule.

Layout (dataset-layouts.md section 3, from GeWu-Lab/MUSIC-AVQA ``data/json*/``, ``README.md`` and
``net_grd_avst/dataloader_avst.py``)::

    data/
    ├── json_update/avqa-{train,val,test}.json   # corrected release (preferred, as Crab uses it)
    ├── json/avqa-{train,val,test}.json          # original release (fallback)
    └── video/{video_id}.mp4                     # README's flat folder; Crab's tree calls it video_data/

Format facts and where they were checked (3.2, 3.3, 3.6, verified on the val/test files):

- a file is one JSON array of objects with the keys ``video_id`` (str), ``question_id`` (int),
  ``type`` (a **string** holding a 2-string list, ``"[\\"Audio\\", \\"Counting\\"]"``, space after the
  comma), ``question_content`` (template with ``<Object>``-style placeholders), ``templ_values`` (a
  **string** holding a list of strings), ``question_deleted`` (always 0) and ``anser`` (sic);
- both string-lists are parsed with :func:`ast.literal_eval`, as Crab's ``dataset/AVQA.py`` does, so
  JSON (double-quoted) and Python (single-quoted, crab-reference 4.1) spellings both work;
- ``len(templ_values)`` equals the number of placeholders (verified), so a mismatch is a broken row;
- templates keep their quirks: a full-width ``？`` (U+FF1F) and two trailing spaces.

:func:`fill_question` is Crab's rule (GeWu-Lab/Crab ``dataset/AVQA.py``; dataset-layouts 3.3), the one
that produced the questions Crab trained on. It lives here so the readers do not depend on
``crab.synth``; the AV-Synth writer imports it from here.

The reader parses; it does not check vocabularies, duplicates or media (``crab.quality`` does).
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crab.datasets.records import AvqaRecord, ReadResult, Rejection, Split
from crab.datasets.jsonarray import load_json_array
from crab.errors import DataError

__all__ = ["AVQA_SPLITS", "annotation_path", "count_placeholders", "fill_question", "read_music_avqa"]

logger = logging.getLogger(__name__)

AVQA_SPLITS: tuple[str, ...] = ("train", "val", "test")

_FULLWIDTH_QUESTION_MARK = "\uff1f"
#: key -> JSON type it must have (``question_deleted`` is optional; a deleted question is rejected).
_REQUIRED: dict[str, type] = {
    "video_id": str,
    "question_id": int,
    "type": str,
    "question_content": str,
    "templ_values": str,
    "anser": str,
}


def _words(question_content: str) -> list[str]:
    return question_content.replace(_FULLWIDTH_QUESTION_MARK, "?").split(" ")


def count_placeholders(question_content: str) -> int:
    """Number of words that :func:`fill_question` replaces (words containing ``<``)."""
    return sum("<" in word for word in _words(question_content))


def fill_question(question_content: str, templ_values: Sequence[str]) -> str:
    """Fill a MUSIC-AVQA template the way Crab did (``dataset/AVQA.py``).

    Replace U+FF1F by ``?``, split on single spaces, replace each *word* containing ``<`` by the next
    value, join with single spaces and append ``?`` unless the text already ends with one. Hence
    ``"... <Object>?"`` loses its glued ``?`` and gets it back, and a template with a trailing space
    (``"Are there <Object> and <Object> sound? "``) becomes ``"... sound? ?"``: Crab's questions have
    exactly these quirks, so we keep them.

    Args:
        question_content: the template, verbatim.
        templ_values: one value per placeholder, in order.

    Returns:
        The question text.

    Raises:
        ValueError: the number of values differs from the number of placeholders (Crab would crash
            on too few and silently ignore extra ones).
    """
    words = _words(question_content)
    slots = [i for i, word in enumerate(words) if "<" in word]
    if len(slots) != len(templ_values):
        raise ValueError(
            f"templ_values has {len(templ_values)} value(s) for {len(slots)} placeholder(s) in {question_content!r}"
        )
    for slot, value in zip(slots, templ_values, strict=True):
        words[slot] = value
    question = " ".join(words)
    if not question.endswith("?"):
        question += "?"
    return question


def _string_list(key: str, text: str, length: int | None) -> tuple[tuple[str, ...] | None, str]:
    """Parse a string that holds a list of strings; return ``(values, "")`` or ``(None, reason)``."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None, f"{key} {text!r} is not a list literal"
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        return None, f"{key} {text!r} is not a list of strings"
    if length is not None and len(value) != length:
        return None, f"{key} {text!r} has {len(value)} item(s), expected {length}"
    return tuple(value), ""


def _key_problem(entry: dict[str, Any]) -> str:
    """Why an entry's keys or their JSON types are unusable ("" if they are fine)."""
    missing = [key for key in _REQUIRED if key not in entry]
    if missing:
        hint = " (found 'answer'; MUSIC-AVQA spells it 'anser')" if "anser" in missing and "answer" in entry else ""
        return f"missing key(s): {', '.join(missing)}{hint}"
    for key, kind in _REQUIRED.items():
        value = entry[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"{key} must be a JSON {'number (int)' if kind is int else 'string'}, got {type(value).__name__}"
    if entry.get("question_deleted", 0) != 0:
        return f"question_deleted is {entry['question_deleted']!r}"
    video_id = entry["video_id"]
    if not video_id or "/" in video_id or "\\" in video_id or video_id in {".", ".."}:
        return f"video_id {video_id!r} is not a file name"
    if not entry["anser"]:
        return "empty anser"
    return ""


def _parse_entry(entry: Any, source: str, video_dir: Path, split: Split) -> AvqaRecord | Rejection:
    if not isinstance(entry, dict):
        return Rejection("music_avqa", "", source, f"entry is a JSON {type(entry).__name__}, not an object")
    item_id = str(entry.get("question_id", ""))
    problem = _key_problem(entry)
    if problem:
        return Rejection("music_avqa", item_id, source, problem)
    question_type, problem = _string_list("type", entry["type"], length=2)
    if question_type is None:
        return Rejection("music_avqa", item_id, source, problem)
    templ_values, problem = _string_list("templ_values", entry["templ_values"], length=None)
    if templ_values is None:
        return Rejection("music_avqa", item_id, source, problem)
    content = entry["question_content"]
    try:
        question = fill_question(content, templ_values)
    except ValueError as error:
        return Rejection("music_avqa", item_id, source, str(error))
    return AvqaRecord(
        item_id=item_id,
        question_id=entry["question_id"],
        video_id=entry["video_id"],
        question_type=(question_type[0], question_type[1]),
        question_content=content,
        templ_values=templ_values,
        question=question,
        answer=entry["anser"],
        split=split,
        video_path=video_dir / f"{entry['video_id']}.mp4",
        source=source,
    )


def annotation_path(root: Path, split: Split) -> Path:
    """``json_update/avqa-{split}.json`` if present, else ``json/avqa-{split}.json``.

    Raises:
        DataError: neither exists.
    """
    updated = Path(root) / "json_update" / f"avqa-{split}.json"
    original = Path(root) / "json" / f"avqa-{split}.json"
    if updated.is_file():
        return updated
    if original.is_file():
        return original
    raise DataError(updated, f"file not found (nor {original})")


def read_music_avqa(root: Path, split: Split) -> ReadResult[AvqaRecord]:
    """Read one MUSIC-AVQA split.

    Args:
        root: the MUSIC-AVQA ``data`` folder.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        One :class:`AvqaRecord` per usable entry (``item_id`` = ``str(question_id)``, ``source`` =
        ``"<file>[<index>]"``, video ``root/video/{video_id}.mp4``, or ``root/video_data/...`` when only
        Crab's folder exists) and one :class:`Rejection` per entry with a missing key, a wrong JSON
        type, a malformed ``type`` / ``templ_values`` string, a placeholder-count mismatch, an
        empty ``anser`` or ``question_deleted != 0``.

    Raises:
        ValueError: unknown split.
        DataError: no annotation file, or it is not a JSON array.
    """
    if split not in AVQA_SPLITS:
        raise ValueError(f"unknown MUSIC-AVQA split {split!r}; expected one of {list(AVQA_SPLITS)}")
    root = Path(root)
    path = annotation_path(root, split)
    entries = load_json_array(path)
    video_dir = root / "video"
    if not video_dir.is_dir() and (root / "video_data").is_dir():
        video_dir = root / "video_data"

    result: ReadResult[AvqaRecord] = ReadResult()
    for index, entry in enumerate(entries):
        parsed = _parse_entry(entry, f"{path}[{index}]", video_dir, split)
        if isinstance(parsed, Rejection):
            result.rejected.append(parsed)
        else:
            result.records.append(parsed)
    logger.info(
        "MUSIC-AVQA %s: %d questions read, %d rejected (%s)", split, len(result.records), len(result.rejected), path
    )
    return result
