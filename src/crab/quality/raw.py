"""The ``validate_raw`` stage: quality gates over the raw datasets before anything is built from them.

DESIGN.md section 3: "Great Expectations suites over each raw dataset's annotations and media; bad samples
are quarantined with a reason, good ones pass on". For each dataset (AVE, LLP, AVSBench-object S4 and MS3,
MUSIC-AVQA, VALOR, native layouts of dataset-layouts.md sections 1, 2, 4, 3 and 7) all splits are read
with the ``crab.datasets`` readers into one frame (one row per annotation item; for LLP one per video, its
dense events a JSON column, so a bad event quarantines the whole video), every *distinct* media file is
fully decoded once (:func:`crab.datasets.media.verify_decodes`, requiring a video and an audio stream;
AVE has several rows per video), and the dataset's suite (:mod:`crab.quality.suites`) runs through Great
Expectations. Rows the readers could not parse are quarantined with the reader's reason.

S4 and MS3 are two datasets over one root (``datasets.avsbench``, holding ``Single-source/`` and
``Multi-sources/``), each present when its own sub-folder is. Their media are a wav (decoded, no
video stream) and PNGs: every frame and mask is decoded once with PIL (header, then one pass over the
pixels, a mask's histogram taken in the same pass) on a thread pool, and the findings become columns the
suite checks (:func:`inspect_avs_images`). Ref-AVS (``datasets.ref_avs``, one row per referring
expression) is checked the same way: its wav is decoded once per clip, and each distinct JPEG frame and
PNG mask once (rows of one clip share frames), :func:`inspect_ref_avs_images`. AVSS (``datasets.avss``,
the AVSBench-semantic folder, subset v2 only: one row per clip) likewise: the wav, then every frame and
both masks of each frame (``labels_semantic`` class indices, ``labels_rgb`` palette colours, compared
pixel for pixel), :func:`inspect_avss_images`. LVIS (``datasets.lvis``, Crab's segmentation pre-training
samples, one row per sample) has no audio or video file to probe: each distinct image and every mask is
decoded once by :func:`crab.quality.lvis.inspect_lvis_images`, and :mod:`crab.quality.lvis` holds its suite.

Outputs (repository root = working directory): ``reports/validation/raw.json`` (the quarantine, keyed
by the readers' stable ``source``, which ``avuie_build`` excludes through
:func:`crab.quality.quarantine.load_quarantined`) and the data docs site ``reports/validation/raw_docs/``,
both written atomically. The stage fails only if some dataset's failure rate exceeds
``validation.max_failure_rate``: a few bad items are expected in real data and are dropped with a reason,
a high rate means a broken download or layout. A dataset folder that is absent is skipped with a warning
unless a task in ``avuie.tasks`` needs it (``TASKS[task].dataset`` names the dataset or its
``params.datasets`` root: ``"avsbench"`` needs both S4 and MS3), which is an error naming the folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
import wave
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from crab.config import Params, ValidationConfig
from crab.datasets.ave import AVE_SPLIT_FILES, read_ave
from crab.datasets.avsbench import AVSBENCH_SPLITS, AvsObjectRecord, read_ms3, read_s4
from crab.datasets.avss import AVSS_SPLITS, AVSS_SUBSETS, AvssRecord, read_avss
from crab.datasets.llp import LLP_SPLIT_FILES, LlpEvent, LlpRecord, read_llp
from crab.datasets.lvis import LVIS_SPLITS, read_lvis
from crab.datasets.media import verify_decodes
from crab.datasets.music_avqa import AVQA_SPLITS, read_music_avqa
from crab.datasets.records import AvqaRecord, ReadResult, Rejection
from crab.datasets.ref_avs import REF_AVS_SPLITS, RefAvsRecord, read_ref_avs
from crab.datasets.valor import VALOR_SPLITS, read_valor
from crab.datasets.vocab_seg import AVSS_CLASSES, AVSS_PALETTE
from crab.errors import CrabError, DataError
from crab.quality.lvis import LVIS_COLUMNS, LVIS_IMAGE_COLUMNS, inspect_lvis_images, lvis_columns, lvis_suite
from crab.quality.quarantine import GroupReport, QuarantinedItem, ValidationResult, write_report
from crab.quality.runner import Gate, enforce_max_failure_rate, log_summary, open_gate
from crab.quality.suites import (
    BINARY_MASK_MODES,
    BINARY_MASK_VALUES,
    Check,
    ave_suite,
    avss_suite,
    derive_ave,
    derive_avss,
    derive_llp,
    derive_music_avqa,
    llp_suite,
    ms3_suite,
    music_avqa_suite,
    ref_avs_suite,
    s4_suite,
    valor_suite,
)
from crab.tasks import TASKS, Task

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DOCS_DIR",
    "REPORT_PATH",
    "inspect_avs_images",
    "inspect_avss_images",
    "inspect_ref_avs_images",
    "probe_media",
    "validate_raw",
]

log = logging.getLogger(__name__)

STAGE = "validate_raw"
REPORT_PATH = Path("reports/validation/raw.json")
DOCS_DIR = Path("reports/validation/raw_docs")

#: Most threads decoding media at once (PyAV releases the GIL around FFmpeg's send / receive calls).
_MAX_PROBE_THREADS = 8
#: Share of a wav's announced samples that must decode (as ``crab.datasets.media`` allows for mp4s).
_WAV_COMPLETE = 0.98


@dataclass(frozen=True)
class _DatasetSpec:
    """How one dataset is read and checked.

    Attributes:
        splits: the split names its reader accepts.
        read: ``read(root, split) -> ReadResult``.
        columns: the annotation columns :meth:`row` fills (media columns are added separately).
        derive: adds derived columns to the frame (or None).
        suite: the dataset's checks.
        encode: the record's structured columns as scalars (JSON strings, counts), overriding the plain
            attribute values of the same names (or None: every column is a plain attribute).
        root_field: the ``params.datasets`` field holding its root (None: the field named like the dataset).
        folder: its sub-folder of that root ("": the root itself); the dataset is present when it is a folder.
        media_column: the column holding the media file that is fully decoded (None: no audio / video file,
            as LVIS's stills, whose images ``inspect`` decodes).
        need_video: whether that file must have a video stream (it must always have an audio stream).
        one_file: every split lives in one file with a split column; rows of no known split are reported
            only by a read with ``split=None``, which then collects them.
        inspect: ``inspect(records) -> [columns]``: per-record columns that take more I/O than the one
            media file (AVSBench's PNGs), or None.
        inspected: the columns ``inspect`` fills.
    """

    splits: tuple[str, ...]
    read: Callable[[Path, Any], Any]  # split: a name, or None in the extra read of a one_file dataset
    columns: tuple[str, ...]
    derive: Callable[[pd.DataFrame], pd.DataFrame] | None
    suite: Callable[[ValidationConfig], list[Check]]
    encode: Callable[[Any], dict[str, Any]] | None = None
    root_field: str | None = None
    folder: str = ""
    media_column: str | None = "video_path"
    need_video: bool = True
    one_file: bool = False
    inspect: Callable[[Sequence[Any]], list[dict[str, Any]]] | None = None
    inspected: tuple[str, ...] = ()

    def row(self, record: Any) -> dict[str, Any]:
        """A record's annotation columns (list-valued fields as JSON strings, as the files store them)."""
        values = {name: getattr(record, name, None) for name in self.columns}
        video_path = getattr(record, "video_path", None)  # Ref-AVS has none (``encode`` names its media folder)
        values["video_path"] = None if video_path is None else str(video_path)
        if self.encode is not None:
            values.update(self.encode(record))
        return values


def _avqa_columns(record: AvqaRecord) -> dict[str, Any]:
    """MUSIC-AVQA's list fields as the files store them (``type`` is a JSON list string)."""
    return {
        "question_type": json.dumps(list(record.question_type)),
        "templ_values": json.dumps(list(record.templ_values), ensure_ascii=False),
    }


def _llp_events(modality: str, events: tuple[LlpEvent, ...]) -> list[dict[str, Any]]:
    return [
        {"modality": modality, "label": e.label, "onset_s": e.onset_s, "offset_s": e.offset_s, "source": e.source}
        for e in events
    ]


def _llp_columns(record: LlpRecord) -> dict[str, Any]:
    """LLP's weak labels (JSON list), event counts and dense events (JSON list; None for a weak-only video)."""
    audio, visual = record.audio_events, record.visual_events
    dense = None
    if audio is not None or visual is not None:
        dense = json.dumps(_llp_events("audio", audio or ()) + _llp_events("visual", visual or ()))
    return {
        "labels": json.dumps(list(record.labels)),
        "num_audio_events": None if audio is None else len(audio),
        "num_visual_events": None if visual is None else len(visual),
        "dense_events": dense,
    }


def _avs_columns(record: AvsObjectRecord) -> dict[str, Any]:
    """The wav, the one media file of an AVSBench-object video (its ``video_path`` mp4 is not required)."""
    return {"audio_path": str(record.audio_path)}


# --------------------------------------------------------------------------------------------------
# AVSBench-object frames and masks
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Png:
    """What one fully decoded PNG showed.

    Attributes:
        size: (width, height) in pixels.
        mode: PIL mode (``"RGB"``, ``"L"``, ``"1"``, ``"P"`` ...).
        values: the distinct values of a grey (``L``) or 1-bit (``1``, read as 0 / 255) image read as a mask;
            ``()`` otherwise.
        pixels: the decoded pixels ((H, W) or (H, W, C) uint8) when asked for (AVSS compares two masks), else None.
    """

    size: tuple[int, int]
    mode: str
    values: tuple[int, ...] = ()
    pixels: np.ndarray | None = field(default=None, compare=False, repr=False)


def _read_png(path: Path, is_mask: bool, keep_pixels: bool = False) -> _Png | str:
    """Decode an image once (header, then every row); its facts, or the reason it cannot be used.

    ``keep_pixels``: also return the decoded pixels as an array (no second decode).
    """
    try:
        with Image.open(path) as image:
            image.load()  # a truncated or corrupt body raises here, not at open
            values: tuple[int, ...] = ()
            if is_mask and image.mode in BINARY_MASK_MODES:  # a 1-bit image's histogram has bins 0 and 255
                values = tuple(v for v, count in enumerate(image.histogram()) if count)  # 256 bins, in C
            pixels = np.asarray(image) if keep_pixels else None
            return _Png(image.size, image.mode, values, pixels)
    except FileNotFoundError:
        return "file not found"
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return f"truncated or corrupt ({error})"


def _joined(problems: list[str]) -> str | None:
    return "; ".join(problems) or None


def _mask_frames(record: AvsObjectRecord) -> str:
    """The frame numbers with a mask file ``{name}_{i}.png`` in the video's mask folder (``"1,2,3,4,5"``)."""
    pattern = re.compile(re.escape(record.item_id) + r"_(\d+)\.png")
    try:
        names = os.listdir(record.mask_paths[0].parent) if record.mask_paths else []
    except OSError:
        return ""
    return ",".join(str(n) for n in sorted(int(m.group(1)) for m in map(pattern.fullmatch, names) if m))


def _mask_rule_problems(
    mask_paths: Sequence[Path],
    masks: Sequence[_Png | str],
    frame_paths: Sequence[Path],
    frames: Sequence[_Png | str],
) -> dict[str, str | None]:
    """``mask_mode_problems``, ``mask_value_problems`` and ``mask_size_problems`` of decoded masks and frames."""
    modes: list[str] = []
    values: list[str] = []
    sizes: list[str] = []
    for mask_path, mask, frame_path, frame in zip(mask_paths, masks, frame_paths, frames, strict=False):
        if not isinstance(mask, _Png):
            continue
        if mask.mode not in BINARY_MASK_MODES:
            modes.append(f"{mask_path.name} is mode {mask.mode}")
        extra = sorted(set(mask.values) - BINARY_MASK_VALUES)
        if extra:
            shown = ", ".join(map(str, extra[:5])) + (", ..." if len(extra) > 5 else "")
            values.append(f"{mask_path.name} holds {shown}")
        if isinstance(frame, _Png) and mask.size != frame.size:
            (mw, mh), (fw, fh) = mask.size, frame.size
            sizes.append(f"{mask_path.name} is {mw}x{mh} px, frame {frame_path.name} {fw}x{fh} px")
    return {
        "mask_mode_problems": _joined(modes),
        "mask_value_problems": _joined(values),
        "mask_size_problems": _joined(sizes),
    }


def _decode_problems(paths: Sequence[Path], images: Sequence[_Png | str]) -> str | None:
    """``"<file>: <reason>"`` of each image that does not decode."""
    return _joined([f"{p.name}: {r}" for p, r in zip(paths, images, strict=True) if isinstance(r, str)])


def _avs_image_columns(record: AvsObjectRecord) -> dict[str, Any]:
    """The image columns of one video (:func:`inspect_avs_images`)."""
    frames = [_read_png(path, is_mask=False) for path in record.frame_paths]
    masks = [_read_png(path, is_mask=True) for path in record.mask_paths]
    return {
        "frame_problems": _decode_problems(record.frame_paths, frames),
        "mask_problems": _decode_problems(record.mask_paths, masks),
        **_mask_rule_problems(record.mask_paths, masks, record.frame_paths, frames),
        "mask_frames": _mask_frames(record),
    }


def inspect_avs_images(records: Sequence[AvsObjectRecord]) -> list[dict[str, Any]]:
    """Decode every frame and mask of AVSBench-object videos once and return the suite's image columns.

    Args:
        records: S4 or MS3 videos (``crab.datasets.avsbench``).

    Returns:
        Per record, in order: ``frame_problems`` / ``mask_problems`` (``"<file>: <reason>"`` of each file
        that does not decode), ``mask_mode_problems`` (masks that are not 8-bit grey or 1-bit),
        ``mask_value_problems`` (grey masks holding values other than 0 and 255), ``mask_size_problems``
        (masks whose size is not their frame's), each None when there is nothing to report, and
        ``mask_frames`` (frame numbers with a mask file on disk, ``"1"`` or ``"1,2,3,4,5"``).
    """
    workers = min(_MAX_PROBE_THREADS, os.cpu_count() or 1)  # PIL releases the GIL while decoding
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(
            tqdm(
                pool.map(_avs_image_columns, records),
                total=len(records),
                desc="decode frames",
                unit="video",
                disable=None,
            )
        )


# --------------------------------------------------------------------------------------------------
# Ref-AVS frames and masks
# --------------------------------------------------------------------------------------------------

_FRAME_FILE = re.compile(r"\d+\.jpg")


def _num_frame_files(folder: Path) -> int:
    """How many ``{i}.jpg`` files a clip's ``frames`` folder holds (0 if it cannot be listed)."""
    try:
        return sum(1 for name in os.listdir(folder) if _FRAME_FILE.fullmatch(name))
    except OSError:
        return 0


def _ref_avs_image_columns(record: RefAvsRecord, images: dict[Path, _Png | str]) -> dict[str, Any]:
    """The image columns of one Ref-AVS row from its decoded files (:func:`inspect_ref_avs_images`)."""
    frames = [images[path] for path in record.frame_paths]
    masks = [images[path] for path in record.mask_paths]
    decoded = [(path, mask) for path, mask in zip(record.mask_paths, masks, strict=True) if isinstance(mask, _Png)]
    marked = [path.name for path, mask in decoded if any(v > 0 for v in mask.values)]
    null_marked = empty = None
    if record.is_null and marked:
        null_marked = ", ".join(marked)
    if not record.is_null and not marked and len(decoded) == len(masks):  # undecodable masks are reported already
        empty = f"all {len(masks)} masks of {record.mask_paths[0].parent if masks else 'its mask folder'} are empty"
    return {
        "frame_problems": _decode_problems(record.frame_paths, frames),
        "mask_problems": _decode_problems(record.mask_paths, masks),
        **_mask_rule_problems(record.mask_paths, masks, record.frame_paths, frames),
        "num_frame_files": _num_frame_files(record.frame_paths[0].parent),
        "null_mask_problems": null_marked,
        "empty_mask_problems": empty,
    }


def inspect_ref_avs_images(records: Sequence[RefAvsRecord]) -> list[dict[str, Any]]:
    """Decode every distinct frame and mask of Ref-AVS rows once and return the suite's image columns.

    Rows of one clip share its frames (and rows about one object its masks), so each file is decoded once.

    Args:
        records: Ref-AVS rows (``crab.datasets.ref_avs``).

    Returns:
        Per record, in order: ``frame_problems`` / ``mask_problems`` (files that do not decode),
        ``mask_mode_problems`` / ``mask_value_problems`` / ``mask_size_problems`` (as
        :func:`inspect_avs_images`), ``num_frame_files`` (``{i}.jpg`` files in the clip's ``frames``
        folder), ``null_mask_problems`` (a null row's masks that mark pixels) and ``empty_mask_problems``
        (a referring row whose masks all decode and are all empty); None when there is nothing to report.
    """
    frames = sorted({path for r in records for path in r.frame_paths})
    masks = sorted({path for r in records for path in r.mask_paths})
    jobs = [(path, False) for path in frames] + [(path, True) for path in masks]
    workers = min(_MAX_PROBE_THREADS, os.cpu_count() or 1)  # PIL releases the GIL while decoding
    with ThreadPoolExecutor(max_workers=workers) as pool:
        decoded = list(
            tqdm(
                pool.map(lambda job: _read_png(*job), jobs),
                total=len(jobs),
                desc="decode frames",
                unit="image",
                disable=None,
            )
        )
    images = {path: image for (path, _), image in zip(jobs, decoded, strict=True)}
    return [_ref_avs_image_columns(record, images) for record in records]


def _ref_avs_columns(record: RefAvsRecord) -> dict[str, Any]:
    """The wav (the one media file decoded) and, as ``video_path``, the clip's media folder."""
    return {"audio_path": str(record.audio_path), "video_path": str(record.audio_path.parent)}


# --------------------------------------------------------------------------------------------------
# AVSS (AVSBench-semantic v2) frames and masks
# --------------------------------------------------------------------------------------------------

_AVSS_SUBSET = "v2"
#: Palette colours as 24-bit ints ``R << 16 | G << 8 | B``, by class index.
_AVSS_COLOURS = np.array([(r << 16) | (g << 8) | b for r, g, b in AVSS_PALETTE], dtype=np.int64)  # (71,)
_AVSS_PALETTE = np.array(AVSS_PALETTE, dtype=np.uint8)  # (71, 3)


def _shown(items: Sequence[Any], limit: int = 5) -> str:
    return ", ".join(map(str, items[:limit])) + (", ..." if len(items) > limit else "")


def _avss_pair_problems(
    name: str, semantic: _Png | str, rgb: _Png | str, frame: _Png | str, problems: dict[str, list[str]]
) -> set[int] | None:
    """Add the rule problems of one frame's two masks to ``problems`` (rule -> texts); return the class
    indices its semantic map holds (None: the map does not decode, is not grey or holds a non-class value).

    The masks are compared only when both are valid (decode, right mode, only palette colours / class
    values, same size), so one bad file gets one reason.
    """
    classes: set[int] | None = None
    rgb_ok = False
    for folder, mask in (("labels_semantic", semantic), ("labels_rgb", rgb)):
        if isinstance(mask, _Png) and isinstance(frame, _Png) and mask.size != frame.size:
            (mw, mh), (fw, fh) = mask.size, frame.size
            problems.setdefault("size", []).append(f"{folder}/{name} is {mw}x{mh} px, its frame {fw}x{fh} px")
    if isinstance(semantic, _Png):
        bad = [v for v in semantic.values if v >= len(AVSS_CLASSES)]
        if semantic.mode != "L":
            problems.setdefault("semantic_mode", []).append(f"labels_semantic/{name} is mode {semantic.mode}")
        elif bad:
            problems.setdefault("semantic_value", []).append(f"labels_semantic/{name} holds {_shown(bad)}")
        else:
            classes = set(semantic.values)
    if isinstance(rgb, _Png) and rgb.pixels is not None:
        if rgb.mode != "RGB":
            problems.setdefault("rgb_mode", []).append(f"labels_rgb/{name} is mode {rgb.mode}")
        else:
            pixels = rgb.pixels.astype(np.int64)  # (H, W, 3)
            colours = np.unique((pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2])
            bad_colours = [f"({c >> 16},{(c >> 8) & 255},{c & 255})" for c in colours[~np.isin(colours, _AVSS_COLOURS)]]
            if bad_colours:
                problems.setdefault("rgb_colour", []).append(f"labels_rgb/{name} holds {_shown(bad_colours)}")
            else:
                rgb_ok = True
    if classes is not None and rgb_ok and isinstance(semantic, _Png) and isinstance(rgb, _Png):
        if semantic.size == rgb.size and semantic.pixels is not None and rgb.pixels is not None:
            wrong = int(np.any(_AVSS_PALETTE[semantic.pixels] != rgb.pixels, axis=-1).sum())  # (H, W) -> count
            if wrong:
                problems.setdefault("agree", []).append(
                    f"{name}: {wrong} pixels of labels_rgb are not the colour of labels_semantic"
                )
    return classes


def _avss_image_columns(record: AvssRecord) -> dict[str, Any]:
    """The image columns of one AVSS clip (:func:`inspect_avss_images`)."""
    frames = [_read_png(path, is_mask=False) for path in record.frame_paths]
    semantic = [_read_png(path, is_mask=True, keep_pixels=True) for path in record.semantic_mask_paths]
    rgb = [_read_png(path, is_mask=True, keep_pixels=True) for path in record.rgb_mask_paths]
    undecoded = [
        f"{kind} {problems}"
        for kind, paths, images in (
            ("labels_semantic", record.semantic_mask_paths, semantic),
            ("labels_rgb", record.rgb_mask_paths, rgb),
        )
        if (problems := _decode_problems(paths, images))
    ]
    by_rule: dict[str, list[str]] = {}
    present = [
        _avss_pair_problems(path.name, sem, colour, frame, by_rule)
        for path, sem, colour, frame in zip(record.semantic_mask_paths, semantic, rgb, frames, strict=False)
    ]
    valid = bool(present) and all(p is not None for p in present)
    classes = sorted(set().union(*(p for p in present if p is not None)) - {0})
    return {
        "frame_problems": _decode_problems(record.frame_paths, frames),
        "num_frame_files": _num_frame_files(record.frame_paths[0].parent) if record.frame_paths else 0,
        "mask_problems": _joined(undecoded),
        "mask_size_problems": _joined(by_rule.get("size", [])),
        "semantic_mode_problems": _joined(by_rule.get("semantic_mode", [])),
        "semantic_value_problems": _joined(by_rule.get("semantic_value", [])),
        "rgb_mode_problems": _joined(by_rule.get("rgb_mode", [])),
        "rgb_colour_problems": _joined(by_rule.get("rgb_colour", [])),
        "rgb_semantic_problems": _joined(by_rule.get("agree", [])),
        "semantic_classes": "_".join(AVSS_CLASSES[k] for k in classes) if valid else None,
    }


def inspect_avss_images(records: Sequence[AvssRecord]) -> list[dict[str, Any]]:
    """Decode every frame and both masks of every frame of AVSS (v2) clips once; return the suite's image columns.

    Args:
        records: AVSBench-semantic v2 clips (``crab.datasets.avss``).

    Returns:
        Per record, in order, each None when there is nothing to report: ``frame_problems`` /
        ``mask_problems`` (files that do not decode), ``mask_size_problems`` (a mask whose size is not its
        frame's), ``semantic_mode_problems`` (``labels_semantic`` not 8-bit grey), ``semantic_value_problems``
        (values that are no AVSS class index, >= 71), ``rgb_mode_problems`` (``labels_rgb`` not RGB),
        ``rgb_colour_problems`` (colours outside :data:`AVSS_PALETTE`), ``rgb_semantic_problems`` (a valid
        colour mask that is not the palette colour of its valid semantic map, pixel for pixel); and
        ``num_frame_files`` (``{i}.jpg`` files in the clip's ``frames`` folder) and ``semantic_classes``
        (the class names present in the semantic maps, background left out, ``_``-joined as ``a_obj``;
        None when some semantic map is missing, undecodable, not grey or holds a non-class value).
    """
    workers = min(_MAX_PROBE_THREADS, os.cpu_count() or 1)  # PIL releases the GIL while decoding
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(
            tqdm(
                pool.map(_avss_image_columns, records),
                total=len(records),
                desc="decode frames",
                unit="clip",
                disable=None,
            )
        )


def _avss_columns(record: AvssRecord) -> dict[str, Any]:
    """The wav (the one media file decoded) and, as ``video_path``, the clip's folder."""
    return {"audio_path": str(record.audio_path), "video_path": str(record.audio_path.parent)}


def _read_avss_v2(root: Path, split: str | None) -> ReadResult[AvssRecord]:
    """``read_avss`` of the v2 subset; ``split=None`` (the extra read of a one-file dataset) returns only the
    rejected rows no (split, subset) read reports: an unknown split or subset label, a wrong field count.
    Rows of the v1 subsets (S4 / MS3, validated from their own layout) are left out."""
    if split is not None:
        return read_avss(root, split, subset=_AVSS_SUBSET)  # type: ignore[arg-type]
    everything = read_avss(root)
    known = {r.source for s in AVSS_SPLITS for sub in AVSS_SUBSETS for r in read_avss(root, s, sub).rejected}  # type: ignore[arg-type]
    return ReadResult(rejected=[r for r in everything.rejected if r.source not in known])


_COMMON = ("item_id", "split", "source", "video_id", "video_path")
_MEDIA = ("media_error", "duration_s", "audio_sample_rate")
_AVS_IMAGES = (
    "frame_problems",
    "mask_problems",
    "mask_mode_problems",
    "mask_value_problems",
    "mask_size_problems",
    "mask_frames",
)
_REF_AVS_IMAGES = (
    "frame_problems",
    "mask_problems",
    "mask_mode_problems",
    "mask_value_problems",
    "mask_size_problems",
    "num_frame_files",
    "null_mask_problems",
    "empty_mask_problems",
)
_AVSS_IMAGES = (
    "frame_problems",
    "num_frame_files",
    "mask_problems",
    "mask_size_problems",
    "semantic_mode_problems",
    "semantic_value_problems",
    "rgb_mode_problems",
    "rgb_colour_problems",
    "rgb_semantic_problems",
    "semantic_classes",
)


def _avs_spec(
    read: Callable[[Path, Any], Any],
    suite: Callable[[ValidationConfig], list[Check]],
    folder: str,
    extra_columns: tuple[str, ...] = (),
) -> _DatasetSpec:
    """S4 / MS3: one sub-folder of the shared ``avsbench`` root, one CSV for all splits, the wav decoded
    (no video stream) and the frame / mask PNGs inspected."""
    return _DatasetSpec(
        splits=AVSBENCH_SPLITS,
        read=read,
        columns=(*_COMMON, "audio_path", *extra_columns),
        derive=None,
        suite=suite,
        encode=_avs_columns,
        root_field="avsbench",
        folder=folder,
        media_column="audio_path",
        need_video=False,
        one_file=True,
        inspect=inspect_avs_images,
        inspected=_AVS_IMAGES,
    )


_SPECS: dict[str, _DatasetSpec] = {
    "ave": _DatasetSpec(
        splits=tuple(AVE_SPLIT_FILES),
        read=read_ave,
        columns=(*_COMMON, "category", "quality", "start_s", "end_s"),
        derive=derive_ave,
        suite=ave_suite,
    ),
    "llp": _DatasetSpec(
        splits=tuple(LLP_SPLIT_FILES),
        read=read_llp,
        columns=(*_COMMON, "labels", "num_audio_events", "num_visual_events", "dense_events"),
        derive=derive_llp,
        suite=llp_suite,
        encode=_llp_columns,
    ),
    "s4": _avs_spec(read_s4, s4_suite, "Single-source", ("category",)),
    "ms3": _avs_spec(read_ms3, ms3_suite, "Multi-sources"),
    "music_avqa": _DatasetSpec(
        splits=AVQA_SPLITS,
        read=read_music_avqa,
        columns=(*_COMMON, "question_id", "question_type", "question_content", "templ_values", "answer"),
        derive=derive_music_avqa,
        suite=music_avqa_suite,
        encode=_avqa_columns,
    ),
    "valor": _DatasetSpec(
        splits=VALOR_SPLITS, read=read_valor, columns=(*_COMMON, "caption"), derive=None, suite=valor_suite
    ),
    "ref_avs": _DatasetSpec(
        splits=REF_AVS_SPLITS,
        read=read_ref_avs,
        columns=(*_COMMON, "audio_path", "media_id", "object_name", "fid", "expression"),
        derive=None,
        suite=ref_avs_suite,
        encode=_ref_avs_columns,
        media_column="audio_path",
        need_video=False,
        one_file=True,
        inspect=inspect_ref_avs_images,
        inspected=_REF_AVS_IMAGES,
    ),
    "avss": _DatasetSpec(
        splits=AVSS_SPLITS,
        read=_read_avss_v2,
        columns=(*_COMMON, "audio_path", "sounding_object"),
        derive=derive_avss,
        suite=avss_suite,
        encode=_avss_columns,
        media_column="audio_path",
        need_video=False,
        one_file=True,
        inspect=inspect_avss_images,
        inspected=_AVSS_IMAGES,
    ),
    "lvis": _DatasetSpec(
        splits=LVIS_SPLITS,
        read=read_lvis,
        columns=LVIS_COLUMNS,
        derive=None,
        suite=lvis_suite,
        encode=lvis_columns,
        media_column=None,
        inspect=inspect_lvis_images,
        inspected=LVIS_IMAGE_COLUMNS,
    ),
}


def _wav_header_samples(path: str) -> int | None:
    """The samples a PCM wav's header announces (None: not a PCM wav, or a streamed one of unknown length).

    FFmpeg estimates a truncated wav's duration from its file size and decodes what is there without an
    error, so a cut-off wav would only show as "too short"; comparing with the header names it truncated.
    """
    try:
        with wave.open(path, "rb") as wav:
            announced = wav.getnframes()
    except (wave.Error, EOFError, OSError):
        return None
    return announced if 0 < announced < 0xFFFFFFFF // 8 else None  # 0 / 0xFFFFFFFF: written to a pipe


def probe_media(paths: Sequence[str], need_video: bool = True) -> dict[str, dict[str, Any]]:
    """Fully decode each distinct media file once and return its media columns.

    Args:
        paths: media files (duplicates are probed once).
        need_video: require a video stream (clips); False for audio files (AVSBench's wavs). An audio
            stream is always required.

    Returns:
        path -> ``{"media_error": reason | None, "duration_s": float | nan, "audio_sample_rate": float | nan}``;
        the reason is the :class:`crab.errors.DataError` reason of a file that does not decode with the
        required streams, or the truncation of a wav that decodes short of its header.
    """

    def one(path: str) -> dict[str, Any]:
        try:
            info = verify_decodes(path, need_video=need_video, need_audio=True)
        except DataError as err:
            return {"media_error": err.reason, "duration_s": math.nan, "audio_sample_rate": math.nan}
        announced = _wav_header_samples(path) if path.lower().endswith(".wav") else None
        if announced is not None and info.num_audio_samples < announced * _WAV_COMPLETE:
            reason = f"truncated or corrupt (decoded {info.num_audio_samples} of {announced} audio samples)"
            return {"media_error": reason, "duration_s": math.nan, "audio_sample_rate": math.nan}
        return {
            "media_error": None,
            "duration_s": float(info.duration_s) if info.duration_s is not None else math.nan,
            "audio_sample_rate": float(info.audio_sample_rate) if info.audio_sample_rate else math.nan,
        }

    unique = sorted(set(paths))
    with ThreadPoolExecutor(max_workers=min(_MAX_PROBE_THREADS, os.cpu_count() or 1)) as pool:
        columns = list(tqdm(pool.map(one, unique), total=len(unique), desc="decode media", unit="file", disable=None))
    return dict(zip(unique, columns, strict=True))


def _read_all(spec: _DatasetSpec, root: Path) -> tuple[list[Any], list[tuple[str, Rejection]]]:
    """Every split's records and rejections (with the split each rejection was read from, "" if unknown)."""
    records: list[Any] = []
    rejected: list[tuple[str, Rejection]] = []
    for split in spec.splits:
        result = spec.read(root, split)
        records.extend(result.records)
        rejected.extend((split, r) for r in result.rejected)
    if spec.one_file:  # rows of no known split: only a read of every split reports them
        seen = {r.source for _, r in rejected}
        rejected.extend(("", r) for r in spec.read(root, None).rejected if r.source not in seen)
    return records, rejected


def _validate_dataset(
    gate: Gate, name: str, spec: _DatasetSpec, root: Path, folder: str, validation: ValidationConfig
) -> GroupReport:
    """Read (from ``root``), probe and check one dataset; return its report (naming its ``folder``)."""
    import pandas as pd

    started = time.perf_counter()
    records, rejected = _read_all(spec, root)
    rows = [spec.row(r) for r in records]
    read_s = time.perf_counter() - started
    media: dict[str, dict[str, Any]] = {}
    if spec.media_column is not None:  # else the media columns stay empty (NaN) and no check reads them
        media = probe_media([row[spec.media_column] for row in rows], need_video=spec.need_video)
        for row in rows:
            row.update(media[row[spec.media_column]])
    if spec.inspect is not None:
        for row, columns in zip(rows, spec.inspect(records), strict=True):
            row.update(columns)
    probe_s = time.perf_counter() - started - read_s
    frame = pd.DataFrame(rows, columns=[*spec.columns, *_MEDIA, *spec.inspected])  # one row per record, in file order
    frame["duration_s"] = frame["duration_s"].astype(float)
    frame["audio_sample_rate"] = frame["audio_sample_rate"].astype(float)
    if spec.derive is not None:
        frame = spec.derive(frame)
    run = gate.validate(name, frame, spec.suite(validation))

    quarantined = [
        QuarantinedItem(item_id=r.item_id, split=split, source=r.source, reasons=(r.reason,)) for split, r in rejected
    ]
    for label, reasons in run.reasons.items():
        row = frame.loc[label]
        quarantined.append(
            QuarantinedItem(
                item_id=str(row["item_id"]), split=str(row["split"]), source=str(row["source"]), reasons=tuple(reasons)
            )
        )
    report = GroupReport(
        name=name,
        root=folder,
        present=True,
        num_items=len(records) + len(rejected),
        quarantined=tuple(sorted(quarantined, key=lambda q: q.source)),
        expectations=tuple(run.outcomes),
    )
    log.info(
        "%s: %s: %d items, %d media files%s checked in %.1f s (read %.1f s, decode %.1f s, suite %.1f s)",
        STAGE,
        name,
        report.num_items,
        len(media),
        " and their images" if spec.inspect is not None else "",
        time.perf_counter() - started,
        read_s,
        probe_s,
        time.perf_counter() - started - read_s - probe_s,
    )
    return report


def validate_raw(params: Params) -> ValidationResult:
    """Run the quality gates over every raw dataset; write the report and the data docs.

    Args:
        params: reads ``datasets`` (roots), ``validation`` (thresholds) and ``avuie.tasks`` (which
            datasets are required).

    Returns:
        The per-dataset reports (also written to ``reports/validation/raw.json``).

    Raises:
        CrabError: a dataset folder needed by ``avuie.tasks`` is absent, or a dataset's failure rate
            exceeds ``validation.max_failure_rate`` (the report is written first).
        DataError: an annotation file of a present dataset is missing or unreadable as a whole.
    """
    places: dict[str, tuple[Path, str]] = {}  # dataset -> (the root its reader takes, the folder that must exist)
    needed: dict[str, list[str]] = {}
    for name, spec in _SPECS.items():
        root = Path(getattr(params.datasets, spec.root_field or name))
        places[name] = (root, str(root / spec.folder))  # Path(x) / "" is Path(x)
        for task in params.avuie.tasks:
            if TASKS[Task(task)].dataset in (name, spec.root_field):
                needed.setdefault(name, []).append(task)
    for name, (_, folder) in places.items():
        if not Path(folder).is_dir() and name in needed:
            raise CrabError(
                f"{STAGE}: dataset folder {folder} ({name}) not found; avuie.tasks {needed[name]} need it "
                "(run `crab synth` or add the dataset there)"
            )

    groups: dict[str, GroupReport] = {}
    with open_gate(STAGE, DOCS_DIR) as gate:
        for name, (root, folder) in places.items():
            if not Path(folder).is_dir():
                log.warning("%s: dataset folder %s (%s) is absent; skipped (no task needs it)", STAGE, folder, name)
                groups[name] = GroupReport(name=name, root=folder, present=False, num_items=0)
                continue
            groups[name] = _validate_dataset(gate, name, _SPECS[name], root, folder, params.validation)

    result = ValidationResult(
        stage=STAGE,
        max_failure_rate=params.validation.max_failure_rate,
        groups=groups,
        report_path=REPORT_PATH,
        docs_path=DOCS_DIR,
    )
    write_report(result, REPORT_PATH)
    log_summary(result)
    enforce_max_failure_rate(result)
    return result
