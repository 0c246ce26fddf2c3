"""SEG builder for AV-UIE: LVIS instances -> segmentation pre-training records (crab-reference 3.4).

One record per instance of Crab's LVIS sample list (:func:`crab.datasets.lvis.read_lvis`): the image as
``<image>`` (no audio), the request naming the category and its definition, the answer
:func:`crab.avuie.seg.format_answer` and the instance's mask as the label. There is no reasoning to add.

Small instances are left out as Crab leaves them out (``area >= 1000`` on COCO images, about 640 x 480), by the
same *share of the image* (:data:`MIN_AREA_FRACTION`, about 0.33 %), so that the rule means the same on
AV-Synth's 112-px images; each one is counted in ``stats.json`` (``targets.too_small``). The image size is
read from the mask's header (LVIS's samples carry no size).

The category's underscores (LVIS synonyms: ``baseball_bat``) read as spaces in the request, and a definition's
final period is dropped, since the request continues after it.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from crab.avuie.schema import AvuieRecord, make_id
from crab.avuie.seg import SegLabel, format_answer
from crab.errors import DataError
from crab.tasks import TASKS, Task

if TYPE_CHECKING:
    from crab.datasets.lvis import LvisRecord
    from crab.synth.scene import Scene

__all__ = ["MIN_AREA_FRACTION", "build_seg", "seg_label"]

#: Crab's ``area >= 1000`` (crab-reference 3.4) as a share of a COCO image (640 x 480).
MIN_AREA_FRACTION = 1000 / (640 * 480)


def seg_label(record: LvisRecord) -> SegLabel:
    """The label of an LVIS instance, with the category and definition as the request says them."""
    return SegLabel(
        mask=record.mask_path.as_posix(),
        name=record.name.replace("_", " ").strip(),
        definition=record.definition.strip().removesuffix(".").strip(),
    )


def _image_area(mask_path: Path) -> int:
    try:
        with Image.open(mask_path) as mask:
            width, height = mask.size
    except OSError as err:
        raise DataError(mask_path, f"mask unreadable ({err})") from None
    return width * height


def build_seg(
    records: Sequence[LvisRecord],
    scenes: Mapping[str, Scene],  # noqa: ARG001 (the builder protocol; nothing to reason about)
    released_dir: Path | None,  # noqa: ARG001 (Crab's LVIS answers are templated, none released)
    use_reasoning: bool,  # noqa: ARG001 (the target has no reasoning either way)
    rng: random.Random,  # noqa: ARG001 (one wording)
    tally: Counter[str],
) -> list[AvuieRecord]:
    """One AV-UIE record per LVIS instance large enough to keep (module docstring)."""
    spec = TASKS[Task.SEG]
    out = []
    for record in records:
        if record.area < MIN_AREA_FRACTION * _image_area(record.mask_path):
            tally["too_small"] += 1
            continue
        label = seg_label(record)
        tally["generated"] += 1
        out.append(
            AvuieRecord(
                id=make_id(Task.SEG, record.split, record.item_id),
                task=Task.SEG.value,
                split=record.split,
                dataset=spec.dataset,
                item_id=record.item_id,
                source=record.source,
                video_id=str(record.image_id),
                media={"image": record.image_path.as_posix()},
                instruction=spec.instruction(name=label.name, definition=label.definition),
                target=format_answer(label, None),
                reasoning=False,
                label=label.to_dict(),
            )
        )
    return out
