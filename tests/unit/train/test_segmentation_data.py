"""The segmentation data path and objective: S4 records -> examples with the labelled frame's CLIP levels and
its mask -> collated batch -> LM + mask loss that training lowers.

Uses the train workspace's real tiny tokenizer (Crab's 17 tokens included) and a feature store written here with
the store's own writer: video (5 frames), audio (5 one-second clips) and levels (5 frames x 2 levels) of one
AVSBench clip, plus a 56 px mask PNG that the dataset resizes (nearest) to the decoder's 112 px.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import Workspace
from PIL import Image

from crab.avuie.avs import AvsLabel, format_answer
from crab.avuie.schema import AvuieRecord
from crab.datasets.media import read_binary_mask
from crab.errors import DataError
from crab.features.store import FeatureStore, FeatureStoreError, StoreWriter, audio_key, levels_key, video_key
from crab.models.base import BaseModelPaths, load_tokenizer
from crab.models.collator import collate
from crab.models.configuration_crab import crab_tiny_config
from crab.models.modeling_crab import CrabForConditionalGeneration
from crab.tasks import TASKS, Task
from crab.train.data import AvuieDataset
from crab.config import ConfigError, SegLossConfig
from crab.train.segmentation import segmentation_step

WIDTH, PATCHES, FRAMES, LEVELS, SIZE = 64, 49, 5, 2, 112
FOLDER, WAV = "raw/avs/frames/v1", "raw/avs/v1.wav"


def _records(mask: Path) -> list[AvuieRecord]:
    out = []
    for frame, objects in ((0, ("dog_barking",)), (3, ())):
        label = AvsLabel(frame=frame, mask=mask.as_posix(), objects=objects)
        out.append(AvuieRecord(
            id=f"s4/train/v1_{frame + 1}", task="s4", split="train", dataset="avsbench", item_id=f"v1_{frame + 1}",
            source="s4_meta_data.csv:2", video_id="v1", media={"video": FOLDER, "audio": WAV},
            instruction=TASKS[Task.S4].instruction(nth=["first", "fourth"][frame > 0]),
            target=format_answer(label, "A dog barks on the left."), reasoning=True, label=label.to_dict(),
        ))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def setup(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("segmentation")
    mask = root / "v1_1.png"
    pixels = np.zeros((56, 56), dtype=np.uint8)
    pixels[10:30, 5:20] = 255
    Image.fromarray(pixels).save(mask)
    records = _records(mask)
    params = dataclasses.replace(
        workspace.params, features=dataclasses.replace(workspace.params.features, out_dir=str(root / "features"))
    )
    generator = torch.Generator().manual_seed(0)
    tensors = {
        video_key(records[0]): torch.randn(FRAMES, PATCHES, WIDTH, generator=generator),
        audio_key(records[0], params): torch.randn(FRAMES, 48, WIDTH, generator=generator),
        levels_key(records[0]): torch.randn(FRAMES, LEVELS, PATCHES, WIDTH, generator=generator),
    }
    writer = StoreWriter(params.features.out_dir, {"fixture": "segmentation tests"})
    writer.begin()
    writer.write(0, tensors)
    writer.finish([sorted(tensors)])
    tokenizer = load_tokenizer(BaseModelPaths.of(workspace.root / "models" / "base").tokenizer)
    ids = {name: tokenizer.convert_tokens_to_ids(f"<{name}>") for name in ("video", "audio", "image")}
    config = crab_tiny_config(
        len(tokenizer), video_token_id=ids["video"], audio_token_id=ids["audio"], image_token_id=ids["image"],
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, vision_hidden_size=WIDTH,
        audio_hidden_size=WIDTH, use_mask_decoder=True,
        mask_token_ids=[tokenizer.convert_tokens_to_ids(f"<mask_{i}>") for i in range(6)],
    )  # fmt: skip
    store = FeatureStore(params.features.out_dir)
    return records, tokenizer, config, store, params, mask


def test_examples_carry_the_labelled_frames_levels_and_mask(setup) -> None:
    records, tokenizer, config, store, params, mask = setup
    dataset = AvuieDataset(records, tokenizer, config, store, params, with_masks=True)
    first, fourth = dataset[0], dataset[1]
    levels = store.levels(levels_key(records[0]))  # (T, L, P, D)
    assert first.mask_features.shape == (LEVELS, 1, PATCHES, WIDTH)
    torch.testing.assert_close(first.mask_features[:, 0], levels[0], rtol=0, atol=0)
    torch.testing.assert_close(fourth.mask_features[:, 0], levels[3], rtol=0, atol=0)
    assert first.mask_targets.shape == (1, SIZE, SIZE) and first.mask_targets.dtype == torch.float32
    expected = np.kron(np.asarray(Image.open(mask)) > 0, np.ones((2, 2), dtype=bool))  # 56 -> 112 px, nearest
    assert np.array_equal(first.mask_targets[0].numpy().astype(bool), expected)
    assert first.video_features.shape == (FRAMES, PATCHES, WIDTH) and first.audio_features.shape[0] == FRAMES
    # as text (Crab's joint fine-tuning): no decoder inputs
    assert AvuieDataset(records, tokenizer, config, store, params)[0].mask_features is None


def test_with_masks_needs_a_decoder_and_the_levels_in_the_store(setup) -> None:
    records, tokenizer, config, store, params, _ = setup
    with pytest.raises(ValueError, match="needs a model with a mask decoder"):
        AvuieDataset(
            records, tokenizer, dataclasses.replace(config, mask_decoder_config=None), store, params, with_masks=True
        )
    moved = [dataclasses.replace(r, media={"video": "raw/elsewhere", "audio": WAV}) for r in records]
    with pytest.raises(FeatureStoreError, match="no features for .*levels/raw/elsewhere"):
        AvuieDataset(moved, tokenizer, config, store, params, with_masks=True)


def test_collate_gives_the_models_mask_layout(setup) -> None:
    records, tokenizer, config, store, params, _ = setup
    dataset = AvuieDataset(records, tokenizer, config, store, params, with_masks=True)
    batch = collate([dataset[0], dataset[1]], pad_token_id=tokenizer.pad_token_id)
    assert [tuple(level.shape) for level in batch["mask_features"]] == [(2, 1, PATCHES, WIDTH)] * LEVELS
    assert batch["mask_targets"].shape == (2, 1, SIZE, SIZE)
    torch.testing.assert_close(batch["mask_features"][1][1, 0], dataset[1].mask_features[1, 0], rtol=0, atol=0)


def test_segmentation_step_combines_the_losses_and_training_lowers_the_mask_loss(setup) -> None:
    records, tokenizer, config, store, params, _ = setup
    dataset = AvuieDataset(records, tokenizer, config, store, params, with_masks=True)
    batch = collate([dataset[0], dataset[1]], pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = CrabForConditionalGeneration(config).train()
    weights = SegLossConfig(lm=0.5, bce=1.0, dice=0.5, ce=1.0)
    step = segmentation_step(model, batch, weights)
    torch.testing.assert_close(step.loss, 0.5 * step.lm_loss + step.mask.bce + 0.5 * step.mask.dice)
    assert (step.mask.num_samples, step.mask.num_frames) == (2, 2)
    decoder = [p for n, p in model.named_parameters() if n.startswith("mask_decoder.")]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in decoder:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(decoder, lr=3e-3)
    first = float(step.mask.loss.detach())
    for _ in range(15):
        loss = segmentation_step(model, batch, weights).mask.loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    last = float(segmentation_step(model, batch, weights).mask.loss.detach())
    assert last < 0.7 * first, (first, last)
    with pytest.raises(ValueError, match="needs mask_features and mask_targets"):
        segmentation_step(model, {k: v for k, v in batch.items() if k != "mask_targets"}, weights)
    with pytest.raises(ConfigError, match="lm"):
        SegLossConfig(lm=-1.0, bce=1.0, dice=1.0, ce=1.0)


def test_read_binary_mask(tmp_path: Path) -> None:
    grey = np.array([[0, 1], [128, 255]], dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "m.png")
    assert read_binary_mask(tmp_path / "m.png").tolist() == [[False, True], [True, True]]  # gray > 0, as Crab
    assert read_binary_mask(tmp_path / "m.png", 4).shape == (4, 4)
    with pytest.raises(DataError, match="gone.png: file not found"):
        read_binary_mask(tmp_path / "gone.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png: not an image"):
        read_binary_mask(tmp_path / "bad.png")
