"""Reader of Ref-AVS (Wang et al., ECCV'24): referring audio-visual segmentation, one metadata file.

Each row is a referring expression for one object of a 10-s clip, with ground-truth masks for its 10
frames. Layout (dataset-layouts.md section 6, from GeWu-Lab/Ref-AVS ``data/metadata.csv``,
``datasets/dataset_refavs.py`` and ``configs/config.py``)::

    REFAVS/
    ├── metadata.csv                              # vid,uid,split,fid,exp (CRLF)
    ├── media/{media_id}/audio.wav
    ├── media/{media_id}/frames/{0..9}.jpg        # 0-based, one per second
    └── gt_mask/{media_id}/fid_{fid}/{00000..00009}.png   # 0 = background, 255 = referred object

Format facts (6.1-6.3, verified on ``metadata.csv``):

- comma-separated, header ``vid,uid,split,fid,exp``, CRLF endings, standard quoting (one ``exp`` holds
  quoted commas);
- ``uid`` is ``{media_id}_{object}_{k}``; the media folder is ``uid.rsplit('_', 2)[0]``, *not* ``vid``
  (the official loader derives it so). For normal rows it equals ``vid``; for null rows (object
  ``null``: no object matches the expression) it is ``null_c-{vid}`` or ``null_m-{vid}``;
- splits ``train``, ``val``, ``test_s`` (seen), ``test_u`` (unseen), ``test_n`` (null); 25 rows say
  ``TODO`` and are rejected as having an unknown split;
- ``uid`` is not unique (one repeat in test_s, ten in test_u), so the key of a row is its ``source``.

Unconfirmed, hence tolerated: that ``media/null_*-{vid}`` folders exist (if absent, the clip's own
``media/{vid}`` is used: same audio and frames) and that null rows have mask folders (if absent, the
record has no mask paths, i.e. all-zero masks).

The reader checks the split, the ``uid`` shape and its agreement with ``vid``, the object category,
``fid`` and ``exp``, and (``check_media``) that the wav, the 10 frames and the 10 masks exist.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from crab.datasets.tables import file_name_problem, missing_media, read_csv_rows, select_rows
from crab.datasets.records import ReadResult, Rejection
from crab.datasets.vocab_seg import REF_AVS_NULL_OBJECT, REF_AVS_OBJECTS
from crab.errors import DataError

__all__ = ["REF_AVS_NUM_FRAMES", "REF_AVS_SPLITS", "RefAvsRecord", "RefAvsSplit", "read_ref_avs"]

logger = logging.getLogger(__name__)

RefAvsSplit = Literal["train", "val", "test_s", "test_u", "test_n"]
REF_AVS_SPLITS: tuple[str, ...] = ("train", "val", "test_s", "test_u", "test_n")
#: Frames (and masks) per clip, one per second.
REF_AVS_NUM_FRAMES = 10

_HEADER = ["vid", "uid", "split", "fid", "exp"]
_NULL_PREFIX = re.compile(r"^null_[a-z]+-")
_OBJECTS = frozenset(REF_AVS_OBJECTS)


@dataclass(frozen=True)
class RefAvsRecord:
    """One Ref-AVS expression with the clip and masks it refers to.

    Attributes:
        item_id: ``uid`` (not unique in the release; ``source`` is).
        video_id: ``vid``, the clip ``{ytid}_{start_ms}_{end_ms}``.
        media_id: the media / mask folder name derived from ``uid``.
        object_name: the referred object's category, ``"null"`` for null rows.
        fid: selects the mask folder ``fid_{fid}``.
        expression: ``exp``, the referring expression.
        split: one of :data:`REF_AVS_SPLITS`.
        audio_path: the clip's ``audio.wav``.
        frame_paths: the 10 frames in time order.
        mask_paths: ``mask_paths[i]`` labels ``frame_paths[i]``; empty for a null row without masks (all zero).
        source: ``"<metadata.csv>:<line>"``.
    """

    item_id: str
    video_id: str
    media_id: str
    object_name: str
    fid: int
    expression: str
    split: RefAvsSplit
    audio_path: Path
    frame_paths: tuple[Path, ...]
    mask_paths: tuple[Path, ...]
    source: str

    @property
    def is_null(self) -> bool:
        """True for a null row: no object matches the expression (evaluated with the null metric S)."""
        return self.object_name == REF_AVS_NULL_OBJECT


def _is_count(text: str) -> bool:
    """True for a non-negative integer written in ASCII digits."""
    return text.isascii() and text.isdigit()


def _parse_row(root: Path, fields: list[str], split: RefAvsSplit, source: str) -> RefAvsRecord | Rejection:
    vid, uid, _, fid_text, expression = fields
    parts = uid.rsplit("_", 2)
    if len(parts) != 3 or not _is_count(parts[2]) or not parts[0]:
        return Rejection("ref_avs", uid, source, f"uid {uid!r} is not {{media}}_{{object}}_{{k}}")
    media_id, object_name = parts[0], parts[1]
    problem = file_name_problem("media folder (from uid)", media_id)
    if not problem and object_name not in _OBJECTS:
        problem = f"unknown object {object_name!r} in uid (not one of Ref-AVS's {len(REF_AVS_OBJECTS)} categories)"
    is_null_dir = _NULL_PREFIX.match(media_id) is not None
    if not problem and _NULL_PREFIX.sub("", media_id) != vid:
        problem = f"uid's media folder {media_id!r} does not belong to vid {vid!r}"
    if not problem and not _is_count(fid_text):
        problem = f"fid {fid_text!r} is not a whole number"
    if not problem and not expression:
        problem = "empty exp"
    if problem:
        return Rejection("ref_avs", uid, source, problem)

    media = root / "media" / media_id
    if is_null_dir and not media.is_dir() and (root / "media" / vid).is_dir():
        media = root / "media" / vid
    masks = root / "gt_mask" / media_id / f"fid_{int(fid_text)}"
    has_masks = not (is_null_dir and not masks.is_dir())
    return RefAvsRecord(
        item_id=uid,
        video_id=vid,
        media_id=media_id,
        object_name=object_name,
        fid=int(fid_text),
        expression=expression,
        split=split,
        audio_path=media / "audio.wav",
        frame_paths=tuple(media / "frames" / f"{i}.jpg" for i in range(REF_AVS_NUM_FRAMES)),
        mask_paths=tuple(masks / f"{i:05d}.png" for i in range(REF_AVS_NUM_FRAMES)) if has_masks else (),
        source=source,
    )


def read_ref_avs(root: Path, split: RefAvsSplit | None = None, check_media: bool = True) -> ReadResult[RefAvsRecord]:
    """Read Ref-AVS expressions from ``metadata.csv``.

    Args:
        root: the ``REFAVS`` folder.
        split: one of :data:`REF_AVS_SPLITS`, or None for every row. Rows with an unknown split (the
            release's ``TODO`` rows) are rejected only when ``split`` is None, so that a per-split loop
            reports them once.
        check_media: reject rows whose wav, frames or masks are not all files.

    Returns:
        One :class:`RefAvsRecord` per usable row (``source`` = ``"<file>:<line>"``, the line a row
        starts on) and one :class:`Rejection` (dataset ``"ref_avs"``) per row with a wrong field
        count, an unknown split, a malformed ``uid``, an unknown object, a media folder that is not
        ``vid``'s, a ``fid`` that is not a whole number, an empty ``exp``, or a missing media file.

    Raises:
        ValueError: unknown ``split``.
        DataError: ``metadata.csv`` is missing, unreadable or has another header.
    """
    if split is not None and split not in REF_AVS_SPLITS:
        raise ValueError(f"unknown Ref-AVS split {split!r}; expected one of {list(REF_AVS_SPLITS)} or None")
    root = Path(root)
    path = root / "metadata.csv"
    rows = read_csv_rows(path)
    header = [field.strip() for field in rows[0][1]] if rows else []
    if header != _HEADER:
        raise DataError(path, f"expected the header {','.join(_HEADER)!r}, got {','.join(header)!r}")

    parsed: list[tuple[str | None, RefAvsRecord | Rejection]] = []
    for lineno, fields in rows[1:]:
        source = f"{path}:{lineno}"
        fields = [field.strip() for field in fields]
        uid = fields[1] if len(fields) > 1 else ""
        if len(fields) != len(_HEADER):
            reason = f"expected {len(_HEADER)} comma-separated fields ({', '.join(_HEADER)}), got {len(fields)}"
            parsed.append((None, Rejection("ref_avs", uid, source, reason)))
            continue
        row_split = fields[2]
        if row_split not in REF_AVS_SPLITS:
            reason = f"unknown split {row_split!r} (expected one of {list(REF_AVS_SPLITS)})"
            parsed.append((None, Rejection("ref_avs", uid, source, reason)))
            continue
        item = _parse_row(root, fields, cast(RefAvsSplit, row_split), source)
        if isinstance(item, RefAvsRecord) and check_media:
            problem = missing_media([item.audio_path, *item.frame_paths, *item.mask_paths])
            item = Rejection("ref_avs", uid, source, problem) if problem else item
        parsed.append((row_split, item))

    result = select_rows(parsed, None if split is None else (lambda key: key == split), path)
    logger.info(
        "Ref-AVS %s: %d expressions read, %d rejected (%s)",
        split or "all splits",
        len(result.records),
        len(result.rejected),
        path,
    )
    return result
