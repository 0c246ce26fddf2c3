"""AV-Synth clips in the native Ref-AVS layout: referring audio-visual segmentation (dataset-layouts section 6).

Ref-AVS (Wang et al., ECCV'24) pairs a referring expression ("The object making the loudest sound.") with
the masks of the one object it refers to in a 10-s clip's 10 frames. The scenes here keep what makes
that task audio-visual:

- 2-3 objects of distinct categories, one per slot (left / middle / right), on screen the whole clip or,
  with probability ``partly_visible_prob``, for one span of 3..9 s (the mask is empty outside it);
- each object is heard for one span (random start, 2..10 s long) or is silent; at least one object
  sounds, sounding objects start at distinct seconds and their loudness differs by >= 0.15, so "the
  first" and "the loudest" always single out one object, and at least one object is silent or starts
  later, so the audio matters. No off-screen sound, no narrator;
- expressions of three kinds: audio-only ("The object making the loudest sound."), visual-only ("The
  object on the left.", "The dog.") and audio-visual ("The violin that makes a sound.", "The object on
  the left that starts making a sound second."). Every expression is checked against the scene's ground
  truth and kept only if exactly one object satisfies it (:func:`unique_expressions`,
  :func:`expression_referent`); the kind is written nowhere (the AV-UIE builder derives reasoning from
  the scene);
- null expressions (object ``null``, empty masks) name a category absent from the clip ("The piano.",
  "The piano making a sound.") or an empty slot of a 2-object clip ("The object in the middle.").

Categories (:data:`REF_AVS_SCENE_NAMES`): 16 Ref-AVS objects rendered as the S4 scene objects of the same
concept (:data:`crab.synth.avsbench.S4_SCENE_NAMES`), so their signatures are shared with AVSBench and
known pairwise distinct. 12 are *seen* (train, val, test_s) and 4 *unseen*: they occur only in test_u
clips, whose expressions all refer to unseen-category objects. test_n reuses the test_s clips, one null
row each (as the release does for 250 of its 257 test_n videos).

Written files (dataset-layouts 6.1-6.3)::

    root/metadata.csv                                   # vid,uid,split,fid,exp (CRLF, csv quoting)
    root/media/{vid}/audio.wav                          # 10 s, 16-bit PCM mono, synth.audio.sample_rate
    root/media/{vid}/frames/{0..9}.jpg                  # frame i: the rendered frame at i + 0.5 s, JPEG q95
    root/gt_mask/{media_id}/fid_{fid}/{00000..00009}.png   # 8-bit grey, 0 / 255
    root/avsynth_scenes.jsonl

``vid`` is ``{ytid}_{start_ms}_{end_ms}`` (10 000 ms apart). A normal row's ``uid`` is
``{vid}_{object}_{k}`` (k = 1.. per video and object) and its ``fid`` the referent's index in
``scene.objects``, so all expressions about one object share ``gt_mask/{vid}/fid_{fid}``. A null row's
uid is ``null_c-{vid}_null_{k}`` with ``fid`` 0 and ten all-zero masks under ``gt_mask/null_c-{vid}/fid_0``;
no ``media/null_c-{vid}`` folder is written (the reader falls back to ``media/{vid}``). Masks are exact
(:func:`crab.synth.masks.object_masks`). No mp4 is written (the release has only wav + frames).
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from crab.avuie.avs_build import S4_WORDS, WHERE
from crab.config import DifficultyConfig, SynthAudioConfig, SynthRefAvsConfig, SynthVideoConfig
from crab.datasets.ref_avs import REF_AVS_NUM_FRAMES
from crab.datasets.vocab_seg import REF_AVS_NULL_OBJECT
from crab.synth.avsbench import s4_category, write_png, write_wav
from crab.synth.masks import object_masks
from crab.synth.render import render_audio, render_frames, write_in_workers
from crab.synth.scene import SCENES_FILENAME, Interval, Scene, SceneObject, Slot, scene_lines
from crab.synth.world import audio_signature, item_seeds, youtube_id

__all__ = [
    "EXPRESSION_KINDS",
    "REF_AVS_SCENE_NAMES",
    "REF_AVS_SEEN",
    "REF_AVS_UNSEEN",
    "SynthRefAvsConfig",
    "expression_referent",
    "object_noun",
    "ref_avs_frame_indices",
    "ref_avs_object",
    "ref_avs_scene",
    "unique_expressions",
    "write_ref_avs",
]

logger = logging.getLogger(__name__)

#: Ref-AVS object -> AV-Synth scene object name (the S4 scene name of the same concept).
REF_AVS_SCENE_NAMES: dict[str, str] = {
    # seen: train, val, test_s
    "guitar": "Acoustic guitar",
    "violin": "Violin, fiddle",
    "piano": "Piano",
    "ukulele": "Ukulele",
    "tabla": "Tabla",
    "dog": "Bark",
    "cat": "Cat",
    "baby": "Baby laughter",
    "man": "Male speech, man speaking",
    "woman": "Female singing",
    "helicopter": "Helicopter",
    "lion": "Roaring cats (lions, tigers)",
    # unseen: test_u only
    "keyboard": "Computer keyboard",
    "mower": "Lawn mower",
    "saw": "Chainsaw",
    "emergency-car": "Ambulance (siren)",
}
#: Categories of train, val and test_s clips.
REF_AVS_SEEN: tuple[str, ...] = tuple(REF_AVS_SCENE_NAMES)[:12]
#: Categories that occur only in test_u clips (and are the referents of all its expressions).
REF_AVS_UNSEEN: tuple[str, ...] = tuple(REF_AVS_SCENE_NAMES)[12:]
_OBJECTS = {scene_name: obj for obj, scene_name in REF_AVS_SCENE_NAMES.items()}

#: The three kinds of expression: which modality singles out the referent.
EXPRESSION_KINDS: tuple[str, ...] = ("audio", "visual", "audio-visual")

_DURATION_S = REF_AVS_NUM_FRAMES  # 10 s, one frame per second
_SLOTS: tuple[Slot, ...] = ("left", "middle", "right")
_NTH: tuple[str, ...] = ("first", "second", "third")
_NUM_OBJECTS = (2, 3)
_SILENT_PROB = 0.35  # per object: silent for the whole clip
_MIN_LOUDNESS_GAP = 0.15
_VISIBLE_SPAN_S = (3, 9)  # a partly visible object is on screen for one span of 3..9 s
_AUDIBLE_SPAN_S = (2, 10)
_MAX_START_S = 290  # vid start_ms = 1000 * 0..290
_NULL_SLOT_PROB = 1 / 3  # a null expression names an empty slot (when there is one)
_NULL_PREFIX = "null_c-"
_HEADER = ("vid", "uid", "split", "fid", "exp")
_SPLITS: tuple[str, ...] = ("train", "val", "test_s", "test_u")
_JPEG_QUALITY = 95


def ref_avs_object(scene_name: str) -> str | None:
    """The Ref-AVS object of an AV-Synth scene object name, or None for a name that is not one."""
    return _OBJECTS.get(scene_name)


def object_noun(scene_name: str) -> str:
    """The prose noun of a scene object (``"Bark"`` -> ``"dog"``), from :data:`crab.avuie.avs_build.S4_WORDS`."""
    category = s4_category(scene_name)
    if category is None:
        raise ValueError(f"{scene_name!r} is not an S4 scene object name")
    return S4_WORDS[category].noun


def ref_avs_frame_indices(fps: int) -> list[int]:
    """Indices into ``render_frames``' output of the 10 Ref-AVS frames: frame ``i`` at ``i + 0.5`` s."""
    return [int((i + 0.5) * fps) for i in range(REF_AVS_NUM_FRAMES)]


