"""AV-Synth's per-clip cost, side by side: frame rate and AAC coder against a baseline setting.

``crab synth`` renders every clip (frames, audio) and encodes it as H.264 + AAC in spawned workers, so the
step's time grows with the clip count times this per-clip cost. The model reads one frame a second
(``media.num_frames`` over a 10-s clip), so frames rendered between those are work nobody reads; and
FFmpeg's native AAC encoder spends most of a clip's encoding in its default two-loop coder. This script
renders the same AVE train scenes under each variant ``fps:coder`` in turn (one process, the encoders single-threaded,
the same scenes for all), and reports per clip: rendering of the frames and of the audio, encoding, decoding
back the way the ``features`` stage does (10 sampled frames at the model's size + the 16 kHz track), the
total of render + encode as a ratio of the first variant's, and the AAC round trip's signal-to-noise ratio
(decoded track against the rendered samples) so a faster coder is not a worse one.

Usage (reads ``params.yaml``; writes only to a temporary folder)::

    python benchmarks/synth_encode.py --variants 8:twoloop,2:twoloop,2:fast --clips 12
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from crab.config import load_params
from crab.datasets.media import read_audio, read_frames
from crab.synth import render
from crab.synth.ave import _split_scenes


@dataclasses.dataclass(frozen=True)
class Row:
    """One variant's median seconds per clip and its AAC round trip."""

    variant: str
    frames_s: float
    audio_s: float
    encode_s: float
    decode_s: float
    snr_db: float

    @property
    def total_s(self) -> float:
        """What ``crab synth`` pays per clip: render + encode."""
        return self.frames_s + self.audio_s + self.encode_s


def snr_db(decoded: np.ndarray, rendered: np.ndarray) -> float:
    """10 log10(signal / error) over the common length (FFmpeg's AAC decoder removes the priming delay)."""
    n = min(len(decoded), len(rendered))
    error = decoded[:n] - rendered[:n]
    return float(10 * np.log10(np.sum(rendered[:n] ** 2) / max(np.sum(error**2), 1e-20)))


def measure(variant: str, scenes: list, params, folder: Path) -> Row:
    """Render, encode and decode ``scenes`` at ``variant`` (``"<fps>:<aac coder>"``)."""
    fps_text, coder = variant.split(":")
    video = dataclasses.replace(params.synth.video, fps=int(fps_text))
    difficulty = params.synth.difficulty
    times: dict[str, list[float]] = {"frames": [], "audio": [], "encode": [], "decode": []}
    snrs = []
    for index, scene in enumerate(scenes):
        t0 = time.perf_counter()
        frames = render.render_frames(scene, video, difficulty)  # (T, S, S, 3)
        t1 = time.perf_counter()
        samples = render.render_audio(scene, params.synth.audio, difficulty)  # (N,)
        t2 = time.perf_counter()
        path = folder / f"{fps_text}_{coder}_{index}.mp4"
        render._encode(path, frames, samples, video.fps, params.synth.audio.sample_rate, video.crf, aac_coder=coder)
        t3 = time.perf_counter()
        read_frames(path, params.media.num_frames, video.size)
        decoded = read_audio(path, params.media.audio_sample_rate)
        t4 = time.perf_counter()
        for key, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            times[key].append(seconds)
        snrs.append(snr_db(decoded, samples))
    med = {key: statistics.median(values) for key, values in times.items()}
    return Row(variant, med["frames"], med["audio"], med["encode"], med["decode"], statistics.median(snrs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--variants", default="8:twoloop,2:twoloop,2:fast", help="comma-separated fps:aac_coder")
    parser.add_argument("--clips", type=int, default=12, help="AVE train scenes per variant")
    args = parser.parse_args()
    params = load_params(args.params)
    scenes = _split_scenes(params, "train", args.clips, set())
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(v, scenes, params, Path(tmp)) for v in args.variants.split(",")]
    base = rows[0].total_s
    print("| variant (fps:coder) | frames | audio | encode | decode | render + encode | ratio | AAC SNR |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.variant} | {r.frames_s:.3f} | {r.audio_s:.3f} | {r.encode_s:.3f} | {r.decode_s:.3f} | "
              f"{r.total_s:.3f} | {base / r.total_s:.2f}x | {r.snr_db:.1f} dB |")  # fmt: skip


if __name__ == "__main__":
    main()
