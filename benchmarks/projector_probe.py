"""Can the tiny visual projector find the objects in a frame? Per-slot object probes on the frozen CLIP features.

``feature_probe.py`` asks how much the frozen encoders keep; this script asks how fast the model's own visual
projector (``CrabQFormerProjector``: learned queries cross-attending to the frame's CLIP patch tokens) can
read it out. AV-Synth places each object in one of three slots (left / middle / right third), so every AVE
frame has three labels: the class of the object visible in that slot at that second, or ``none``. The AVE
reasoning names exactly these objects ("a bus is visible on the left from second 0 to second 10"), so a
projector that cannot tell them apart leaves the LLM guessing. Probes, each trained on the train frames
and scored on the test frames (accuracy over the slots that hold an object, and over all slots):

* ``mlp_slot`` (the ceiling): a hidden layer shared by the slots on each slot's own patch columns (mean, max
  and every token), then the linear head;
* ``qformer``: the tiny profile's visual projector (same config and init as ``crab_tiny_config``) with a
  linear head on its concatenated query outputs, trained end to end;
* ``qformer_positions``: the same with a learned embedding per patch added after the projector's LayerNorm
  (zero-initialised): the random-init CLIP's own position embedding hardly survives into its features.

Usage (after the ``features`` stage; reads ``data/features`` and ``data/raw/ave/avsynth_scenes.jsonl``)::

    python benchmarks/projector_probe.py --steps 1000 --queries 4 --json probe.json

Seeded; one thread. With 80 test clips (about 960 object slots) differences under about 0.03 are noise.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from crab.features.store import FeatureStore, video_key
from crab.models.configuration_crab import crab_tiny_config
from crab.models.modeling_crab import CrabForConditionalGeneration

SLOTS = ("left", "middle", "right")
NONE = "<none>"


def slot_labels(scene: dict, class_ids: dict[str, int]) -> Tensor:
    """(T, 3) class id of the object visible in each slot at each second (``class_ids[NONE]`` if none).

    ``scene`` is one line of AV-Synth's ``avsynth_scenes.jsonl``: objects with a ``slot`` (``None`` when off
    screen) and ``visible`` ``[start, end)`` second intervals.
    """
    labels = torch.full((scene["duration_s"], len(SLOTS)), class_ids[NONE], dtype=torch.long)  # (T, 3)
    for obj in scene["objects"]:
        if obj["slot"] is None:
            continue
        for start, end in obj["visible"]:
            labels[start:end, SLOTS.index(obj["slot"])] = class_ids[obj["name"]]
    return labels


def slot_columns(grid: int) -> list[list[int]]:
    """Patch columns overlapping each slot (a third of the frame) in a ``grid`` x ``grid`` patch layout."""
    return [[c for c in range(grid) if c * 3 < (s + 1) * grid and (c + 1) * 3 > s * grid] for s in range(len(SLOTS))]


def class_ids_of(scenes: list[dict]) -> dict[str, int]:
    """One id per class of every split's scenes (sorted), ``NONE`` last: train and test share the ids."""
    classes = sorted({obj["name"] for scene in scenes for obj in scene["objects"]}) + [NONE]
    return {name: i for i, name in enumerate(classes)}


def load_frames(
    store: FeatureStore, scenes: list[dict], media_dir: str, class_ids: dict[str, int]
) -> tuple[Tensor, Tensor]:
    """(F, P, D) patch tokens of every frame of ``scenes`` and their (F, 3) slot labels."""
    tokens, labels = [], []
    for scene in scenes:
        frames = store.video(video_key({"media": {"video": f"{media_dir}/{scene['video_id']}.mp4"}}))  # (T, P, D)
        tokens.append(frames)
        labels.append(slot_labels(scene, class_ids)[: frames.shape[0]])
    return torch.cat(tokens), torch.cat(labels)


def _projector(num_queries: int, positions: bool, num_patches: int, width: int) -> nn.Module:
    config = crab_tiny_config(
        64, video_token_id=60, audio_token_id=61, image_token_id=62, vision_hidden_size=width,
        audio_hidden_size=width, num_queries=num_queries,
    )  # fmt: skip
    projector = CrabForConditionalGeneration(config).visual_projector  # the model's init, then taken alone
    if positions:
        projector.probe_positions = nn.Parameter(torch.zeros(num_patches, width))  # (P, D)
        projector.feature_norm.register_forward_hook(lambda _m, _i, out: out + projector.probe_positions)
    return projector


