"""How much of AVE's answer the tiny profile's frozen random encoders keep: probes over encoder size variants.

The tiny profile's encoders are seeded random-init CLIP and BEATs (DESIGN.md section 2), so what the LLM
can learn about a clip is bounded by how separable their features leave the classes. This script measures
that bound for the current ``base_models`` sizes (the baseline row) and for size variants, on the same
decoded AV-Synth AVE clips, with three small MLP probes on pooled, standardised features:

* ``second``: the label of every second (28 events + background, AVE's per-second accuracy) from that
  second's frame and audio segment plus the clip's mean and max (the event class needs the whole clip);
* ``visual`` / ``audio``: the clip's event class from one modality alone (distractors and off-screen sounds
  cap these well below 1).

Usage (after ``avuie_build``; reads ``data/avuie/ave`` and the media it names)::

    python benchmarks/feature_probe.py                       # the baseline only
    python benchmarks/feature_probe.py audio.embed_dim=32,audio.hidden_size=64 vision.patch_size=8

A variant is a comma-separated list of ``vision.<field>=N`` / ``audio.<field>=N`` overrides of
``base_models`` (``vision.feature_layer`` included). Probes are seeded; with 80 test clips a difference
under about 0.02 is noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from crab.config import Params, TinyAudioConfig, TinyVisionConfig, load_params
from crab.datasets.media import read_audio, read_frames, segment_audio
from crab.features.extract import encode_clips, encode_frames
from crab.features.fbank import BEATS_SAMPLE_RATE
from crab.models.base import tiny_clip
from crab.models.beats import beats_tiny

NUM_SECONDS = 10


def _records(split: str, limit: int | None) -> list[dict]:
    with open(Path("data/avuie/ave") / f"{split}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f][:limit]


def _labels(records: list[dict], class_ids: dict[str, int]) -> Tensor:
    """(N, 10) per-second labels: 0 = background, k = class k."""
    labels = torch.zeros(len(records), NUM_SECONDS, dtype=torch.long)
    for row, record in enumerate(records):
        label = record["label"]
        labels[row, label["start"] : label["end"]] = class_ids[label["event"]]
    return labels


def _standardise(x: Tensor, reference: Tensor) -> Tensor:
    dims = tuple(range(reference.ndim - 1))
    return (x - reference.mean(dims)) / (reference.std(dims) + 1e-6)


def _probe(x: Tensor, y: Tensor, num_train: int, steps: int, seed: int = 0) -> float:
    """Test accuracy of a 1-hidden-layer MLP trained on the first ``num_train`` rows of ``x`` (.., F) -> ``y``."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(x.shape[-1], 256), nn.GELU(), nn.Linear(256, 29))
    optimizer = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-2)
    for _ in range(steps):
        idx = torch.randint(0, num_train, (64,), generator=generator)
        loss = nn.functional.cross_entropy(net(x[idx]).reshape(-1, 29), y[idx].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return (net(x[num_train:]).argmax(-1) == y[num_train:]).float().mean().item()


def probe_inputs(v: Tensor, a: Tensor, labels: Tensor, num_train: int) -> dict[str, tuple[Tensor, Tensor]]:
    """Inputs and targets of the three probes, ``{"second", "visual", "audio"}: (x, y)``, from encoder features.

    Args:
        v: (N, 10, P, Dv) CLIP tokens of each second's frame.
        a: (N, 10, T, Da) BEATs tokens of each second's audio.
        labels: (N, 10) per-second labels (0 = background); the first ``num_train`` rows train the probes.
        num_train: training clips (the standardisation statistics come from them); the rest are test clips.
    """
    v, a = _standardise(v, v[:num_train]), _standardise(a, a[:num_train])
    pooled_v = torch.cat([v.mean(2), v.amax(2)], -1)  # (N, 10, 2 Dv)
    pooled_a = torch.cat([a.mean(2), a.amax(2)], -1)  # (N, 10, 2 Da)
    both = torch.cat([pooled_v, pooled_a], -1)
    context = torch.cat(
        [both, both.mean(1, keepdim=True).expand_as(both), both.amax(1, keepdim=True).expand_as(both)], -1
    )
    clip_class = labels.amax(1)  # (N,)
    return {
        "second": (context, labels),
        "visual": (torch.cat([pooled_v.mean(1), pooled_v.amax(1)], -1), clip_class),
        "audio": (torch.cat([pooled_a.mean(1), pooled_a.amax(1)], -1), clip_class),
    }


def _variant(params: Params, spec: str) -> tuple[TinyVisionConfig, TinyAudioConfig]:
    vision, audio = params.base_models.vision, params.base_models.audio
    for part in filter(None, spec.split(",")):
        key, _, value = part.partition("=")
        module, _, field = key.partition(".")
        if module == "vision":
            vision = dataclasses.replace(vision, **{field: int(value)})
        elif module == "audio":
            audio = dataclasses.replace(audio, **{field: int(value)})
        else:
            raise SystemExit(f"{part!r}: overrides are vision.<field>=N or audio.<field>=N")
    return vision, audio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", help="comma-separated base_models overrides (see the docstring)")
    parser.add_argument("--num-train", type=int, default=600, help="AVE train clips the probes learn from")
    parser.add_argument("--num-test", type=int, default=80, help="AVE test clips they are scored on")
    parser.add_argument("--steps", type=int, default=800, help="probe training steps (batch 64)")
    args = parser.parse_args()
    params = load_params("params.yaml")
    every_train = _records("train", None)  # the class list comes from the whole split, the probes see a part
    train, test = every_train[: args.num_train], _records("test", args.num_test)
    class_ids = {c: i + 1 for i, c in enumerate(sorted({r["label"]["event"] for r in every_train}))}
    records = train + test
    start = time.perf_counter()
    size = params.base_models.vision.image_size
    frames = np.stack([read_frames(r["media"]["video"], NUM_SECONDS, size) for r in records])  # (N, 10, S, S, 3)
    audio = np.stack(
        [segment_audio(read_audio(r["media"]["audio"], BEATS_SAMPLE_RATE), NUM_SECONDS) for r in records]
    ).astype(np.float32)  # (N, 10, L)
    print(f"decoded {len(records)} clips in {time.perf_counter() - start:.0f} s")
    labels = _labels(records, class_ids)  # (N, 10)
    num_train = len(train)
    baseline = None
    print(f"{'variant':50s} {'second':>7s} {'visual':>7s} {'audio':>7s}  (ratio of second to the baseline)")
    for spec in ["", *args.variants]:
        vision_cfg, audio_cfg = _variant(params, spec)
        vision, processor = tiny_clip(vision_cfg, params.base_models.seed)
        beats = beats_tiny(params.base_models.seed + 1, audio_cfg)
        with torch.inference_mode():
            v = encode_frames(vision, processor, frames.reshape(-1, size, size, 3), vision_cfg.feature_layer, 64)
            a = encode_clips(beats, audio.reshape(-1, audio.shape[-1]), 64)
        v = v.reshape(len(records), NUM_SECONDS, *v.shape[1:])  # (N, 10, P, Dv)
        a = a.reshape(len(records), NUM_SECONDS, *a.shape[1:])  # (N, 10, T, Da)
        second, visual, audible = (
            _probe(x, y, num_train, args.steps) for x, y in probe_inputs(v, a, labels, num_train).values()
        )
        baseline = second if baseline is None else baseline
        print(
            f"{spec or 'baseline (params.yaml)':50s} {second:7.3f} {visual:7.3f} {audible:7.3f}  x{second / baseline:.3f}"
        )
    print(f"all-background per-second accuracy: {(labels[num_train:] == 0).float().mean().item():.3f}")


if __name__ == "__main__":
    main()
