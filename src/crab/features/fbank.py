"""Kaldi-compatible log-mel filterbank in plain torch, batched, as BEATs consumes it (Crab's audio encoder input).

Crab feeds BEATs with ``torchaudio.compliance.kaldi.fbank(wave * 2**15, num_mel_bins=128,
sample_frequency=16000, frame_length=25, frame_shift=10)`` normalised by ``(x - 15.41663) / (2 * 6.55582)``
(reference section 1.4). torchaudio cannot be installed beside our CPU torch, and ``kaldi-native-fbank``
refuses 128 bins at 16 kHz because Kaldi rejects mel bins that cover no FFT bin; torchaudio does not
check this, and BEATs was trained with torchaudio's values. So this module re-implements the Kaldi
recipe with torchaudio's conventions for exactly the options BEATs uses:

- frames of 25 ms every 10 ms, ``snip_edges=True`` (only whole frames: ``T = 1 + (L - 400) // 160``),
  no dither, per-frame DC-offset removal, pre-emphasis 0.97 with the first sample replicated,
  the "povey" window (``hann(periodic=False) ** 0.85``), zero padding to the next power of two (512);
- power spectrum, triangular mel banks on Kaldi's mel scale ``1127 ln(1 + f / 700)`` from 20 Hz to
  Nyquist, the Nyquist FFT bin weighted zero;
- ``log(max(mel_energy, float32 eps))``; no energy column. At 128 bins, mel bin 3 covers no FFT bin, so
  it is always ``log(eps)`` (about -15.94): the reason Kaldi refuses this setting.

How it differs from torchaudio: it takes a batch ``(B, L)`` and frames it with one ``unfold`` instead of
a per-waveform loop (BEATs' own ``preprocess`` loops over the batch), and it exposes only the options
above. On the test fixtures its values are bit-identical to torchaudio 2.9.1's
(``tests/unit/features/test_fbank.py``).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "BEATS_FBANK_MEAN",
    "BEATS_FBANK_STD",
    "BEATS_NUM_MEL_BINS",
    "BEATS_SAMPLE_RATE",
    "beats_fbank",
    "kaldi_fbank",
    "kaldi_mel_banks",
    "num_fbank_frames",
]

BEATS_SAMPLE_RATE = 16000
BEATS_NUM_MEL_BINS = 128
# Dataset statistics that BEATs' ``preprocess`` subtracts / divides by (std is doubled there).
BEATS_FBANK_MEAN = 15.41663
BEATS_FBANK_STD = 6.55582
# Kaldi floors every log argument at the float32 machine epsilon (torchaudio does the same).
_LOG_FLOOR = torch.finfo(torch.float32).eps
_PREEMPHASIS = 0.97
_POVEY_POWER = 0.85
_INT16_SCALE = 2**15


def _frame_geometry(sample_frequency: float, frame_length_ms: float, frame_shift_ms: float) -> tuple[int, int, int]:
    """Return ``(window_size, window_shift, padded_window_size)`` in samples, truncated as Kaldi does."""
    window_size = int(sample_frequency * frame_length_ms * 0.001)
    window_shift = int(sample_frequency * frame_shift_ms * 0.001)
    if window_size < 2 or window_shift < 1:
        raise ValueError(f"frame of {window_size} samples every {window_shift} samples is too short")
    padded_window_size = 1 << (window_size - 1).bit_length()  # next power of two >= window_size
    return window_size, window_shift, padded_window_size


def num_fbank_frames(
    num_samples: int,
    sample_frequency: float = BEATS_SAMPLE_RATE,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
) -> int:
    """Number of fbank frames for a waveform of ``num_samples`` (``snip_edges=True``).

    Args:
        num_samples: waveform length L in samples.
        sample_frequency: sampling rate in Hz.
        frame_length_ms: frame length in milliseconds.
        frame_shift_ms: frame shift in milliseconds.

    Returns:
        ``1 + (L - window) // shift``, or 0 when the waveform is shorter than one frame
        (98 for 1 s and 198 for 2 s at the BEATs settings).
    """
    window_size, window_shift, _ = _frame_geometry(sample_frequency, frame_length_ms, frame_shift_ms)
    if num_samples < window_size:
        return 0
    return 1 + (num_samples - window_size) // window_shift


def _mel(freq: Tensor | float) -> Tensor | float:
    """Kaldi's mel scale, ``1127 ln(1 + f / 700)``."""
    # log(1 + x) rather than log1p, to round exactly as Kaldi and torchaudio do.
    if isinstance(freq, Tensor):
        return 1127.0 * torch.log(1.0 + freq / 700.0)
    return 1127.0 * math.log(1.0 + freq / 700.0)


