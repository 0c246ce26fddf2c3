"""S4 / MS3 builder for AV-UIE: AVSBench-object videos -> one record per labelled frame, with reasoning.

The answer format is :mod:`crab.avuie.avs`. Records follow Crab's sampling (crab-reference 4.5): one per
frame that has a ground-truth mask, so an S4 train video gives one (its first frame: the release labels
only that one) and every other S4 / MS3 video five. The model sees all five frames as ``<video>`` and the
clip's five 1-s audio clips as ``<audio>``; the prompt names the frame's second.

Reasoning (``use_reasoning``) is written from AV-Synth's exact scene when there is one, in three steps:
what is heard and when, what is seen where and when (left to right), then the labelled second: which
objects are both seen and heard then (the mask's objects: :func:`crab.synth.avsbench.sounding_masks` paints
exactly these), which visible ones are silent, which heard ones are out of sight. The objects come from the
scene, so they match the mask pixel for pixel. Without a scene (real data) an S4 reasoning says the
category is heard and seen, from the metadata; MS3's release names no categories, so its real records get
the bare final sentence. Sentences have a few patterns picked with the seeded rng, as in the other tasks.

``media`` is ``{"video": <the clip's frame folder>, "audio": <its wav>}``: the features stage encodes the
folder's five PNG frames (the release's frames, which the masks label, not frames re-decoded from the mp4).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from crab.avuie.ave import EventWords
from crab.avuie.avs import AvsLabel, format_answer, nth_second
from crab.avuie.schema import AvuieRecord, make_id
from crab.tasks import TASKS, Task

if TYPE_CHECKING:  # annotations only: keeps this module free of media imports
    from crab.datasets.avsbench import AvsObjectRecord
    from crab.synth.scene import Interval, Scene, SceneObject

__all__ = [
    "S4_WORDS",
    "WHERE",
    "build_avs",
    "frame_objects",
    "heard_and_seen",
    "reasoning_from_scene",
    "scene_has_sounding",
    "scene_words",
    "train_frames",
]

log = logging.getLogger(__name__)

#: The 23 S4 categories in prose (MS3 draws from the same set); the ``<object>`` tag holds the category itself.
S4_WORDS: dict[str, EventWords] = {
    "baby_laughter": EventWords("a", "baby", "laughs", "laughter"),
    "female_singing": EventWords("a", "woman", "sings", "singing"),
    "male_speech": EventWords("a", "man", "speaks", "voice"),
    "dog_barking": EventWords("a", "dog", "barks", "barking"),
    "cat_meowing": EventWords("a", "cat", "meows", "meowing"),
    "lions_roaring": EventWords("a", "lion", "roars", "roar"),
    "horse_clip-clop": EventWords("a", "horse", "clip-clops", "hoofbeats"),
    "coyote_howling": EventWords("a", "coyote", "howls", "howling"),
    "mynah_bird_singing": EventWords("a", "mynah bird", "sings", "song"),
    "playing_acoustic_guitar": EventWords("an", "acoustic guitar", "is strummed", "sound"),
    "playing_tabla": EventWords("a", "tabla", "is drummed", "beat"),
    "playing_violin": EventWords("a", "violin", "is played", "sound"),
    "playing_piano": EventWords("a", "piano", "is played", "sound"),
    "playing_ukulele": EventWords("a", "ukulele", "is strummed", "sound"),
    "playing_glockenspiel": EventWords("a", "glockenspiel", "is struck", "chimes"),
    "helicopter": EventWords("a", "helicopter", "whirs", "rotor noise"),
    "race_car": EventWords("a", "race car", "races by", "engine noise"),
    "driving_buses": EventWords("a", "bus", "rumbles", "engine noise"),
    "ambulance_siren": EventWords("an", "ambulance", "wails", "siren"),
    "typing_on_computer_keyboard": EventWords("a", "computer keyboard", "clatters", "typing"),
    "chainsawing_trees": EventWords("a", "chainsaw", "buzzes", "buzzing"),
    "cap_gun_shooting": EventWords("a", "cap gun", "pops", "shots"),
    "lawn_mowing": EventWords("a", "lawn mower", "drones", "engine drone"),
}

#: Where an object's slot puts it, in prose.
WHERE = {"left": "on the left", "middle": "in the middle", "right": "on the right"}
_HEARD = ("{sound_of} is heard {span}", "the audio contains {sound_of} {span}", "{the} {verb} {span}")
_SEEN = ("{a} is visible {where} {span}", "{a} can be seen {where} {span}", "there is {a} {where} {span}")
_AT = ("at the {nth} second", "in the {nth} second")
_BOTH = ("{at}, {names} {are} both seen and heard", "{at}, the sound comes from {names}")
_SILENT = ("{the} {where} makes no sound {at}", "{the} {where} is silent {at}")
_UNSEEN = ("{the} is heard but not seen {at}", "{the} is out of sight {at}, although it is heard")
_NONE = ("{at}, no visible object makes a sound", "nothing on screen is heard {at}")
_FROM_LABEL = ("The audio contains {sound_of}, and {a} can be seen in the frames.",
               "{a} {verb} in the clip, and it is on screen.")  # fmt: skip


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _span(intervals: Sequence[Interval], duration: int) -> str:
    if list(intervals) == [(0, duration)]:
        return "throughout the clip"
    return " and ".join(f"from second {a} to second {b}" for a, b in intervals)


def _join(phrases: Sequence[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _category(obj: SceneObject) -> str | None:
    from crab.synth.avsbench import s4_category

    return s4_category(obj.name)


def scene_words(scene: Scene) -> dict[str, EventWords]:
    """The prose words of the scene's objects that are S4 categories, by object name."""
    return {o.name: S4_WORDS[c] for o in scene.objects if (c := _category(o)) is not None}


