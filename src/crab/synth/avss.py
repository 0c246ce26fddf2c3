"""AV-Synth clips in the native AVSBench-semantic v2 layout: audio-visual semantic segmentation (AVSS).

AVSS (Zhou et al., 2023; dataset-layouts section 5) asks, for each of a 10-s clip's 10 frames, for the
*class* of every pixel that belongs to an object making a sound in that second. The scenes here keep what
makes that task audio-visual rather than plain semantic segmentation:

- 2-3 objects of distinct classes (:data:`AVSS_SCENE_NAMES`), one per slot (left / middle / right), on
  screen the whole clip or, with probability ``partly_visible_prob``, for one span of 3..9 s;
- each object is heard for one span (random start, 2..10 s long) or, with probability about 1/3, is
  silent the whole clip; at least one object sounds. A silent object is visible but never labelled, so a
  model has to bind sound to sight. No off-screen sound, no narrator, no extra distractors
  (``difficulty.distractor_prob`` / ``offscreen_prob`` are not used: the silent objects are the distractors);
- frame ``i`` (the rendered frame at ``i + 0.5`` s) is labelled with the class index
  (:data:`crab.datasets.vocab_seg.AVSS_CLASSES` position) of exactly the objects both visible and audible
  in second ``i``; every other pixel is 0 (background). Masks are exact
  (:func:`crab.synth.masks.object_masks`). Where objects overlap, the later object in on-screen order
  (left, middle, right) overwrites the earlier one's class; a pixel an opaque later object fully covers is
  not the earlier object's at all (``object_masks``), so a silent object in front hides a sounding one.

Classes: 21 AVSS classes rendered as the S4 scene objects of the same concept
(:data:`crab.synth.avsbench.S4_SCENE_NAMES`), so their signatures are shared with AVSBench-object and
Ref-AVS and known pairwise distinct.

Written files (dataset-layouts 5.1-5.4; only the v2 subset: S4 and MS3 come from the AVSBench-object
writer, :mod:`crab.synth.avsbench`)::

    root/metadata.csv                       # vid,uid,s_min,s_sec,a_obj,split,label (v2 rows only, LF)
    root/label2idx.json                     # the 71 AVSS classes in order, values 1..71 (Crab's copy)
    root/v2/{uid}/audio.wav                 # 10 s, 16-bit PCM mono, synth.audio.sample_rate
    root/v2/{uid}/frames/{0..9}.jpg         # frame i: the rendered frame at i + 0.5 s, JPEG q95
    root/v2/{uid}/labels_semantic/{i}.png   # 8-bit grey (L): AVSS class index per pixel, 0 = background
    root/v2/{uid}/labels_rgb/{i}.png        # 8-bit RGB: AVSS_PALETTE[class index] per pixel
    root/avsynth_scenes.jsonl

``uid`` is ``{ytid}_{start_ms}_{end_ms}`` (10 000 ms apart, start a multiple of 1000), ``vid`` the ytid,
``s_min`` / ``s_sec`` the start split into minutes and seconds, ``a_obj`` the AVSS classes of the clip's
sounding objects joined by ``_`` in ``scene.objects`` order, ``label`` ``v2``.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from crab.config import DifficultyConfig, SynthAudioConfig, SynthAvssConfig, SynthVideoConfig
from crab.datasets.vocab_seg import AVSS_CLASSES, AVSS_PALETTE
from crab.synth.avsbench import write_png, write_wav
from crab.synth.masks import object_masks
from crab.synth.ref_avs import REF_AVS_SCENE_NAMES, ref_avs_frame_indices
from crab.synth.render import render_audio, render_frames, write_in_workers
from crab.synth.scene import SCENES_FILENAME, Interval, Scene, SceneObject, Slot, scene_lines
from crab.synth.world import audio_signature, item_seeds, youtube_id
from crab.tasks import NUM_AVSS_FRAMES

__all__ = [
    "AVSS_NUM_FRAMES",
    "AVSS_SCENE_NAMES",
    "SynthAvssConfig",
    "avss_class",
    "avss_frame_indices",
    "avss_scene",
    "semantic_maps",
    "write_avss",
]

logger = logging.getLogger(__name__)

#: AVSS class -> AV-Synth scene object name (the S4 scene name of the same concept): Ref-AVS's 16 objects, whose
#: names are AVSS classes too, then five more.
AVSS_SCENE_NAMES: dict[str, str] = {
    **REF_AVS_SCENE_NAMES,
    "gun": "Cap gun",
    "car": "Race car, auto racing",
    "bus": "Bus",
    "horse": "Horse",
    "bird": "Bird vocalization, bird call, bird song",
}
_unknown = sorted(set(AVSS_SCENE_NAMES) - set(AVSS_CLASSES))
if _unknown:  # a typo here would write masks of a class the format does not know
    raise ValueError(f"AVSS_SCENE_NAMES keys {_unknown} are not AVSS classes")
_CLASSES = {scene_name: cls for cls, scene_name in AVSS_SCENE_NAMES.items()}
_CLASS_NAMES: tuple[str, ...] = tuple(AVSS_SCENE_NAMES)

#: Frames (and annotated frames) of a v2 clip: one per second of its 10 s.
AVSS_NUM_FRAMES = NUM_AVSS_FRAMES  # 10 frames, one per second (crab.tasks)
_DURATION_S = AVSS_NUM_FRAMES
_SLOTS: tuple[Slot, ...] = ("left", "middle", "right")
_NUM_OBJECTS = (2, 3)
_SILENT_PROB = 1 / 3  # per object: silent for the whole clip
_VISIBLE_SPAN_S = (3, 9)  # a partly visible object is on screen for one span of 3..9 s
_AUDIBLE_SPAN_S = (2, 10)
_MAX_START_S = 290  # uid start_ms = 1000 * 0..290
_SUBSET = "v2"
_HEADER = ("vid", "uid", "s_min", "s_sec", "a_obj", "split", "label")
_SPLITS: tuple[str, ...] = ("train", "val", "test")
_JPEG_QUALITY = 95
_PALETTE = np.array(AVSS_PALETTE, dtype=np.uint8)  # (71, 3)


def avss_class(scene_name: str) -> str | None:
    """The AVSS class of an AV-Synth scene object name, or None for a name that is not one."""
    return _CLASSES.get(scene_name)


def avss_frame_indices(fps: int) -> list[int]:
    """Indices into ``render_frames``' output of the 10 v2 frames: frame ``i`` at ``i + 0.5`` s (as Ref-AVS)."""
    return ref_avs_frame_indices(fps)


