"""Tests for ``crab.synth.world``: class signatures, their distinctness invariants, seeds and ids."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys

import numpy as np
import pytest

from crab.datasets.vocab import AVE_CATEGORIES, AVQA_INSTRUMENTS
from crab.synth.world import (
    SHAPES,
    TEXTURES,
    audio_signature,
    item_seeds,
    signature_attributes,
    split_rng,
    visual_signature,
    youtube_id,
)

VOCABULARIES = {
    "ave": AVE_CATEGORIES,
    "music_avqa": AVQA_INSTRUMENTS + ("voiceover",),
    "valor": AVE_CATEGORIES + AVQA_INSTRUMENTS,
    "all": AVE_CATEGORIES + AVQA_INSTRUMENTS + ("voiceover",),
}
VISUAL = ("shape", "colour", "texture")
AUDIO = ("pitch", "timbre", "rhythm", "noise_band")


def test_signatures_are_the_same_in_another_process():
    # Python's hash() is salted per process; a stable hash gives the same signature everywhere.
    code = (
        "from crab.synth.world import visual_signature, audio_signature;"
        "print(repr((visual_signature('Church bell'), audio_signature('violin'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == repr((visual_signature("Church bell"), audio_signature("violin")))


@pytest.mark.parametrize("vocab", sorted(VOCABULARIES))
def test_every_pair_differs_in_at_least_two_attributes(vocab):
    attrs = {name: signature_attributes(name) for name in VOCABULARIES[vocab]}
    for a, b in itertools.combinations(attrs, 2):
        differing = [k for k in attrs[a] if attrs[a][k] != attrs[b][k]]
        assert len(differing) >= 2, (a, b, differing)


@pytest.mark.parametrize("vocab", sorted(VOCABULARIES))
def test_each_modality_alone_determines_the_class(vocab):
    names = VOCABULARIES[vocab]
    for keys in (VISUAL, AUDIO):
        combos = [tuple(signature_attributes(n)[k] for k in keys) for n in names]
        assert len(set(combos)) == len(names), keys


@pytest.mark.parametrize("vocab", sorted(VOCABULARIES))
def test_no_single_attribute_identifies_every_class(vocab):
    names = VOCABULARIES[vocab]
    for key in VISUAL + AUDIO:
        values = [signature_attributes(n)[key] for n in names]
        assert len(set(values)) < len(names), key  # some classes share this attribute


def test_signature_values_are_in_range():
    for name in VOCABULARIES["all"]:
        v, a = visual_signature(name), audio_signature(name)
        assert v.shape in SHAPES and v.texture in TEXTURES
        assert 0.0 <= v.hue < 1.0 and v.saturation >= 0.85 and 0.5 <= v.value <= 1.0
        assert (v.texture == "solid") == (v.texture_scale == 0.0)
        assert 120.0 <= a.pitch_hz <= 900.0
        assert a.rhythm >= 0.0 and a.partials and a.partials[0][0] == 1.0
        assert 0.0 < a.noise_level < 1.0 and 0.0 < a.noise_centre_hz < 8000.0


def test_item_seeds_are_reproducible_and_disjoint():
    keys = [(d, s, i) for d in ("ave", "music_avqa", "valor") for s in ("train", "val", "test") for i in range(4)]
    draws = {}
    for key in keys:
        rng, render_seed = item_seeds(123, *key)
        again_rng, again_seed = item_seeds(123, *key)
        first = rng.integers(0, 2**62)
        assert first == again_rng.integers(0, 2**62) and render_seed == again_seed
        assert 0 <= render_seed < 2**63
        draws[key] = (int(first), render_seed)
    assert len({d for d, _ in draws.values()}) == len(keys)
    assert len({r for _, r in draws.values()}) == len(keys)
    assert item_seeds(124, "ave", "train", 0)[1] != item_seeds(123, "ave", "train", 0)[1]


def test_split_rng_differs_from_item_streams():
    a = split_rng(5, "ave", "train").integers(0, 2**62, size=4)
    assert np.array_equal(a, split_rng(5, "ave", "train").integers(0, 2**62, size=4))
    assert not np.array_equal(a, split_rng(5, "ave", "val").integers(0, 2**62, size=4))
    assert not np.array_equal(a, item_seeds(5, "ave", "train", 0)[0].integers(0, 2**62, size=4))


def test_youtube_ids_look_real():
    rng = np.random.default_rng(0)
    ids = [youtube_id(rng) for _ in range(400)]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{11}", i) for i in ids)
    dash_share = sum(i.startswith("-") for i in ids) / len(ids)
    assert 0.15 < dash_share < 0.35
    assert len(set(ids)) == len(ids)
