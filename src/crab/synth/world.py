"""The AV-Synth world model: every class name gets a visual and an audio signature (DESIGN.md section 5).

A class is known only by its name (``"Church bell"``, ``"violin"``, ``"voiceover"``), so a signature is a
pure function of the name: the SHA-256 digest of ``"{_SALT}:{name}"`` picks one value per attribute from
small discrete sets. Python's ``hash()`` is salted per process and is never used.

- Visual: a shape, a colour (hue family x tone) and a texture (solid / stripes / checker / dots, with a
  scale relative to the object's size).
- Audio: a fundamental pitch on a pentatonic grid (C3..A5), a timbre (partials as frequency ratio and
  amplitude, some inharmonic like a bell), a rhythm (pulses per second, 0 = sustained; a scene's own
  ``rhythm`` overrides it) and a noise band (centre, bandwidth, level) mixed under the partials.

The sets are deliberately small, so classes *share* shapes, colours and pitches and a model has to combine
cues, as with real objects. ``_SALT`` is pinned so that the real vocabularies (AVE's 28 events, the 22
MUSIC-AVQA instruments and ``"voiceover"``, together) satisfy the invariants the tests check: any two
classes differ in at least two of the seven attributes, and no two classes share the whole visual or the
whole audio signature, so each modality alone still determines the class.

The module also derives the per-item seeds and YouTube-style ids that the native-layout writers use, so
that every dataset, split and item draws from a disjoint, reproducible random stream.
"""

from __future__ import annotations

import colorsys
import hashlib
import string
from dataclasses import dataclass
from functools import cache

import numpy as np

__all__ = [
    "AudioSignature",
    "DATASET_INDEX",
    "SHAPES",
    "SPLIT_INDEX",
    "TEXTURES",
    "VisualSignature",
    "audio_signature",
    "item_seeds",
    "signature_attributes",
    "split_rng",
    "visual_signature",
    "youtube_id",
]

#: Pinned so that the real vocabularies satisfy the distinctness invariants (see the module docstring).
_SALT = 55

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "ring", "cross", "hexagon")
TEXTURES: tuple[str, ...] = ("solid", "stripes", "checker", "dots")
_NUM_HUES = 10  # hue families, evenly spaced on the colour wheel
_TONES: tuple[tuple[float, float], ...] = ((0.85, 0.95), (0.9, 0.62))  # (saturation, value): bright, deep
_TEXTURE_SCALES: tuple[float, ...] = (0.2, 0.34)  # period of the pattern as a fraction of the object size

#: MIDI notes of a C-major pentatonic scale from C3 (131 Hz) to A5 (880 Hz).
_PITCHES_MIDI: tuple[int, ...] = (48, 50, 52, 55, 57, 60, 62, 64, 67, 69, 72, 74, 76, 79, 81)
#: Timbres as partials ``(frequency ratio, amplitude)``; "bell" and "metal" are inharmonic.
_TIMBRES: dict[str, tuple[tuple[float, float], ...]] = {
    "pure": ((1.0, 1.0), (2.0, 0.15), (3.0, 0.05)),
    "soft": tuple((float(k), 1.0 / k**2) for k in range(1, 9)),
    "saw": tuple((float(k), 1.0 / k) for k in range(1, 11)),
    "square": tuple((float(k), 1.0 / k) for k in range(1, 12, 2)),
    "nasal": ((1.0, 0.5), (2.0, 0.6), (3.0, 1.0), (4.0, 0.8), (5.0, 0.5), (6.0, 0.3), (7.0, 0.2)),
    "bell": ((1.0, 1.0), (2.76, 0.6), (5.4, 0.4), (8.93, 0.25)),
    "metal": ((1.0, 0.8), (1.41, 0.7), (2.23, 0.5), (3.17, 0.35), (4.11, 0.2)),
}
_RHYTHMS: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0)  # pulses per second; 0 = sustained
_NOISE_CENTRES_HZ: tuple[float, ...] = (300.0, 600.0, 1200.0, 2000.0, 3200.0, 5000.0)
_NOISE_BANDWIDTHS: tuple[float, ...] = (0.25, 0.5)  # Gaussian band std as a fraction of the centre
_NOISE_LEVELS: tuple[float, ...] = (0.15, 0.3, 0.5)  # RMS of the band relative to the partials

#: Index of each dataset and split in the seed tree ``SeedSequence(seed, spawn_key=(dataset, split, item))``.
DATASET_INDEX: dict[str, int] = {
    "ave": 0,
    "music_avqa": 1,
    "valor": 2,
    "llp": 3,
    "s4": 4,
    "ms3": 5,
    "ref_avs": 6,
    "avss": 7,
    "lvis": 8,
}
SPLIT_INDEX: dict[str, int] = {"train": 0, "val": 1, "test": 2, "test_s": 3, "test_u": 4, "test_n": 5}

_ID_ALPHABET = string.ascii_letters + string.digits + "_-"  # YouTube ids: 11 characters of these 64
_DASH_FIRST_PROB = 0.25  # about a quarter of real AVE ids start with "-" (1,030 of 4,143 rows)


