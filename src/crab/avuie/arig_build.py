"""ARIG builder for AV-UIE: AVSBench S4 frames -> one box record per frame with a sounding object, with reasoning.

ARIG (audio-referred image grounding) is derived from S4 as Crab derives it (crab-reference 4.4): for every
labelled S4 frame, the box of its ground-truth mask in the frame resized to 224x224
(:func:`crab.eval.metrics_arig.resize_mask` then :func:`~crab.eval.metrics_arig.box_from_mask`); frames whose
mask is empty (nothing on screen sounds: Crab's ``x1 == 1000`` sentinel) are skipped. So an S4 train video
gives at most one record (the release labels frame 1 only), a val / test video up to five.

The model sees the frame as ``<image>`` and the clip's five 1-s audio segments as ``<audio>`` (the S4 record's
audio features, shared). The answer is :mod:`crab.avuie.arig`'s box sentence; the ``label`` is the box
(``{"x0", "y0", "x1", "y1"}``, what the ``arig_ciou`` metric reads) plus the category, the frame index and
the mask it came from, for inspection.

Reasoning (``use_reasoning``) from AV-Synth's exact scene: what the audio holds, what the image shows where
(left to right), then which of the visible objects makes the sound and where it is; without a scene (real
data) it names the S4 category as heard and seen. The category in the reasoning is the answer's "recognize
the category" part of Crab's prompt; the box is in the ``<obj>`` tag.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from crab.avuie.arig import ArigLabel, format_answer
from crab.avuie.avs_build import S4_WORDS, scene_has_sounding, scene_words
from crab.avuie.schema import AvuieRecord, make_id
from crab.datasets.media import read_binary_mask
from crab.eval.metrics_arig import box_from_mask, resize_mask
from crab.tasks import TASKS, Task

if TYPE_CHECKING:
    from crab.datasets.avsbench import AvsObjectRecord
    from crab.synth.scene import Scene

__all__ = ["arig_reasoning", "build_arig"]

_WHERE = {"left": "on the left", "middle": "in the middle", "right": "on the right"}
_HEARD = ("The audio contains {sound_of}.", "In the audio, {the} {verb}.")
_SHOWN = ("The image shows {objects}.", "In the image there {is_are} {objects}.")
_SOUNDING = ("The sound comes from {the} {where}.", "Of these, {the} {where} makes the sound.")
_FROM_LABEL = ("The audio contains {sound_of}, and {a} can be seen in the image.",)


def arig_reasoning(scene: Scene | None, category: str, frame: int, rng: random.Random) -> str:
    """Heard, shown (left to right), then where the sounding object is (module docstring)."""
    if scene is None:
        w = S4_WORDS[category]
        return rng.choice(_FROM_LABEL).format(sound_of=w.sound_of, a=w.a)
    words = scene_words(scene)
    sounding = [o for o in scene.on_screen if o.is_visible_at(frame) and o.is_audible_at(frame) and o.name in words]
    shown = [o for o in scene.on_screen if o.is_visible_at(frame) and o.name in words and o.slot is not None]
    sentences = []
    for obj in sounding:
        w = words[obj.name]
        sentences.append(rng.choice(_HEARD).format(sound_of=w.sound_of, the=w.the, verb=w.verb))
    if shown:
        objects = [f"{words[o.name].a} {_WHERE[o.slot]}" for o in shown]
        listed = objects[0] if len(objects) == 1 else ", ".join(objects[:-1]) + " and " + objects[-1]
        sentences.append(rng.choice(_SHOWN).format(objects=listed, is_are="is" if len(objects) == 1 else "are"))
    patterns = _SOUNDING if len(shown) > 1 else _SOUNDING[:1]  # "Of these" only after several objects
    for obj in sounding:
        if obj.slot is not None:
            sentences.append(rng.choice(patterns).format(the=words[obj.name].the, where=_WHERE[obj.slot]))
    return " ".join(sentences)


def build_arig(
    records: Sequence[AvsObjectRecord],
    scenes: Mapping[str, Scene],
    released_dir: Path | None,
    use_reasoning: bool,
    rng: random.Random,
    tally: Counter[str] | None = None,
) -> list[AvuieRecord]:
    """ARIG records of S4 videos, one per labelled frame with a sounding object, in input order.

    Args:
        records: S4 videos (any splits).
        scenes: AV-Synth scenes by video id (empty for real data).
        released_dir: unused (Crab's ARIG targets are templated); kept for the builders' signature.
        use_reasoning: False for the "w/o ERP" ablation.
        rng: picks the phrasings; consumed in record order.
        tally: if given, counts ``scene``, ``label_only`` (no scene, or one whose sounding objects do not include
            the metadata's category) and ``frames_without_object`` (skipped).

    Raises:
        DataError: a mask file is missing or unreadable (names it).
    """
    del released_dir
    tally = Counter() if tally is None else tally
    out = []
    for rec in records:
        scene = scenes.get(rec.video_id)
        if scene is not None and not scene_has_sounding(scene, rec.category):
            scene = None  # a scene that contradicts the metadata's category: label-only reasoning (as S4)
        for frame, mask_path in enumerate(rec.mask_paths):
            box = box_from_mask(resize_mask(read_binary_mask(mask_path)))  # in the 224x224 frame
            if box is None:
                tally["frames_without_object"] += 1
                continue
            label = ArigLabel(*box)
            tally["scene" if scene is not None else "label_only"] += 1
            reasoning = arig_reasoning(scene, rec.category, frame, rng) if use_reasoning else None
            item_id = f"{rec.item_id}_{frame + 1}"
            out.append(
                AvuieRecord(
                    id=make_id(Task.ARIG, rec.split, item_id),
                    task=Task.ARIG.value,
                    split=rec.split,
                    dataset=TASKS[Task.ARIG].dataset,
                    item_id=item_id,
                    source=rec.source,
                    video_id=rec.video_id,
                    media={"image": rec.frame_paths[frame].as_posix(), "audio": rec.audio_path.as_posix()},
                    instruction=TASKS[Task.ARIG].instruction(),
                    target=format_answer(label, reasoning),
                    reasoning=reasoning is not None,
                    label={**label.to_dict(), "object": rec.category, "frame": frame, "mask": mask_path.as_posix()},
                )
            )
    return out
