"""Reader of Crab's LVIS samples: the data of its segmentation pre-training (P3, crab-reference section 3.4).

LVIS (Gupta et al., CVPR'19) annotates COCO 2017 images with instance masks of 1,203 categories. Crab does
not read the LVIS json: it reads its own per-annotation sample list, one binary mask per sample, and trains
the mask decoder on the prompt "... segment out the object that corresponding to the {name}, {def} in the
image." Layout (Crab ``scripts/pretrain/pretrain_seg.py``; the val file is our addition, LVIS v1 val
images being COCO val2017)::

    lvis/
    ├── train_samples.json              # JSON array of {id, image_id, category_id, bbox, name, def, area}
    ├── val_samples.json                # optional, same fields
    ├── train2017/{image_id:012d}.jpg   # COCO 2017 images
    ├── val2017/{image_id:012d}.jpg
    └── binary_mask/{id}.png            # one mask per sample: 0 = background, 255 = the object

Fields: ``id`` (the LVIS annotation id; it names the mask file, so it is unique over both files),
``image_id``, ``category_id``, ``bbox`` (COCO ``[x, y, w, h]`` in image pixels), ``name`` (the LVIS
category name, synonyms with underscores and a parenthesised sense, ``bus_(vehicle)``: kept verbatim),
``def`` (its dictionary definition), ``area`` (the polygon area in pixels). Other keys are ignored.

Format tolerance: ids may be JSON integers or strings of digits (an integral float such as ``17.0`` is
accepted too); ``bbox`` and ``area`` must be JSON numbers. Crab keeps ``area >= 1000``; this reader does
not filter by area (the consumer does, with its own threshold). It checks what makes a sample usable:
the fields and their types, a positive box size, a non-negative area, a non-empty name, a unique id among
the entries read, and (``check_media``) that the image and the mask exist. Whether the mask fits the box
and the area is the quality gate's job (``crab.quality.lvis``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from crab.datasets.jsonarray import load_json_array
from crab.datasets.records import ReadResult, Rejection
from crab.datasets.tables import missing_media
from crab.errors import DataError

__all__ = ["LVIS_FIELDS", "LVIS_SPLITS", "LvisRecord", "LvisSplit", "read_lvis"]

logger = logging.getLogger(__name__)

LvisSplit = Literal["train", "val"]
LVIS_SPLITS: tuple[str, ...] = ("train", "val")
#: The keys every sample must have, in Crab's order.
LVIS_FIELDS: tuple[str, ...] = ("id", "image_id", "category_id", "bbox", "name", "def", "area")


@dataclass(frozen=True)
class LvisRecord:
    """One LVIS sample: an object of a category in an image, with its binary mask.

    Attributes:
        item_id: the sample's ``id`` (the annotation id) as text, e.g. ``"17"``.
        image_id: the COCO image id.
        category_id: the LVIS category id.
        name: the LVIS category name, verbatim (``"dog"``, ``"bus_(vehicle)"``).
        definition: the ``def`` field.
        bbox: COCO ``(x, y, w, h)`` in image pixels.
        area: the ``area`` field in pixels.
        split: ``"train"`` or ``"val"``.
        image_path: ``root / f"{split}2017" / f"{image_id:012d}.jpg"``.
        mask_path: ``root / "binary_mask" / f"{id}.png"``.
        source: ``"<file>[<index>]"``, e.g. ``"lvis/train_samples.json[17]"``.
    """

    item_id: str
    image_id: int
    category_id: int
    name: str
    definition: str
    bbox: tuple[float, float, float, float]
    area: float
    split: LvisSplit
    image_path: Path
    mask_path: Path
    source: str


def _as_id(value: Any) -> int | None:
    """A non-negative integer from a JSON integer, an integral float or a string of ASCII digits; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and value >= 0 else None
    if isinstance(value, str):
        text = value.strip()
        return int(text) if text.isascii() and text.isdigit() else None
    return None