# --------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------


def _visible(rng: np.random.Generator, partly_visible_prob: float) -> tuple[Interval, ...]:
    if rng.random() >= partly_visible_prob:
        return ((0, _DURATION_S),)
    length = int(rng.integers(_VISIBLE_SPAN_S[0], _VISIBLE_SPAN_S[1] + 1))
    start = int(rng.integers(0, _DURATION_S - length + 1))
    return ((start, start + length),)


def _audible(rng: np.random.Generator, count: int) -> list[tuple[Interval, ...]]:
    """Spans of ``count`` objects: one sounds at least, sounding ones start at distinct seconds."""
    while True:  # accepts about 3 draws in 4
        spans: list[tuple[Interval, ...]] = []
        for _ in range(count):
            if rng.random() < _SILENT_PROB:
                spans.append(())
                continue
            length = int(rng.integers(_AUDIBLE_SPAN_S[0], _AUDIBLE_SPAN_S[1] + 1))
            start = int(rng.integers(0, _DURATION_S - length + 1))
            spans.append(((start, start + length),))
        onsets = [s[0][0] for s in spans if s]
        some_silent_or_later = len(onsets) < count or len(set(onsets)) > 1
        if onsets and len(set(onsets)) == len(onsets) and some_silent_or_later:
            return spans