def scene_has_sounding(scene: Scene, category: str) -> bool:
    """Whether the scene makes a sound of ``category``; a scene that does not contradicts the metadata's label."""
    return category in {_category(o) for o in scene.objects if o.audible}


def frame_objects(scene: Scene, frame: int) -> tuple[str, ...]:
    """S4 categories of the on-screen objects seen and heard in second ``frame``, left to right (the mask's)."""
    objects = [o for o in scene.on_screen if o.is_visible_at(frame) and o.is_audible_at(frame)]
    return tuple(c for c in (_category(o) for o in objects) if c is not None)


def heard_and_seen(scene: Scene, rng: random.Random) -> list[str]:
    """The reasoning's first steps, one clause per object: what is heard and when, then what is seen where and
    when, left to right (S4 / MS3 and Ref-AVS open their reasoning alike). Clauses are not capitalised."""
    dur, words = scene.duration_s, scene_words(scene)
    sentences = []
    for obj in scene.objects:
        if obj.audible and obj.name in words:
            w = words[obj.name]
            pattern = rng.choice(_HEARD)
            sentences.append(pattern.format(sound_of=w.sound_of, the=w.the, verb=w.verb, span=_span(obj.audible, dur)))
    for obj in scene.on_screen:
        if obj.visible and obj.name in words and obj.slot is not None:
            pattern = rng.choice(_SEEN)
            sentences.append(pattern.format(a=words[obj.name].a, where=WHERE[obj.slot], span=_span(obj.visible, dur)))
    return sentences


def train_frames(split: str, num_frames: int, per_train_item: int, rng: random.Random) -> list[int]:
    """The frames of one item that get records: all ``num_frames``, or for a train item ``per_train_item``
    distinct ones drawn with the seeded ``rng``, in order.

    Why: Crab trains Ref-AVS and AVSS on one frame per item, drawn anew (unseeded) each time the sample is read
    (crab-reference 4.6, 7); AV-UIE files are fixed, so a few frames drawn once stand for those redraws.
    """
    if split != "train":
        return list(range(num_frames))
    return sorted(rng.sample(range(num_frames), min(per_train_item, num_frames)))


