"""Segmentation pre-training (``pretrain.segmentation``, crab-reference 3.4) and its use by ``finetune_avs``."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import NUM_PATCHES
from PIL import Image
from safetensors.torch import load_file

from crab.avuie.schema import AvuieRecord, write_jsonl
from crab.avuie.seg import SegLabel, format_answer
from crab.config import Params, PretrainSegmentationConfig, SegLossConfig
from crab.errors import CrabError
from crab.features.store import FeatureStore, StoreWriter, image_key, levels_key
from crab.models.mask_decoder import CrabMaskDecoder, CrabMaskDecoderConfig
from crab.tasks import TASKS, Task
from crab.train.finetune_avs import add_mask_decoder, profile_decoder_config, with_mask_decoder
from crab.train.pretrain import load_pretrained, pretrain
from crab.train.seg_pretrain import DECODER_DIRNAME, load_pretrained_decoder


def _seg_records(root: Path) -> list[AvuieRecord]:
    records = []
    for index in range(6):
        mask = root / f"lvis/binary_mask/{index}.png"
        mask.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.zeros((32, 32), dtype=np.uint8)
        pixels[2 + 4 * index : 14 + 4 * index, 4:20] = 255
        Image.fromarray(pixels).save(mask)
        label = SegLabel(mask=mask.as_posix(), name=["dog", "cat"][index % 2], definition="an animal")
        records.append(AvuieRecord(
            id=f"seg/train/{index}", task="seg", split="train", dataset="lvis", item_id=str(index),
            source=f"train_samples.json[{index}]", video_id=str(index), media={"image": f"lvis/train2017/{index}.jpg"},
            instruction=TASKS[Task.SEG].instruction(name=label.name, definition=label.definition),
            target=format_answer(label, None), reasoning=False, label=label.to_dict(),
        ))  # fmt: skip
    return records


@pytest.fixture
def seg_params(workspace: Any, stage_dir: Path) -> Params:
    """The workspace's params with a segmentation phase on six SEG records (and their image / level features)."""
    params = workspace.params
    avuie = stage_dir / "data" / "avuie"
    avuie.unlink()  # the shared symlink: this test adds a task
    shutil.copytree(workspace.root / "data" / "avuie", avuie)
    records = _seg_records(stage_dir)
    write_jsonl(avuie / "seg" / "train.jsonl", records)
    shared = FeatureStore(params.features.out_dir)
    tensors = {key: shared.get(key) for key in shared.keys()}
    manifest = json.loads((workspace.root / "models/base/manifest.json").read_text())
    width = manifest["vision"]["hidden_size"]
    generator = torch.Generator().manual_seed(3)
    for record in records:
        tensors[image_key(record)] = torch.randn(NUM_PATCHES, width, generator=generator)  # (P, Dv)
        tensors[levels_key(record)] = torch.randn(1, 2, NUM_PATCHES, width, generator=generator)  # (1, L, P, Dv)
    store = stage_dir / "data" / "features"
    writer = StoreWriter(store, {"fixture": "seg_pretrain tests"})
    writer.begin()
    writer.write(0, tensors)
    writer.finish([sorted(tensors)])
    seg_optim = dataclasses.replace(params.pretrain.optim, epochs=8.0, batch_size=3, lr=3e-3, save_every_steps=5)
    loss = SegLossConfig(lm=0.0, bce=1.0, dice=1.0, ce=1.0)
    segmentation = PretrainSegmentationConfig(tasks=["seg"], loss=loss, optim=seg_optim)
    pretrain_cfg = dataclasses.replace(
        params.pretrain, segmentation=segmentation, optim=dataclasses.replace(params.pretrain.optim, epochs=1.0)
    )
    return dataclasses.replace(
        params, features=dataclasses.replace(params.features, out_dir=str(store)), pretrain=pretrain_cfg
    )


