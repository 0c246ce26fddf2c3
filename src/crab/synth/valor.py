"""AV-Synth captioned clips in the VALOR layout (Crab's ``avcap`` pre-training data; dataset-layouts section 7).

VALOR-32K pairs each clip with one audio-visual caption. Crab reads ``valor/{train,val}_samples.json``
(JSON arrays of ``{"video_id", "desc"}``) and the media ``video_data/{video_id}.mp4``. Our captions are
exact descriptions of the scene: which class is where, when it is seen and when it is heard, including
silent on-screen objects and off-screen sounds, in several phrasings picked by the item's seed (so a
captioner must ground times and positions, not memorise one template). Class names appear verbatim as in
their vocabulary (AVE events and MUSIC-AVQA instruments), e.g. ``"Violin, fiddle"`` or
``"acoustic_guitar"``, so the AV-UIE builder and the evaluation can match them as strings. Written files::

    root/video_data/{video_id}.mp4
    root/train_samples.json, root/val_samples.json   # 2-space indent, sorted keys
    root/avsynth_scenes.jsonl
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from crab.config import Params
from crab.datasets.vocab import AVE_CATEGORIES, AVQA_INSTRUMENTS
from crab.synth.render import render_clips
from crab.synth.scene import SCENES_FILENAME, Interval, Scene, SceneObject, Slot, scene_lines
from crab.synth.world import audio_signature, item_seeds, youtube_id

__all__ = ["VALOR_SPLIT_FILES", "describe_scene", "valor_scene", "write_valor"]

logger = logging.getLogger(__name__)

#: Split name -> sample file of that split.
VALOR_SPLIT_FILES: dict[str, str] = {"train": "train_samples.json", "val": "val_samples.json"}
_CLASSES: tuple[str, ...] = AVE_CATEGORIES + AVQA_INSTRUMENTS
_SLOTS: tuple[Slot, ...] = ("left", "middle", "right")
_WHERE = {"left": "on the left", "middle": "in the middle", "right": "on the right"}

# Object phrasings by kind; {a} is the article, {when_seen} / {when_heard} a time phrase.
_SEEN_AND_HEARD = (
    "{a} {name} is seen {where} {when_seen} and {verb} {when_heard}",
    "{a} {name} appears {where} {when_seen} and is heard {when_heard}",
    "{where_cap} there is {a_low} {name}, visible {when_seen} and sounding {when_heard}",
)
_SEEN_SILENT = (
    "{a} {name} is seen {where} {when_seen} but stays silent",
    "{a} {name} appears {where} {when_seen} without making a sound",
    "{where_cap} a silent {name} is visible {when_seen}",
)
_HEARD_OFF_SCREEN = (
    "{a} {name} is heard off screen {when_heard}",
    "{a} {name} {verb} off screen {when_heard}",
    "{a} {name} can be heard but not seen {when_heard}",
)
_JOINERS = (", while ", "; ", ", and ")


def _interval(rng: np.random.Generator, duration: int, whole_prob: float) -> Interval:
    if rng.random() < whole_prob:
        return 0, duration
    length = int(rng.integers(1, duration + 1))
    start = int(rng.integers(0, duration - length + 1))
    return start, start + length


def valor_scene(rng: np.random.Generator, *, video_id: str, split: str, duration_s: int, render_seed: int) -> Scene:
    """A scene of 1-3 objects, each seen and heard, seen but silent, or heard off screen.

    Args:
        rng: the item's scene generator.
        video_id: the clip's id.
        split: ``"train"`` or ``"val"``.
        duration_s: clip length.
        render_seed: seed of the rendering noise and jitter.
    """
    count = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
    names = [str(n) for n in rng.choice(_CLASSES, size=count, replace=False)]
    slots = [_SLOTS[i] for i in rng.permutation(len(_SLOTS))]
    objects = []
    for name in names:
        kind = rng.choice(["seen_and_heard", "seen_silent", "heard_off_screen"], p=[0.5, 0.25, 0.25])
        seen = kind != "heard_off_screen"
        heard = kind != "seen_silent"
        objects.append(
            SceneObject(
                name=name,
                slot=slots.pop() if seen else None,
                visible=(_interval(rng, duration_s, 0.5),) if seen else (),
                audible=(_interval(rng, duration_s, 0.4),) if heard else (),
                loudness=round(float(rng.uniform(0.5, 1.0)), 3),
                rhythm=audio_signature(name).rhythm,
            )
        )
    return Scene(
        video_id=video_id,
        dataset="valor",
        split=split,
        duration_s=duration_s,
        background="indoor" if rng.random() < 0.5 else "outdoor",
        objects=tuple(objects),
        render_seed=render_seed,
    )


def _when(rng: np.random.Generator, interval: Interval, duration: int) -> str:
    start, end = interval
    if (start, end) == (0, duration):
        return str(rng.choice(["for the whole clip", "throughout the clip", "from start to end"]))
    options = (
        f"from second {start} to second {end}",
        f"between seconds {start} and {end}",
        f"from {start} s to {end} s",
    )
    return options[int(rng.integers(len(options)))]


def _article(name: str) -> str:
    return "an" if name[0].lower() in "aeiou" else "a"


def describe_scene(scene: Scene, rng: np.random.Generator) -> str:
    """A one-sentence caption naming every object, its position and its seen / heard seconds.

    Args:
        scene: the clip's ground truth (objects with at most one visible and one audible interval).
        rng: picks the phrasings.

    Returns:
        e.g. ``"A violin is seen on the left for the whole clip and plays from second 2 to second 7,
        while a Bark is heard off screen from second 0 to second 3."``
    """
    parts = []
    for obj in scene.objects:
        if obj.slot is not None and obj.audible:
            templates = _SEEN_AND_HEARD
        elif obj.slot is not None:
            templates = _SEEN_SILENT
        else:
            templates = _HEARD_OFF_SCREEN
        template = templates[int(rng.integers(len(templates)))]
        verbs = ("plays", "sounds") if obj.name in AVQA_INSTRUMENTS else ("sounds", "is heard")
        where = _WHERE[obj.slot] if obj.slot is not None else ""
        first = not parts  # only the sentence's first clause starts with a capital
        parts.append(
            template.format(
                a=_article(obj.name).capitalize() if first else _article(obj.name),
                a_low=_article(obj.name),
                name=obj.name,
                verb=verbs[int(rng.integers(len(verbs)))],
                where=where,
                where_cap=where[:1].upper() + where[1:] if first else where,
                when_seen=_when(rng, obj.visible[0], scene.duration_s) if obj.visible else "",
                when_heard=_when(rng, obj.audible[0], scene.duration_s) if obj.audible else "",
            )
        )
    text = parts[0]
    for part in parts[1:]:
        joiner = _JOINERS[int(rng.integers(len(_JOINERS)))]
        text += joiner + part
    return text + "."


def write_valor(params: Params, root: Path) -> int:
    """Write the VALOR-layout AV-Synth captioning dataset under ``root`` (created if missing).

    Args:
        params: ``synth`` section: seed, sizes (``synth.valor``), rendering and difficulty.
        root: the dataset root (holds ``video_data/`` and the ``*_samples.json`` files).

    Returns:
        The number of clips written.
    """
    root = Path(root)
    (root / "video_data").mkdir(parents=True, exist_ok=True)
    cfg = params.synth.valor
    sizes = {"train": cfg.num_train, "val": cfg.num_val}
    used_ids: set[str] = set()
    scenes: list[Scene] = []
    samples: dict[str, list[dict[str, str]]] = {split: [] for split in sizes}
    for split, count in sizes.items():
        for index in range(count):
            rng, render_seed = item_seeds(params.synth.seed, "valor", split, index)
            scene = valor_scene(
                rng, video_id=youtube_id(rng), split=split, duration_s=cfg.duration_s, render_seed=render_seed
            )
            while scene.video_id in used_ids:  # astronomically rare; resolved deterministically
                scene = dataclasses.replace(scene, video_id=youtube_id(rng))
            used_ids.add(scene.video_id)
            scenes.append(scene)
            samples[split].append({"video_id": scene.video_id, "desc": describe_scene(scene, rng)})
    render_clips([(s, root / "video_data" / f"{s.video_id}.mp4") for s in scenes], params.synth, "synth valor")
    for split, file_name in VALOR_SPLIT_FILES.items():
        text = json.dumps(samples[split], indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        (root / file_name).write_text(text, encoding="utf-8", newline="\n")
    (root / SCENES_FILENAME).write_text(scene_lines(scenes), encoding="utf-8", newline="\n")
    logger.info("valor: wrote %d clips (train %d, val %d) under %s", len(scenes), cfg.num_train, cfg.num_val, root)
    return len(scenes)
