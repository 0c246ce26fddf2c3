"""Exact pixel masks of AV-Synth scene objects: the pixels :func:`~crab.synth.render.render_frames` paints.

Segmentation ground truth (AVSBench S4 / MS3) must mark exactly the pixels an object covers in the
*rendered* frame, not an idealised shape: the renderer jitters each instance's size, drifts it inside its
slot and clips it to the frame, all from the scene's ``render_seed``. This module replays those draws
(``default_rng(render_seed).spawn(2)[1]``: backdrop, noise fields, then per on-screen object the size /
colour jitter and the motion parameters, in ``scene.on_screen`` order) and rasterises each object's sprite
footprint with the renderer's own :func:`~crab.synth.render._shape_mask`.

Definition of an object's mask in a frame (what "the pixels it paints" means with soft edges and overlap):

- a pixel is the object's if its 2x-supersampled shape alpha is > 0 there, i.e. the renderer blends the
  object's colour into it at all (edge pixels with 1/4 coverage included);
- unless a later-drawn object (on-screen order: left, middle, right) covers that pixel with alpha 1, which
  replaces the colour beneath it; partially covered pixels stay the earlier object's too. Sprites overlap
  only when the size jitter makes an object wider than its slot;
- in seconds where the object is not visible its mask is empty.

Unlike a mask derived by thresholding the image, this is exact (noise and similar colours do not matter),
it shares the renderer's placement (:func:`~crab.synth.render.place_object`) and replays the draws before it.
The unit tests compare it with a pixel-level re-render (object shown vs hidden), so a change to
``render_frames`` that desynchronises the two fails there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crab.config import DifficultyConfig, SynthVideoConfig
from crab.synth.render import _backdrop, _shape_mask, place_object
from crab.synth.scene import Scene

__all__ = ["object_masks"]


def _placements(
    scene: Scene, video: SynthVideoConfig, difficulty: DifficultyConfig
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Replay render_frames' draws: per on-screen object its footprint and per-frame top-left corner.

    Returns:
        One ``(footprint, top, left)`` per object of ``scene.on_screen``: ``footprint`` (n, n) float32
        alpha, ``top`` and ``left`` (T,) int pixel offsets of the sprite in each rendered frame.
    """
    size, fps = video.size, video.fps
    num_frames = scene.duration_s * fps
    _, video_rng = np.random.default_rng(scene.render_seed).spawn(2)
    _backdrop(video_rng, size, size, indoor=scene.background == "indoor")
    # The two noise fields are drawn (and discarded) only to advance the stream exactly as the renderer does.
    video_rng.standard_normal((num_frames, size, size, 3), dtype=np.float32)
    video_rng.standard_normal((size, size, 3), dtype=np.float32)
    out = []
    for obj in scene.on_screen:
        sig, _, n, top, left = place_object(video_rng, obj, size, num_frames, fps, difficulty)
        out.append((_shape_mask(sig.shape, n).astype(np.float32), top, left))  # (n, n) alpha
    return out


def object_masks(
    scene: Scene, video: SynthVideoConfig, difficulty: DifficultyConfig, frames: Sequence[int]
) -> np.ndarray:
    """The exact mask of every on-screen object in some rendered frames (definition in the module docstring).

    Args:
        scene: the clip's ground truth.
        video: frame size and rate, as passed to ``render_frames``.
        difficulty: ``signature_jitter`` and ``motion``, as passed to ``render_frames``.
        frames: indices into ``render_frames``' output (0 .. duration_s * fps - 1).

    Returns:
        (K, F, size, size) bool, ``K = len(scene.on_screen)`` in that order, ``F = len(frames)``.

    Raises:
        ValueError: a frame index outside the clip.
    """
    size, fps = video.size, video.fps
    num_frames = scene.duration_s * fps
    bad = [i for i in frames if not 0 <= i < num_frames]
    if bad:
        raise ValueError(f"{scene.video_id}: frame indices {bad} outside the clip's {num_frames} frames")
    placements = _placements(scene, video, difficulty)
    masks = np.zeros((len(placements), len(frames), size, size), dtype=bool)  # (K, F, H, W)
    for f, i in enumerate(frames):
        for k, (obj, (alpha, top, left)) in enumerate(zip(scene.on_screen, placements, strict=True)):
            if not obj.is_visible_at(i // fps):
                continue
            n = alpha.shape[0]
            window = (slice(top[i], top[i] + n), slice(left[i], left[i] + n))
            opaque = np.zeros((size, size), dtype=bool)
            opaque[window] = alpha >= 1.0
            masks[:k, f] &= ~opaque  # fully covered pixels now show this object only
            masks[k, f][window] = alpha > 0.0
    return masks