@functools.lru_cache(maxsize=8)
def _mel_banks_cached(
    num_mel_bins: int, padded_window_size: int, sample_frequency: float, low_freq: float, high_freq: float
) -> Tensor:
    nyquist = 0.5 * sample_frequency
    if high_freq <= 0.0:
        high_freq += nyquist  # Kaldi: a non-positive high_freq is an offset from Nyquist
    if not (0.0 <= low_freq < high_freq <= nyquist):
        raise ValueError(f"need 0 <= low_freq < high_freq <= {nyquist}, got {low_freq}, {high_freq}")
    if num_mel_bins < 3:
        raise ValueError(f"need at least 3 mel bins, got {num_mel_bins}")
    mel_low, mel_high = _mel(low_freq), _mel(high_freq)
    delta = (mel_high - mel_low) / (num_mel_bins + 1)
    # Computed in float32 like torchaudio, whose float32 banks are what BEATs was trained on.
    bins = torch.arange(num_mel_bins, dtype=torch.float32).unsqueeze(1)  # (M, 1)
    left = mel_low + bins * delta
    center = mel_low + (bins + 1.0) * delta
    right = mel_low + (bins + 2.0) * delta
    fft_bin_width = sample_frequency / padded_window_size
    fft_freqs = fft_bin_width * torch.arange(padded_window_size // 2, dtype=torch.float32)
    fft_mel = _mel(fft_freqs).unsqueeze(0)  # (1, N/2)
    up = (fft_mel - left) / (center - left)
    down = (right - fft_mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)  # (M, N/2) triangles
    banks = F.pad(banks, (0, 1))  # (M, N/2 + 1): the Nyquist bin gets weight 0, as in Kaldi
    return banks


def kaldi_mel_banks(
    num_mel_bins: int,
    padded_window_size: int,
    sample_frequency: float = BEATS_SAMPLE_RATE,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
) -> Tensor:
    """Kaldi's triangular mel filter bank (no VTLN warping).

    Args:
        num_mel_bins: number of mel bins M.
        padded_window_size: FFT size N (even).
        sample_frequency: sampling rate in Hz.
        low_freq: lower edge of the first triangle in Hz.
        high_freq: upper edge of the last triangle in Hz; ``<= 0`` means an offset from Nyquist.

    Returns:
        Float32 weights of shape ``(M, N // 2 + 1)`` to right-multiply a power spectrum with (a new tensor).

    Raises:
        ValueError: if the frequency range or the bin count is invalid.
    """
    return _mel_banks_cached(
        num_mel_bins, padded_window_size, float(sample_frequency), float(low_freq), float(high_freq)
    ).clone()


def kaldi_fbank(
    waveform: Tensor,
    num_mel_bins: int = BEATS_NUM_MEL_BINS,
    sample_frequency: float = BEATS_SAMPLE_RATE,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
) -> Tensor:
    """Log-mel filterbank equal to ``torchaudio.compliance.kaldi.fbank`` with its default options.

    The defaults fixed here are torchaudio's and Kaldi's: dither 0, ``snip_edges=True``, povey window,
    pre-emphasis 0.97, DC-offset removal, FFT size rounded up to a power of two, power spectrum, log
    output, no energy column. The waveform is used as given: scale it to the int16 range first
    (``beats_fbank`` does).

    Args:
        waveform: mono audio, ``(L,)`` or ``(B, L)``, floating point (float32 matches torchaudio).
        num_mel_bins: number of mel bins M.
        sample_frequency: sampling rate in Hz.
        frame_length_ms: frame length in milliseconds.
        frame_shift_ms: frame shift in milliseconds.
        low_freq: lowest mel-bank frequency in Hz.
        high_freq: highest mel-bank frequency in Hz; ``<= 0`` means an offset from Nyquist.

    Returns:
        ``(T, M)`` for a 1-D input or ``(B, T, M)`` for a 2-D input, in the waveform's dtype,
        with ``T = num_fbank_frames(L)``.

    Raises:
        ValueError: if the waveform is not 1-D/2-D floating point or is shorter than one frame.
    """
    if waveform.dim() not in (1, 2) or not waveform.is_floating_point():
        raise ValueError(
            f"expected a floating-point (L,) or (B, L) waveform, got {waveform.dtype} {tuple(waveform.shape)}"
        )
    window_size, window_shift, padded_window_size = _frame_geometry(sample_frequency, frame_length_ms, frame_shift_ms)
    if waveform.shape[-1] < window_size:
        raise ValueError(f"waveform of {waveform.shape[-1]} samples is shorter than one frame ({window_size})")
    squeeze = waveform.dim() == 1
    wave = waveform.unsqueeze(0) if squeeze else waveform  # (B, L)

    frames = wave.unfold(-1, window_size, window_shift)  # (B, T, W), a strided view
    frames = frames - frames.mean(dim=-1, keepdim=True)  # remove DC offset per frame
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # x[n-1], with x[-1] := x[0]
    frames = frames - _PREEMPHASIS * previous
    window = torch.hann_window(window_size, periodic=False, dtype=wave.dtype, device=wave.device).pow(_POVEY_POWER)
    frames = F.pad(frames * window, (0, padded_window_size - window_size))  # (B, T, N)

    power = torch.fft.rfft(frames).abs().pow(2.0)  # (B, T, N/2 + 1)
    banks = _mel_banks_cached(
        num_mel_bins, padded_window_size, float(sample_frequency), float(low_freq), float(high_freq)
    ).to(device=wave.device, dtype=wave.dtype)  # (M, N/2 + 1)
    mel_energies = torch.matmul(power, banks.T)  # (B, T, M)
    log_mel = torch.clamp(mel_energies, min=_LOG_FLOOR).log()
    return log_mel.squeeze(0) if squeeze else log_mel


def beats_fbank(wave_16k: Tensor) -> Tensor:
    """BEATs' input features: 128-bin Kaldi fbank of the int16-scaled waveform, normalised.

    Equivalent to BEATs' ``preprocess`` (and Crab's dataset code) but batched without a Python loop.

    Args:
        wave_16k: 16 kHz mono audio in [-1, 1], ``(L,)`` or ``(B, L)``.

    Returns:
        ``(T, 128)`` or ``(B, T, 128)``: ``(fbank - 15.41663) / (2 * 6.55582)``; T is 98 for 1 s and
        198 for 2 s.

    Raises:
        ValueError: if the waveform is not 1-D/2-D floating point or is shorter than 25 ms.
    """
    fbank = kaldi_fbank(wave_16k * _INT16_SCALE, num_mel_bins=BEATS_NUM_MEL_BINS, sample_frequency=BEATS_SAMPLE_RATE)
    return (fbank - BEATS_FBANK_MEAN) / (2 * BEATS_FBANK_STD)
