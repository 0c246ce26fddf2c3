"""AVCAP targets for AV-UIE: captions of VALOR clips, Crab's audio-visual alignment data.

AV captioning (crab-reference section 4.7) pairs the instruction ``Please describe this video and audio.``
with the clip's human caption (VALOR ``desc``) as the target. Captions carry no tags and no reasoning
process, so the "w/o ERP" ablation leaves them unchanged; the formatter only normalises whitespace (a
caption is one line), and the parser takes the whole text as the caption.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crab.avuie.schema import AvuieRecord
from crab.tasks import TASKS, Task

if TYPE_CHECKING:  # annotations only: keeps this module (and so crab.tasks' parsers) free of media imports
    from crab.datasets.records import ValorRecord
    from crab.synth.scene import Scene

__all__ = ["AvcapLabel", "build_avcap", "format_answer", "normalize_caption", "parse_answer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AvcapLabel:
    """One caption, whitespace-normalised (:func:`normalize_caption`)."""

    caption: str


def normalize_caption(text: str) -> str:
    """Collapse runs of whitespace (newlines included) to single spaces and trim."""
    return " ".join(text.split())


def format_answer(label: AvcapLabel, reasoning_text: str | None) -> str:
    """The caption itself.

    Raises:
        ValueError: ``reasoning_text`` is given (captions have no reasoning process), or the caption is
            empty or not normalised.
    """
    if reasoning_text is not None:
        raise ValueError("AVCAP targets carry no reasoning process")
    if not label.caption or normalize_caption(label.caption) != label.caption:
        raise ValueError(f"AVCAP caption must be non-empty and whitespace-normalised: {label.caption!r}")
    return label.caption


def parse_answer(text: str) -> AvcapLabel | None:
    """The caption in a generated text (all of it, whitespace-normalised), or None if it is empty."""
    caption = normalize_caption(text)
    return AvcapLabel(caption=caption) if caption else None


def build_avcap(
    records: Sequence[ValorRecord],
    scenes: Mapping[str, Scene],
    released_dir: Path | None,
    use_reasoning: bool,
    rng: random.Random,
    tally: Counter[str] | None = None,
) -> list[AvuieRecord]:
    """AV-UIE records for VALOR captions, in input order.

    ``scenes``, ``released_dir``, ``use_reasoning`` and ``rng`` are accepted for the builders' common
    signature and do not change captions (no reasoning, no released files, nothing random).

    A row with an empty caption (which the quality gate quarantines before this stage) is skipped with a
    warning and counted as ``skipped`` in ``tally``.
    """
    tally = Counter() if tally is None else tally
    spec = TASKS[Task.AVCAP]
    instruction = spec.instruction()
    out = []
    for rec in records:
        label = AvcapLabel(caption=normalize_caption(rec.caption))
        if not label.caption:
            tally["skipped"] += 1
            log.warning("%s: empty caption; skipped", rec.source)
            continue
        tally["caption"] += 1
        out.append(
            AvuieRecord.from_raw(
                Task.AVCAP,
                spec.dataset,
                rec,
                instruction=instruction,
                target=format_answer(label, None),
                reasoning=False,
                label={"caption": label.caption},
            )
        )
    return out