def _loudness(rng: np.random.Generator, spans: list[tuple[Interval, ...]]) -> list[float]:
    """Loudness per object, uniform in [0.4, 1.0] (3 decimals), sounding ones >= 0.15 apart."""
    while True:
        values = [round(float(rng.uniform(0.4, 1.0)), 3) for _ in spans]
        heard = sorted(v for v, s in zip(values, spans, strict=True) if s)
        if all(b - a >= _MIN_LOUDNESS_GAP - 1e-9 for a, b in zip(heard, heard[1:], strict=False)):
            return values


def ref_avs_scene(
    rng: np.random.Generator,
    *,
    video_id: str,
    split: str,
    objects: list[str],
    partly_visible_prob: float,
    render_seed: int,
) -> Scene:
    """One Ref-AVS scene: an object of each of ``objects`` (Ref-AVS categories), each in its own slot.

    Args:
        rng: the item's scene generator (:func:`crab.synth.world.item_seeds`).
        video_id: the clip's ``vid``.
        split: ``"train"``, ``"val"``, ``"test_s"`` or ``"test_u"``.
        objects: 2-3 distinct keys of :data:`REF_AVS_SCENE_NAMES`, in ``scene.objects`` order.
        partly_visible_prob: probability that an object is on screen for one span of 3..9 s only.
        render_seed: seed of the rendering noise and jitter.

    Returns:
        The scene (module docstring: sounding spans, distinct onsets, loudness gaps).

    Raises:
        ValueError: fewer than 2 or more than 3 objects, a repeat, or an unknown category.
    """
    unknown = [o for o in objects if o not in REF_AVS_SCENE_NAMES]
    if not 2 <= len(objects) <= len(_SLOTS) or len(set(objects)) != len(objects) or unknown:
        raise ValueError(f"{video_id}: expected 2-3 distinct Ref-AVS categories of AV-Synth, got {objects}")
    slots = [_SLOTS[i] for i in rng.permutation(len(_SLOTS))]
    visible = [_visible(rng, partly_visible_prob) for _ in objects]
    audible = _audible(rng, len(objects))
    loudness = _loudness(rng, audible)
    scene_objects = []
    for k, obj in enumerate(objects):
        name = REF_AVS_SCENE_NAMES[obj]
        scene_objects.append(
            SceneObject(
                name=name,
                slot=slots[k],
                visible=visible[k],
                audible=audible[k],
                loudness=loudness[k],
                rhythm=audio_signature(name).rhythm,
            )
        )
    return Scene(
        video_id=video_id,
        dataset="ref_avs",
        split=split,
        duration_s=_DURATION_S,
        background="indoor" if rng.random() < 0.5 else "outdoor",
        objects=tuple(scene_objects),
        render_seed=render_seed,
    )


# --------------------------------------------------------------------------------------------------
# Expressions
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Template:
    """One expression and the objects of a scene it describes (its referent when exactly one)."""

    kind: str
    text: str
    matches: frozenset[int]  # indices into scene.objects
    needs_order: bool  # compares sounding objects: generated only when two or more sound
    null_only: bool = False  # the wording of null expressions, not used for a referent