def reasoning_from_scene(scene: Scene, frame: int, rng: random.Random) -> str:
    """Heard, seen, then the labelled second (module docstring)."""
    at = rng.choice(_AT).format(nth=nth_second(frame))
    words = scene_words(scene)
    sentences = heard_and_seen(scene, rng)
    both = [o for o in scene.on_screen if o.is_visible_at(frame) and o.is_audible_at(frame) and o.name in words]
    if both:
        names = _join([f"{words[o.name].the} {WHERE[o.slot]}" for o in both if o.slot is not None])
        sentences.append(rng.choice(_BOTH).format(at=at, names=names, are="is" if len(both) == 1 else "are"))
    else:
        sentences.append(rng.choice(_NONE).format(at=at))
    for obj in scene.on_screen:
        if obj.name in words and obj.slot is not None and obj.is_visible_at(frame) and not obj.is_audible_at(frame):
            sentences.append(rng.choice(_SILENT).format(the=words[obj.name].the, where=WHERE[obj.slot], at=at))
    for obj in scene.objects:
        if obj.name in words and obj.is_audible_at(frame) and not (obj.slot is not None and obj.is_visible_at(frame)):
            sentences.append(rng.choice(_UNSEEN).format(the=words[obj.name].the, at=at))
    return " ".join(_cap(s) + "." for s in sentences)


def _reasoning_from_label(category: str, rng: random.Random) -> str:
    w = S4_WORDS[category]
    return _cap(rng.choice(_FROM_LABEL).format(sound_of=w.sound_of, a=w.a, verb=w.verb))


def build_avs(
    records: Sequence[AvsObjectRecord],
    scenes: Mapping[str, Scene],
    released_dir: Path | None,
    use_reasoning: bool,
    rng: random.Random,
    tally: Counter[str] | None = None,
) -> list[AvuieRecord]:
    """AV-UIE records of S4 or MS3 videos (``record.task``), one per labelled frame, in input order.

    Args:
        records: S4 or MS3 videos (any splits; one task per call).
        scenes: AV-Synth scenes by video id (empty for real data).
        released_dir: unused (Crab releases no S4 / MS3 reasoning text); kept for the builders' signature.
        use_reasoning: False for the "w/o ERP" ablation.
        rng: picks the phrasings; consumed in record order.
        tally: if given, counts ``scene``, ``scene_mismatched`` (an S4 scene whose sounding object is not the
            metadata's category: label-only target), ``label_only`` and ``frames_without_object``.

    Returns:
        One record per labelled frame.
    """
    del released_dir
    tally = Counter() if tally is None else tally
    out = []
    for rec in records:
        task = Task(rec.task)
        scene = scenes.get(rec.video_id)
        if scene is not None and rec.task == "s4" and not scene_has_sounding(scene, rec.category):
            log.warning(
                "%s: the scene's sounding object is not the category %r; label-only targets", rec.source, rec.category
            )
            tally["scene_mismatched"] += 1
            scene = None
        for frame, mask in enumerate(rec.mask_paths):
            if scene is not None:
                objects: tuple[str, ...] | None = frame_objects(scene, frame)
                reasoning = reasoning_from_scene(scene, frame, rng) if use_reasoning else None
                tally["scene"] += 1
            else:
                objects = (rec.category,) if rec.task == "s4" else None
                reasoning = _reasoning_from_label(rec.category, rng) if use_reasoning and rec.task == "s4" else None
                tally["label_only"] += 1
            if objects == ():
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
                    video_id=rec.video_id,
                    media={"video": rec.frame_paths[0].parent.as_posix(), "audio": rec.audio_path.as_posix()},
                    instruction=TASKS[task].instruction(nth=nth_second(frame)),
                    target=format_answer(label, reasoning),
                    reasoning=reasoning is not None,
                    label=label.to_dict(),
                )
            )
    return out
