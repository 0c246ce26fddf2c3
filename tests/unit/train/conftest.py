"""Fixtures for the training tests: a tiny, complete training workspace built once per session.

The workspace holds what the training stages read, in the real formats: a hand-made AV-UIE set in the
real schema (4 train records per task, plus one AVE record quarantined in ``reports/validation/avuie.json``,
and one val record per task), base models written by the real ``base_models`` stage with a shrunk config
(BPE vocabulary 300, LLM width 32 x 2 layers), and a feature store of seeded random features written with
the store's own writer (2 frames of 4 patches, 2 clips of 6 BEATs tokens; two AVQA questions share a
video, as in MUSIC-AVQA). Each test then runs the stages in its own folder (``stage_dir``), where
``data/avuie`` and ``reports`` link to the shared ones and the stage outputs land.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from crab.avuie.schema import AvuieRecord, write_jsonl
from crab.config import OptimConfig, Params, load_params
from crab.features.store import StoreWriter, audio_key, video_key
from crab.models.base import base_models

REPO = Path(__file__).resolve().parents[3]
AV = "This is a video:\n<video_start><video><video_end>\nThis is an audio:\n<audio_start><audio><audio_end>\n"
EVENTS = ["Dog barking", "Church bell", "Violin, fiddle", "Helicopter", "Frying (food)"]
INSTRUMENTS = ["violin", "piano", "cello", "flute"]
QUARANTINED_ID = "ave/train/av004"
NUM_FRAMES, NUM_PATCHES, NUM_CLIPS, NUM_AUDIO_TOKENS = 2, 4, 2, 6


@dataclass(frozen=True)
class Workspace:
    """The shared inputs: ``root`` holds data/avuie, reports, models/base and data/features."""

    root: Path
    params: Params
    records: list[AvuieRecord]


def _record(task: str, split: str, index: int, text: str, target: str, video: str | None = None) -> AvuieRecord:
    item = f"{task[:2]}{index:03d}"
    media = f"raw/{video or item}.mp4"
    return AvuieRecord(
        id=f"{task}/{split}/{item}", task=task, split=split,
        dataset={"ave": "ave", "avqa": "music_avqa", "avcap": "valor"}[task], item_id=item,
        source=f"ann.txt:{index}", video_id=video or item, media={"video": media, "audio": media},
        instruction=AV + text, target=target, reasoning=task != "avcap", label={},
    )  # fmt: skip


def _records() -> list[AvuieRecord]:
    records = []
    for i, event in enumerate(EVENTS):  # the fifth AVE record is the quarantined one
        start, end = i % 4, i % 4 + 3
        records.append(_record(
            "ave", "train", i, "Please describe the events and time range that occurred in the video.",
            f"The {event.lower()} is seen and heard. So the event is <event> {event} </event>, "
            f"and the time range is <range> {start},{end} </range>.",
        ))  # fmt: skip
    for i, instrument in enumerate(INSTRUMENTS):
        records.append(_record(
            "avqa", "train", i, f"Please answer this question: Is the {instrument} on the left louder?",
            f"The {instrument} on the left plays loudly. So the answer is <answer> yes </answer>.",
            video=f"music{i // 2}",  # two questions per video share its features
        ))  # fmt: skip
        records.append(_record(
            "avcap", "train", i, "Please describe this video and audio.",
            f"A person plays the {instrument} in a small room while a dog barks outside.",
        ))  # fmt: skip
    for task in ("ave", "avqa", "avcap"):
        records.append(_record(task, "val", 90, "Please describe this video and audio.", "A quiet room."))
    return records


def _params(root: Path) -> Params:
    params = load_params(REPO / "params.yaml")
    base = params.base_models
    optim = OptimConfig(
        epochs=3.0, batch_size=2, grad_accum=1, lr=3e-3, weight_decay=0.01, warmup_ratio=0.1, max_grad_norm=1.0,
        mixed_precision="no", log_every_steps=1, save_every_steps=2,
    )  # fmt: skip
    return dataclasses.replace(
        params,
        profile="tiny",
        avuie=dataclasses.replace(params.avuie, tasks=["ave", "avqa", "avcap"]),
        base_models=dataclasses.replace(
            base, out_dir=str(root / "models" / "base"),
            vision=dataclasses.replace(
                base.vision, image_size=32, patch_size=16, hidden_size=32, num_layers=2, num_heads=2,
                intermediate_size=64, feature_layer=1,
            ),
            llm=dataclasses.replace(base.llm, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
            tokenizer=dataclasses.replace(base.tokenizer, vocab_size=300, min_frequency=2),
        ),
        features=dataclasses.replace(params.features, out_dir=str(root / "data" / "features")),
        pretrain=dataclasses.replace(
            params.pretrain, out_dir="models/pretrain", seed=0, tasks=["avcap", "ave", "avqa"], language=None,
            train_llm=True, direct_answers=False, optim=optim, segmentation=None,  # test_seg_pretrain sets it
            grounding=None,  # test_pretrain_finetune sets it
        ),
        finetune=dataclasses.replace(
            params.finetune, out_dir="models/finetune", seed=0, tasks=["ave", "avqa"], adapter="ia_lora",
            lora=dataclasses.replace(params.finetune.lora, r=4, alpha=8, dropout=0.05, num_heads=3),
            optim=dataclasses.replace(optim, epochs=1.0),
        ),
        # consistent task lists (load_params checks them when a test writes this as params.yaml)
        evaluate=dataclasses.replace(params.evaluate, tasks=["ave", "avqa"]),
        finetune_avs=dataclasses.replace(params.finetune_avs, tasks=[]),
        finetune_avss=dataclasses.replace(params.finetune_avss, tasks=[]),
    )  # fmt: skip


def _write_quarantine_report(root: Path) -> None:
    entry = {"id": QUARANTINED_ID, "item_id": "av004", "split": "train", "source": "data/avuie/ave/train.jsonl:5",
             "reasons": ["range outside the clip"]}  # fmt: skip
    groups = {task: {"quarantined": [entry] if task == "ave" else []} for task in ("ave", "avqa", "avcap")}
    report = {"stage": "validate_avuie", "max_failure_rate": 0.25, "tasks": groups}
    path = root / "reports" / "validation" / "avuie.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True), encoding="utf-8")


def _write_features(params: Params, records: list[AvuieRecord], manifest: dict) -> None:
    generator = torch.Generator().manual_seed(0)
    tensors: dict[str, torch.Tensor] = {}
    for record in records:
        shapes = {
            video_key(record): (NUM_FRAMES, NUM_PATCHES, manifest["vision"]["hidden_size"]),
            audio_key(record, params): (NUM_CLIPS, NUM_AUDIO_TOKENS, manifest["audio"]["hidden_size"]),
        }
        for key, shape in shapes.items():
            if key not in tensors:
                tensors[key] = torch.randn(*shape, generator=generator)
    writer = StoreWriter(params.features.out_dir, {"fixture": "train tests"})
    writer.begin()
    writer.write(0, tensors)
    writer.finish([sorted(tensors)])


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("train_workspace")
    params = _params(root)
    records = _records()
    for task in ("ave", "avqa", "avcap"):
        for split in ("train", "val"):
            rows = [r for r in records if r.task == task and r.split == split]
            write_jsonl(root / "data" / "avuie" / task / f"{split}.jsonl", rows)
    _write_quarantine_report(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        result = base_models(params)
    _write_features(params, records, result.manifest)
    return Workspace(root, params, records)


@pytest.fixture
def stage_dir(workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder linked to the shared inputs; the test runs inside it."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "avuie").symlink_to(workspace.root / "data" / "avuie")
    (tmp_path / "reports").symlink_to(workspace.root / "reports")
    monkeypatch.chdir(tmp_path)
    return tmp_path
