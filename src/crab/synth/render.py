"""Rendering of AV-Synth scenes into mp4 clips (DESIGN.md section 5).

A :class:`~crab.synth.scene.Scene` says which class is where and in which seconds it is seen and heard;
this module turns it into pixels and samples and encodes them as H.264 (yuv420p) + AAC (mono) in mp4:

- Frames (numpy only): an indoor (wall + floor) or outdoor (sky + ground) backdrop in low-saturation
  colours, so that the saturated object colours stand out without being trivially separable once noise is
  added; each on-screen object is its class's shape, colour and texture (:mod:`crab.synth.world`), drawn in
  its third of the frame during its visible seconds, with per-instance size / colour jitter and a slow
  drift inside its slot. Visual noise (over backdrop and objects) is a static per-clip grain of std
  ``visual_noise`` plus a temporal noise of a quarter of that: fully independent per-frame noise makes x264
  files about seven times larger and is mostly quantised away at the configured crf anyway.
- Audio: each object's partials + noise band during its audible seconds, with 20 ms raised-cosine fades at
  interval edges (no clicks), pulsed at the scene object's ``rhythm`` (0 = sustained), scaled by its
  loudness with a fixed gain (no per-clip normalisation, so loudness compares across clips), plus coloured
  background noise (brown indoors, pink outdoors) at ``audio_noise``. Pulsed envelopes are normalised to
  unit RMS, so ``loudness`` means the same for sustained and rhythmic sources.

Clips are byte-deterministic for a scene: all randomness comes from ``default_rng(scene.render_seed)``
(spawned into an audio and a video stream, so either can be rendered alone), both encoders run on one
thread (multi-threaded x264 output varies run to run, stack-notes section 10), and the file is written to
a temporary name in the target folder and renamed. :func:`render_clips` renders many clips on all cores;
each clip depends only on its own scene, so the output does not depend on scheduling.
"""

from __future__ import annotations

import colorsys
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, NamedTuple
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from crab.config import DifficultyConfig, SynthAudioConfig, SynthConfig, SynthVideoConfig
from crab.errors import CrabError
from crab.synth.scene import Interval, Scene, SceneObject
from crab.synth.world import VisualSignature, audio_signature, visual_signature

__all__ = [
    "SOURCE_GAIN", "Placement", "place_object", "render_audio", "render_clip", "render_clips", "render_frames",
    "slot_bounds",
]  # fmt: skip

logger = logging.getLogger(__name__)

#: RMS of a unit-loudness source in the mix; low enough that three loud sources rarely clip.
SOURCE_GAIN = 0.08
_FADE_S = 0.02  # fade-in / fade-out at the edges of audible intervals
_PULSE_ATTACK_S = 0.01
_PULSE_DECAY = 3.0  # a pulse decays to exp(-3) by the next one
_AUDIO_FRAME = 1024  # AAC frame size
_AUDIO_BIT_RATE = 48_000
#: FFmpeg's native AAC encoder with its "fast" coder: half the encoding time of the default two-loop search
#: (the larger part of a clip's encoding), and no worse a round trip on AV-Synth's mixes (benchmarks/README.md).
AAC_CODER = "fast"
_OBJECT_SIZE = 0.26  # object diameter as a fraction of the frame size
_SLOT_INDEX = {"left": 0, "middle": 1, "right": 2}


def slot_bounds(slot: str, size: int) -> tuple[int, int]:
    """Pixel columns ``[x0, x1)`` of a slot (left / middle / right third) in a ``size``-wide frame."""
    i = _SLOT_INDEX[slot]
    return round(i * size / 3), round((i + 1) * size / 3)


# --------------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------------


