"""Reader of the VALOR captioning layout that Crab's AV-captioning task (``avcap``) reads.

VALOR-32K (Chen et al., 2023) has no single native release layout that Crab uses; Crab reads its own
re-laid tree (dataset-layouts.md section 7.1-7.2, from GeWu-Lab/Crab ``dataset/unified_dataset.py``
``add_avcap_samples``; crab-reference.md section 4.7)::

    valor/
    ├── train_samples.json  val_samples.json   # JSON arrays of {"video_id": str, "desc": str}
    ├── video_data/{video_id}.mp4
    └── audio_data/{video_id}.mp3              # Crab's own re-encode; we decode audio from the mp4

Crab trains on ``train_samples.json`` and tests on ``val_samples.json``; the caption ``desc`` is the
target verbatim. The reader parses; the quality gates check media and duplicates.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from crab.datasets.records import ReadResult, Rejection, ValorRecord
from crab.datasets.jsonarray import load_json_array
from crab.errors import DataError

__all__ = ["VALOR_SPLITS", "read_valor"]

logger = logging.getLogger(__name__)

VALOR_SPLITS: tuple[str, ...] = ("train", "val")


def _parse_entry(entry: Any, source: str, root: Path, split: Literal["train", "val"]) -> ValorRecord | Rejection:
    if not isinstance(entry, dict):
        return Rejection("valor", "", source, f"entry is a JSON {type(entry).__name__}, not an object")
    video_id, desc = entry.get("video_id"), entry.get("desc")
    item_id = video_id if isinstance(video_id, str) else ""
    missing = [key for key, value in (("video_id", video_id), ("desc", desc)) if value is None]
    if missing:
        return Rejection("valor", item_id, source, f"missing key(s): {', '.join(missing)}")
    for key, value in (("video_id", video_id), ("desc", desc)):
        if not isinstance(value, str):
            return Rejection("valor", item_id, source, f"{key} must be a JSON string, got {type(value).__name__}")
    if not video_id or "/" in video_id or "\\" in video_id or video_id in {".", ".."}:
        return Rejection("valor", item_id, source, f"video_id {video_id!r} is not a file name")
    if not desc.strip():
        return Rejection("valor", item_id, source, "empty desc")
    return ValorRecord(
        item_id=video_id,
        video_id=video_id,
        caption=desc,
        split=split,
        video_path=root / "video_data" / f"{video_id}.mp4",
        source=source,
    )


def read_valor(root: Path, split: Literal["train", "val"]) -> ReadResult[ValorRecord]:
    """Read ``{split}_samples.json`` of Crab's VALOR tree.

    Args:
        root: the ``valor`` folder.
        split: ``"train"`` or ``"val"``.

    Returns:
        One :class:`ValorRecord` per usable entry (``item_id`` = ``video_id``, ``source`` =
        ``"<file>[<index>]"``, video ``root/video_data/{video_id}.mp4``) and one :class:`Rejection` per
        entry that is not an object, misses ``video_id`` / ``desc``, has a non-string value, an id
        that is not a file name, or an empty caption.

    Raises:
        ValueError: unknown split.
        DataError: the file is missing or is not a JSON array.
    """
    if split not in VALOR_SPLITS:
        raise ValueError(f"unknown VALOR split {split!r}; expected one of {list(VALOR_SPLITS)}")
    root = Path(root)
    path = root / f"{split}_samples.json"
    if not path.is_file():
        raise DataError(path, "file not found")
    result: ReadResult[ValorRecord] = ReadResult()
    for index, entry in enumerate(load_json_array(path)):
        parsed = _parse_entry(entry, f"{path}[{index}]", root, split)
        if isinstance(parsed, Rejection):
            result.rejected.append(parsed)
        else:
            result.records.append(parsed)
    logger.info("VALOR %s: %d captions read, %d rejected (%s)", split, len(result.records), len(result.rejected), path)
    return result
