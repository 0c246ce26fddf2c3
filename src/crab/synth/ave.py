"""AV-Synth clips in the native AVE layout (dataset-layouts section 1; AVE, Tian et al. ECCV'18).

AVE labels each 10 s clip with ONE audio-visual event: a category and a range of whole seconds in which the
source is both seen and heard; all other seconds are "background". The scenes here keep exactly that
contract, and make it non-trivial the way real AVE videos do:

- the event object may also be seen-but-silent or heard-but-off-screen *outside* its event range (never
  both in the same second, which would extend the event);
- distractors of other categories are either on screen and silent or heard off screen, never both in one
  second, so a model must bind sound to sight rather than detect any class;
- event ranges vary in length (>= ``min_event_s``) and position, with many whole-clip and clip-ending
  events (3,396 of 4,143 real rows end at 10).

Categories are balanced inside each split (successive random permutations of the 28 classes), so every
category appears in train once it has >= 28 clips. Written files::

    root/AVE/{video_id}.mp4
    root/Annotations.txt, trainSet.txt, valSet.txt, testSet.txt   # header + Category&VideoID&good&Start&End
    root/avsynth_scenes.jsonl                                     # exact ground truth (crab.synth.scene)
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from crab.config import DifficultyConfig, Params, SynthAveConfig
from crab.datasets.vocab import AVE_CATEGORIES
from crab.synth.render import render_clips
from crab.synth.scene import SCENES_FILENAME, Interval, Scene, SceneObject, Slot, scene_lines
from crab.synth.world import audio_signature, item_seeds, split_rng, youtube_id

__all__ = ["AVE_HEADER", "AVE_SPLIT_FILES", "ave_event", "ave_scene", "write_ave"]

logger = logging.getLogger(__name__)

AVE_HEADER = "Category&VideoID&Quality&StartTime&EndTime"
#: Split name -> annotation file of that split.
AVE_SPLIT_FILES: dict[str, str] = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}
_SLOTS: tuple[Slot, ...] = ("left", "middle", "right")


def _event_range(rng: np.random.Generator, duration: int, min_len: int) -> Interval:
    """A contiguous event range: a third whole-clip, a third ending at the clip's end, a third anywhere."""
    kind = rng.random()
    if kind < 1 / 3:
        return 0, duration
    if kind < 2 / 3:
        return int(rng.integers(0, duration - min_len + 1)), duration
    length = int(rng.integers(min_len, duration + 1))
    start = int(rng.integers(0, duration - length + 1))
    return start, start + length


def _extension(rng: np.random.Generator, room: int) -> tuple[str, int]:
    """How the event source continues on one side of its event: ``("visible" | "audible", seconds)``.

    ``seconds`` is 0 (no extension) with probability 0.4 or when there is no ``room``; otherwise the source
    stays on screen silently (0.4) or keeps sounding off screen (0.2) for 1..room seconds.
    """
    if room <= 0:
        return "visible", 0
    draw = rng.random()
    if draw < 0.4:
        return "visible", 0
    return ("visible" if draw < 0.8 else "audible"), int(rng.integers(1, room + 1))


def _random_interval(rng: np.random.Generator, duration: int) -> Interval:
    """Any non-empty interval, whole-clip with probability 0.3."""
    if rng.random() < 0.3:
        return 0, duration
    length = int(rng.integers(1, duration + 1))
    start = int(rng.integers(0, duration - length + 1))
    return start, start + length


def ave_scene(
    rng: np.random.Generator,
    *,
    video_id: str,
    split: str,
    category: str,
    config: SynthAveConfig,
    difficulty: DifficultyConfig,
    render_seed: int,
) -> Scene:
    """One AVE scene with exactly one audio-visual event of ``category``.

    Args:
        rng: the item's scene generator (:func:`crab.synth.world.item_seeds`).
        video_id: the clip's 11-character id.
        split: ``"train"``, ``"val"`` or ``"test"``.
        category: the event's class, one of ``AVE_CATEGORIES``.
        config: clip duration and minimum event length.
        difficulty: distractor and off-screen probabilities.
        render_seed: seed of the rendering noise and jitter.

    Returns:
        The scene; its first object is the event source.
    """
    duration = config.duration_s
    start, end = _event_range(rng, duration, config.min_event_s)
    visible, audible = [start, end], [start, end]
    # Outside [start, end) the event source may be only seen or only heard, chosen per side.
    mode, k = _extension(rng, start)
    (visible if mode == "visible" else audible)[0] -= k
    mode, k = _extension(rng, duration - end)
    (visible if mode == "visible" else audible)[1] += k
    slots = [_SLOTS[i] for i in rng.permutation(len(_SLOTS))]
    objects = [
        SceneObject(
            name=category,
            slot=slots.pop(),
            visible=((visible[0], visible[1]),),
            audible=((audible[0], audible[1]),),
            loudness=round(float(rng.uniform(0.7, 1.0)), 3),
            rhythm=audio_signature(category).rhythm,
        )
    ]
    if difficulty.max_distractors > 0 and rng.random() < difficulty.distractor_prob:
        count = int(rng.integers(1, difficulty.max_distractors + 1))
        others = [c for c in AVE_CATEGORIES if c != category]
        for name in rng.choice(others, size=min(count, len(others)), replace=False):
            offscreen = not slots or rng.random() < difficulty.offscreen_prob
            interval = (_random_interval(rng, duration),)
            objects.append(
                SceneObject(
                    name=str(name),
                    slot=None if offscreen else slots.pop(),
                    visible=() if offscreen else interval,
                    audible=interval if offscreen else (),
                    loudness=round(float(rng.uniform(0.4, 0.9)), 3),
                    rhythm=audio_signature(str(name)).rhythm,
                )
            )
    return Scene(
        video_id=video_id,
        dataset="ave",
        split=split,
        duration_s=duration,
        background="indoor" if rng.random() < 0.5 else "outdoor",
        objects=tuple(objects),
        render_seed=render_seed,
    )