@dataclass(frozen=True)
class VisualSignature:
    """How a class looks.

    Attributes:
        shape: one of :data:`SHAPES`.
        hue: colour hue in [0, 1), one of ten families.
        saturation: colour saturation in [0, 1] (always >= 0.85: backdrops stay below 0.45).
        value: colour brightness in [0, 1].
        texture: one of :data:`TEXTURES`.
        texture_scale: period of the texture as a fraction of the object's size (0 for ``solid``).
    """

    shape: str
    hue: float
    saturation: float
    value: float
    texture: str
    texture_scale: float

    @property
    def rgb(self) -> tuple[float, float, float]:
        """The colour as RGB in [0, 1]."""
        return colorsys.hsv_to_rgb(self.hue, self.saturation, self.value)


@dataclass(frozen=True)
class AudioSignature:
    """How a class sounds.

    Attributes:
        pitch_hz: fundamental frequency in Hz.
        timbre: name of the partial profile (one of seven).
        partials: ``(frequency ratio, amplitude)`` pairs relative to ``pitch_hz``.
        rhythm: pulses per second of the envelope, 0 for a sustained tone (a scene's ``rhythm`` overrides it).
        noise_centre_hz: centre of the noise band mixed under the partials.
        noise_bandwidth: standard deviation of the (Gaussian) noise band as a fraction of its centre.
        noise_level: RMS of the noise band relative to the RMS of the partials.
    """

    pitch_hz: float
    timbre: str
    partials: tuple[tuple[float, float], ...]
    rhythm: float
    noise_centre_hz: float
    noise_bandwidth: float
    noise_level: float


def _choices(name: str) -> list[int]:
    """Bytes of the salted SHA-256 digest of ``name``; each attribute reads its own byte."""
    return list(hashlib.sha256(f"{_SALT}:{name}".encode()).digest())


def _pick(options: tuple, byte: int):
    return options[byte % len(options)]


@cache
def visual_signature(name: str) -> VisualSignature:
    """The visual signature of class ``name`` (deterministic, same in every process)."""
    b = _choices(name)
    saturation, value = _pick(_TONES, b[2])
    texture = _pick(TEXTURES, b[3])
    return VisualSignature(
        shape=_pick(SHAPES, b[0]),
        hue=(b[1] % _NUM_HUES) / _NUM_HUES,
        saturation=saturation,
        value=value,
        texture=texture,
        texture_scale=0.0 if texture == "solid" else _pick(_TEXTURE_SCALES, b[4]),
    )


@cache
def audio_signature(name: str) -> AudioSignature:
    """The audio signature of class ``name`` (deterministic, same in every process)."""
    b = _choices(name)
    timbre = _pick(tuple(_TIMBRES), b[11])
    midi = _pick(_PITCHES_MIDI, b[10])
    return AudioSignature(
        pitch_hz=440.0 * 2.0 ** ((midi - 69) / 12),
        timbre=timbre,
        partials=_TIMBRES[timbre],
        rhythm=_pick(_RHYTHMS, b[12]),
        noise_centre_hz=_pick(_NOISE_CENTRES_HZ, b[13]),
        noise_bandwidth=_pick(_NOISE_BANDWIDTHS, b[14]),
        noise_level=_pick(_NOISE_LEVELS, b[15]),
    )


def signature_attributes(name: str) -> dict[str, object]:
    """The seven discrete attributes the distinctness invariants count, as comparable values.

    Returns:
        ``{"shape", "colour", "texture", "pitch", "timbre", "rhythm", "noise_band"}`` to hashable values.
    """
    v, a = visual_signature(name), audio_signature(name)
    return {
        "shape": v.shape,
        "colour": (v.hue, v.saturation, v.value),
        "texture": v.texture,
        "pitch": round(a.pitch_hz, 3),
        "timbre": a.timbre,
        "rhythm": a.rhythm,
        "noise_band": a.noise_centre_hz,
    }


# --------------------------------------------------------------------------------------------------
# Instances: seeds and ids
# --------------------------------------------------------------------------------------------------


def item_seeds(seed: int, dataset: str, split: str, index: int) -> tuple[np.random.Generator, int]:
    """The random stream of one item: a generator for its scene and the seed of its rendering.

    Both come from ``SeedSequence(seed, spawn_key=(dataset, split, index))``, so items of different
    datasets, splits or indices never share a stream, and an item does not depend on how many others exist.

    Args:
        seed: ``params.synth.seed``.
        dataset: a key of :data:`DATASET_INDEX`.
        split: a key of :data:`SPLIT_INDEX`.
        index: the item's position in its split.

    Returns:
        ``(scene_rng, render_seed)``; ``render_seed`` is a 63-bit int (fits JSON and ``Scene.render_seed``).
    """
    root = np.random.SeedSequence(seed, spawn_key=(DATASET_INDEX[dataset], SPLIT_INDEX[split], index))
    scene_seq, render_seq = root.spawn(2)
    render_seed = int(render_seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    return np.random.default_rng(scene_seq), render_seed


def split_rng(seed: int, dataset: str, split: str) -> np.random.Generator:
    """A generator for split-level choices (e.g. balancing classes over a split's items)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(DATASET_INDEX[dataset], SPLIT_INDEX[split])))


def youtube_id(rng: np.random.Generator) -> str:
    """An 11-character YouTube-style id from ``[A-Za-z0-9_-]``; a quarter of them start with ``-``."""
    chars = [_ID_ALPHABET[i] for i in rng.integers(0, len(_ID_ALPHABET), size=11)]
    if rng.random() < _DASH_FIRST_PROB:
        chars[0] = "-"
    return "".join(chars)