def _templates(scene: Scene) -> list[_Template]:
    """Every expression the writer knows for this scene, naming all 16 categories and all 3 slots."""
    objs = list(enumerate(scene.objects))
    sounding = [(i, o) for i, o in objs if o.audible]
    by_onset = [i for i, _ in sorted(sounding, key=lambda p: p[1].onset or 0)]
    loudest = max(sounding, key=lambda p: p[1].loudness)[0] if sounding else None
    nouns = {i: object_noun(o.name) for i, o in objs}

    def match(pred) -> frozenset[int]:
        return frozenset(i for i, o in objs if pred(i, o))

    out = [
        _Template("audio", "The object making the loudest sound.", match(lambda i, o: i == loudest), True),
        _Template("audio", "The first object to make a sound.", match(lambda i, o: by_onset[:1] == [i]), True),
        _Template("audio", "The object making a sound.", match(lambda i, o: bool(o.audible)), False),
        _Template("audio", "The object that makes no sound.", match(lambda i, o: not o.audible), False),
    ]
    for slot in _SLOTS:
        where = WHERE[slot]
        out.append(_Template("visual", f"The object {where}.", match(lambda i, o, s=slot: o.slot == s), False))
        out.append(
            _Template(
                "audio-visual",
                f"The sounding object {where}.",
                match(lambda i, o, s=slot: o.slot == s and bool(o.audible)),
                False,
            )
        )
        for rank, nth in enumerate(_NTH):
            out.append(
                _Template(
                    "audio-visual",
                    f"The object {where} that starts making a sound {nth}.",
                    match(lambda i, o, s=slot, r=rank: o.slot == s and i in by_onset and by_onset.index(i) == r),
                    True,
                )
            )
    for scene_name in REF_AVS_SCENE_NAMES.values():
        noun = object_noun(scene_name)
        same = match(lambda i, o, n=noun: nouns[i] == n)
        heard = match(lambda i, o, n=noun: nouns[i] == n and bool(o.audible))
        out.append(_Template("visual", f"The {noun}.", same, False))
        out.append(_Template("audio-visual", f"The {noun} that makes a sound.", heard, False))
        out.append(_Template("audio-visual", f"The {noun} making a sound.", heard, False, null_only=True))
    return out


def unique_expressions(scene: Scene) -> list[tuple[str, str, int]]:
    """The expressions the writer may use for a scene's objects: each singles out exactly one object.

    Returns:
        ``(kind, text, referent)`` triples, ``kind`` one of :data:`EXPRESSION_KINDS`, ``referent`` an index
        into ``scene.objects``; templates that compare sounding objects ("loudest", "first", "starts making
        a sound second") only when two or more objects sound.
    """
    num_sounding = sum(1 for o in scene.objects if o.audible)
    return [
        (t.kind, t.text, next(iter(t.matches)))
        for t in _templates(scene)
        if len(t.matches) == 1 and (num_sounding >= 2 or not t.needs_order) and not t.null_only
    ]


def expression_referent(scene: Scene, exp: str) -> int | None:
    """The index in ``scene.objects`` of the one object ``exp`` describes, or None.

    None for an expression that matches no object (a null expression) or several, and for text the
    writer never produces. Evaluated on the scene's ground truth, so it is the referent by construction.
    """
    for template in _templates(scene):
        if template.text == exp:
            return next(iter(template.matches)) if len(template.matches) == 1 else None
    return None


def _pick_expressions(rng: np.random.Generator, scene: Scene, count: int, referents: set[int]) -> list[tuple[int, str]]:
    """``count`` distinct unique expressions (fewer if the scene has fewer) about objects in ``referents``.

    Kinds follow a random order of the three, so every kind occurs; referents not used yet are preferred.
    """
    candidates = [(kind, text, ref) for kind, text, ref in unique_expressions(scene) if ref in referents]
    order = [EXPRESSION_KINDS[int(k)] for k in rng.permutation(len(EXPRESSION_KINDS))]
    chosen: list[tuple[int, str]] = []
    for j in range(count):
        kinds = order[j % len(order) :] + order[: j % len(order)]
        for kind in kinds:
            texts = {text for _, text in chosen}
            pool = [(ref, text) for k, text, ref in candidates if k == kind and text not in texts]
            if not pool:
                continue
            fresh = [c for c in pool if c[0] not in {ref for ref, _ in chosen}]
            options = fresh or pool
            chosen.append(options[int(rng.integers(0, len(options)))])
            break
    return chosen


