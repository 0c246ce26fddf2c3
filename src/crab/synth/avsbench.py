"""AV-Synth clips in the native AVSBench-object v1 layout: S4 (single sound source) and MS3 (multiple sources).

AVSBench (Zhou et al. ECCV'22; dataset-layouts section 4) asks for a binary mask of the object(s) making
the sound in each of a 5-s clip's five frames. The scenes here keep what makes that task non-trivial:

- S4: one sounding object of one of the 23 S4 categories; MS3: 2-3 sounding objects of distinct
  categories (``MS3_NUM_SOURCES``), one per slot;
- silent visible distractors of other categories (``difficulty.distractor_prob`` / ``max_distractors``,
  as far as free slots allow), which are *never* in the mask, so a model has to bind sound to sight;
- sources that are on screen for only part of the clip (``partly_visible_prob``) or heard for only part
  of it (``partly_audible_prob``): a frame's mask is the union of the objects heard *and* seen in that
  frame's second, and is empty when there is none.

Off-screen sounding distractors (``difficulty.offscreen_prob``) are not used: a second audible source
would break S4's single-source premise, and MS3's sources are the on-screen ones.

Masks are exact (:mod:`crab.synth.masks`): the pixels the renderer paints for the sounding objects in
that frame. Frames are written losslessly as PNG straight from ``render_frames`` (frame ``i`` is the
rendered frame at ``i - 1 + 15/16`` s, where the official extractor samples), never decoded from the mp4,
so frame and mask agree pixel for pixel.

Class signatures: an S4 category is rendered as :data:`S4_SCENE_NAMES` ``[category]``, the AudioSet /
AVE / LLP name of the same concept where one exists (``playing_violin`` -> ``"Violin, fiddle"``, as in AVE
and LLP), so shared concepts look and sound the same across datasets. With these names every two
categories differ in at least two signature attributes and each modality alone determines the category
(tested); all 23 categories are used. MS3 draws its sources from the same 23.

Written files (dataset-layouts 4.1; the CSV headers' exact text is unconfirmed upstream, the reader
finds ``split`` by name and the rest by position)::

    root/Single-source/s4_meta_data.csv                       # name,start_time,category,split
    root/Single-source/s4_data/raw_videos/{split}/{category}/{name}.mp4
    root/Single-source/s4_data/audio_wav/{split}/{category}/{name}.wav
    root/Single-source/s4_data/visual_frames/{split}/{category}/{name}/{name}_{i}.png    # i = 1..5
    root/Single-source/s4_data/gt_masks/{split}/{category}/{name}/{name}_{i}.png         # train: i = 1 only
    root/Single-source/avsynth_scenes.jsonl
    root/Multi-sources/ms3_meta_data.csv                      # name,split
    root/Multi-sources/ms3_data/raw_videos/{name}.mp4
    root/Multi-sources/ms3_data/visual_frames/{name}/{name}.mp4_{i}.png
    root/Multi-sources/ms3_data/audio_wav/{split}/{name}.wav
    root/Multi-sources/ms3_data/gt_masks/{split}/{name}/{name}_{i}.png                   # i = 1..5
    root/Multi-sources/avsynth_scenes.jsonl

Frames are RGB PNG of ``video.size`` squared (the real set is 224), masks single-channel 8-bit PNG with
0 = background and 255 = sounding object, wavs 16-bit PCM mono at ``audio.sample_rate`` (the real set is
16 kHz). The ``audio_log_mel`` pickles of the release are not written (they need torch and VGGish; the
reader does not use them). S4 names are 11-character YouTube-style ids, MS3 names ``{ytid}_{k}``.
"""

from __future__ import annotations

import logging
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from crab.config import DifficultyConfig, SynthAudioConfig, SynthAvsConfig, SynthVideoConfig
from crab.datasets.avsbench import NUM_AVS_OBJECT_FRAMES
from crab.datasets.vocab_seg import S4_CATEGORIES
from crab.synth.masks import object_masks
from crab.synth.render import _Settings, render_audio, render_clips, render_frames, write_in_workers
from crab.synth.scene import SCENES_FILENAME, Interval, Scene, SceneObject, Slot, scene_lines
from crab.synth.world import audio_signature, item_seeds, split_rng, youtube_id

__all__ = [
    "MS3_NUM_SOURCES",
    "S4_SCENE_NAMES",
    "SynthAvsConfig",
    "avs_frame_indices",
    "avs_scene",
    "s4_category",
    "sounding_masks",
    "write_ms3",
    "write_png",
    "write_s4",
    "write_wav",
]

logger = logging.getLogger(__name__)