def ave_event(scene: Scene) -> tuple[str, int, int]:
    """The single audio-visual event of an AVE scene: ``(category, start, end)``.

    Raises:
        ValueError: the scene has no AV event, more than one source that is seen and heard at once, or a
            non-contiguous one (an AV-Synth bug, never user input).
    """
    both = {
        obj.name: [t for t in range(scene.duration_s) if obj.is_visible_at(t) and obj.is_audible_at(t)]
        for obj in scene.objects
    }
    sources = {name: seconds for name, seconds in both.items() if seconds}
    if len(sources) != 1:
        raise ValueError(f"{scene.video_id}: expected one audio-visual source, got {sorted(sources)}")
    ((name, seconds),) = sources.items()
    if seconds != list(range(seconds[0], seconds[-1] + 1)):
        raise ValueError(f"{scene.video_id}: audio-visual seconds of {name!r} are not contiguous: {seconds}")
    return name, seconds[0], seconds[-1] + 1


def _split_scenes(params: Params, split: str, count: int, used_ids: set[str]) -> list[Scene]:
    """``count`` scenes of one split, categories balanced by successive permutations."""
    seed = params.synth.seed
    order_rng = split_rng(seed, "ave", split)
    blocks = -(-count // len(AVE_CATEGORIES))
    order = np.concatenate([order_rng.permutation(len(AVE_CATEGORIES)) for _ in range(blocks)])
    scenes = []
    for index in range(count):
        rng, render_seed = item_seeds(seed, "ave", split, index)
        video_id = youtube_id(rng)
        scene = ave_scene(
            rng,
            video_id=video_id,
            split=split,
            category=AVE_CATEGORIES[int(order[index])],
            config=params.synth.ave,
            difficulty=params.synth.difficulty,
            render_seed=render_seed,
        )
        while scene.video_id in used_ids:  # astronomically rare; resolved deterministically
            scene = dataclasses.replace(scene, video_id=youtube_id(rng))
        used_ids.add(scene.video_id)
        scenes.append(scene)
    return scenes


def _annotation_text(rows: list[str]) -> str:
    return "".join(line + "\n" for line in [AVE_HEADER, *rows])


def write_ave(params: Params, root: Path) -> int:
    """Write the AVE-layout AV-Synth dataset under ``root`` (created if missing).

    Args:
        params: ``synth`` section: seed, sizes (``synth.ave``), rendering and difficulty.
        root: the dataset root (the folder that holds ``AVE/`` and ``Annotations.txt``).

    Returns:
        The number of clips written.
    """
    root = Path(root)
    (root / "AVE").mkdir(parents=True, exist_ok=True)
    cfg = params.synth.ave
    sizes = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}
    used_ids: set[str] = set()
    scenes = {split: _split_scenes(params, split, n, used_ids) for split, n in sizes.items()}
    every = [scene for split in sizes for scene in scenes[split]]
    render_clips([(s, root / "AVE" / f"{s.video_id}.mp4") for s in every], params.synth, "synth ave")
    all_rows = []
    for split, file_name in AVE_SPLIT_FILES.items():
        rows = []
        for scene in scenes[split]:
            category, start, end = ave_event(scene)
            rows.append(f"{category}&{scene.video_id}&good&{start}&{end}")
        (root / file_name).write_text(_annotation_text(rows), encoding="utf-8", newline="\n")
        all_rows += rows
    (root / "Annotations.txt").write_text(_annotation_text(all_rows), encoding="utf-8", newline="\n")
    (root / SCENES_FILENAME).write_text(scene_lines(every), encoding="utf-8", newline="\n")
    logger.info("ave: wrote %d clips (%s) under %s", len(every), ", ".join(f"{k} {v}" for k, v in sizes.items()), root)
    return len(every)
