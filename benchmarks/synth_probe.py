"""How separable AV-Synth's difficulty settings leave AVE for the tiny profile's frozen encoders.

``feature_probe.py`` varies the encoders on the clips already synthesised; this script varies the data:
for each variant of ``synth.difficulty`` it renders the same AVE scenes (same seeds, so the same events,
distractors and slots) in memory, without the H.264 / AAC round trip, encodes them with the current
``base_models`` encoders and runs the same three probes (``second``, ``visual``, ``audio``; see
``feature_probe.py``). ``second`` is also reported after fewer probe steps, because what the tiny model
can learn in one pipeline run is closer to a few thousand clip passes than to the probe's 51,200.

Usage (no stage needs to have run; only ``params.yaml`` is read)::

    python benchmarks/synth_probe.py audio_noise=0.04,visual_noise=0.02,signature_jitter=0.02

A variant is a comma-separated list of ``synth.difficulty`` overrides (``motion=false`` for the bool).
The baseline row is ``params.yaml``'s difficulty. With 80 test clips a difference under about 0.02 is noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from feature_probe import NUM_SECONDS, _probe, probe_inputs

from crab.config import DifficultyConfig, Params, SynthConfig, load_params
from crab.datasets.media import sample_indices, segment_audio
from crab.datasets.vocab import AVE_CATEGORIES
from crab.features.extract import encode_clips, encode_frames
from crab.models.base import tiny_clip
from crab.models.beats import beats_tiny
from crab.synth.ave import _split_scenes, ave_event
from crab.synth.render import render_audio, render_frames
from crab.synth.scene import Scene

#: Probe step counts at which ``second`` is reported (batch 64: 6,400 to 51,200 clip passes).
STEP_COUNTS = (100, 200, 400, 800)


def _difficulty(base: DifficultyConfig, spec: str) -> DifficultyConfig:
    overrides: dict[str, object] = {}
    for part in filter(None, spec.split(",")):
        key, _, value = part.partition("=")
        if key not in {f.name for f in dataclasses.fields(DifficultyConfig)}:
            raise SystemExit(f"{part!r}: {key!r} is not a synth.difficulty field")
        current = getattr(base, key)
        if isinstance(current, bool):
            overrides[key] = value.lower() in ("1", "true", "yes")
        else:
            overrides[key] = type(current)(value)
    return dataclasses.replace(base, **overrides)


def _render(job: tuple[Scene, SynthConfig]) -> tuple[np.ndarray, np.ndarray]:
    """One scene's 10 sampled frames (10, S, S, 3) and 1-s audio segments (10, L), as the features stage samples."""
    scene, synth = job
    frames = render_frames(scene, synth.video, synth.difficulty)  # (T, S, S, 3)
    audio = render_audio(scene, synth.audio, synth.difficulty)  # (n,)
    return frames[sample_indices(len(frames), NUM_SECONDS)], segment_audio(audio, NUM_SECONDS).astype(np.float32)


def _scenes(params: Params, num_train: int, num_test: int) -> list[Scene]:
    used: set[str] = set()
    return _split_scenes(params, "train", num_train, used) + _split_scenes(params, "test", num_test, used)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", help="comma-separated synth.difficulty overrides")
    parser.add_argument("--num-train", type=int, default=600, help="AVE train clips the probes learn from")
    parser.add_argument("--num-test", type=int, default=80, help="AVE test clips they are scored on")
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    args = parser.parse_args()
    params = load_params("params.yaml")
    vision_cfg, audio_cfg = params.base_models.vision, params.base_models.audio
    vision, processor = tiny_clip(vision_cfg, params.base_models.seed)
    beats = beats_tiny(params.base_models.seed + 1, audio_cfg)
    class_ids = {c: i + 1 for i, c in enumerate(sorted(AVE_CATEGORIES))}
    size = params.synth.video.size
    header = " ".join(f"{'second@' + str(s):>11s}" for s in STEP_COUNTS)
    print(f"{'difficulty variant':60s} {header} {'visual':>7s} {'audio':>7s}")
    for spec in ["", *args.variants]:
        synth = dataclasses.replace(params.synth, difficulty=_difficulty(params.synth.difficulty, spec))
        scenes = _scenes(dataclasses.replace(params, synth=synth), args.num_train, args.num_test)
        start = time.perf_counter()
        with ProcessPoolExecutor(args.workers) as pool:
            rendered = list(pool.map(_render, [(scene, synth) for scene in scenes], chunksize=8))
        frames = np.stack([f for f, _ in rendered])  # (N, 10, S, S, 3)
        audio = np.stack([a for _, a in rendered])  # (N, 10, L)
        labels = torch.zeros(len(scenes), NUM_SECONDS, dtype=torch.long)  # (N, 10)
        for row, scene in enumerate(scenes):
            name, first, end = ave_event(scene)
            labels[row, first:end] = class_ids[name]
        with torch.inference_mode():
            v = encode_frames(vision, processor, frames.reshape(-1, size, size, 3), vision_cfg.feature_layer, 64)
            a = encode_clips(beats, audio.reshape(-1, audio.shape[-1]), 64)
        v = v.reshape(len(scenes), NUM_SECONDS, *v.shape[1:])  # (N, 10, P, Dv)
        a = a.reshape(len(scenes), NUM_SECONDS, *a.shape[1:])  # (N, 10, T, Da)
        inputs = probe_inputs(v, a, labels, args.num_train)
        seconds = [_probe(*inputs["second"], args.num_train, steps) for steps in STEP_COUNTS]
        visual, audible = (_probe(*inputs[name], args.num_train, STEP_COUNTS[-1]) for name in ("visual", "audio"))
        cells = " ".join(f"{s:11.3f}" for s in seconds)
        took = time.perf_counter() - start
        print(
            f"{spec or 'baseline (params.yaml)':60s} {cells} {visual:7.3f} {audible:7.3f}  ({took:.0f} s)", flush=True
        )
    print(f"all-background per-second accuracy: {(labels[args.num_train :] == 0).float().mean().item():.3f}")


if __name__ == "__main__":
    main()