#: S4 category -> name of its scene objects (the key of its visual and audio signature; module docstring).
S4_SCENE_NAMES: dict[str, str] = {
    "baby_laughter": "Baby laughter",
    "female_singing": "Female singing",
    "male_speech": "Male speech, man speaking",
    "dog_barking": "Bark",
    "cat_meowing": "Cat",
    "lions_roaring": "Roaring cats (lions, tigers)",
    "horse_clip-clop": "Horse",
    "coyote_howling": "Howl",
    "mynah_bird_singing": "Bird vocalization, bird call, bird song",
    "playing_acoustic_guitar": "Acoustic guitar",
    "playing_tabla": "Tabla",
    "playing_violin": "Violin, fiddle",
    "playing_piano": "Piano",
    "playing_ukulele": "Ukulele",
    "playing_glockenspiel": "Glockenspiel",
    "helicopter": "Helicopter",
    "race_car": "Race car, auto racing",
    "driving_buses": "Bus",
    "ambulance_siren": "Ambulance (siren)",
    "typing_on_computer_keyboard": "Computer keyboard",
    "chainsawing_trees": "Chainsaw",
    "cap_gun_shooting": "Cap gun",
    "lawn_mowing": "Lawn mower",
}
_CATEGORIES = {scene_name: category for category, scene_name in S4_SCENE_NAMES.items()}

#: Fewest and most sounding objects of an MS3 clip (three slots on screen).
MS3_NUM_SOURCES: tuple[int, int] = (2, 3)
_FRAME_OFFSET_S = 15 / 16  # the official extractor keeps sub-sample 15 of 16 in each second
_SLOTS: tuple[Slot, ...] = ("left", "middle", "right")
_MAX_START_S = 5  # S4 start_time column: clips of 5 s start at 0..5 in their 10-s source
_MAX_MS3_PIECE = 9  # MS3 names are {ytid}_{k}
_S4_HEADER = "name,start_time,category,split"
_MS3_HEADER = "name,split"
_SPLITS: tuple[str, ...] = ("train", "val", "test")


def s4_category(scene_name: str) -> str | None:
    """The S4 category of a scene object name, or None for a name that is no S4 category."""
    return _CATEGORIES.get(scene_name)


def avs_frame_indices(fps: int) -> list[int]:
    """Indices into ``render_frames``' output of the 5 AVSBench frames: second ``s`` at ``s + 15/16`` s.

    ``fps = 8`` gives ``[7, 15, 23, 31, 39]``; ``fps = 1`` gives ``[0, 1, 2, 3, 4]``.
    """
    return [int((s + _FRAME_OFFSET_S) * fps) for s in range(NUM_AVS_OBJECT_FRAMES)]


# --------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------


def _span(rng: np.random.Generator, partial_prob: float) -> tuple[Interval, ...]:
    """The whole clip, or with probability ``partial_prob`` one span of 1..4 of its 5 seconds."""
    duration = NUM_AVS_OBJECT_FRAMES
    if rng.random() >= partial_prob:
        return ((0, duration),)
    length = int(rng.integers(1, duration))
    start = int(rng.integers(0, duration - length + 1))
    return ((start, start + length),)


def avs_scene(
    rng: np.random.Generator,
    *,
    video_id: str,
    dataset: Literal["s4", "ms3"],
    split: str,
    categories: list[str],
    config: SynthAvsConfig,
    difficulty: DifficultyConfig,
    render_seed: int,
) -> Scene:
    """One AVSBench scene: a sounding object of each of ``categories``, then silent visible distractors.

    Args:
        rng: the item's scene generator (:func:`crab.synth.world.item_seeds`).
        video_id: the clip's name.
        dataset: ``"s4"`` or ``"ms3"`` (stored in the scene).
        split: ``"train"``, ``"val"`` or ``"test"``.
        categories: 1..3 distinct S4 categories, one sounding object each.
        config: the shares of partly visible and partly audible objects.
        difficulty: distractor probability and count.
        render_seed: seed of the rendering noise and jitter.

    Returns:
        The scene; its first ``len(categories)`` objects are the sources (each on screen and heard for at
        least one second), the rest silent distractors of other categories.

    Raises:
        ValueError: no category, more than three, a repeat, or one that is not an S4 category.
    """
    unknown = [c for c in categories if c not in S4_SCENE_NAMES]
    if not 1 <= len(categories) <= len(_SLOTS) or len(set(categories)) != len(categories) or unknown:
        raise ValueError(f"{video_id}: expected 1..3 distinct S4 categories, got {categories}")
    slots = [_SLOTS[i] for i in rng.permutation(len(_SLOTS))]
    objects = []
    for category in categories:
        name = S4_SCENE_NAMES[category]
        objects.append(
            SceneObject(
                name=name,
                slot=slots.pop(),
                visible=_span(rng, config.partly_visible_prob),
                audible=_span(rng, config.partly_audible_prob),
                loudness=round(float(rng.uniform(0.6, 1.0)), 3),
                rhythm=audio_signature(name).rhythm,
            )
        )
    if slots and difficulty.max_distractors > 0 and rng.random() < difficulty.distractor_prob:
        count = min(int(rng.integers(1, difficulty.max_distractors + 1)), len(slots))
        others = [c for c in S4_CATEGORIES if c not in categories]
        for category in rng.choice(others, size=count, replace=False):
            name = S4_SCENE_NAMES[str(category)]
            objects.append(
                SceneObject(
                    name=name,
                    slot=slots.pop(),
                    visible=_span(rng, config.partly_visible_prob),
                    audible=(),
                    loudness=round(float(rng.uniform(0.4, 0.9)), 3),
                    rhythm=audio_signature(name).rhythm,
                )
            )
    return Scene(
        video_id=video_id,
        dataset=dataset,
        split=split,
        duration_s=NUM_AVS_OBJECT_FRAMES,
        background="indoor" if rng.random() < 0.5 else "outdoor",
        objects=tuple(objects),
        render_seed=render_seed,
    )