def train_probe(
    encode: Callable[[Tensor], Tensor], modules: list[nn.Module], width: int, num_classes: int,
    train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], steps: int, batch_size: int, none_id: int,
) -> dict[str, float]:  # fmt: skip
    """Train ``encode`` (frames -> (F, W) vectors) + a linear head per slot; test accuracies."""
    head = nn.Linear(width, len(SLOTS) * num_classes)
    params = [p for m in [*modules, head] for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    x_train, y_train = train
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for module in modules:
        module.train()
    for _ in range(steps):
        index = torch.randint(0, len(y_train), (batch_size,), generator=generator)
        logits = head(encode(x_train[index])).view(-1, num_classes)  # (B * 3, C)
        loss = nn.functional.cross_entropy(logits, y_train[index].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for module in modules:
        module.eval()
    with torch.no_grad():
        x_test, y_test = test
        predicted = head(encode(x_test)).view(len(y_test), len(SLOTS), num_classes).argmax(-1)  # (F, 3)
    objects = y_test != none_id
    return {
        "objects": (predicted[objects] == y_test[objects]).float().mean().item(),
        "all_slots": (predicted == y_test).float().mean().item(),
        "final_loss": loss.item(),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64, help="frames per step")
    parser.add_argument("--queries", type=int, default=4, help="learned queries per frame (tiny profile: 4)")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--scenes", default="data/raw/ave/avsynth_scenes.jsonl")
    parser.add_argument("--media-dir", default="data/raw/ave/AVE", help="as the features index names the clips")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    with open(args.scenes, encoding="utf-8") as f:
        scenes = [json.loads(line) for line in f]
    store = FeatureStore(args.features)
    class_ids = class_ids_of(scenes)
    train = load_frames(store, [s for s in scenes if s["split"] == "train"], args.media_dir, class_ids)
    test = load_frames(store, [s for s in scenes if s["split"] == "test"], args.media_dir, class_ids)
    num_classes, none_id = len(class_ids), class_ids[NONE]
    _, num_patches, width = train[0].shape
    grid = round(num_patches**0.5)
    columns = slot_columns(grid)
    mean = train[0].reshape(-1, width).mean(0)
    std = train[0].reshape(-1, width).std(0).clamp_min(1e-5)

    def slot_features(x: Tensor) -> Tensor:  # (F, P, D) -> (F, 3, K): mean, max and tokens of each slot
        g = ((x - mean) / std).view(len(x), grid, grid, width)
        return torch.stack(
            [torch.cat([g[:, :, c].mean((1, 2)), g[:, :, c].amax((1, 2)), g[:, :, c].flatten(1)], 1) for c in columns],
            1,
        )

    results = {}
    hidden = 256
    mlp = nn.Sequential(nn.Linear(slot_features(train[0][:1]).shape[-1], hidden), nn.GELU())  # shared by the slots
    results["mlp_slot"] = train_probe(
        lambda x: mlp(slot_features(x)).flatten(1), [mlp], len(SLOTS) * hidden, num_classes,
        train, test, args.steps, args.batch_size, none_id,
    )  # fmt: skip
    for name, positions in (("qformer", False), ("qformer_positions", True)):
        torch.manual_seed(0)
        projector = _projector(args.queries, positions, num_patches, width)
        projector.set_feature_statistics(mean, std)
        results[name] = train_probe(
            lambda x, p=projector: p(x).flatten(1), [projector], args.queries * projector.linear_2.out_features,
            num_classes, train, test, args.steps, args.batch_size, none_id,
        )  # fmt: skip
    print(f"{len(train[1])} train / {len(test[1])} test frames, {num_classes - 1} classes, {args.steps} steps")
    print("| probe | accuracy on objects | accuracy on all slots | final loss | seconds |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['objects']:.3f} | {r['all_slots']:.3f} | {r['final_loss']:.3f} | {r['seconds']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
