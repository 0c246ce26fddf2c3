"""Ref-AVS builder for AV-UIE: referring expressions -> one record per expression and frame, with reasoning.

The answer format is :mod:`crab.avuie.ref_avs`. Sampling: Crab trains on one frame per expression, drawn anew
(unseeded) each time the sample is read, and tests every frame (crab-reference 4.6). AV-UIE files are fixed, so
a train expression gives :data:`TRAIN_FRAMES_PER_EXPRESSION` distinct frames drawn once with the seeded rng
(what Crab's redraws give over a few epochs), and val / test expressions all ten. The three test splits
become one AV-UIE ``test`` split; each label keeps its subset (``seen``, ``unseen``, ``null``), which evaluation
scores separately as the official code does.

The model sees the ten frames as ``<video>`` and the clip's audio as ``<audio>`` (``media.num_audio_segments``
1-s segments); the prompt names the expression and the frame's second.

Reasoning (``use_reasoning``) comes from AV-Synth's exact scene: what is heard and when, what is seen where
(:func:`crab.avuie.avs_build.heard_and_seen`), which on-screen objects stay silent, then which object the
expression names (or that none does) and whether it is on screen in that second, which decides whether its
mask is empty. Without a scene (real data) a normal row's reasoning names the object from the ``uid`` and a
null row's says nothing matches.

Null rows without mask files (the release's ``test_n`` may ship none; :mod:`crab.datasets.ref_avs`) are skipped
and counted (``null_without_masks``): a record's ground truth must be a file that evaluation can read.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from crab.avuie.avs import nth_second
from crab.avuie.avs_build import WHERE, heard_and_seen, scene_words, train_frames
from crab.avuie.ref_avs import REF_AVS_TEST_SUBSETS, RefAvsLabel, format_answer, phrase
from crab.avuie.schema import AvuieRecord, make_id
from crab.tasks import NUM_REF_AVS_FRAMES, TASKS, Task

if TYPE_CHECKING:  # annotations only: keeps this module free of media imports
    from crab.datasets.ref_avs import RefAvsRecord
    from crab.synth.scene import Scene, SceneObject

__all__ = ["TRAIN_FRAMES_PER_EXPRESSION", "avuie_split", "build_ref_avs", "reasoning_from_scene", "referent"]

log = logging.getLogger(__name__)

#: Frames per train expression (module docstring).
TRAIN_FRAMES_PER_EXPRESSION = 3

_SILENT = ("{the} {where} makes no sound", "{the} {where} stays silent")
_NAMES = ("{phrase} is {the} {where}", "{phrase} refers to {the} {where}")
_NOTHING = ("nothing in the video matches {phrase}", "no object in the video is {phrase}")
_ON = ("at the {nth} second it is on screen", "it can be seen at the {nth} second")
_OFF = ("at the {nth} second it is out of sight", "it is not on screen at the {nth} second")


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def avuie_split(split: str) -> tuple[str, str]:
    """The AV-UIE split and the label's subset of a Ref-AVS split: ``test_s`` -> ``("test", "seen")``.

    Raises:
        ValueError: an unknown split.
    """
    if split in ("train", "val"):
        return split, split
    if split in REF_AVS_TEST_SUBSETS:
        return "test", REF_AVS_TEST_SUBSETS[split]
    raise ValueError(f"unknown Ref-AVS split {split!r}")


def referent(scene: Scene, object_name: str) -> SceneObject | None:
    """The on-screen object of category ``object_name`` (a Ref-AVS category), or None if the scene has none."""
    from crab.synth.ref_avs import ref_avs_object

    matches = [o for o in scene.on_screen if ref_avs_object(o.name) == object_name]
    return matches[0] if len(matches) == 1 else None


def reasoning_from_scene(
    scene: Scene, named: SceneObject | None, expression: str, frame: int, rng: random.Random
) -> str:
    """Heard, seen, silent, then what the expression names and whether it is seen at ``frame`` (module docstring)."""
    words, said, nth = scene_words(scene), phrase(expression), nth_second(frame)
    sentences = heard_and_seen(scene, rng)
    for obj in scene.on_screen:
        if not obj.audible and obj.name in words and obj.slot is not None:
            sentences.append(rng.choice(_SILENT).format(the=words[obj.name].the, where=WHERE[obj.slot]))
    if named is None or named.slot is None or named.name not in words:
        sentences.append(rng.choice(_NOTHING).format(phrase=said))
    else:
        sentences.append(rng.choice(_NAMES).format(phrase=said, the=words[named.name].the, where=WHERE[named.slot]))
        sentences.append(rng.choice(_ON if named.is_visible_at(frame) else _OFF).format(nth=nth))
    return " ".join(_cap(s) + "." for s in sentences)


def _reasoning_from_label(rec: RefAvsRecord, rng: random.Random) -> str:
    said = phrase(rec.expression)
    if rec.is_null:
        return _cap(rng.choice(_NOTHING).format(phrase=said)) + "."
    return _cap(f"{said} refers to the {rec.object_name.replace('-', ' ')}") + "."


def build_ref_avs(
    records: Sequence[RefAvsRecord],
    scenes: Mapping[str, Scene],
    released_dir: Path | None,
    use_reasoning: bool,
    rng: random.Random,
    tally: Counter[str] | None = None,
) -> list[AvuieRecord]:
    """AV-UIE records of Ref-AVS expressions, one per sampled frame (module docstring), in input order.

    Args:
        records: Ref-AVS rows of any splits (``crab.datasets.ref_avs``).
        scenes: AV-Synth scenes by ``vid`` (empty for real data).
        released_dir: unused (Crab templates Ref-AVS targets in code); kept for the builders' signature.
        use_reasoning: False for the "w/o ERP" ablation.
        rng: picks train frames and phrasings; consumed in record order.
        tally: if given, counts ``scene``, ``scene_mismatched`` (a normal row whose category is not exactly one
            on-screen object of the scene: label-only target), ``label_only``, ``null`` and ``null_without_masks``.

    Returns:
        The records; ``item_id`` is ``{uid}_{frame + 1}``, ``label`` a :class:`~crab.avuie.ref_avs.RefAvsLabel`.
    """
    del released_dir
    tally = Counter() if tally is None else tally
    task = Task.REF_AVS
    out = []
    for rec in records:
        if not rec.mask_paths:
            log.warning("%s: null row without mask files; skipped", rec.source)
            tally["null_without_masks"] += 1
            continue
        split, subset = avuie_split(rec.split)
        scene = scenes.get(rec.video_id)
        named = None if scene is None or rec.is_null else referent(scene, rec.object_name)
        if scene is not None and not rec.is_null and named is None:
            log.warning("%s: the scene has no single %r on screen; label-only targets", rec.source, rec.object_name)
            tally["scene_mismatched"] += 1
            scene = None
        tally["null" if rec.is_null else "scene" if scene is not None else "label_only"] += 1
        objects = () if rec.is_null else (rec.object_name,)
        for frame in train_frames(split, NUM_REF_AVS_FRAMES, TRAIN_FRAMES_PER_EXPRESSION, rng):
            if not use_reasoning:
                reasoning = None
            elif scene is not None:
                reasoning = reasoning_from_scene(scene, named, rec.expression, frame, rng)
            else:
                reasoning = _reasoning_from_label(rec, rng)
            label = RefAvsLabel(frame, rec.mask_paths[frame].as_posix(), objects, rec.expression, subset)  # type: ignore[arg-type]
            item_id = f"{rec.item_id}_{frame + 1}"
            out.append(
                AvuieRecord(
                    id=make_id(task, split, item_id),
                    task=task.value,
                    split=split,
                    dataset=TASKS[task].dataset,
                    item_id=item_id,
                    source=rec.source,
                    video_id=rec.video_id,
                    media={"video": rec.frame_paths[0].parent.as_posix(), "audio": rec.audio_path.as_posix()},
                    instruction=TASKS[task].instruction(expression=phrase(rec.expression), nth=nth_second(frame)),
                    target=format_answer(label, reasoning),
                    reasoning=reasoning is not None,
                    label=label.to_dict(),
                )
            )
    return out