# --------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------


def _span(rng: np.random.Generator, low: int, high: int) -> tuple[Interval, ...]:
    """One span of ``low..high`` whole seconds at a random start inside the clip."""
    length = int(rng.integers(low, high + 1))
    start = int(rng.integers(0, _DURATION_S - length + 1))
    return ((start, start + length),)


def _audible(rng: np.random.Generator, count: int) -> list[tuple[Interval, ...]]:
    """Heard spans of ``count`` objects (``()`` = silent); at least one object sounds."""
    while True:  # all silent with probability (1/3)^count: at most 1 draw in 9 is redrawn
        spans = [() if rng.random() < _SILENT_PROB else _span(rng, *_AUDIBLE_SPAN_S) for _ in range(count)]
        if any(spans):
            return spans


def avss_scene(
    rng: np.random.Generator,
    *,
    video_id: str,
    split: str,
    classes: list[str],
    partly_visible_prob: float,
    render_seed: int,
) -> Scene:
    """One AVSS scene: an object of each of ``classes`` (keys of :data:`AVSS_SCENE_NAMES`), each in its own slot.

    Args:
        rng: the item's scene generator (:func:`crab.synth.world.item_seeds`).
        video_id: the clip's ``uid``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        classes: 2-3 distinct AVSS classes of AV-Synth, in ``scene.objects`` order.
        partly_visible_prob: probability that an object is on screen for one span of 3..9 s only.
        render_seed: seed of the rendering noise and jitter.

    Returns:
        The scene (module docstring: visible and heard spans, at least one object sounds).

    Raises:
        ValueError: fewer than 2 or more than 3 classes, a repeat, or a class without a scene object.
    """
    unknown = [c for c in classes if c not in AVSS_SCENE_NAMES]
    if not _NUM_OBJECTS[0] <= len(classes) <= _NUM_OBJECTS[1] or len(set(classes)) != len(classes) or unknown:
        raise ValueError(f"{video_id}: expected 2-3 distinct AVSS classes of AV-Synth, got {classes}")
    slots = [_SLOTS[i] for i in rng.permutation(len(_SLOTS))]
    visible = [
        ((0, _DURATION_S),) if rng.random() >= partly_visible_prob else _span(rng, *_VISIBLE_SPAN_S) for _ in classes
    ]
    audible = _audible(rng, len(classes))
    objects = []
    for k, cls in enumerate(classes):
        name = AVSS_SCENE_NAMES[cls]
        objects.append(
            SceneObject(
                name=name,
                slot=slots[k],
                visible=visible[k],
                audible=audible[k],
                loudness=round(float(rng.uniform(0.5, 1.0)), 3),
                rhythm=audio_signature(name).rhythm,
            )
        )
    return Scene(
        video_id=video_id,
        dataset="avss",
        split=split,
        duration_s=_DURATION_S,
        background="indoor" if rng.random() < 0.5 else "outdoor",
        objects=tuple(objects),
        render_seed=render_seed,
    )


