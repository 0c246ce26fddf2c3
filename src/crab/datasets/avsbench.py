"""Reader of AVSBench-object v1 (Zhou et al., ECCV'22): S4 (single sound source) and MS3 (multiple sources).

S4 = single-source sound segmentation, MS3 = multi-source sound segmentation (task names in
``crab.tasks``). Crab itself reads the same videos from the AVSBench-semantic copy (``crab.datasets.avss``,
subsets ``v1s`` / ``v1m``); this reader serves users who hold the original release. Layout
(dataset-layouts.md section 4, from OpenNLPLab/AVSBench ``avs_s4|avs_ms3/{config,dataloader}.py`` and
``preprocess_scripts/*.py``)::

    avsbench_data/
    ├── Single-source/s4_meta_data.csv
    ├── Single-source/s4_data/{raw_videos,audio_wav}/{split}/{category}/{name}.{mp4,wav}
    ├── Single-source/s4_data/{visual_frames,gt_masks}/{split}/{category}/{name}/{name}_{i}.png
    ├── Multi-sources/ms3_meta_data.csv
    ├── Multi-sources/ms3_data/raw_videos/{name}.mp4                 # flat, no split folder
    ├── Multi-sources/ms3_data/visual_frames/{name}/{name}.mp4_{i}.png  # flat; note ".mp4_"
    └── Multi-sources/ms3_data/{audio_wav/{split}/{name}.wav, gt_masks/{split}/{name}/{name}_{i}.png}

Format facts: both CSVs are comma-separated with a header; the split column is found by its header
name ``split`` (the official loaders filter ``df['split']``), the name is column 0 and S4's category
column 2 (positional in the official code; other header texts are unconfirmed). Frames are 1-based
``_1`` .. ``_5``. S4 train videos have a mask for the first frame only, every other split and MS3 have 5.

Unlike the AVE reader, these readers also check what makes a record usable, because a record here is a
set of files (frames, masks, audio) that no single media probe covers: known split and category, a
name that is a file name, no duplicate name, and (``check_media``) that every listed file exists.

"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from crab.datasets.records import ReadResult, Rejection, Split
from crab.datasets.tables import file_name_problem, header_column, missing_media, read_csv_rows, select_rows
from crab.datasets.vocab_seg import S4_CATEGORIES
from crab.errors import DataError
from crab.tasks import NUM_AVS_OBJECT_FRAMES

__all__ = [
    "AVSBENCH_SPLITS",
    "AvsObjectRecord",
    "NUM_AVS_OBJECT_FRAMES",
    "read_ms3",
    "read_s4",
]

logger = logging.getLogger(__name__)

AVSBENCH_SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class AvsObjectRecord:
    """One AVSBench-object video (S4 or MS3): its frames, the masks that exist, its audio.

    Attributes:
        item_id: the video name (unique within the release).
        video_id: the video name (S4 names are opaque; MS3 names are ``{ytid}_{k}``).
        task: ``"s4"`` or ``"ms3"``.
        category: the S4 category (also a folder level of every path); ``""`` for MS3.
        split: ``"train"``, ``"val"`` or ``"test"``.
        video_path: the source clip (``raw_videos``); listed, not required by the readers.
        audio_path: the 16 kHz wav.
        frame_paths: the 5 frames in time order (frame i near second ``i + 15/16``).
        mask_paths: ``mask_paths[i]`` labels ``frame_paths[i]`` (0 = background, 255 = sounding object);
            S4 train videos have only the first, every other video has 5.
        source: ``"<metadata csv>:<line>"``.
    """

    item_id: str
    video_id: str
    task: Literal["s4", "ms3"]
    category: str
    split: Split
    video_path: Path
    audio_path: Path
    frame_paths: tuple[Path, ...]
    mask_paths: tuple[Path, ...]
    source: str


def _s4_record(base: Path, name: str, category: str, split: Split, source: str) -> AvsObjectRecord:
    frames = base / "visual_frames" / split / category / name
    masks = base / "gt_masks" / split / category / name
    num_masks = 1 if split == "train" else NUM_AVS_OBJECT_FRAMES
    return AvsObjectRecord(
        item_id=name,
        video_id=name,
        task="s4",
        category=category,
        split=split,
        video_path=base / "raw_videos" / split / category / f"{name}.mp4",
        audio_path=base / "audio_wav" / split / category / f"{name}.wav",
        frame_paths=tuple(frames / f"{name}_{i}.png" for i in range(1, NUM_AVS_OBJECT_FRAMES + 1)),
        mask_paths=tuple(masks / f"{name}_{i}.png" for i in range(1, num_masks + 1)),
        source=source,
    )


def _ms3_record(base: Path, name: str, split: Split, source: str) -> AvsObjectRecord:
    masks = base / "gt_masks" / split / name
    return AvsObjectRecord(
        item_id=name,
        video_id=name,
        task="ms3",
        category="",
        split=split,
        video_path=base / "raw_videos" / f"{name}.mp4",
        audio_path=base / "audio_wav" / split / f"{name}.wav",
        frame_paths=tuple(
            base / "visual_frames" / name / f"{name}.mp4_{i}.png" for i in range(1, NUM_AVS_OBJECT_FRAMES + 1)
        ),
        mask_paths=tuple(masks / f"{name}_{i}.png" for i in range(1, NUM_AVS_OBJECT_FRAMES + 1)),
        source=source,
    )


def _read_object(
    root: Path, task: Literal["s4", "ms3"], split: Split | None, check_media: bool
) -> ReadResult[AvsObjectRecord]:
    if split is not None and split not in AVSBENCH_SPLITS:
        raise ValueError(f"unknown {task.upper()} split {split!r}; expected one of {list(AVSBENCH_SPLITS)} or None")
    folder, stem = ("Single-source", "s4") if task == "s4" else ("Multi-sources", "ms3")
    path = Path(root) / folder / f"{stem}_meta_data.csv"
    base = Path(root) / folder / f"{stem}_data"
    rows = read_csv_rows(path)
    if not rows:
        raise DataError(path, "empty file (expected a header row)")
    (_, header), body = rows[0], rows[1:]
    split_col = header_column(path, header, "split")
    if task == "s4" and len(header) < 4:
        raise DataError(path, f"expected 4 columns (name, start, category, split), header has {len(header)}")

    parsed: list[tuple[str | None, AvsObjectRecord | Rejection]] = []
    first_line: dict[str, int] = {}
    for lineno, fields in body:
        source = f"{path}:{lineno}"
        fields = [field.strip() for field in fields]
        name = fields[0]
        if len(fields) != len(header):
            reason = f"expected {len(header)} comma-separated fields like the header, got {len(fields)}"
            parsed.append((None, Rejection(task, name, source, reason)))
            continue
        row_split = fields[split_col]
        if row_split not in AVSBENCH_SPLITS:
            reason = f"unknown split {row_split!r} (expected one of {list(AVSBENCH_SPLITS)})"
            parsed.append((None, Rejection(task, name, source, reason)))
            continue
        category = fields[2] if task == "s4" else ""
        problem = file_name_problem("name", name)
        if not problem and task == "s4" and category not in S4_CATEGORIES:
            problem = f"unknown category {category!r} (not one of S4's {len(S4_CATEGORIES)})"
        if not problem and name in first_line:
            problem = f"duplicate name (first at line {first_line[name]})"
        first_line.setdefault(name, lineno)
        if problem:
            parsed.append((row_split, Rejection(task, name, source, problem)))
            continue
        known = cast(Split, row_split)
        if task == "s4":
            record = _s4_record(base, name, category, known, source)
        else:
            record = _ms3_record(base, name, known, source)
        problem = missing_media([record.audio_path, *record.frame_paths, *record.mask_paths]) if check_media else ""
        parsed.append((row_split, Rejection(task, name, source, problem) if problem else record))

    result = select_rows(parsed, None if split is None else (lambda key: key == split), path)
    logger.info(
        "%s %s: %d videos read, %d rejected (%s)",
        task.upper(),
        split or "all splits",
        len(result.records),
        len(result.rejected),
        path,
    )
    return result


def read_s4(root: Path, split: Split | None = None, check_media: bool = True) -> ReadResult[AvsObjectRecord]:
    """Read S4 videos from ``Single-source/s4_meta_data.csv``.

    Args:
        root: the ``avsbench_data`` folder.
        split: ``"train"``, ``"val"``, ``"test"``, or None for every row. Rows whose split is unknown
            (or unreadable) are rejected only when ``split`` is None, so that a per-split loop does not
            report them three times.
        check_media: reject videos whose wav, 5 frames or masks are not all files.

    Returns:
        One :class:`AvsObjectRecord` per usable row (``source`` = ``"<file>:<line>"``) and one
        :class:`Rejection` (dataset ``"s4"``) per row with a wrong field count, an unknown split or
        category, a name that is not a file name, a duplicate name or a missing media file.

    Raises:
        ValueError: unknown ``split``.
        DataError: the metadata file is missing, unreadable, or has no ``split`` column.
    """
    return _read_object(root, "s4", split, check_media)


def read_ms3(root: Path, split: Split | None = None, check_media: bool = True) -> ReadResult[AvsObjectRecord]:
    """Read MS3 videos from ``Multi-sources/ms3_meta_data.csv``; as :func:`read_s4` (no category, 5 masks always).

    Raises:
        ValueError: unknown ``split``.
        DataError: the metadata file is missing, unreadable, or has no ``split`` column.
    """
    return _read_object(root, "ms3", split, check_media)