def _merge(intervals: Sequence[Interval]) -> list[Interval]:
    merged: list[list[int]] = []
    for s, e in sorted(intervals):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def _gate(intervals: Sequence[Interval], n: int, sr: int) -> np.ndarray:
    """(n,) envelope: 1 inside the intervals, 0 outside, raised-cosine fades inside each edge."""
    gate = np.zeros(n, dtype=np.float64)
    for s, e in _merge(intervals):
        a, b = min(s * sr, n), min(e * sr, n)
        if b <= a:
            continue
        gate[a:b] = 1.0
        k = max(1, min(int(_FADE_S * sr), (b - a) // 2))
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(k) + 0.5) / k)  # (k,) rising from ~0 to ~1
        gate[a : a + k] = ramp
        gate[b - k : b] = ramp[::-1]
    return gate


def _pulses(t: np.ndarray, rate: float, phase: float) -> np.ndarray:
    """(n,) pulse train at ``rate`` per second with unit RMS; ``rate == 0`` gives a sustained 1."""
    if rate <= 0:
        return np.ones_like(t)
    since = ((t * rate + phase) % 1.0) / rate  # seconds since the last pulse onset
    env = np.minimum(1.0, since / _PULSE_ATTACK_S) * np.exp(-since * rate * _PULSE_DECAY)
    return env / np.sqrt(np.mean(env**2))


def _band_noise(rng: np.random.Generator, n: int, sr: int, centre: float, width: float) -> np.ndarray:
    """(n,) Gaussian noise filtered to a Gaussian band around ``centre`` Hz, unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    spec *= np.exp(-0.5 * ((freqs - centre) / (width * centre)) ** 2)
    band = np.fft.irfft(spec, n=n)
    return band / max(float(np.sqrt(np.mean(band**2))), 1e-12)


def _background_noise(rng: np.random.Generator, n: int, sr: int, indoor: bool) -> np.ndarray:
    """(n,) coloured noise with unit RMS: brown-ish (1/f amplitude) indoors, pink (1/sqrt f) outdoors."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / sr), 40.0)
    spec *= freqs ** (-1.0 if indoor else -0.5)
    noise = np.fft.irfft(spec, n=n)
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def render_audio(scene: Scene, audio: SynthAudioConfig, difficulty: DifficultyConfig) -> np.ndarray:
    """The scene's mono soundtrack.

    Args:
        scene: the clip's ground truth; each object sounds during its ``audible`` seconds.
        audio: sample rate.
        difficulty: ``audio_noise`` (background noise RMS relative to a unit-loudness source) and
            ``signature_jitter`` (relative pitch jitter per instance).

    Returns:
        (duration_s * sample_rate,) float32 samples in [-1, 1].
    """
    sr = audio.sample_rate
    n = scene.duration_s * sr
    audio_rng, _ = np.random.default_rng(scene.render_seed).spawn(2)
    t = np.arange(n, dtype=np.float64) / sr  # (n,)
    mix = np.zeros(n, dtype=np.float64)
    for obj in scene.objects:
        # Draw every object's randomness even when it is silent, so one object's timing never shifts another's.
        sig = audio_signature(obj.name)
        f0 = sig.pitch_hz * (1.0 + difficulty.signature_jitter * audio_rng.uniform(-1.0, 1.0))
        phases = audio_rng.uniform(0.0, 2.0 * np.pi, size=len(sig.partials))
        pulse_phase = float(audio_rng.uniform())
        band_rng = audio_rng.spawn(1)[0]
        if not obj.audible:
            continue
        kept = [(r, a, p) for (r, a), p in zip(sig.partials, phases, strict=True) if f0 * r < 0.45 * sr]
        tone = sum(a * np.sin(2.0 * np.pi * f0 * r * t + p) for r, a, p in kept)
        tone = tone / np.sqrt(sum(a * a for _, a, _ in kept) / 2.0)  # unit RMS
        band = _band_noise(band_rng, n, sr, sig.noise_centre_hz, sig.noise_bandwidth)
        source = (tone + sig.noise_level * band) / np.sqrt(1.0 + sig.noise_level**2)
        envelope = _pulses(t, obj.rhythm, pulse_phase) * _gate(obj.audible, n, sr)
        mix += SOURCE_GAIN * obj.loudness * envelope * source
    background = _background_noise(audio_rng, n, sr, indoor=scene.background == "indoor")
    mix += SOURCE_GAIN * difficulty.audio_noise * background
    return np.clip(mix, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------------


def _polygon(u: np.ndarray, v: np.ndarray, sides: int, radius: float, rotation: float) -> np.ndarray:
    """Inside test of a regular polygon with circumradius ``radius`` and a vertex at angle ``rotation``."""
    r, theta = np.hypot(u, v), np.arctan2(v, u)
    sector = 2.0 * np.pi / sides
    local = np.mod(theta - rotation, sector) - sector / 2.0
    return r <= radius * np.cos(np.pi / sides) / np.cos(local)


def _shape_mask(shape: str, n: int) -> np.ndarray:
    """(n, n) float alpha of ``shape`` in an n x n box, 2x supersampled for soft edges."""
    ss = 2 * n
    c = (np.arange(ss) + 0.5) / ss * 2.0 - 1.0  # (ss,) in [-1, 1]
    v, u = np.meshgrid(c, c, indexing="ij")  # (ss, ss); v grows downwards
    r = np.hypot(u, v)
    if shape == "circle":
        inside = r <= 0.95
    elif shape == "ring":
        inside = (r <= 0.95) & (r >= 0.55)
    elif shape == "square":
        inside = _polygon(u, v, 4, 0.95 * np.sqrt(2.0) * 0.85, np.pi / 4)
    elif shape == "diamond":
        inside = _polygon(u, v, 4, 0.97, 0.0)
    elif shape == "triangle":
        inside = _polygon(u, v + 0.15, 3, 1.05, -np.pi / 2)
    elif shape == "hexagon":
        inside = _polygon(u, v, 6, 0.96, 0.0)
    elif shape == "cross":
        inside = ((np.abs(u) <= 0.32) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.32) & (np.abs(u) <= 0.95))
    elif shape == "star":
        # Fold the angle onto one half-spike: outer vertex at 0, inner vertex at pi/5.
        phi = np.mod(np.arctan2(v, u) + np.pi / 2, 2 * np.pi / 5)
        phi = np.minimum(phi, 2 * np.pi / 5 - phi)
        outer, inner = np.array([1.0, 0.0]), 0.42 * np.array([np.cos(np.pi / 5), np.sin(np.pi / 5)])
        edge = inner - outer
        # Radius where the ray at angle phi meets the outer-inner edge (2-D cross products).
        limit = (outer[0] * inner[1] - outer[1] * inner[0]) / (edge[1] * np.cos(phi) - edge[0] * np.sin(phi))
        inside = r <= np.abs(limit)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return inside.reshape(n, 2, n, 2).mean(axis=(1, 3))  # (n, n)


