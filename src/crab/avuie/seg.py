"""Segmentation pre-training (``seg``): answer format of Crab's LVIS task (crab-reference 3.4).

Crab pre-trains its mask decoder on LVIS: one image, a category named with its definition, and the answer
``It is <mask_start><mask_0>...<mask_5><mask_end>`` whose six mask-token hidden states prompt the decoder.
There is no reasoning to give (the request names the object), so :func:`format_answer` ignores
``reasoning_text``: with or without ERP the target is the same sentence.

The label is the instance's mask (``frame`` 0: the image is a one-frame clip, so the decoder's CLIP levels
and the training dataset's mask lookup are those of the mask tasks) plus its category and definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crab.avuie.avs import MASK_BLOCK

__all__ = ["SegAnswer", "SegLabel", "format_answer", "label_from_dict", "parse_answer"]


@dataclass(frozen=True)
class SegLabel:
    """One LVIS instance as a segmentation target.

    Attributes:
        mask: path of its binary mask PNG (0 background, 255 the instance).
        name: the category as the prompt says it (LVIS's underscores read as spaces).
        definition: the category's definition (LVIS ``def``).
        frame: always 0 (an image is a one-frame clip).
    """

    mask: str
    name: str
    definition: str
    frame: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"frame": self.frame, "mask": self.mask, "name": self.name, "definition": self.definition}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SegLabel:
        return cls(mask=raw["mask"], name=raw["name"], definition=raw["definition"], frame=raw["frame"])


def label_from_dict(raw: dict[str, Any]) -> SegLabel:
    """The label of a record's ``label`` field (``TaskSpec.label_from_dict``)."""
    return SegLabel.from_dict(raw)


@dataclass(frozen=True)
class SegAnswer:
    """A parsed answer: it holds the mask block (the decoder's six prompts), nothing else to read."""

    def to_dict(self) -> dict[str, Any]:
        return {}


def format_answer(label: SegLabel, reasoning_text: str | None) -> str:  # noqa: ARG001 (no reasoning: module doc)
    """Crab's LVIS answer, ``It is {MASK_BLOCK}.``, for every label."""
    return f"It is {MASK_BLOCK}."


def parse_answer(text: str) -> SegAnswer | None:
    """A :class:`SegAnswer` when the mask block appears exactly once, else None."""
    return SegAnswer() if text.count(MASK_BLOCK) == 1 else None