def _as_number(value: Any) -> float | None:
    """A finite float from a JSON number (not a string, not a boolean); else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _shown(value: Any) -> str:
    """A value for a reason: its JSON type and (short) repr."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _parse_entry(root: Path, entry: Any, split: LvisSplit, source: str) -> LvisRecord | Rejection:
    if not isinstance(entry, dict):
        return Rejection("lvis", "", source, f"entry is a JSON {type(entry).__name__}, not an object")
    item_id = _as_id(entry.get("id"))
    item_text = "" if item_id is None else str(item_id)
    missing = [key for key in LVIS_FIELDS if entry.get(key) is None]
    if missing:
        return Rejection("lvis", item_text, source, f"missing or null field(s): {', '.join(missing)}")
    ids: dict[str, int] = {}
    for key in ("id", "image_id", "category_id"):
        number = _as_id(entry[key])
        if number is None:
            reason = f"{key} must be a non-negative integer or a string of digits, got {_shown(entry[key])}"
            return Rejection("lvis", item_text, source, reason)
        ids[key] = number
    name, definition = entry["name"], entry["def"]
    for key, value in (("name", name), ("def", definition)):
        if not isinstance(value, str):
            return Rejection("lvis", item_text, source, f"{key} must be a JSON string, got {_shown(value)}")
    if not name.strip():
        return Rejection("lvis", item_text, source, "empty name")
    raw_box = entry["bbox"]
    box = [_as_number(v) for v in raw_box] if isinstance(raw_box, list) else []
    if len(box) != 4 or any(v is None for v in box):
        reason = f"bbox must be a list of 4 numbers [x, y, w, h], got {_shown(raw_box)}"
        return Rejection("lvis", item_text, source, reason)
    x, y, w, h = cast(list[float], box)
    if w <= 0 or h <= 0:
        return Rejection("lvis", item_text, source, f"non-positive bbox size {w:g} x {h:g}")
    area = _as_number(entry["area"])
    if area is None:
        return Rejection("lvis", item_text, source, f"area must be a number, got {_shown(entry['area'])}")
    if area < 0:
        return Rejection("lvis", item_text, source, f"negative area {area:g}")
    return LvisRecord(
        item_id=item_text,
        image_id=ids["image_id"],
        category_id=ids["category_id"],
        name=name,
        definition=definition,
        bbox=(x, y, w, h),
        area=area,
        split=split,
        image_path=root / f"{split}2017" / f"{ids['image_id']:012d}.jpg",
        mask_path=root / "binary_mask" / f"{item_id}.png",
        source=source,
    )


def read_lvis(root: Path, split: LvisSplit | None = None, check_media: bool = True) -> ReadResult[LvisRecord]:
    """Read Crab's LVIS samples from ``{split}_samples.json``.

    Args:
        root: the ``lvis`` folder.
        split: ``"train"``, ``"val"``, or None for both. ``val_samples.json`` is optional: when it is
            absent the val split has no records (logged), and reading it is not an error.
        check_media: reject samples whose image or mask is not a file.

    Returns:
        One :class:`LvisRecord` per usable entry, in file order (``source`` = ``"<file>[<index>]"``), and
        one :class:`Rejection` (dataset ``"lvis"``) per entry that is not an object, misses a field, has
        an id / image_id / category_id that is no non-negative integer, a name or def that is no string,
        an empty name, a bbox that is not 4 numbers or has a non-positive width or height, an area that is
        no number or is negative, an id already read (in either file, when both are read), or a missing
        image or mask file.

    Raises:
        ValueError: unknown ``split``.
        DataError: ``train_samples.json`` is missing (when the train split is read), or a samples file is
            not a JSON array.
    """
    if split is not None and split not in LVIS_SPLITS:
        raise ValueError(f"unknown LVIS split {split!r}; expected one of {list(LVIS_SPLITS)} or None")
    root = Path(root)
    result: ReadResult[LvisRecord] = ReadResult()
    first: dict[str, str] = {}  # id -> source of its first entry
    for name in LVIS_SPLITS if split is None else (split,):
        known = cast(LvisSplit, name)
        path = root / f"{known}_samples.json"
        if not path.is_file():
            if known == "train":
                raise DataError(path, "file not found")
            logger.info("LVIS val: %s not found; no val samples", path)
            continue
        for index, entry in enumerate(load_json_array(path)):
            source = f"{path}[{index}]"
            item = _parse_entry(root, entry, known, source)
            if isinstance(item, LvisRecord):
                if item.item_id in first:
                    item = Rejection(
                        "lvis", item.item_id, source, f"duplicate id {item.item_id} (first at {first[item.item_id]})"
                    )
                else:
                    first[item.item_id] = source
                    problem = missing_media([item.image_path, item.mask_path]) if check_media else ""
                    item = Rejection("lvis", item.item_id, source, problem) if problem else item
            if isinstance(item, Rejection):
                result.rejected.append(item)
            else:
                result.records.append(item)
    logger.info(
        "LVIS %s: %d samples read, %d rejected (%s)",
        split or "all splits",
        len(result.records),
        len(result.rejected),
        root,
    )
    return result
