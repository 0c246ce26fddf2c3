"""AV-Synth stills in Crab's LVIS sample layout: the data of segmentation pre-training (P3, crab-reference 3.4).

Crab pre-trains its mask decoder on LVIS: per sample an image, a category name and definition in the prompt
("... segment out the object that corresponding to the {name}, {def} in the image.") and the object's
binary mask. The embedded default writes the same layout (:mod:`crab.datasets.lvis`) from the AV-Synth
world, so P3 runs on the tiny profile with exact ground truth:

- each image is one rendered still (:func:`~crab.synth.render.render_frames` of a 1-s scene at one frame
  per second, ``synth.video.size`` squared) of 1-3 objects of distinct S4 categories, one per slot (left /
  middle / right), drawn as the S4 scene objects (:data:`crab.synth.avsbench.S4_SCENE_NAMES`), so P3 sees
  the very objects the AVS tasks segment later; stills are silent (no audio is written);
- one sample per object with a non-empty mask: the exact pixels the renderer paints for it
  (:func:`crab.synth.masks.object_masks`, overlap resolved as there); an object that a later one fully
  covers has an empty mask and gets no sample. ``bbox`` is the mask's bounding box and ``area`` its pixel
  count (both written as JSON floats, as LVIS does), so the box fits the mask exactly;
- ``name`` and ``def`` come from :data:`LVIS_CATEGORIES`: an LVIS-style name (lower case, underscores, a
  parenthesised sense where LVIS has one, ``bus_(vehicle)``) and a short dictionary-style definition per
  S4 category (our own wording, not LVIS's); ``category_id`` is the category's 1-based position there.

Written files::

    root/train_samples.json  root/val_samples.json   # JSON arrays of {id, image_id, category_id, bbox, name, def, area}
    root/train2017/{image_id:012d}.jpg  root/val2017/{image_id:012d}.jpg   # JPEG q95, as the other frame writers
    root/binary_mask/{id}.png                        # 8-bit grey (L), 0 = background, 255 = the object
    root/avsynth_scenes.jsonl                        # the scenes, video_id = the image's file stem

``image_id`` is drawn per image from its seed stream (1..999 999, unique over both splits, like COCO ids);
the sample ``id`` is ``10 * image_id + k`` for the image's k-th object in on-screen order (unique, because
an image has at most three objects).

Unlike the clip writers, this one runs in the calling process: a still takes about 7 ms (render, masks,
encode), and spawned workers cost more than they save (the frames of the default 440 stills took 2.0-2.5 s
on two workers against 1.3-1.5 s serially on the 2-core machine; the whole writer takes about 3 s).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from crab.config import DifficultyConfig, SynthLvisConfig, SynthVideoConfig
from crab.datasets.lvis import LVIS_SPLITS
from crab.datasets.vocab_seg import S4_CATEGORIES
from crab.synth.avsbench import S4_SCENE_NAMES, s4_category, write_png
from crab.synth.masks import object_masks
from crab.synth.render import render_frames
from crab.synth.scene import SCENES_FILENAME, Scene, SceneObject, Slot, scene_lines
from crab.synth.world import audio_signature, item_seeds

__all__ = [
    "LVIS_CATEGORIES",
    "SynthLvisConfig",
    "image_samples",
    "lvis_category",
    "lvis_scene",
    "still_masks",
    "still_video",
    "write_lvis",
]

logger = logging.getLogger(__name__)

#: S4 category -> (LVIS-style category name, dictionary-style definition); ``category_id`` = position + 1.
LVIS_CATEGORIES: dict[str, tuple[str, str]] = {
    "baby_laughter": ("baby", "a very young child who has not yet learned to walk or talk"),
    "female_singing": ("woman", "an adult female person"),
    "male_speech": ("man", "an adult male person"),
    "dog_barking": ("dog", "a common domesticated carnivorous mammal kept as a pet"),
    "cat_meowing": ("cat", "a small domesticated feline mammal with soft fur and retractable claws"),
    "lions_roaring": ("lion", "a large tawny wild cat of Africa and India; the male has a shaggy mane"),
    "horse_clip-clop": ("horse", "a hoofed herbivorous mammal domesticated for riding and for drawing loads"),
    "coyote_howling": ("coyote", "a small wild dog of western North America, related to the wolf"),
    "mynah_bird_singing": ("bird", "a warm-blooded egg-laying animal with feathers, wings and a beak"),
    "playing_acoustic_guitar": ("guitar", "a stringed musical instrument with a fretted neck, played by plucking"),
    "playing_tabla": ("drum_(musical_instrument)", "a percussion instrument sounded by striking a stretched membrane"),
    "playing_violin": ("violin", "a bowed stringed instrument with four strings, held under the chin"),
    "playing_piano": ("piano", "a keyboard instrument whose keys make felt hammers strike metal strings"),
    "playing_ukulele": ("ukulele", "a small four-stringed guitar of Hawaiian origin"),
    "playing_glockenspiel": ("glockenspiel", "a percussion instrument of tuned metal bars struck with small hammers"),
    "helicopter": ("helicopter", "an aircraft lifted and moved by rotating blades above it"),
    "race_car": ("race_car", "a fast car built for competing in races"),
    "driving_buses": ("bus_(vehicle)", "a large motor vehicle that carries passengers along a fixed route"),
    "ambulance_siren": ("ambulance", "a vehicle that takes sick or injured people to hospital"),
    "typing_on_computer_keyboard": ("computer_keyboard", "a set of keys used to type text into a computer"),
    "chainsawing_trees": ("chainsaw", "a portable power saw whose teeth are linked in an endless chain"),
    "cap_gun_shooting": ("toy_gun", "a toy that looks like a gun and makes a bang with a paper cap"),
    "lawn_mowing": ("lawn_mower", "a machine with revolving blades for cutting grass"),
}
if set(LVIS_CATEGORIES) != set(S4_CATEGORIES):  # every S4 scene object needs a category, and only those
    raise ValueError(f"LVIS_CATEGORIES keys differ from the S4 categories: {set(LVIS_CATEGORIES) ^ set(S4_CATEGORIES)}")
_CATEGORY_NAMES: tuple[str, ...] = tuple(LVIS_CATEGORIES)

_SLOTS: tuple[Slot, ...] = ("left", "middle", "right")
_NUM_OBJECTS = (1, 3)
_DURATION_S = 1  # one second at one frame per second: one still
_MAX_IMAGE_ID = 999_999  # COCO 2017 ids are below 600 000; file names pad to 12 digits either way
_IDS_PER_IMAGE = 10  # sample id = 10 * image_id + k, k < 3
_JPEG_QUALITY = 95  # as the Ref-AVS and AVSS frame writers


def lvis_category(scene_name: str) -> tuple[int, str, str] | None:
    """``(category_id, name, def)`` of an AV-Synth scene object name, or None for one that is no S4 object."""
    category = s4_category(scene_name)
    if category is None:
        return None
    name, definition = LVIS_CATEGORIES[category]
    return _CATEGORY_NAMES.index(category) + 1, name, definition


def still_video(video: SynthVideoConfig) -> SynthVideoConfig:
    """The rendering settings of a still: ``video`` at one frame per second (a 1-s scene is one frame)."""
    return dataclasses.replace(video, fps=1)


def lvis_scene(
    rng: np.random.Generator, *, video_id: str, split: str, categories: list[str], render_seed: int
) -> Scene:
    """One still: an object of each of ``categories`` (S4 categories), each in its own random slot, silent.

    Raises:
        ValueError: no category, more than three, a repeat, or one that is not an S4 category.
    """
    unknown = [c for c in categories if c not in S4_SCENE_NAMES]
    if not _NUM_OBJECTS[0] <= len(categories) <= _NUM_OBJECTS[1] or len(set(categories)) != len(categories) or unknown:
        raise ValueError(f"{video_id}: expected 1..3 distinct S4 categories, got {categories}")
    slots = [_SLOTS[i] for i in rng.permutation(len(_SLOTS))]
    objects = tuple(
        SceneObject(
            name=S4_SCENE_NAMES[category],
            slot=slots[k],
            visible=((0, _DURATION_S),),
            audible=(),
            loudness=1.0,
            rhythm=audio_signature(S4_SCENE_NAMES[category]).rhythm,
        )
        for k, category in enumerate(categories)
    )
    return Scene(
        video_id=video_id,
        dataset="lvis",
        split=split,
        duration_s=_DURATION_S,
        background="indoor" if rng.random() < 0.5 else "outdoor",
        objects=objects,
        render_seed=render_seed,
    )


def still_masks(scene: Scene, video: SynthVideoConfig, difficulty: DifficultyConfig) -> np.ndarray:
    """(K, size, size) bool: the exact mask of each of ``scene.on_screen`` in the still (``object_masks``)."""
    return object_masks(scene, still_video(video), difficulty, [0])[:, 0]


def image_samples(scene: Scene, masks: np.ndarray, image_id: int) -> list[dict[str, Any]]:
    """The samples of one still: one per on-screen object whose mask is not empty, in on-screen order.

    Args:
        scene: the still's scene.
        masks: (K, H, W) bool, :func:`still_masks`.
        image_id: the image's id.

    Returns:
        LVIS sample dicts (keys in Crab's order) with ``id = 10 * image_id + k``.

    Raises:
        ValueError: an on-screen object that is no S4 scene object.
    """
    samples = []
    for k, (obj, mask) in enumerate(zip(scene.on_screen, masks, strict=True)):
        category = lvis_category(obj.name)
        if category is None:
            raise ValueError(f"{scene.video_id}: {obj.name!r} is not an S4 scene object")
        if not mask.any():  # fully covered by a later object: nothing of it to segment
            continue
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        category_id, name, definition = category
        samples.append(
            {
                "id": _IDS_PER_IMAGE * image_id + k,
                "image_id": image_id,
                "category_id": category_id,
                "bbox": [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)],
                "name": name,
                "def": definition,
                "area": float(mask.sum()),
            }
        )
    return samples


@dataclass(frozen=True)
class _Still:
    """One image: its scene and id."""

    scene: Scene
    image_id: int


def _stills(cfg: SynthLvisConfig, seed: int) -> list[_Still]:
    """Every image of both splits, train first; image ids unique over both."""
    sizes = {"train": cfg.num_train_images, "val": cfg.num_val_images}
    used: set[int] = set()
    out = []
    for split in LVIS_SPLITS:
        for index in range(sizes[split]):
            rng, render_seed = item_seeds(seed, "lvis", split, index)
            image_id = int(rng.integers(1, _MAX_IMAGE_ID + 1))
            while image_id in used:  # rare (about 1 in 2 000 per image at 440 images); resolved deterministically
                image_id = int(rng.integers(1, _MAX_IMAGE_ID + 1))
            used.add(image_id)
            count = int(rng.integers(_NUM_OBJECTS[0], _NUM_OBJECTS[1] + 1))
            categories = [_CATEGORY_NAMES[int(i)] for i in rng.choice(len(_CATEGORY_NAMES), count, replace=False)]
            scene = lvis_scene(
                rng, video_id=f"{image_id:012d}", split=split, categories=categories, render_seed=render_seed
            )
            out.append(_Still(scene, image_id))
    return out


def write_lvis(
    root: Path, cfg: SynthLvisConfig, video: SynthVideoConfig, difficulty: DifficultyConfig, seed: int
) -> int:
    """Write AV-Synth's LVIS samples in Crab's layout under ``root``, byte-deterministically.

    Args:
        root: the ``lvis`` folder (created if missing).
        cfg: images per split (``synth.lvis``).
        video: frame size (``synth.video``; the rate is not used, a still is one frame).
        difficulty: ``visual_noise``, ``signature_jitter`` and ``motion`` (the drift phase places each object
            in its slot); the distractor and off-screen knobs are not used.
        seed: ``synth.seed``; image ``i`` of a split draws from ``SeedSequence(seed, spawn_key=(8, split, i))``.

    Returns:
        The number of images written (samples: one per visible object).
    """
    root = Path(root)
    stills = _stills(cfg, seed)
    samples: dict[str, list[dict[str, Any]]] = {split: [] for split in LVIS_SPLITS}
    for split in LVIS_SPLITS:
        (root / f"{split}2017").mkdir(parents=True, exist_ok=True)
    (root / "binary_mask").mkdir(parents=True, exist_ok=True)
    still = still_video(video)
    for item in tqdm(stills, desc="synth lvis", unit="image", disable=None):
        scene = item.scene
        frame = render_frames(scene, still, difficulty)[0]  # (H, W, 3)
        Image.fromarray(frame).save(
            root / f"{scene.split}2017" / f"{scene.video_id}.jpg", format="JPEG", quality=_JPEG_QUALITY
        )
        masks = still_masks(scene, video, difficulty)  # (K, H, W)
        image = image_samples(scene, masks, item.image_id)
        for sample in image:
            k = sample["id"] - _IDS_PER_IMAGE * item.image_id  # the object's position in scene.on_screen
            write_png(root / "binary_mask" / f"{sample['id']}.png", masks[k].astype(np.uint8) * 255)  # mode L
        samples[scene.split].extend(image)
    for split, items in samples.items():
        text = "[\n" + ",\n".join(json.dumps(item, ensure_ascii=False) for item in items) + "\n]\n"  # a sample a line
        (root / f"{split}_samples.json").write_text(text, encoding="utf-8", newline="\n")
    (root / SCENES_FILENAME).write_text(scene_lines([s.scene for s in stills]), encoding="utf-8", newline="\n")
    logger.info(
        "lvis: wrote %d images (%s) with %d samples under %s",
        len(stills),
        ", ".join(f"{split} {sum(s.scene.split == split for s in stills)}" for split in LVIS_SPLITS),
        sum(len(v) for v in samples.values()),
        root,
    )
    return len(stills)
