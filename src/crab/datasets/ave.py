"""Reader of AVE's native split files (Audio-Visual Event localization, Tian et al., ECCV'18).

Layout (dataset-layouts.md section 1, from YapengTian/AVE-ECCV18 ``data/Annotations.txt``,
``dataloader.py`` and the release archive ``AVE_Dataset``)::

    AVE_Dataset/
    ├── AVE/{VideoID}.mp4        # bare 11-char id (1.1; Crab unified_dataset.py join(root,'AVE',vid+'.mp4'))
    ├── Annotations.txt          # all rows
    └── trainSet.txt  valSet.txt  testSet.txt

Format facts and where they were checked:

- one row per event, ``Category&VideoID&Quality&StartTime&EndTime``: ``&``-delimited, 5 fields, no
  quoting; categories contain spaces, commas and parentheses but never ``&`` (1.2, verified on the
  repo's ``data/Annotations.txt``);
- the archive copies start with the header ``Category&VideoID&Quality&StartTime&EndTime`` while the
  repo copy has none (1.2, unconfirmed against the archive), so a first line starting with
  ``Category&`` is skipped;
- times are whole seconds on the 10-segment grid, event = ``[StartTime, EndTime)`` (1.2, verified);
  we also accept integer-valued floats such as ``3.0`` that re-exported files may carry;
- several rows can share a VideoID (44 videos have two events, one has three; 1.5), so the row key is
  ``{VideoID}_{StartTime}_{EndTime}``; ids may start with ``-`` (1,030 rows; 1.5), and are therefore
  never split or parsed.

The reader parses; it does not check categories, ranges, duplicates or media (``crab.quality`` does).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from crab.datasets.records import AveRecord, ReadResult, Rejection, Split
from crab.errors import DataError

__all__ = ["AVE_SPLIT_FILES", "read_ave"]

logger = logging.getLogger(__name__)

#: Split name -> annotation file under the dataset root.
AVE_SPLIT_FILES: dict[str, str] = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}

_FIELDS = ("Category", "VideoID", "Quality", "StartTime", "EndTime")
_HEADER_PREFIX = "Category&"


def _parse_seconds(field: str, text: str) -> tuple[int | None, str]:
    """Parse a whole number of seconds (``"3"`` or ``"3.0"``); return ``(value, "")`` or ``(None, reason)``."""
    try:
        return int(text), ""
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None, f"{field} {text!r} is not a number"
    if not math.isfinite(value) or not value.is_integer():
        return None, f"{field} {text!r} is not a whole number of seconds"
    return int(value), ""


def _id_problem(video_id: str) -> str:
    """Why a VideoID cannot name a media file ("" if it can)."""
    if not video_id:
        return "empty VideoID"
    if "/" in video_id or "\\" in video_id or video_id in {".", ".."}:
        return f"VideoID {video_id!r} is not a file name"
    return ""


def _parse_row(line: str, source: str, root: Path, split: Split) -> AveRecord | Rejection:
    fields = [f.strip() for f in line.split("&")]
    if len(fields) != len(_FIELDS):
        return Rejection(
            "ave", "", source, f"expected {len(_FIELDS)} '&'-separated fields ({'&'.join(_FIELDS)}), got {len(fields)}"
        )
    category, video_id, quality, start_text, end_text = fields
    problem = _id_problem(video_id) or ("" if category else "empty Category")
    if problem:
        return Rejection("ave", video_id, source, problem)
    start_s, reason = _parse_seconds("StartTime", start_text)
    if start_s is None:
        return Rejection("ave", video_id, source, reason)
    end_s, reason = _parse_seconds("EndTime", end_text)
    if end_s is None:
        return Rejection("ave", video_id, source, reason)
    return AveRecord(
        item_id=f"{video_id}_{start_s}_{end_s}",
        video_id=video_id,
        category=category,
        quality=quality,
        start_s=start_s,
        end_s=end_s,
        split=split,
        video_path=root / "AVE" / f"{video_id}.mp4",
        source=source,
    )


def read_ave(root: Path, split: Split) -> ReadResult[AveRecord]:
    """Read one AVE split file (``trainSet.txt`` / ``valSet.txt`` / ``testSet.txt``).

    Args:
        root: the ``AVE_Dataset`` folder.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        One :class:`AveRecord` per parsable row (``source`` = ``"<file>:<line>"``, 1-based) and one
        :class:`Rejection` per row that is not: wrong field count, empty id or category, a time that
        is not a whole number. Blank lines and the optional header line are skipped.

    Raises:
        ValueError: unknown split.
        DataError: the split file is missing or is not UTF-8 text.
    """
    if split not in AVE_SPLIT_FILES:
        raise ValueError(f"unknown AVE split {split!r}; expected one of {sorted(AVE_SPLIT_FILES)}")
    root = Path(root)
    path = root / AVE_SPLIT_FILES[split]
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: tolerate a byte-order mark
    except UnicodeDecodeError as error:
        raise DataError(path, f"not UTF-8 text ({error.reason} at byte {error.start})") from error

    result: ReadResult[AveRecord] = ReadResult()
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or (lineno == 1 and line.startswith(_HEADER_PREFIX)):
            continue
        parsed = _parse_row(line, f"{path}:{lineno}", root, split)
        if isinstance(parsed, Rejection):
            result.rejected.append(parsed)
        else:
            result.records.append(parsed)
    logger.info("AVE %s: %d rows read, %d rejected (%s)", split, len(result.records), len(result.rejected), path)
    return result