def semantic_maps(scene: Scene, video: SynthVideoConfig, difficulty: DifficultyConfig) -> np.ndarray:
    """The ``labels_semantic`` ground truth of the 10 frames: class index of the objects heard and seen.

    Returns:
        (10, size, size) uint8; frame ``i`` holds, on each pixel of an on-screen object audible in second
        ``i`` (:func:`crab.synth.masks.object_masks` in that frame), the object's index in
        :data:`AVSS_CLASSES`, and 0 elsewhere. Later objects in on-screen order overwrite earlier ones.

    Raises:
        ValueError: an object whose name is not a value of :data:`AVSS_SCENE_NAMES`.
    """
    masks = object_masks(scene, video, difficulty, avss_frame_indices(video.fps))  # (K, 10, H, W)
    out = np.zeros(masks.shape[1:], dtype=np.uint8)  # (10, H, W)
    for obj, mask in zip(scene.on_screen, masks, strict=True):
        cls = avss_class(obj.name)
        if cls is None:
            raise ValueError(f"{scene.video_id}: {obj.name!r} is not an AVSS scene object")
        for second in range(AVSS_NUM_FRAMES):
            if obj.is_audible_at(second):
                out[second][mask[second]] = AVSS_CLASSES.index(cls)
    return out


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Clip:
    """One clip and its folder ``v2/{uid}``."""

    scene: Scene
    folder: Path


def _write_clip(clip: _Clip, video: SynthVideoConfig, audio: SynthAudioConfig, difficulty: DifficultyConfig) -> None:
    """The 10 frames, the wav and the 10 semantic and colour masks of one clip."""
    scene, folder = clip.scene, clip.folder
    frames = render_frames(scene, video, difficulty)[avss_frame_indices(video.fps)]  # (10, H, W, 3)
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / "frames" / f"{i}.jpg", format="JPEG", quality=_JPEG_QUALITY)
    write_wav(folder / "audio.wav", render_audio(scene, audio, difficulty), audio.sample_rate)
    for i, semantic in enumerate(semantic_maps(scene, video, difficulty)):  # (H, W) uint8 class indices
        write_png(folder / "labels_semantic" / f"{i}.png", semantic)  # mode L
        write_png(folder / "labels_rgb" / f"{i}.png", _PALETTE[semantic])  # (H, W, 3), mode RGB


def _uid(rng: np.random.Generator, used: set[str]) -> tuple[str, str, int]:
    """``(uid, ytid, start_ms)`` of a new clip, ``uid`` not in ``used`` (added to it)."""
    while True:  # a repeat is astronomically rare; resolved deterministically
        ytid = youtube_id(rng)
        start = int(rng.integers(0, _MAX_START_S + 1)) * 1000
        uid = f"{ytid}_{start}_{start + 1000 * _DURATION_S}"
        if uid not in used:
            used.add(uid)
            return uid, ytid, start


def _label2idx() -> str:
    """``label2idx.json`` as Crab ships it: the 71 classes in order, 1-based (background = 1)."""
    return json.dumps({name: k + 1 for k, name in enumerate(AVSS_CLASSES)}, indent=4) + "\n"


def write_avss(
    root: Path,
    cfg: SynthAvssConfig,
    video: SynthVideoConfig,
    audio: SynthAudioConfig,
    difficulty: DifficultyConfig,
    seed: int,
) -> int:
    """Write AV-Synth's AVSS (AVSBench-semantic v2) in its native layout under ``root``, byte-deterministically.

    Args:
        root: the ``AVSBench_semantic`` folder (created if missing).
        cfg: sizes and the partly-visible share (``synth.avss``).
        video / audio / difficulty: rendering settings (``synth.video`` / ``synth.audio`` / ``synth.difficulty``;
            ``distractor_prob``, ``max_distractors`` and ``offscreen_prob`` are not used).
        seed: ``synth.seed``; clip ``i`` of a split draws from ``SeedSequence(seed, spawn_key=(7, split, i))``.

    Returns:
        The number of clips written.
    """
    root = Path(root)
    sizes = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}
    used: set[str] = set()
    rows: list[tuple[str, str, int, int, str, str, str]] = []
    clips: list[_Clip] = []
    for split in _SPLITS:
        for index in range(sizes[split]):
            rng, render_seed = item_seeds(seed, "avss", split, index)
            uid, ytid, start_ms = _uid(rng, used)
            count = int(rng.integers(_NUM_OBJECTS[0], _NUM_OBJECTS[1] + 1))
            classes = [_CLASS_NAMES[int(i)] for i in rng.choice(len(_CLASS_NAMES), count, replace=False)]
            scene = avss_scene(
                rng,
                video_id=uid,
                split=split,
                classes=classes,
                partly_visible_prob=cfg.partly_visible_prob,
                render_seed=render_seed,
            )
            a_obj = "_".join(avss_class(o.name) or "" for o in scene.objects if o.audible)
            s_min, s_sec = divmod(start_ms // 1000, 60)
            rows.append((ytid, uid, s_min, s_sec, a_obj, split, _SUBSET))
            clips.append(_Clip(scene, root / _SUBSET / uid))

    root.mkdir(parents=True, exist_ok=True)
    write_in_workers(_write_clip, clips, (video, audio, difficulty), "synth avss")
    with (root / "metadata.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(_HEADER)
        writer.writerows(rows)
    (root / "label2idx.json").write_text(_label2idx(), encoding="utf-8", newline="\n")
    (root / SCENES_FILENAME).write_text(scene_lines([c.scene for c in clips]), encoding="utf-8", newline="\n")
    logger.info(
        "avss: wrote %d v2 clips (%s) under %s", len(clips), ", ".join(f"{k} {v}" for k, v in sizes.items()), root
    )
    return len(clips)
