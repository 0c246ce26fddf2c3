"""The raw quality gate of Crab's LVIS samples (segmentation pre-training, ``crab.datasets.lvis``).

One row per sample; ``crab.quality.raw`` reads the rows, calls :func:`inspect_lvis_images` for the image
columns and runs :func:`lvis_suite` through Great Expectations like every other raw suite. A sample is
usable when its image decodes, its mask is a binary single-channel PNG of the image's size that marks
something, its box lies in the image and is the mask's bounding box, its area is the mask's pixel count,
its name and definition (the prompt's words) are not empty, and its id (the mask's file name) is unique
over both splits.

Tolerances, so that real LVIS passes (AV-Synth's writer makes all of these exact, and its tests say so):

- box: each edge within :data:`BOX_TOLERANCE_PX` (1 px) of the mask's. LVIS boxes are the polygon's
  extent in continuous coordinates (``x = 10.3``), while the mask is its rasterisation to whole pixels, so
  an edge may fall on either neighbouring pixel;
- area: within :data:`AREA_REL_TOLERANCE` (10 %) of the mask's pixel count, or :data:`AREA_ABS_TOLERANCE_PX`
  (8 px) for small objects. LVIS ``area`` is the polygon's area, and rasterising counts each boundary pixel
  whole or not at all, so the two differ by up to about half the perimeter in pixels: a few percent for the
  objects Crab keeps (``area >= 1000``), but a larger share, and a few pixels absolute, for tiny ones.

Masks may be 8-bit grey (``L``) holding only 0 and 255, or 1-bit (``1``, binary by construction), as the
other mask suites accept; 0 / 1 masks would read as nearly empty after division by 255 and are quarantined.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from crab.datasets.lvis import LvisRecord
from crab.quality.suites import BINARY_MASK_MODES, BINARY_MASK_VALUES, Check

if TYPE_CHECKING:
    from crab.config import ValidationConfig

__all__ = [
    "AREA_ABS_TOLERANCE_PX",
    "AREA_REL_TOLERANCE",
    "BOX_TOLERANCE_PX",
    "LVIS_COLUMNS",
    "LVIS_IMAGE_COLUMNS",
    "inspect_lvis_images",
    "lvis_columns",
    "lvis_suite",
]

#: Largest distance of a box edge from the mask's bounding box edge, and of the box from the image border.
BOX_TOLERANCE_PX = 1.0
#: Largest relative difference of ``area`` from the mask's pixel count ...
AREA_REL_TOLERANCE = 0.10
#: ... or absolute one, whichever is larger (module docstring: polygon area vs rasterised mask).
AREA_ABS_TOLERANCE_PX = 8.0

#: The annotation columns of a sample's row (``bbox``, ``image_path``, ``mask_path`` as text: :func:`lvis_columns`).
LVIS_COLUMNS: tuple[str, ...] = (
    "item_id", "split", "source", "image_id", "category_id", "name", "definition", "bbox", "area", "image_path",
    "mask_path",
)  # fmt: skip
#: The columns :func:`inspect_lvis_images` fills, each None when there is nothing to report.
LVIS_IMAGE_COLUMNS: tuple[str, ...] = (
    "image_problems", "mask_problems", "mask_mode_problems", "mask_value_problems", "mask_size_problems",
    "mask_empty_problems", "bbox_outside_problems", "bbox_mask_problems", "area_mask_problems",
)  # fmt: skip

_MAX_THREADS = 8  # PIL releases the GIL while decoding


@dataclass(frozen=True)
class _Decoded:
    """What one fully decoded image showed (a mask's foreground summarised, not kept).

    Attributes:
        size: (width, height) in pixels.
        mode: PIL mode.
        values: a mask's distinct values (``L`` or ``1`` read as 0 / 255); ``()`` for an image or another mode.
        count: a mask's foreground (non-zero) pixels.
        box: a mask's foreground bounding box ``(x0, y0, x1, y1)``, ends exclusive; None when empty.
    """

    size: tuple[int, int]
    mode: str
    values: tuple[int, ...] = ()
    count: int = 0
    box: tuple[int, int, int, int] | None = None


def _decode(path: Path, is_mask: bool) -> _Decoded | str:
    """Decode an image once (header, then every row): its facts, or the reason it cannot be used."""
    try:
        with Image.open(path) as image:
            image.load()  # a truncated or corrupt body raises here, not at open
            size, mode = image.size, image.mode
            if not is_mask or mode not in BINARY_MASK_MODES:
                return _Decoded(size, mode)
            values = tuple(v for v, n in enumerate(image.histogram()) if n)  # a 1-bit image's bins are 0 and 255
            foreground = np.asarray(image) != 0  # (H, W)
    except FileNotFoundError:
        return "file not found"
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return f"truncated or corrupt ({error})"
    rows, cols = np.flatnonzero(foreground.any(axis=1)), np.flatnonzero(foreground.any(axis=0))
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1) if len(rows) else None
    return _Decoded(size, mode, values, int(foreground.sum()), box)


def _fmt_box(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def _outside(record: LvisRecord, image: _Decoded) -> str | None:
    """``bbox_outside_problems`` of a sample whose image decodes."""
    x, y, w, h = record.bbox
    (width, height), tol = image.size, BOX_TOLERANCE_PX
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        return f"{_fmt_box(record.bbox)} in a {width}x{height} px image"
    return None


def _geometry_problems(record: LvisRecord, mask: _Decoded) -> dict[str, str | None]:
    """The mask-against-annotation columns of a sample whose mask is a valid binary mask."""
    x, y, w, h = record.bbox
    name, tol = record.mask_path.name, BOX_TOLERANCE_PX
    out: dict[str, str | None] = {}
    if mask.box is None:
        out["mask_empty_problems"] = f"{name} marks no pixel"
        return out
    x0, y0, x1, y1 = mask.box
    if max(abs(x - x0), abs(y - y0), abs(x + w - x1), abs(y + h - y1)) > tol:
        out["bbox_mask_problems"] = f"bbox {_fmt_box(record.bbox)}, mask {name} {_fmt_box((x0, y0, x1 - x0, y1 - y0))}"
    allowed = max(AREA_REL_TOLERANCE * mask.count, AREA_ABS_TOLERANCE_PX)
    if abs(record.area - mask.count) > allowed:
        out["area_mask_problems"] = f"area {record.area:g}, mask {name} {mask.count} px (allowed +- {allowed:g})"
    return out


def _columns(record: LvisRecord, image: _Decoded | str, mask: _Decoded | str) -> dict[str, Any]:
    """The image columns of one sample from its decoded image and mask."""
    columns: dict[str, Any] = dict.fromkeys(LVIS_IMAGE_COLUMNS)
    if isinstance(image, str):
        columns["image_problems"] = f"{record.image_path.name}: {image}"
    else:
        columns["bbox_outside_problems"] = _outside(record, image)
    if isinstance(mask, str):
        columns["mask_problems"] = f"{record.mask_path.name}: {mask}"
        return columns
    name = record.mask_path.name
    if mask.mode not in BINARY_MASK_MODES:
        columns["mask_mode_problems"] = f"{name} is mode {mask.mode}"
    extra = sorted(set(mask.values) - BINARY_MASK_VALUES)
    if extra:
        shown = ", ".join(map(str, extra[:5])) + (", ..." if len(extra) > 5 else "")
        columns["mask_value_problems"] = f"{name} holds {shown}"
    if isinstance(image, _Decoded) and mask.size != image.size:
        (mw, mh), (iw, ih) = mask.size, image.size
        columns["mask_size_problems"] = f"{name} is {mw}x{mh} px, image {record.image_path.name} {iw}x{ih} px"
    if mask.mode in BINARY_MASK_MODES and not extra:  # box and area are read from valid binary masks only
        columns.update(_geometry_problems(record, mask))
    return columns


def inspect_lvis_images(records: Sequence[LvisRecord]) -> list[dict[str, Any]]:
    """Decode every distinct image and every mask of LVIS samples once and return the suite's image columns.

    Args:
        records: LVIS samples (``crab.datasets.lvis``); samples of one image share its decode.

    Returns:
        Per record, in order, the :data:`LVIS_IMAGE_COLUMNS`, each None when there is nothing to report:
        ``image_problems`` / ``mask_problems`` (files that do not decode), ``mask_mode_problems`` (not
        ``L`` or ``1``), ``mask_value_problems`` (grey values other than 0 / 255), ``mask_size_problems``
        (not the image's size) and, for a valid binary mask, ``mask_empty_problems`` (no foreground),
        ``bbox_outside_problems`` (the box leaves the image by more than 1 px), ``bbox_mask_problems``
        (a box edge more than 1 px from the mask's bounding box) and ``area_mask_problems`` (``area`` off
        the mask's pixel count by more than the tolerance; module docstring).
    """
    images = sorted({r.image_path for r in records})
    jobs = [(path, False) for path in images] + [(r.mask_path, True) for r in records]
    with ThreadPoolExecutor(max_workers=min(_MAX_THREADS, os.cpu_count() or 1)) as pool:
        decoded = list(
            tqdm(
                pool.map(lambda job: _decode(*job), jobs),
                total=len(jobs),
                desc="decode images",
                unit="image",
                disable=None,
            )
        )
    by_image = dict(zip(images, decoded[: len(images)], strict=True))
    masks = decoded[len(images) :]
    return [_columns(r, by_image[r.image_path], mask) for r, mask in zip(records, masks, strict=True)]


def lvis_columns(record: LvisRecord) -> dict[str, Any]:
    """The structured columns as text: ``bbox`` as its JSON list, the paths as strings."""
    return {
        "bbox": json.dumps(list(record.bbox)),
        "image_path": str(record.image_path),
        "mask_path": str(record.mask_path),
    }


def _null(name: str, column: str, reason: str) -> Check:
    return Check(name, "ExpectColumnValuesToBeNull", {"column": column}, reason)


def lvis_suite(validation: ValidationConfig) -> list[Check]:
    """The LVIS suite (module docstring): image and mask decode, binary mask of the image's size, non-empty,
    box in the image and equal to the mask's bounding box, area the mask's count, name / def, unique ids.

    ``validation`` is not read (no media durations or rates: stills only); it is the suites' common argument.
    """
    return [
        _null("images_decode", "image_problems", "image not decodable: {image_problems}"),
        _null("masks_decode", "mask_problems", "mask not decodable: {mask_problems}"),
        _null("masks_single_channel", "mask_mode_problems",
              "mask not single-channel 8-bit (L) or 1-bit (1): {mask_mode_problems}"),
        _null("masks_binary", "mask_value_problems",
              "mask values other than 0 (background) and 255 (the object): {mask_value_problems}"),
        _null("mask_size_is_image_size", "mask_size_problems", "mask size differs from its image's: {mask_size_problems}"),
        _null("mask_not_empty", "mask_empty_problems", "empty mask: {mask_empty_problems}"),
        _null("bbox_inside_image", "bbox_outside_problems", "bbox leaves the image: {bbox_outside_problems}"),
        _null("bbox_is_mask_box", "bbox_mask_problems",
              f"bbox is not the mask's bounding box (to {BOX_TOLERANCE_PX:g} px): {{bbox_mask_problems}}"),
        _null("area_is_mask_count", "area_mask_problems", "area is not the mask's pixel count: {area_mask_problems}"),
        Check("name_not_empty", "ExpectColumnValuesToMatchRegex", {"column": "name", "regex": r"\S"}, "empty name"),
        Check("def_not_empty", "ExpectColumnValuesToMatchRegex", {"column": "definition", "regex": r"\S"}, "empty def"),
        Check("id_unique", "ExpectColumnValuesToBeUnique", {"column": "item_id"},
              "id {item_id} occurs more than once (it names the mask file; every copy quarantined)"),
    ]  # fmt: skip
