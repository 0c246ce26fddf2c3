"""ARIG targets for AV-UIE: the box label, its answer format and its parser.

ARIG (audio-referred image grounding) asks for the box of the object that makes the sound in one frame.
Crab derives it from AVSBench S4 (v1s) frames: the box of the frame's sounding-object mask, in pixels of
the frame resized to 224x224 (frames with no sounding object are skipped; crab-reference section 4.4).

**Coordinates.** A box is two corner points, top left ``(x0, y0)`` and bottom right ``(x1, y1)``, in the
224x224 frame with integer pixel-boundary coordinates: pixel column ``c`` spans ``[c, c + 1)``, so the box
covers the pixels with ``x0 <= c < x1`` and ``y0 <= r < y1`` (end-exclusive, as numpy slicing and the
ground-truth maps of hche11/Localizing-Visual-Sounds-the-Hard-Way ``temp[ymin:ymax, xmin:xmax] = 1``),
and ``0 <= x0 < x1 <= 224``, ``0 <= y0 < y1 <= 224``. A box around the whole frame is
``(0,0)(224,224)``; a single pixel at the origin is ``(0,0)(1,1)``. Crab does not state whether its
bottom-right corner is inclusive; :func:`crab.eval.metrics_arig.box_from_mask` writes boxes in this
convention, so our labels and metric agree.

**Answer format.** Crab uses two: training targets say ``Its coordinate of top left corner is (x1,y1) and
coordinate of bottom right corner is (x2,y2)`` (untagged), test references ``Its coordinates are
<obj>(x1,y1)(x2,y2)</obj>.`` (crab-reference 4.4, 5.2; section 7 item 5 asks for one canonical format).
We keep Crab's ``<obj>`` tag, so the parser is strict on a tagged part and ignores coordinates that the
reasoning may mention, and the train wording's "top left and bottom right corners":

    {reasoning} So the top left and bottom right corners of the sounding object are <obj>(x0,y0)(x1,y1)</obj>.

or, without reasoning (the "w/o ERP" ablation), ``The top left and bottom right corners of the sounding
object are <obj>(x0,y0)(x1,y1)</obj>.`` The parser follows evaluation.md "Answer parsing": tolerant of any
surrounding text, strict inside the last ``<obj>`` tag.

This module imports only the standard library (``crab.tasks`` resolves parsers at run time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ARIG_FRAME_SIZE", "ArigLabel", "format_answer", "parse_answer"]

#: Side of the square frame ARIG boxes live in (still frames are PIL-resized straight to 224x224, crab-reference 1.2).
ARIG_FRAME_SIZE = 224

_CONCLUSION = "top left and bottom right corners of the sounding object are <obj>({x0},{y0})({x1},{y1})</obj>."
_FINAL = "So the " + _CONCLUSION  # after the reasoning
_PLAIN = "The " + _CONCLUSION  # w/o ERP
# The body may not contain "<", so a stray "<obj>" in the reasoning cannot swallow the real tag.
_OBJ = re.compile(r"<obj>([^<]*)</obj>")
_POINT = r"\(\s*(-?[0-9]+)\s*,\s*(-?[0-9]+)\s*\)"
_OBJ_BODY = re.compile(rf"\s*{_POINT}\s*{_POINT}\s*")


@dataclass(frozen=True)
class ArigLabel:
    """The sounding object's box in the 224x224 frame: top left ``(x0, y0)``, bottom right ``(x1, y1)``.

    End-exclusive pixel-boundary coordinates (module docstring): the box covers columns ``x0 <= c < x1``
    and rows ``y0 <= r < y1``.

    Raises:
        ValueError: a coordinate that is not an int, or a box that is empty, reversed or outside the frame.
    """

    x0: int
    y0: int
    x1: int
    y1: int

    def __post_init__(self) -> None:
        for name in ("x0", "y0", "x1", "y1"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"ARIG box coordinate {name} must be an int, got {value!r}")
        if not (0 <= self.x0 < self.x1 <= ARIG_FRAME_SIZE and 0 <= self.y0 < self.y1 <= ARIG_FRAME_SIZE):
            raise ValueError(
                f"ARIG box ({self.x0},{self.y0})({self.x1},{self.y1}) must satisfy 0 <= x0 < x1 <= "
                f"{ARIG_FRAME_SIZE} and 0 <= y0 < y1 <= {ARIG_FRAME_SIZE}"
            )

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``."""
        return self.x0, self.y0, self.x1, self.y1

    def to_dict(self) -> dict[str, int]:
        """The AV-UIE ``label`` object: ``{"x0", "y0", "x1", "y1"}`` (what the ``arig_ciou`` metric reads)."""
        return {"x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1}


def format_answer(label: ArigLabel, reasoning_text: str | None) -> str:
    """The target text: reasoning then the final ``So the ... <obj>(x0,y0)(x1,y1)</obj>.`` sentence.

    Args:
        label: the box (validated on construction).
        reasoning_text: the explicit reasoning; ``None`` gives the plain sentence (w/o ERP), ``""`` the
            final sentence alone.

    Returns:
        The answer; :func:`parse_answer` gives ``label`` back.
    """
    if reasoning_text is None:
        return _PLAIN.format(x0=label.x0, y0=label.y0, x1=label.x1, y1=label.y1)
    final = _FINAL.format(x0=label.x0, y0=label.y0, x1=label.x1, y1=label.y1)
    return f"{reasoning_text} {final}" if reasoning_text else final


def parse_answer(text: str) -> ArigLabel | None:
    """The box of a generated answer, or None if there is no well-formed ``<obj>`` tag.

    Tolerant of any surrounding text: the LAST ``<obj>...</obj>`` counts (the conclusion comes last) and
    coordinates outside the tag are ignored. Strict inside it: exactly two ``(x, y)`` integer points,
    whitespace allowed around numbers and points, nothing else. Coordinates are clipped to the frame
    ``[0, 224]`` (a box that overshoots the frame keeps its visible part); a box that is empty or
    reversed after clipping (``x0 >= x1`` or ``y0 >= y1``) gives None.
    """
    found = _OBJ.findall(text)
    if not found:
        return None
    body = _OBJ_BODY.fullmatch(found[-1])
    if body is None:
        return None
    x0, y0, x1, y1 = (min(max(int(v), 0), ARIG_FRAME_SIZE) for v in body.groups())
    if x0 >= x1 or y0 >= y1:
        return None
    return ArigLabel(x0=x0, y0=y0, x1=x1, y1=y1)
