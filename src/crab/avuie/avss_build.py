"""AVSS builder for AV-UIE: AVSBench-semantic v2 clips -> one record per frame, with reasoning.

AVSS (audio-visual semantic segmentation) asks, for each of a 10-s clip's ten frames, for the class of every
pixel that belongs to a sounding object (71 classes, background 0). Crab trains it with the S4 / MS3 answer
("... the objects making the sound ... are ... and their mask is <mask_start>...<mask_end>") and a 71-class
head on its mask decoder (crab-reference 1.8, 4.5), so the answer format is :mod:`crab.avuie.avs` with AVSS
class names in the ``<object>`` tag (``man, guitar``), the label's ``mask`` the frame's ``labels_semantic``
PNG (class index per pixel) and the prompt the S4 / MS3 one (``crab.tasks``).

Sampling: val / test clips give a record per frame (the official code scores all ten); a train clip gives
:data:`TRAIN_FRAMES_PER_CLIP` frames drawn once with the seeded rng, as Ref-AVS's builder does, standing for
Crab's one frame per clip redrawn at every read (:func:`crab.avuie.avs_build.train_frames`).

The model sees the ten frames as ``<video>`` and the clip's audio as ``<audio>`` (``media.num_audio_segments``
1-s segments); the prompt names the frame's second. Reasoning comes from AV-Synth's exact scene as for S4 /
MS3 (:func:`crab.avuie.avs_build.reasoning_from_scene`: heard, seen, then the labelled second); the tag holds
the AVSS classes of the objects seen and heard in that second, left to right, which are exactly the classes
the semantic map marks. Without a scene (real data) the tag holds ``a_obj``'s classes for every frame and the
reasoning only says they are heard and seen (the release does not say which frames show which object).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from crab.avuie.avs import AvsLabel, format_answer, nth_second
from crab.avuie.avs_build import reasoning_from_scene, train_frames
from crab.avuie.schema import AvuieRecord, make_id
from crab.tasks import TASKS, Task

if TYPE_CHECKING:  # annotations only: keeps this module free of media imports
    from crab.datasets.avss import AvssRecord
    from crab.synth.scene import Scene

__all__ = ["TRAIN_FRAMES_PER_CLIP", "build_avss", "frame_classes"]

log = logging.getLogger(__name__)

#: Frames per train clip (module docstring).
TRAIN_FRAMES_PER_CLIP = 4


def frame_classes(scene: Scene, frame: int) -> tuple[str, ...]:
    """AVSS classes of the on-screen objects seen and heard in second ``frame``, left to right (the map's)."""
    from crab.synth.avss import avss_class

    objects = [o for o in scene.on_screen if o.is_visible_at(frame) and o.is_audible_at(frame)]
    return tuple(c for c in (avss_class(o.name) for o in objects) if c is not None)


def _label_classes(sounding_object: str) -> tuple[str, ...]:
    """``a_obj``'s classes (``man_guitar`` -> ``("man", "guitar")``), repeats dropped, order kept."""
    return tuple(dict.fromkeys(name for name in sounding_object.split("_") if name))


def _reasoning_from_label(classes: Sequence[str]) -> str:
    names = ", ".join(c.replace("-", " ") for c in classes)
    return f"The audio and the frames show what makes the sound: {names}."


def build_avss(
    records: Sequence[AvssRecord],
    scenes: Mapping[str, Scene],
    released_dir: Path | None,
    use_reasoning: bool,
    rng: random.Random,
    tally: Counter[str] | None = None,
) -> list[AvuieRecord]:
    """AV-UIE records of AVSBench-semantic v2 clips, one per annotated frame, in input order.

    Args:
        records: v2 clips (``read_avss(..., subset="v2")``), any splits.
        scenes: AV-Synth scenes by ``uid`` (empty for real data).
        released_dir: unused (Crab templates AVSS targets in code); kept for the builders' signature.
        use_reasoning: False for the "w/o ERP" ablation.
        rng: picks the train frames and the phrasings; consumed in record order.
        tally: if given, counts ``scene``, ``label_only`` and ``frames_without_object``.

    Returns:
        One record per sampled frame (module docstring); ``item_id`` ``{uid}_{frame + 1}``, label an
        :class:`~crab.avuie.avs.AvsLabel` whose ``mask`` is the frame's ``labels_semantic`` PNG.
    """
    del released_dir
    tally = Counter() if tally is None else tally
    task = Task.AVSS
    out = []
    for rec in records:
        scene = scenes.get(rec.item_id)
        for frame in train_frames(rec.split, len(rec.semantic_mask_paths), TRAIN_FRAMES_PER_CLIP, rng):
            mask = rec.semantic_mask_paths[frame]
            if scene is not None:
                objects = frame_classes(scene, frame)
                reasoning = reasoning_from_scene(scene, frame, rng) if use_reasoning else None
                tally["scene"] += 1
            else:
                objects = _label_classes(rec.sounding_object)
                reasoning = _reasoning_from_label(objects) if use_reasoning and objects else None
                tally["label_only"] += 1
            if not objects:
                tally["frames_without_object"] += 1
            label = AvsLabel(frame=frame, mask=mask.as_posix(), objects=objects)
            item_id = f"{rec.item_id}_{frame + 1}"
            out.append(
                AvuieRecord(
                    id=make_id(task, rec.split, item_id),
                    task=task.value,
                    split=rec.split,
                    dataset=TASKS[task].dataset,
                    item_id=item_id,
                    source=rec.source,
                    video_id=rec.item_id,  # the clip (uid): one YouTube video may give several clips
                    media={"video": rec.frame_paths[0].parent.as_posix(), "audio": rec.audio_path.as_posix()},
                    instruction=TASKS[task].instruction(nth=nth_second(frame)),
                    target=format_answer(label, reasoning),
                    reasoning=reasoning is not None,
                    label=label.to_dict(),
                )
            )
    return out
