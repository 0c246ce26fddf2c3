"""Reader of the AVSBench-semantic release (Zhou et al., 2023): subsets v1s, v1m and v2, one metadata file.

AVSS = audio-visual semantic segmentation. This release re-packages AVSBench-object S4 as ``v1s`` and
MS3 as ``v1m`` and adds ``v2`` (10-s multi-source clips); Crab reads S4, MS3 and AVSS from it (tasks
``s4`` <- v1s, ``ms3`` <- v1m, ``avss`` <- v2). Layout (dataset-layouts.md section 5, from
OpenNLPLab/AVSBench ``avss/color_dataloader.py`` and GeWu-Lab/Crab ``dataset/unified_dataset.py``)::

    AVSBench_semantic/                   # Crab: data/AVS/
    ├── metadata.csv                     # vid, uid, s_min, s_sec, a_obj, split, label
    ├── label2idx.json                   # {class: index} for the 71 classes (0- or 1-based)
    └── {v1s,v1m,v2}/{uid}/
        ├── audio.wav
        ├── frames/{0..4}.jpg            # v2: {0..9}.jpg; 0-based, not zero-padded
        ├── labels_rgb/{i}.png           # palette colours (vocab_seg.AVSS_PALETTE)
        └── labels_semantic/{i}.png      # class index per pixel (vocab_seg.AVSS_CLASSES)

Format facts: ``metadata.csv`` is comma-separated with a header whose text is unconfirmed, so the 7
columns are read by position (as COMBO-AVS does: ``[1]`` uid, ``[5]`` split, ``[6]`` label); a first line
that looks like a data row is an error rather than a silently lost row. v1s train clips have masks for
frame 0 only; v1s val / test, v1m and v2 have one per frame. ``label2idx.json`` is 0-based in the official
release and 1-based in Crab's copy; both are accepted, but its key order must be :data:`AVSS_CLASSES`
(mask values and palette indices follow it). ``a_obj`` is kept verbatim (Crab puts it in its targets);
whether its ``_``-joined names are always AVSS classes is unconfirmed, so unknown ones are only logged.

The reader checks known split and subset, integer start times, a ``uid`` that is a folder name, no
duplicate ``uid`` per subset and (``check_media``) that the wav, every frame and both masks of every
annotated frame exist.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from crab.datasets.tables import file_name_problem, missing_media, read_csv_rows, select_rows
from crab.datasets.records import ReadResult, Rejection, Split
from crab.datasets.vocab_seg import AVSS_CLASSES
from crab.errors import DataError

__all__ = ["AVSS_SPLITS", "AVSS_SUBSETS", "AVSS_SUBSET_TASKS", "AvssRecord", "read_avss", "read_label2idx"]

logger = logging.getLogger(__name__)

Subset = Literal["v1s", "v1m", "v2"]

AVSS_SPLITS: tuple[str, ...] = ("train", "val", "test")
AVSS_SUBSETS: tuple[str, ...] = ("v1s", "v1m", "v2")
#: The Crab task each subset serves.
AVSS_SUBSET_TASKS: dict[str, str] = {"v1s": "s4", "v1m": "ms3", "v2": "avss"}
_NUM_FRAMES: dict[str, int] = {"v1s": 5, "v1m": 5, "v2": 10}
_COLUMNS = ("vid", "uid", "s_min", "s_sec", "a_obj", "split", "label")


@dataclass(frozen=True)
class AvssRecord:
    """One AVSBench-semantic clip: its frames, the masks of its annotated frames, its audio.

    Attributes:
        item_id: ``uid``, the clip folder name (v1s / v2 ``{ytid}_{start_ms}_{end_ms}``, v1m ``{ytid}_{k}``).
        video_id: ``vid``, the YouTube id.
        subset: ``"v1s"``, ``"v1m"`` or ``"v2"`` (the ``label`` column).
        s_min: start minute of the clip in the source video.
        s_sec: start second within that minute.
        sounding_object: ``a_obj`` verbatim (several objects are joined by ``_``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        audio_path: ``audio.wav`` (rate and channels of the source).
        frame_paths: the 5 (v1) or 10 (v2) frames in time order.
        rgb_mask_paths: ``labels_rgb`` masks; ``rgb_mask_paths[i]`` labels ``frame_paths[i]`` (v1s train: frame 0 only).
        semantic_mask_paths: ``labels_semantic`` masks, aligned the same way.
        source: ``"<metadata.csv>:<line>"``.
    """

    item_id: str
    video_id: str
    subset: Subset
    s_min: int
    s_sec: int
    sounding_object: str
    split: Split
    audio_path: Path
    frame_paths: tuple[Path, ...]
    rgb_mask_paths: tuple[Path, ...]
    semantic_mask_paths: tuple[Path, ...]
    source: str

    @property
    def task(self) -> str:
        """The Crab task this clip serves (``s4``, ``ms3`` or ``avss``)."""
        return AVSS_SUBSET_TASKS[self.subset]


def read_label2idx(root: Path) -> dict[str, int]:
    """Read and check ``label2idx.json``; return the 0-based class indices.

    Raises:
        DataError: the file is missing, not a JSON object, its keys are not :data:`AVSS_CLASSES` in
            order, or its values are neither all ``k`` nor all ``k + 1``.
    """
    path = Path(root) / "label2idx.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(path, f"not a UTF-8 JSON file ({error})") from error
    if not isinstance(data, dict):
        raise DataError(path, f"expected a JSON object, got a JSON {type(data).__name__}")
    keys = list(data)
    if keys != list(AVSS_CLASSES):
        first = next(i for i in range(len(keys) + 1) if keys[i : i + 1] != list(AVSS_CLASSES[i : i + 1]))
        found = repr(keys[first]) if first < len(keys) else "nothing"
        expected = repr(AVSS_CLASSES[first]) if first < len(AVSS_CLASSES) else "nothing"
        raise DataError(
            path,
            f"has {len(keys)} classes, entry {first} is {found} where {expected} belongs "
            f"(expected the {len(AVSS_CLASSES)} AVSS classes in order)",
        )
    values = list(data.values())
    for base in (0, 1):
        if values == list(range(base, base + len(AVSS_CLASSES))):
            return {name: value - base for name, value in data.items()}
    raise DataError(path, "values must be 0..70 (official) or 1..71 (Crab's copy) in key order")


def _int_field(name: str, text: str) -> tuple[int | None, str]:
    try:
        value = int(text)
    except ValueError:
        return None, f"{name} {text!r} is not a whole number"
    return (value, "") if value >= 0 else (None, f"{name} {value} is negative")


def _record(root: Path, fields: list[str], subset: Subset, split: Split, source: str) -> AvssRecord | Rejection:
    vid, uid, s_min_text, s_sec_text, a_obj = fields[:5]
    problem = file_name_problem("uid", uid)
    if problem:
        return Rejection("avss", uid, source, problem)
    s_min, problem = _int_field("s_min", s_min_text)
    if s_min is None:
        return Rejection("avss", uid, source, problem)
    s_sec, problem = _int_field("s_sec", s_sec_text)
    if s_sec is None:
        return Rejection("avss", uid, source, problem)
    folder = root / subset / uid
    num_frames = _NUM_FRAMES[subset]
    annotated = range(1) if subset == "v1s" and split == "train" else range(num_frames)
    return AvssRecord(
        item_id=uid,
        video_id=vid,
        subset=subset,
        s_min=s_min,
        s_sec=s_sec,
        sounding_object=a_obj,
        split=split,
        audio_path=folder / "audio.wav",
        frame_paths=tuple(folder / "frames" / f"{i}.jpg" for i in range(num_frames)),
        rgb_mask_paths=tuple(folder / "labels_rgb" / f"{i}.png" for i in annotated),
        semantic_mask_paths=tuple(folder / "labels_semantic" / f"{i}.png" for i in annotated),
        source=source,
    )


def read_avss(
    root: Path, split: Split | None = None, subset: Subset | None = None, check_media: bool = True
) -> ReadResult[AvssRecord]:
    """Read AVSBench-semantic clips from ``metadata.csv``.

    Args:
        root: the ``AVSBench_semantic`` folder (Crab's ``AVS``).
        split: ``"train"``, ``"val"``, ``"test"``, or None for all.
        subset: ``"v1s"``, ``"v1m"``, ``"v2"``, or None for all.
        check_media: reject clips whose wav, frames or masks are not all files.

    Returns:
        One :class:`AvssRecord` per usable row (``source`` = ``"<file>:<line>"``) and one
        :class:`Rejection` (dataset ``"avss"``) per row with a wrong field count, an unknown split or
        subset (reported only when both filters are None, so that reading per split / subset reports
        each row once), a ``uid`` that is not a folder name, a start that is not a whole number, a
        duplicate ``uid`` in its subset, or a missing media file.

    Raises:
        ValueError: unknown ``split`` or ``subset``.
        DataError: ``metadata.csv`` is missing, unreadable or has no header row; ``label2idx.json``,
            if present, does not list the 71 classes in order.
    """
    if split is not None and split not in AVSS_SPLITS:
        raise ValueError(f"unknown AVSS split {split!r}; expected one of {list(AVSS_SPLITS)} or None")
    if subset is not None and subset not in AVSS_SUBSETS:
        raise ValueError(f"unknown AVSS subset {subset!r}; expected one of {list(AVSS_SUBSETS)} or None")
    root = Path(root)
    if (root / "label2idx.json").is_file():
        read_label2idx(root)
    else:
        logger.warning("%s: no label2idx.json; using the built-in 71-class list", root)
    path = root / "metadata.csv"
    rows = read_csv_rows(path)
    if not rows or len(rows[0][1]) != len(_COLUMNS) or rows[0][1][6].strip() in AVSS_SUBSETS:
        found = rows[0][1] if rows else "nothing"
        raise DataError(path, f"line 1 must be the header {','.join(_COLUMNS)!r}, got {found!r}")

    parsed: list[tuple[tuple[str, str] | None, AvssRecord | Rejection]] = []
    first_line: dict[tuple[str, str], int] = {}
    unknown_objects: set[str] = set()
    for lineno, fields in rows[1:]:
        source = f"{path}:{lineno}"
        fields = [field.strip() for field in fields]
        uid = fields[1] if len(fields) > 1 else ""
        if len(fields) != len(_COLUMNS):
            reason = f"expected {len(_COLUMNS)} comma-separated fields ({', '.join(_COLUMNS)}), got {len(fields)}"
            parsed.append((None, Rejection("avss", uid, source, reason)))
            continue
        row_split, row_subset = fields[5], fields[6]
        if row_split not in AVSS_SPLITS:
            reason = f"unknown split {row_split!r} (expected one of {list(AVSS_SPLITS)})"
            parsed.append((None, Rejection("avss", uid, source, reason)))
            continue
        if row_subset not in AVSS_SUBSETS:
            reason = f"unknown subset label {row_subset!r} (expected one of {list(AVSS_SUBSETS)})"
            parsed.append((None, Rejection("avss", uid, source, reason)))
            continue
        key = (row_split, row_subset)
        item = _record(root, fields, cast(Subset, row_subset), cast(Split, row_split), source)
        if isinstance(item, AvssRecord):
            if (row_subset, uid) in first_line:
                item = Rejection("avss", uid, source, f"duplicate uid (first at line {first_line[row_subset, uid]})")
            elif check_media:
                problem = missing_media(
                    [item.audio_path, *item.frame_paths, *item.rgb_mask_paths, *item.semantic_mask_paths]
                )
                item = Rejection("avss", uid, source, problem) if problem else item
            unknown_objects.update(name for name in fields[4].split("_") if name not in AVSS_CLASSES)
        first_line.setdefault((row_subset, uid), lineno)
        parsed.append((key, item))

    if unknown_objects:
        logger.warning("%s: a_obj names outside the 71 AVSS classes (kept): %s", path, sorted(unknown_objects))

    def wanted(key: tuple[str, str]) -> bool:
        return (split is None or key[0] == split) and (subset is None or key[1] == subset)

    result = select_rows(parsed, None if split is None and subset is None else wanted, path)
    logger.info(
        "AVSS %s/%s: %d clips read, %d rejected (%s)",
        subset or "all subsets",
        split or "all splits",
        len(result.records),
        len(result.rejected),
        path,
    )
    return result
