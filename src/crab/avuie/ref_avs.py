"""Ref-AVS targets for AV-UIE: the label of one frame of a referring expression, the answer format, its parser.

Ref-AVS (Wang et al., ECCV'24) asks for the mask of the object a referring expression names ("the object
making the loudest sound", "the guitar on the left that starts playing second") in each of a 10-s clip's ten
frames; an expression may need the audio, the frames or both, and in the null test split it names nothing
in the clip. Crab trains one sample per expression and frame with (crab-reference 4.6)

    prompt  {V}{A}Please segment out {exp.lower()} at the {nth} second in the video.
    target  At the {nth} second in the video, {exp} is {obj}. Its mask is <mask_start>...<mask_end>

and tests with another prompt; ours is the training one everywhere (``crab.tasks``). The answer keeps Crab's
order (the object, then the six mask tokens the decoder reads) and tags the category so the parser is strict
on it, with the same ``<object>`` rules as S4 / MS3 (:func:`crab.avuie.avs.parse_answer`):

    {reasoning} So at the {nth} second, {phrase} is <object> guitar </object>, and its mask is <mask_start>...<mask_end>.
    {reasoning} So at the {nth} second, nothing matches {phrase} (<object> none </object>), so the mask is empty: ...

``{phrase}`` is the expression without its final full stop, first letter lower-cased (Crab lower-cases the
whole expression; a full stop inside it would end the tag's sentence, so stops are dropped). Without the
reasoning process (the "w/o ERP" ablation) the sentence starts with a capital and no "So".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from crab.avuie.avs import MASK_BLOCK, NO_OBJECT, AvsAnswer, nth_second
from crab.avuie.avs import parse_answer as _parse_avs_answer

__all__ = ["REF_AVS_TEST_SUBSETS", "RefAvsLabel", "format_answer", "label_from_dict", "parse_answer", "phrase"]

#: Ref-AVS's three test splits as AV-UIE keeps them: one ``test`` split, the subset in the label.
REF_AVS_TEST_SUBSETS: dict[str, str] = {"test_s": "seen", "test_u": "unseen", "test_n": "null"}
Subset = Literal["train", "val", "seen", "unseen", "null"]


def phrase(expression: str) -> str:
    """The expression as it sits inside a sentence: stripped, no full stops, first letter lower-cased.

    Raises:
        ValueError: nothing is left.
    """
    text = " ".join(expression.replace(".", " ").split())
    if not text:
        raise ValueError(f"empty referring expression: {expression!r}")
    return text[0].lower() + text[1:]


@dataclass(frozen=True)
class RefAvsLabel:
    """The ground truth of one frame of one referring expression.

    Attributes:
        frame: 0-based index of the frame among the clip's ten (frame file ``frames/{frame}.jpg``).
        mask: path of its ground-truth mask PNG (0 background, 255 referred object; all 0 for a null row).
        objects: ``(category,)`` of the referred object, ``()`` when nothing matches (null rows). The field
            has S4 / MS3's name and meaning, so mask evaluation reads both labels alike.
        expression: the referring expression verbatim.
        subset: ``"train"``, ``"val"``, or the test subset ``"seen"`` / ``"unseen"`` / ``"null"``.
    """

    frame: int
    mask: str
    objects: tuple[str, ...]
    expression: str
    subset: Subset

    def to_dict(self) -> dict[str, Any]:
        return {
            "frame": self.frame, "mask": self.mask, "objects": list(self.objects), "expression": self.expression,
            "subset": self.subset,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RefAvsLabel:
        return cls(
            frame=raw["frame"], mask=raw["mask"], objects=tuple(raw["objects"]), expression=raw["expression"],
            subset=raw["subset"],
        )  # fmt: skip


def label_from_dict(raw: dict[str, Any]) -> RefAvsLabel:
    """The label of a record's ``label`` field (``TaskSpec.label_from_dict``)."""
    return RefAvsLabel.from_dict(raw)


def format_answer(label: RefAvsLabel, reasoning_text: str | None) -> str:
    """The target text: reasoning then the final sentence, or the plain sentence when ``None`` (w/o ERP).

    Raises:
        ValueError: a frame outside 0..9, more than one object, or a name that cannot round-trip the tag.
    """
    nth, said = nth_second(label.frame), phrase(label.expression)
    if len(label.objects) > 1:
        raise ValueError(f"a referring expression names one object, got {list(label.objects)}")
    if not label.objects:
        core = f"at the {nth} second, nothing matches {said} (<object> {NO_OBJECT} </object>), so the mask is empty: "
    else:
        name = label.objects[0]
        if not name or name != name.strip() or any(c in name for c in ",<>.\n") or name == NO_OBJECT:
            raise ValueError(f"object name cannot be tagged: {name!r}")
        core = f"at the {nth} second, {said} is <object> {name} </object>, and its mask is "
    core += MASK_BLOCK + "."
    final = core[0].upper() + core[1:] if reasoning_text is None else "So " + core
    return f"{reasoning_text} {final}" if reasoning_text else final


def parse_answer(text: str) -> AvsAnswer | None:
    """The answer of a target or generation, as for S4 / MS3 (:func:`crab.avuie.avs.parse_answer`): None
    without exactly one well-formed mask block; ``objects`` ``()`` for ``none``, None without a tag."""
    return _parse_avs_answer(text)