def test_segmentation_phase_trains_a_decoder_beside_the_unchanged_aligned_model(
    seg_params: Params, stage_dir: Path
) -> None:
    pretrain(seg_params)
    out = stage_dir / "models/pretrain"
    decoder_weights = load_file(str(out / DECODER_DIRNAME / "model.safetensors"))
    summary = json.loads((out / "train_summary.json").read_text())
    phase = summary["segmentation"]
    decoder = CrabMaskDecoder(CrabMaskDecoderConfig.from_pretrained(out / DECODER_DIRNAME))
    assert set(decoder.state_dict()) == set(decoder_weights)  # parameters and buffers
    assert phase["num_examples"] == {"seg": 6}
    assert phase["trainable"] == {"mask_decoder": sum(p.numel() for p in decoder.parameters())}
    assert (stage_dir / "models/pretrain_log/segmentation").is_dir()  # the phase's dvclive log
    losses = phase["loss_history"]
    assert len(losses) == phase["num_steps"] == 16 and losses[-1] < 0.9 * losses[0], losses

    # the saved Crab is the aligned model alone: the same as a run without the phase
    aligned = load_file(str(out / "model.safetensors"))
    shutil.rmtree(out)
    pretrain(dataclasses.replace(seg_params, pretrain=dataclasses.replace(seg_params.pretrain, segmentation=None)))
    assert not (out / DECODER_DIRNAME).exists()
    plain = load_file(str(out / "model.safetensors"))
    assert set(aligned) == set(plain) and all(torch.equal(aligned[k], plain[k]) for k in plain)


def test_segmentation_stages_start_from_the_pretrained_decoder(seg_params: Params, stage_dir: Path) -> None:
    pretrain(seg_params)
    saved = load_file(str(stage_dir / "models/pretrain" / DECODER_DIRNAME / "model.safetensors"))
    base, tokenizer = load_pretrained(seg_params.pretrain.out_dir)
    model = with_mask_decoder(seg_params, base, tokenizer, "finetune_avs")  # what finetune_avs trains
    assert all(torch.equal(model.mask_decoder.state_dict()[k], v) for k, v in saved.items())

    head = profile_decoder_config(seg_params, base.config, num_classes=71)  # AVSS: the head keeps its init
    avss = add_mask_decoder(base, tokenizer, head, seed=5)
    init = {k: v.clone() for k, v in avss.mask_decoder.state_dict().items()}
    left = load_pretrained_decoder(avss, seg_params.pretrain.out_dir)
    assert left == ["classifier.weight"]
    assert torch.equal(avss.mask_decoder.classifier.weight, init["classifier.weight"])
    assert all(torch.equal(avss.mask_decoder.state_dict()[k], saved[k]) for k in saved if k != "classifier.weight")

    # a factorized class head: its sounding channel takes the binary head's row, the class rows (and the class
    # logits of the pixels' embeddings, new) keep their init
    factorized = CrabMaskDecoderConfig.from_dict({**head.to_dict(), "class_head": "factorized"})
    avss = add_mask_decoder(base, tokenizer, factorized, seed=5)
    init = avss.mask_decoder.classifier.weight.detach().clone()  # (71, E)
    left = load_pretrained_decoder(avss, seg_params.pretrain.out_dir)
    assert left == ["appearance_classifier.bias", "appearance_classifier.weight"]
    classifier = avss.mask_decoder.classifier.weight
    assert torch.equal(classifier[0], saved["classifier.weight"][0]) and torch.equal(classifier[1:], init[1:])

    wider = CrabMaskDecoderConfig.from_dict({**head.to_dict(), "num_classes": 1, "hidden_size": 2 * head.hidden_size})
    other = add_mask_decoder(base, tokenizer, wider, seed=5)
    with pytest.raises(CrabError, match=r"other sizes .*'hidden_size'"):
        load_pretrained_decoder(other, seg_params.pretrain.out_dir)
    no_decoder = stage_dir / "models/none"
    no_decoder.mkdir(parents=True)
    assert load_pretrained_decoder(other, no_decoder) == sorted(other.mask_decoder.state_dict())