def _texture_mask(texture: str, scale: float, n: int) -> np.ndarray:
    """(n, n) bool: True where the pattern shows the darker secondary colour."""
    y, x = np.mgrid[0:n, 0:n]
    period = max(2.0, scale * n)
    half = period / 2.0
    if texture == "stripes":
        return ((x + y) // half).astype(int) % 2 == 1
    if texture == "checker":
        return ((x // half).astype(int) + (y // half).astype(int)) % 2 == 1
    if texture == "dots":
        dx, dy = np.mod(x + 0.5, period) - half, np.mod(y + 0.5, period) - half
        return np.hypot(dx, dy) < 0.28 * period
    return np.zeros((n, n), dtype=bool)


def _backdrop(rng: np.random.Generator, h: int, w: int, indoor: bool) -> np.ndarray:
    """(h, w, 3) float32 backdrop in [0, 1] with saturation <= 0.45."""
    y = (np.arange(h, dtype=np.float32) / h)[:, None]  # (h, 1)
    x = (np.arange(w, dtype=np.float32) / w)[None, :]  # (1, w)
    if indoor:
        top = colorsys.hsv_to_rgb(rng.uniform(0.05, 0.15), rng.uniform(0.1, 0.3), rng.uniform(0.6, 0.8))
        bottom = colorsys.hsv_to_rgb(rng.uniform(0.05, 0.12), rng.uniform(0.2, 0.4), rng.uniform(0.3, 0.45))
        horizon = np.full_like(x, rng.uniform(0.6, 0.72))  # (1, w): floor line
        shade = 1.0 - 0.08 * y  # light from above
    else:
        top = colorsys.hsv_to_rgb(rng.uniform(0.53, 0.62), rng.uniform(0.2, 0.4), rng.uniform(0.75, 0.92))
        bottom = colorsys.hsv_to_rgb(rng.uniform(0.15, 0.3), rng.uniform(0.25, 0.45), rng.uniform(0.35, 0.5))
        wave = rng.uniform(0.0, 2.0 * np.pi)
        horizon = rng.uniform(0.5, 0.62) + 0.03 * np.sin(2 * np.pi * x * 1.5 + wave)  # rolling hills
        shade = 1.0 + 0.12 * (y - 0.5)  # sky brightens towards the horizon
    below = (y >= horizon)[..., None]  # (h, w, 1)
    image = np.where(below, np.asarray(bottom, np.float32), np.asarray(top, np.float32))
    return (image * shade[..., None]).astype(np.float32)  # (h, w, 3)


class Placement(NamedTuple):
    """Where and how big one on-screen object is drawn in every frame (:func:`place_object`)."""

    signature: VisualSignature
    u: np.ndarray  # (5,) its uniform draws in [-1, 1]: size, hue, saturation, value, height jitter
    n: int  # sprite side in pixels
    top: np.ndarray  # (T,) int row of the sprite's top edge per frame
    left: np.ndarray  # (T,) int column of its left edge per frame


def place_object(
    video_rng: np.random.Generator, obj: SceneObject, size: int, num_frames: int, fps: int, difficulty: DifficultyConfig
) -> Placement:
    """Draw one object's size jitter and motion, in the renderer's draw order, and place its sprite per frame.

    The one definition of an object's footprint: :func:`render_frames` paints it and
    :func:`crab.synth.masks.object_masks` replays it for the exact ground-truth masks.

    The sprite drifts inside its slot (left / middle / right third). One wider than its slot (a large size
    jitter) starts at the slot's left edge and extends to the right, except in the right third, where it
    is shifted left so that it stays in the frame.
    """
    sig = visual_signature(obj.name)
    u = video_rng.uniform(-1.0, 1.0, size=5)
    n = max(4, round(_OBJECT_SIZE * size * (1.0 + difficulty.signature_jitter * u[0])))
    t = np.arange(num_frames) / fps  # (T,) seconds
    x0, x1 = slot_bounds(obj.slot, size)
    cx, cy = (x0 + x1) / 2.0, size * (0.58 + 0.06 * u[4])
    if difficulty.motion:
        amp_x, amp_y = max(0.0, (x1 - x0 - n) / 2.0 - 1.0), 0.04 * size
        period, phase = video_rng.uniform(4.0, 8.0, size=2), video_rng.uniform(0, 2 * np.pi, size=2)
        cx = cx + amp_x * np.sin(2 * np.pi * t / period[0] + phase[0])  # (T,)
        cy = cy + amp_y * np.sin(2 * np.pi * t / period[1] + phase[1])  # (T,)
    lowest = min(x0, size - n)  # = x0 unless a sprite wider than the right slot would leave the frame
    left = np.clip(np.round(np.broadcast_to(cx, t.shape) - n / 2.0).astype(int), lowest, max(lowest, x1 - n))
    top = np.clip(np.round(np.broadcast_to(cy, t.shape) - n / 2.0).astype(int), 0, size - n)
    return Placement(sig, u, n, top, left)


def render_frames(scene: Scene, video: SynthVideoConfig, difficulty: DifficultyConfig) -> np.ndarray:
    """The scene's frames.

    Args:
        scene: the clip's ground truth; on-screen objects are drawn during their ``visible`` seconds.
        video: frame size and rate.
        difficulty: ``visual_noise``, ``signature_jitter`` (size and colour) and ``motion``.

    Returns:
        (duration_s * fps, size, size, 3) uint8 RGB frames.
    """
    size, fps = video.size, video.fps
    num_frames = scene.duration_s * fps
    _, video_rng = np.random.default_rng(scene.render_seed).spawn(2)
    frames = np.empty((num_frames, size, size, 3), dtype=np.float32)  # (T, H, W, 3)
    frames[:] = _backdrop(video_rng, size, size, indoor=scene.background == "indoor")
    # Noise is drawn first (fixed draw order) and added after the objects, so it covers them too.
    noise = (difficulty.visual_noise / 4) * video_rng.standard_normal(frames.shape, dtype=np.float32)
    noise += difficulty.visual_noise * video_rng.standard_normal(frames.shape[1:], dtype=np.float32)  # grain
    jitter = difficulty.signature_jitter
    for obj in scene.on_screen:
        sig, u, n, top, left = place_object(video_rng, obj, size, num_frames, fps, difficulty)
        hue = (sig.hue + 0.25 * jitter * u[1]) % 1.0
        sat = float(np.clip(sig.saturation * (1.0 + jitter * u[2]), 0.0, 1.0))
        val = float(np.clip(sig.value * (1.0 + jitter * u[3]), 0.0, 1.0))
        primary = np.asarray(colorsys.hsv_to_rgb(hue, sat, val), np.float32)
        secondary = np.asarray(colorsys.hsv_to_rgb(hue, sat, 0.45 * val), np.float32)
        pattern = _texture_mask(sig.texture, sig.texture_scale, n)
        sprite = np.where(pattern[..., None], secondary, primary)  # (n, n, 3)
        alpha = _shape_mask(sig.shape, n)[..., None].astype(np.float32)  # (n, n, 1)
        for i in range(num_frames):
            if not obj.is_visible_at(i // fps):
                continue
            region = frames[i, top[i] : top[i] + n, left[i] : left[i] + n]  # (n, n, 3)
            region += alpha * (sprite - region)
    frames += noise
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------------


def _encode(
    path: Path, frames: np.ndarray, samples: np.ndarray, fps: int, sr: int, crf: int, aac_coder: str = AAC_CODER
) -> None:
    """Write (T, H, W, 3) uint8 frames and (N,) float32 samples as H.264 + AAC mp4, single-threaded."""
    with av.open(str(path), "w", format="mp4") as out:
        vstream = out.add_stream("libx264", rate=fps, options={"threads": "1", "crf": str(crf), "preset": "veryfast"})
        vstream.thread_count = 1
        vstream.width, vstream.height = frames.shape[2], frames.shape[1]
        vstream.pix_fmt = "yuv420p"
        astream = out.add_stream("aac", rate=sr, layout="mono", options={"aac_coder": aac_coder})
        astream.thread_count = 1
        astream.bit_rate = _AUDIO_BIT_RATE
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(vstream.encode(frame))
        out.mux(vstream.encode(None))
        for start in range(0, len(samples), _AUDIO_FRAME):
            chunk = samples[None, start : start + _AUDIO_FRAME]  # (1, <=1024) planar mono
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = sr, start
            out.mux(astream.encode(frame))
        out.mux(astream.encode(None))


def render_clip(
    scene: Scene,
    video: SynthVideoConfig,
    audio: SynthAudioConfig,
    difficulty: DifficultyConfig,
    path: Path,
) -> None:
    """Render ``scene`` and write it to ``path`` as an mp4, byte-deterministically and atomically.

    The clip is encoded in a fresh worker process (see :func:`render_clips` for why).

    Args:
        scene: the clip's ground truth.
        video: frame size (even, for yuv420p), rate and x264 crf.
        audio: sample rate of the AAC track.
        difficulty: noise, jitter and motion knobs.
        path: the target ``.mp4``; its folder must exist. An existing file is replaced.

    Raises:
        CrabError: ``video.size`` is odd (yuv420p needs even dimensions).
    """
    render_clips([(scene, Path(path))], _Settings(video, audio, difficulty), "render")


def _render_and_encode(
    scene: Scene,
    video: SynthVideoConfig,
    audio: SynthAudioConfig,
    difficulty: DifficultyConfig,
    path: Path,
) -> None:
    """Render and encode one clip in this process (only inside an encoder worker; see render_clips)."""
    path = Path(path)
    frames = render_frames(scene, video, difficulty)
    samples = render_audio(scene, audio, difficulty)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _encode(tmp, frames, samples, video.fps, audio.sample_rate, video.crf)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _render_job(scene: Scene, synth: SynthConfig | _Settings, path: Path) -> None:
    _render_and_encode(scene, synth.video, synth.audio, synth.difficulty, path)


@dataclass(frozen=True)
class _Settings:
    """The three parts of the ``synth`` section a clip's bytes depend on."""

    video: SynthVideoConfig
    audio: SynthAudioConfig
    difficulty: DifficultyConfig


#: glibc fills every malloc'ed block with the complement of this byte in the encoder workers.
#: libx264 (through FFmpeg) reads some memory before writing it, so without this its output depends
#: on what earlier work left on the heap: two default synth runs in reused pool workers differed in
#: 548 of 643 files, and re-encoding one clip after filling freed heap memory with different bytes
#: gave 4 different files out of 6 (all identical with the variable set).
_MALLOC_PERTURB = "85"


@contextmanager
def _encoder_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """Worker processes spawned with ``MALLOC_PERTURB_`` set (glibc reads it only at process start)."""
    previous = os.environ.get("MALLOC_PERTURB_")
    os.environ["MALLOC_PERTURB_"] = _MALLOC_PERTURB
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            yield pool
    finally:
        if previous is None:
            os.environ.pop("MALLOC_PERTURB_", None)
        else:
            os.environ["MALLOC_PERTURB_"] = previous


def write_in_workers(write: Callable[..., None], items: Sequence[Any], settings: tuple, desc: str) -> None:
    """Call ``write(item, *settings)`` for every item on all cores (spawned workers) with a progress bar.

    For writers whose files depend only on the item and the settings (frames, masks, wavs: no encoder), so
    scheduling cannot change any byte. ``write`` and its arguments must pickle (a module-level function).
    A worker's exception is re-raised here.
    """
    workers = max(1, min(os.cpu_count() or 1, len(items)))
    context = multiprocessing.get_context("spawn")
    with tqdm(total=len(items), desc=desc, unit="clip", disable=len(items) <= 1) as bar:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(write, item, *settings) for item in items]
            for future in as_completed(futures):
                future.result()
                bar.update()


def render_clips(jobs: Sequence[tuple[Scene, Path]], synth: SynthConfig | _Settings, desc: str) -> None:
    """Render many clips on all cores with a progress bar, byte-deterministically.

    Encoding always happens in worker processes spawned with glibc's ``MALLOC_PERTURB_`` set, so the
    bytes of a clip depend only on its scene and the settings, not on scheduling or heap history.

    Args:
        jobs: ``(scene, target path)`` pairs; target folders must exist.
        synth: the ``synth`` params section (video, audio, difficulty).
        desc: progress bar label, e.g. ``"synth ave"``.
    """
    if synth.video.size % 2:
        raise CrabError(f"synth.video.size: must be even for H.264 yuv420p, got {synth.video.size}")
    workers = max(1, min(os.cpu_count() or 1, len(jobs)))
    with tqdm(total=len(jobs), desc=desc, unit="clip", disable=len(jobs) == 1) as bar:
        with _encoder_pool(workers) as pool:
            futures = [pool.submit(_render_job, scene, synth, path) for scene, path in jobs]
            for future in as_completed(futures):
                future.result()  # re-raises a worker's exception here
                bar.update()
    logger.debug("%s: rendered %d clips on %d workers", desc, len(jobs), workers)