def _null_expression(rng: np.random.Generator, scene: Scene) -> str:
    """An expression no object of the scene matches: an absent seen category, or an empty slot."""
    present = {o.name for o in scene.objects}
    empty = [slot for slot in _SLOTS if slot not in {o.slot for o in scene.objects}]
    if empty and rng.random() < _NULL_SLOT_PROB:
        return f"The object {WHERE[empty[int(rng.integers(0, len(empty)))]]}."
    absent = [REF_AVS_SCENE_NAMES[c] for c in REF_AVS_SEEN if REF_AVS_SCENE_NAMES[c] not in present]
    noun = object_noun(absent[int(rng.integers(0, len(absent)))])
    return f"The {noun}." if rng.random() < 0.5 else f"The {noun} making a sound."


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Clip:
    """One clip and where its files go."""

    scene: Scene
    media: Path  # media/{vid}
    masks: tuple[tuple[Path, int | None], ...]  # (fid folder, index in scene.objects or None: all zero)


def _write_clip(clip: _Clip, video: SynthVideoConfig, audio: SynthAudioConfig, difficulty: DifficultyConfig) -> None:
    """The 10 frames, the wav and the mask folders of one clip."""
    scene, indices = clip.scene, ref_avs_frame_indices(video.fps)
    frames = render_frames(scene, video, difficulty)[indices]  # (10, H, W, 3)
    (clip.media / "frames").mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(clip.media / "frames" / f"{i}.jpg", format="JPEG", quality=_JPEG_QUALITY)
    write_wav(clip.media / "audio.wav", render_audio(scene, audio, difficulty), audio.sample_rate)
    masks = object_masks(scene, video, difficulty, indices)  # (K, 10, H, W), K in on-screen order
    empty = np.zeros(frames.shape[1:3], dtype=np.uint8)  # (H, W)
    for folder, index in clip.masks:
        k = None if index is None else scene.on_screen.index(scene.objects[index])
        for i in range(REF_AVS_NUM_FRAMES):
            write_png(folder / f"{i:05d}.png", empty if k is None else masks[k, i].astype(np.uint8) * 255)


def _clip_objects(rng: np.random.Generator, split: str) -> list[str]:
    """2-3 distinct categories: seen ones, or for test_u at least one unseen (the rest seen), in random order."""
    count = int(rng.integers(_NUM_OBJECTS[0], _NUM_OBJECTS[1] + 1))
    if split != "test_u":
        return [REF_AVS_SEEN[int(i)] for i in rng.choice(len(REF_AVS_SEEN), count, replace=False)]
    num_unseen = int(rng.integers(1, count + 1))
    unseen = [REF_AVS_UNSEEN[int(i)] for i in rng.choice(len(REF_AVS_UNSEEN), num_unseen, replace=False)]
    seen = [REF_AVS_SEEN[int(i)] for i in rng.choice(len(REF_AVS_SEEN), count - num_unseen, replace=False)]
    both = unseen + seen
    return [both[int(i)] for i in rng.permutation(count)]


def _vid(rng: np.random.Generator, used: set[str]) -> str:
    while True:  # a repeat is astronomically rare; resolved deterministically
        start = int(rng.integers(0, _MAX_START_S + 1)) * 1000
        vid = f"{youtube_id(rng)}_{start}_{start + 1000 * _DURATION_S}"
        if vid not in used:
            used.add(vid)
            return vid


