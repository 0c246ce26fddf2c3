"""Tests for ``crab.features.fbank``: equality with torchaudio's Kaldi fbank and with kaldi-native-fbank.

How ``tests/fixtures/fbank/kaldi_fbank_128.npz`` was produced (once, by a throwaway script that is not in
the repository, so no torchaudio code is committed):

1. ``pip download --no-deps torchaudio==2.9.1 -d /tmp/ta`` (wheel
   ``torchaudio-2.9.1-cp311-cp311-manylinux_2_28_x86_64.whl``) and
   ``unzip <wheel> torchaudio/compliance/kaldi.py`` into ``/tmp/ta``.
2. In the project venv (Python 3.11, torch 2.13.0+cpu, numpy 2.4.6), ``sys.modules["torchaudio"]`` was set
   to an empty stub module (``kaldi.py`` imports ``torchaudio`` only for ``mfcc``'s DCT), the file was
   loaded with ``importlib.util.spec_from_file_location``, and for each waveform ``w`` (int16 samples)::

       fbank = kaldi.fbank(torch.from_numpy(w.astype(np.float32) / 32768.0).unsqueeze(0) * 2**15,
                           num_mel_bins=128, sample_frequency=16000, frame_length=25, frame_shift=10)

   i.e. BEATs' own ``preprocess`` call before normalisation.
3. The waveforms (sr = 16000, ``q(x) = clip(round(x * 32768), -32768, 32767).astype(int16)``):

   - ``wave_sine``, 1 s: ``q(0.3 sin(2 pi 440 t) + 0.2 sin(2 pi 1234.5 t) + 0.1 sin(2 pi 5000 t))``;
   - ``wave_noise``, 2 s: ``q(np.random.default_rng(20250101).normal(0.0, 0.1, 32000))``;
   - ``wave_chirp``, 0.5 s: ``q(0.5 sin(2 pi (100 t + (7000 - 100) / (2 * 0.5) t**2)))`` with the first
     800 samples (50 ms) set to 0, so that silent frames exercise the log floor.

   The npz (``np.savez_compressed``) holds ``wave_<name>`` (int16) and ``fbank_<name>`` (float32,
   ``(T, 128)``, T = 98 / 198 / 48). Measured when written: our fbank equals it exactly (max abs diff 0.0).

The float32 FFT rounds differently on another CPU: on an AVX2-only AMD EPYC (2026-11-27) the log energies
of bins far below their frame's strongest bin moved by up to 0.02 (chirp; 0.0016 sine), while every bin
within 12 nats (52 dB) of its frame's strongest stayed within 2.5e-5 and every bin's energy within 1.9e-6
of its frame's peak energy. So the comparison is exact to 1e-4 on the bins that carry the signal and, below
them, bounded by float32's precision relative to the frame's peak.

kaldi-native-fbank (dev dependency, version 1.23.0) refuses 128 bins at 16 kHz / 25 ms because mel bin 3
covers no FFT bin; torchaudio keeps that bin at ``log(eps)``. It is compared at 80 bins instead. Its float32
FFT differs from torch's in the far spectral tails, so the comparison covers the bins within 80 dB of each
frame's strongest bin (measured max abs diff 3.4e-4; 0.48 deep in the tails of the chirp's first frames).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from crab.features.fbank import (
    BEATS_FBANK_MEAN,
    BEATS_FBANK_STD,
    beats_fbank,
    kaldi_fbank,
    kaldi_mel_banks,
    num_fbank_frames,
)

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "fbank" / "kaldi_fbank_128.npz"
NAMES = ("sine", "noise", "chirp")
EXPECTED_FRAMES = {"sine": 98, "noise": 198, "chirp": 48}


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


def _wave(reference: dict[str, np.ndarray], name: str) -> torch.Tensor:
    """The fixture waveform in [-1, 1] as float32, (L,)."""
    return torch.from_numpy(reference[f"wave_{name}"].astype(np.float32) / 32768.0)


@pytest.mark.parametrize("name", NAMES)
def test_matches_torchaudio_fixture(reference: dict[str, np.ndarray], name: str) -> None:
    expected = torch.from_numpy(reference[f"fbank_{name}"])
    ours = kaldi_fbank(_wave(reference, name) * 2**15, num_mel_bins=128, sample_frequency=16000)
    assert ours.shape == expected.shape == (EXPECTED_FRAMES[name], 128)
    assert ours.dtype == torch.float32
    ours, expected = ours.double(), expected.double()
    signal = expected > expected.amax(dim=1, keepdim=True) - 12.0  # within 12 nats of the frame's strongest bin
    assert signal.float().mean().item() > 0.1
    assert (ours - expected)[signal].abs().max().item() < 1e-4
    peak = expected.exp().amax(dim=1, keepdim=True)  # (T, 1) each frame's peak mel energy
    assert ((ours.exp() - expected.exp()).abs() / peak).max().item() < 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_beats_fbank_normalises_the_fixture(reference: dict[str, np.ndarray], name: str) -> None:
    wave = _wave(reference, name)
    fbank = kaldi_fbank(wave * 2**15, num_mel_bins=128, sample_frequency=16000)
    torch.testing.assert_close(beats_fbank(wave), (fbank - BEATS_FBANK_MEAN) / (2 * BEATS_FBANK_STD), atol=1e-6, rtol=0)
    expected = (torch.from_numpy(reference[f"fbank_{name}"]) - BEATS_FBANK_MEAN) / (2 * BEATS_FBANK_STD)
    signal = expected > expected.amax(dim=1, keepdim=True) - 12.0 / (2 * BEATS_FBANK_STD)
    torch.testing.assert_close(beats_fbank(wave)[signal], expected[signal], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_matches_kaldi_native_fbank_at_80_bins(reference: dict[str, np.ndarray], name: str) -> None:
    knf = pytest.importorskip("kaldi_native_fbank")
    options = knf.FbankOptions()
    options.frame_opts.samp_freq = 16000
    options.frame_opts.dither = 0.0
    options.frame_opts.snip_edges = True
    options.mel_opts.num_bins = 80
    options.mel_opts.low_freq = 20.0
    options.mel_opts.high_freq = 0.0
    options.use_energy = False
    scaled = reference[f"wave_{name}"].astype(np.float32)  # int16 range, as Kaldi expects
    online = knf.OnlineFbank(options)
    online.accept_waveform(16000, scaled.tolist())
    online.input_finished()
    expected = torch.tensor(np.stack([online.get_frame(i) for i in range(online.num_frames_ready)]))

    ours = kaldi_fbank(torch.from_numpy(scaled), num_mel_bins=80)
    assert ours.shape == expected.shape == (EXPECTED_FRAMES[name], 80)
    within_80_db = expected >= expected.amax(dim=1, keepdim=True) - 8 * math.log(10)  # (T, 80)
    assert (ours - expected).abs()[within_80_db].max().item() < 1e-3


@pytest.mark.parametrize(("seconds", "frames"), [(1.0, 98), (2.0, 198), (0.025, 1), (0.5, 48)])
def test_frame_count(seconds: float, frames: int) -> None:
    num_samples = int(seconds * 16000)
    assert num_fbank_frames(num_samples) == frames
    assert beats_fbank(torch.zeros(num_samples)).shape == (frames, 128)


def test_batched_equals_one_by_one() -> None:
    generator = torch.Generator().manual_seed(0)
    waves = torch.rand(3, 16000, generator=generator) * 2 - 1  # (B, L)
    batched = beats_fbank(waves)
    assert batched.shape == (3, 98, 128)
    single = torch.stack([beats_fbank(wave) for wave in waves])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)


def test_silence_hits_the_log_floor() -> None:
    fbank = kaldi_fbank(torch.zeros(16000))
    torch.testing.assert_close(fbank, torch.full((98, 128), math.log(torch.finfo(torch.float32).eps)))


def test_mel_bank_128_has_kaldis_empty_bin() -> None:
    banks = kaldi_mel_banks(128, 512)
    assert banks.shape == (128, 257)
    assert torch.all(banks[:, -1] == 0)  # Nyquist bin is never used
    empty = (banks.sum(dim=1) == 0).nonzero().flatten().tolist()
    assert empty == [3]  # why kaldi-native-fbank refuses 128 bins; torchaudio keeps it at log(eps)


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shorter than one frame"):
        beats_fbank(torch.zeros(399))
    with pytest.raises(ValueError, match="floating-point"):
        kaldi_fbank(torch.zeros(16000, dtype=torch.int16))
    with pytest.raises(ValueError, match="floating-point"):
        kaldi_fbank(torch.zeros(1, 1, 16000))