def sounding_masks(scene: Scene, video: SynthVideoConfig, difficulty: DifficultyConfig) -> np.ndarray:
    """The ground-truth masks of the 5 AVSBench frames: the objects heard and seen in each frame's second.

    Returns:
        (5, size, size) bool; frame ``s`` is the union of :func:`crab.synth.masks.object_masks` over the
        on-screen objects audible in second ``s`` (empty when none is both heard and seen).
    """
    masks = object_masks(scene, video, difficulty, avs_frame_indices(video.fps))  # (K, 5, H, W)
    out = np.zeros(masks.shape[1:], dtype=bool)  # (5, H, W)
    for obj, mask in zip(scene.on_screen, masks, strict=True):
        for s in range(NUM_AVS_OBJECT_FRAMES):
            if obj.is_audible_at(s):
                out[s] |= mask[s]
    return out


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    """One clip and where its files go."""

    scene: Scene
    row: str  # its metadata CSV row
    video: Path
    audio: Path
    frames: tuple[Path, ...]
    masks: tuple[Path, ...]  # the first len(masks) frames are annotated


def write_png(path: Path, array: np.ndarray) -> None:
    """RGB (H, W, 3) or grey (H, W) uint8 as PNG; PIL's encoder adds no timestamp, so bytes are reproducible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """(N,) float32 samples in [-1, 1] as 16-bit PCM mono."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())


def _write_annotations(
    item: _Item, video: SynthVideoConfig, audio: SynthAudioConfig, difficulty: DifficultyConfig
) -> None:
    """The 5 frames, the masks of the annotated ones and the wav of one clip."""
    frames = render_frames(item.scene, video, difficulty)[avs_frame_indices(video.fps)]  # (5, H, W, 3)
    masks = sounding_masks(item.scene, video, difficulty)  # (5, H, W)
    for path, frame in zip(item.frames, frames, strict=True):
        write_png(path, frame)
    for path, mask in zip(item.masks, masks, strict=False):  # S4 train: the first mask only
        write_png(path, mask.astype(np.uint8) * 255)
    write_wav(item.audio, render_audio(item.scene, audio, difficulty), audio.sample_rate)