def write_ref_avs(
    root: Path,
    cfg: SynthRefAvsConfig,
    video: SynthVideoConfig,
    audio: SynthAudioConfig,
    difficulty: DifficultyConfig,
    seed: int,
) -> int:
    """Write AV-Synth's Ref-AVS in its native layout under ``root``, byte-deterministically.

    Args:
        root: the ``REFAVS`` folder (created if missing).
        cfg: sizes, expressions per clip and the null / partly-visible shares (``synth.ref_avs``).
        video / audio / difficulty: rendering settings (``synth.video`` / ``synth.audio`` / ``synth.difficulty``;
            ``distractor_prob`` and ``offscreen_prob`` are not used: every object of a clip is a possible referent).
        seed: ``synth.seed``; clips draw from ``SeedSequence(seed, spawn_key=(6, split, item))``, test_n's null
            expression of test_s clip ``i`` from ``(6, 5, i)``.

    Returns:
        The number of clips written (test_n has none of its own).
    """
    root = Path(root)
    sizes = {
        "train": cfg.num_train_videos,
        "val": cfg.num_val_videos,
        "test_s": cfg.num_test_s_videos,
        "test_u": cfg.num_test_u_videos,
    }
    used: set[str] = set()
    rows: list[tuple[str, str, str, int, str]] = []
    clips: list[_Clip] = []
    test_s: list[tuple[Scene, list[tuple[Path, int | None]]]] = []
    for split in _SPLITS:
        for index in range(sizes[split]):
            rng, render_seed = item_seeds(seed, "ref_avs", split, index)
            vid = _vid(rng, used)
            scene = ref_avs_scene(
                rng,
                video_id=vid,
                split=split,
                objects=_clip_objects(rng, split),
                partly_visible_prob=cfg.partly_visible_prob,
                render_seed=render_seed,
            )
            objects = [ref_avs_object(o.name) or "" for o in scene.objects]
            referents = set(range(len(objects)))
            if split == "test_u":
                referents = {i for i, o in enumerate(objects) if o in REF_AVS_UNSEEN}
            counts: Counter[str] = Counter()
            masks: list[tuple[Path, int | None]] = []
            for ref, exp in _pick_expressions(rng, scene, cfg.expressions_per_video, referents):
                counts[objects[ref]] += 1
                rows.append((vid, f"{vid}_{objects[ref]}_{counts[objects[ref]]}", split, ref, exp))
                folder = root / "gt_mask" / vid / f"fid_{ref}"
                if (folder, ref) not in masks:
                    masks.append((folder, ref))
            if split in ("train", "val") and rng.random() < cfg.null_prob:
                rows.append(
                    (vid, f"{_NULL_PREFIX}{vid}_{REF_AVS_NULL_OBJECT}_1", split, 0, _null_expression(rng, scene))
                )
                masks.append((root / "gt_mask" / f"{_NULL_PREFIX}{vid}" / "fid_0", None))
            if split == "test_s":
                test_s.append((scene, masks))
            else:
                clips.append(_Clip(scene, root / "media" / vid, tuple(masks)))
    for index, (scene, masks) in enumerate(test_s):  # test_n: one null row per test_s clip, on its media
        rng, _ = item_seeds(seed, "ref_avs", "test_n", index)
        vid = scene.video_id
        rows.append((vid, f"{_NULL_PREFIX}{vid}_{REF_AVS_NULL_OBJECT}_1", "test_n", 0, _null_expression(rng, scene)))
        masks.append((root / "gt_mask" / f"{_NULL_PREFIX}{vid}" / "fid_0", None))
        clips.append(_Clip(scene, root / "media" / vid, tuple(masks)))

    root.mkdir(parents=True, exist_ok=True)
    write_in_workers(_write_clip, clips, (video, audio, difficulty), "synth ref_avs")
    with (root / "metadata.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(_HEADER)
        writer.writerows(rows)
    scenes = [clip.scene for clip in clips]
    (root / SCENES_FILENAME).write_text(scene_lines(scenes), encoding="utf-8", newline="\n")
    logger.info(
        "ref_avs: wrote %d clips, %d expressions (%s) under %s",
        len(clips),
        len(rows),
        ", ".join(f"{k} {v}" for k, v in sizes.items()),
        root,
    )
    return len(clips)
