"""S4 / MS3 targets for AV-UIE: the label of one labelled frame, the answer format and its parser.

AVSBench's S4 (one sound source) and MS3 (several) ask for the mask of the object(s) making the sound in one
frame of a 5-s clip. Crab trains one sample per labelled frame with the prompt "... segment out the object
that makes the sound at the {nth} second of the video" and the target (crab-reference 4.5)

    The object making the sound in the video is {a_obj}. The mask of the object that makes the sound at the
    {nth} second is <mask_start><mask_0>...<mask_5><mask_end>

The six mask tokens are what the segmentation decoder reads (their LLM hidden states prompt it); the text
before them is the answer the LLM gives. Ours keeps that order and tags the object names so the parser is
strict on them and ignores the reasoning's prose (a tag counts only in the mask's sentence):

    {reasoning} So the object making the sound at the {nth} second is <object> playing_violin </object>,
    and its mask is <mask_start><mask_0><mask_1><mask_2><mask_3><mask_4><mask_5><mask_end>.

- Several objects (MS3): ``the objects making the sound ... are <object> a, b </object>, and their mask``;
  names are the S4 categories verbatim, comma-separated, in the label's order (categories have no commas).
- None visible and heard in that second (a frame with an empty ground-truth mask): ``no object makes
  the sound ... (<object> none </object>), so the mask is empty: <mask_start>...<mask_end>.`` The mask
  tokens are always there: the decoder runs on every sample and must learn to output an empty mask.
- Unknown objects (the real MS3 release names no categories): ``So the mask of the objects making the
  sound at the {nth} second is <mask_start>...<mask_end>.``, with no ``<object>`` tag.

Without the reasoning process (the "w/o ERP" ablation) the sentence starts with a capital and no "So".

Crab's MS3 test prompt always says "third second" (crab-reference 4.5, a bug); ours names each frame's own
second. This module imports only the standard library (``crab.tasks`` resolves parsers at run time).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MASK_BLOCK",
    "NO_OBJECT",
    "AvsAnswer",
    "AvsLabel",
    "format_answer",
    "label_from_dict",
    "nth_second",
    "parse_answer",
]

#: The tokens the decoder reads, in the tokenizer's spelling (``crab.models.tokenizer``).
MASK_BLOCK = "<mask_start>" + "".join(f"<mask_{i}>" for i in range(6)) + "<mask_end>"
#: The ``<object>`` body when no object is both seen and heard in the frame's second.
NO_OBJECT = "none"

_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
_OBJECT = re.compile(r"<object>([^<]*)</object>")
_MASK = re.compile(re.escape(MASK_BLOCK))


def nth_second(frame: int) -> str:
    """The ordinal of frame ``frame`` (0-based) as the prompt says it: 0 -> ``"first"``, 4 -> ``"fifth"``.

    Raises:
        ValueError: outside 0..9 (AVSBench clips have 5 labelled frames, AVSBench-semantic 10).
    """
    if not 0 <= frame < len(_ORDINALS):
        raise ValueError(f"frame index must be in 0..{len(_ORDINALS) - 1}, got {frame}")
    return _ORDINALS[frame]


@dataclass(frozen=True)
class AvsLabel:
    """The ground truth of one labelled frame.

    Attributes:
        frame: 0-based index of the frame among the clip's five (frame file ``_{frame + 1}``).
        mask: path of its ground-truth mask PNG (0 background, 255 sounding object).
        objects: S4 categories of the objects both seen and heard in that second (empty: none), or None when
            the annotation does not say (the real MS3 release).
    """

    frame: int
    mask: str
    objects: tuple[str, ...] | None

    def to_dict(self) -> dict[str, Any]:
        return {"frame": self.frame, "mask": self.mask, "objects": None if self.objects is None else list(self.objects)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AvsLabel:
        objects = raw["objects"]
        return cls(frame=raw["frame"], mask=raw["mask"], objects=None if objects is None else tuple(objects))


def label_from_dict(raw: dict[str, Any]) -> AvsLabel:
    """The label of a record's ``label`` field (``TaskSpec.label_from_dict``)."""
    return AvsLabel.from_dict(raw)


@dataclass(frozen=True)
class AvsAnswer:
    """What a target or generation says: the object names (None without an ``<object>`` tag), mask tokens present."""

    objects: tuple[str, ...] | None

    def to_dict(self) -> dict[str, Any]:
        """As JSON: ``{"objects": [...] | None}`` (a list, as predictions and ``crab infer`` print it)."""
        return {"objects": None if self.objects is None else list(self.objects)}


def _check_names(objects: Sequence[str]) -> None:
    for name in objects:
        if not name or name != name.strip() or any(c in name for c in ",<>\n") or name == NO_OBJECT:
            raise ValueError(f"object name cannot be tagged: {name!r}")
    if len(set(objects)) != len(objects):
        raise ValueError(f"repeated object names: {list(objects)}")


def format_answer(label: AvsLabel, reasoning_text: str | None) -> str:
    """The target text: reasoning then the final sentence, or the plain sentence when ``None`` (w/o ERP).

    Raises:
        ValueError: a frame outside 0..9, or an object name that cannot round-trip through the tag.
    """
    nth = nth_second(label.frame)
    if label.objects is None:
        core = f"the mask of the objects making the sound at the {nth} second is {MASK_BLOCK}."
    elif not label.objects:
        tag = f"<object> {NO_OBJECT} </object>"
        core = f"no object makes the sound at the {nth} second ({tag}), so the mask is empty: {MASK_BLOCK}."
    else:
        _check_names(label.objects)
        tag = f"<object> {', '.join(label.objects)} </object>"
        noun, verb, own = ("object", "is", "its") if len(label.objects) == 1 else ("objects", "are", "their")
        core = f"the {noun} making the sound at the {nth} second {verb} {tag}, and {own} mask is {MASK_BLOCK}."
    final = core[0].upper() + core[1:] if reasoning_text is None else "So " + core
    return f"{reasoning_text} {final}" if reasoning_text else final


def parse_answer(text: str) -> AvsAnswer | None:
    """The answer of a target or generation, or None when the mask tokens are missing or malformed.

    The mask block must appear exactly once, in order (``<mask_start><mask_0>...<mask_5><mask_end>``): the
    decoder needs all six hidden states. The ``<object>`` tag counts only in the sentence of the mask block
    (the last tag before the block with no "." in between), so a tag quoted in the reasoning is ignored;
    ``none`` gives ``()``, no such tag ``objects=None``. Tolerant of any surrounding text.
    """
    if len(_MASK.findall(text)) != 1:
        return None
    before = text[: text.index(MASK_BLOCK)]
    tags = list(_OBJECT.finditer(before))
    if not tags or "." in before[tags[-1].end() :]:
        return AvsAnswer(objects=None)
    body = tags[-1].group(1).strip()
    if body == NO_OBJECT:
        return AvsAnswer(objects=())
    names = tuple(n.strip() for n in body.split(","))
    if not all(names):
        return None
    return AvsAnswer(objects=names)