def _split_scenes(
    dataset: Literal["s4", "ms3"],
    cfg: SynthAvsConfig,
    difficulty: DifficultyConfig,
    seed: int,
    split: str,
    count: int,
    used_ids: set[str],
) -> list[tuple[Scene, int]]:
    """``count`` ``(scene, start second or piece number)`` pairs of one split; S4 categories balanced."""
    order_rng = split_rng(seed, dataset, split)
    blocks = -(-count // len(S4_CATEGORIES))
    order = np.concatenate([order_rng.permutation(len(S4_CATEGORIES)) for _ in range(blocks)])
    out = []
    for index in range(count):
        rng, render_seed = item_seeds(seed, dataset, split, index)
        ytid = youtube_id(rng)
        if dataset == "s4":
            number = int(rng.integers(0, _MAX_START_S + 1))
            categories = [S4_CATEGORIES[int(order[index])]]
        else:
            number = int(rng.integers(0, _MAX_MS3_PIECE + 1))
            num_sources = int(rng.integers(MS3_NUM_SOURCES[0], MS3_NUM_SOURCES[1] + 1))
            categories = [S4_CATEGORIES[int(i)] for i in rng.choice(len(S4_CATEGORIES), num_sources, replace=False)]
        name = ytid if dataset == "s4" else f"{ytid}_{number}"
        while name in used_ids:  # astronomically rare; resolved deterministically
            name = youtube_id(rng) if dataset == "s4" else f"{youtube_id(rng)}_{number}"
        used_ids.add(name)
        scene = avs_scene(
            rng,
            video_id=name,
            dataset=dataset,
            split=split,
            categories=categories,
            config=cfg,
            difficulty=difficulty,
            render_seed=render_seed,
        )
        out.append((scene, number))
    return out


def _s4_item(base: Path, scene: Scene, start: int) -> _Item:
    name, split = scene.video_id, scene.split
    category = _CATEGORIES[scene.objects[0].name]  # the first object is the source
    folder = f"{split}/{category}"
    num_masks = 1 if split == "train" else NUM_AVS_OBJECT_FRAMES
    frames = base / "visual_frames" / folder / name
    masks = base / "gt_masks" / folder / name
    return _Item(
        scene=scene,
        row=f"{name},{start},{category},{split}",
        video=base / "raw_videos" / folder / f"{name}.mp4",
        audio=base / "audio_wav" / folder / f"{name}.wav",
        frames=tuple(frames / f"{name}_{i}.png" for i in range(1, NUM_AVS_OBJECT_FRAMES + 1)),
        masks=tuple(masks / f"{name}_{i}.png" for i in range(1, num_masks + 1)),
    )


def _ms3_item(base: Path, scene: Scene, _: int) -> _Item:
    name, split = scene.video_id, scene.split
    masks = base / "gt_masks" / split / name
    return _Item(
        scene=scene,
        row=f"{name},{split}",
        video=base / "raw_videos" / f"{name}.mp4",
        audio=base / "audio_wav" / split / f"{name}.wav",
        frames=tuple(
            base / "visual_frames" / name / f"{name}.mp4_{i}.png" for i in range(1, NUM_AVS_OBJECT_FRAMES + 1)
        ),
        masks=tuple(masks / f"{name}_{i}.png" for i in range(1, NUM_AVS_OBJECT_FRAMES + 1)),
    )


def _write(
    dataset: Literal["s4", "ms3"],
    root: Path,
    cfg: SynthAvsConfig,
    video: SynthVideoConfig,
    audio: SynthAudioConfig,
    difficulty: DifficultyConfig,
    seed: int,
) -> int:
    folder, header = ("Single-source", _S4_HEADER) if dataset == "s4" else ("Multi-sources", _MS3_HEADER)
    make_item: Callable[[Path, Scene, int], _Item] = _s4_item if dataset == "s4" else _ms3_item
    top = Path(root) / folder
    base = top / f"{dataset}_data"
    sizes = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}
    used_ids: set[str] = set()
    items = [
        make_item(base, scene, number)
        for split in _SPLITS
        for scene, number in _split_scenes(dataset, cfg, difficulty, seed, split, sizes[split], used_ids)
    ]
    for item in items:
        item.video.parent.mkdir(parents=True, exist_ok=True)
    settings = _Settings(video, audio, difficulty)
    render_clips([(item.scene, item.video) for item in items], settings, f"synth {dataset}")
    write_in_workers(
        _write_annotations, items, (settings.video, settings.audio, settings.difficulty), f"synth {dataset} frames"
    )
    rows = [header, *(item.row for item in items)]
    (top / f"{dataset}_meta_data.csv").write_text("".join(r + "\n" for r in rows), encoding="utf-8", newline="\n")
    (top / SCENES_FILENAME).write_text(scene_lines([item.scene for item in items]), encoding="utf-8", newline="\n")
    logger.info(
        "%s: wrote %d clips (%s) under %s", dataset, len(items), ", ".join(f"{k} {v}" for k, v in sizes.items()), top
    )
    return len(items)


def write_s4(
    root: Path,
    cfg: SynthAvsConfig,
    video: SynthVideoConfig,
    audio: SynthAudioConfig,
    difficulty: DifficultyConfig,
    seed: int,
) -> int:
    """Write the S4 part of the AVSBench-object layout under ``root/Single-source``, byte-deterministically.

    Args:
        root: the ``avsbench_data`` folder (created if missing; ``Multi-sources`` there is left alone).
        cfg: sizes and the shares of partly visible / audible sources (``synth.s4``).
        video / audio / difficulty: rendering settings (``synth.video`` / ``synth.audio`` / ``synth.difficulty``).
        seed: ``synth.seed``; items draw from ``SeedSequence(seed, spawn_key=(4, split, item))``.

    Returns:
        The number of clips written.

    Raises:
        CrabError: ``video.size`` is odd (H.264 yuv420p).
    """
    return _write("s4", root, cfg, video, audio, difficulty, seed)


def write_ms3(
    root: Path,
    cfg: SynthAvsConfig,
    video: SynthVideoConfig,
    audio: SynthAudioConfig,
    difficulty: DifficultyConfig,
    seed: int,
) -> int:
    """Write the MS3 part of the AVSBench-object layout under ``root/Multi-sources``; as :func:`write_s4`.

    Items draw from ``SeedSequence(seed, spawn_key=(5, split, item))`` (``synth.ms3`` for ``cfg``).
    """
    return _write("ms3", root, cfg, video, audio, difficulty, seed)
