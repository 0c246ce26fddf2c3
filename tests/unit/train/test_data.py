"""Training data: prompt / target encoding, quarantine, features, and the resumable batch order."""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from crab.avuie.arig import ArigLabel
from crab.avuie.arig import format_answer as format_arig_answer
from crab.avuie.avs import AvsLabel
from crab.avuie.avs import format_answer as format_avs_answer
from crab.avuie.schema import AvuieRecord
from crab.errors import DataError
from crab.features.store import FeatureStore, FeatureStoreError, StoreWriter, audio_key, image_key
from crab.models.collator import IGNORE_INDEX, collate
from crab.models.tokenizer import build_prompt
from crab.train.data import (
    AvuieDataset,
    ResumableBatchSampler,
    answer_forms,
    encode_prompt,
    direct_record,
    encode_target,
    feature_statistics,
    load_records,
    plain_target,
    training_dataset,
)
from crab.tasks import TASKS, Task
from crab.train.pretrain import build_crab_model

QUARANTINED_ID = "ave/train/av004"
NUM_FRAMES, NUM_CLIPS = 2, 2  # as in conftest.py


@pytest.fixture(scope="module")
def model_and_tokenizer(workspace: Any) -> tuple[Any, Any]:
    return build_crab_model(workspace.params.base_models.out_dir, "tiny", seed=0)


def test_prompt_is_the_chat_template_and_target_ends_with_eos(model_and_tokenizer: tuple[Any, Any]) -> None:
    _, tokenizer = model_and_tokenizer
    instruction = "This is a video:\n<video_start><video><video_end>\nPlease describe this video."
    prompt = encode_prompt(tokenizer, instruction)
    assert prompt[0] == tokenizer.bos_token_id and prompt.count(tokenizer.bos_token_id) == 1
    assert tokenizer.decode(prompt) == build_prompt(tokenizer, instruction)
    assert prompt.count(tokenizer.convert_tokens_to_ids("<video>")) == 1
    target = encode_target(tokenizer, "A dog barks.")
    assert target[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id not in target[:-1]
    assert tokenizer.decode(target[:-1]) == "A dog barks."


def test_examples_carry_loss_on_the_answer_only_and_expand_placeholders(
    workspace: Any, stage_dir: Path, model_and_tokenizer: tuple[Any, Any]
) -> None:
    model, tokenizer = model_and_tokenizer
    config = model.config
    dataset = training_dataset(workspace.params, ["avcap", "ave"], tokenizer, config)
    assert dataset.task_counts() == {"avcap": 4, "ave": 4}
    assert QUARANTINED_ID not in [item.record_id for item in dataset.items]

    record = next(r for r in workspace.records if r.id == dataset.items[0].record_id)
    example = dataset[0]
    answer = encode_target(tokenizer, record.target)
    assert example.input_ids[-len(answer) :] == answer
    assert example.labels == [IGNORE_INDEX] * (len(example.input_ids) - len(answer)) + answer
    assert example.input_ids.count(config.video_token_id) == NUM_FRAMES * config.num_visual_queries
    assert example.input_ids.count(config.audio_token_id) == NUM_CLIPS * config.num_audio_queries
    assert example.video_features.shape == (NUM_FRAMES, 4, config.vision_hidden_size)
    assert dataset.lengths == [len(dataset[i].input_ids) for i in range(len(dataset))]  # what group_by_length sorts

    inference = AvuieDataset([record], tokenizer, config, dataset.store, workspace.params, with_targets=False)
    assert all(label == IGNORE_INDEX for label in inference[0].labels)


def test_direct_records_ask_for_and_give_the_answer_without_reasoning(
    workspace: Any, stage_dir: Path, model_and_tokenizer: tuple[Any, Any]
) -> None:
    model, tokenizer = model_and_tokenizer
    ave = next(r for r in workspace.records if r.id == "ave/train/av001")  # Church bell, 1-4 (conftest.py)
    direct = direct_record(ave)
    assert direct.instruction == ave.instruction + " Answer directly, without the reasoning."
    assert (
        direct.target
        == plain_target(ave)
        == (
            "The audible and visible event in the video is <event> Church bell </event>, and the time range is "
            "<range> 1,4 </range>."
        )
    )
    assert not direct.reasoning and direct.id == ave.id
    avqa = next(r for r in workspace.records if r.task == "avqa")
    assert direct_record(avqa).target == "<answer> yes </answer>"
    avcap = next(r for r in workspace.records if r.task == "avcap")
    assert direct_record(avcap) == avcap  # a caption has no reasoning to drop

    dataset = training_dataset(workspace.params, ["avcap", "ave", "avqa"], tokenizer, model.config, answers="direct")
    by_id = {r.id: direct_record(r) for r in workspace.records if r.split == "train"}
    for item in dataset.items:
        record = by_id[item.record_id]
        assert item.prompt_ids == tuple(encode_prompt(tokenizer, record.instruction))
        assert item.answer_ids == tuple(encode_target(tokenizer, record.target))
    broken = dataclasses.replace(ave, target="The bell is heard, but no tag says so.")
    with pytest.raises(DataError, match=r"ann\.txt:1.*no well-formed ave answer"):
        direct_record(broken)


def test_answer_forms_give_the_records_direct_or_both(workspace: Any) -> None:
    train = [r for r in workspace.records if r.split == "train" and r.task in ("avcap", "ave")]
    captions = [r for r in train if not r.reasoning]
    assert captions and len(captions) < len(train)
    assert answer_forms(train, "reasoning") == train
    assert answer_forms(train, "direct") == [direct_record(r) for r in train]
    both = answer_forms(train, "both")  # the records, then the direct form of each one with reasoning
    assert both == train + [direct_record(r) for r in train if r.reasoning]
    assert len(both) == 2 * len(train) - len(captions)  # a caption has one form: not trained twice
    with pytest.raises(ValueError, match="'reasoning', 'direct' or 'both'"):
        answer_forms(train, "plain")  # type: ignore[arg-type]


def test_repeat_copies_a_tasks_records_in_every_answer_form(
    workspace: Any, stage_dir: Path, model_and_tokenizer: tuple[Any, Any]
) -> None:
    model, tokenizer = model_and_tokenizer
    once = training_dataset(workspace.params, ["avcap", "ave"], tokenizer, model.config, answers="both")
    thrice = training_dataset(
        workspace.params, ["avcap", "ave"], tokenizer, model.config, answers="both", repeat={"ave": 3}
    )
    assert once.task_counts() == {"avcap": 4, "ave": 8}  # 4 captions (one form), 4 AVE records in two forms
    assert thrice.task_counts() == {"avcap": 4, "ave": 24}
    ids = Counter(item.record_id for item in thrice.items if item.record_id.startswith("ave/"))
    assert len(ids) == 4 and set(ids.values()) == {6}  # each AVE record: 3 copies x (reasoning, direct)
    copies = [item for item in thrice.items if item.record_id == "ave/train/av001"]
    assert len({item.answer_ids for item in copies}) == 2  # the copies keep both targets, none lost


def test_feature_statistics_count_each_media_item_once(
    workspace: Any, stage_dir: Path, model_and_tokenizer: tuple[Any, Any]
) -> None:
    model, tokenizer = model_and_tokenizer
    dataset = training_dataset(workspace.params, ["avqa"], tokenizer, model.config)  # 4 questions on 2 videos
    stats = feature_statistics(dataset)
    keys = sorted({item.video_key for item in dataset.items})
    assert len(keys) == 2
    tokens = torch.cat([dataset.store.video(k).flatten(0, 1) for k in keys])  # (2 * T * P, D)
    torch.testing.assert_close(stats["video"][0], tokens.mean(0))
    torch.testing.assert_close(stats["video"][1], tokens.std(0, correction=0))
    assert stats["audio"][0].shape == (model.config.audio_hidden_size,)


def test_questions_on_one_video_share_its_features(
    workspace: Any, stage_dir: Path, model_and_tokenizer: tuple[Any, Any]
) -> None:
    model, tokenizer = model_and_tokenizer
    dataset = training_dataset(workspace.params, ["avqa"], tokenizer, model.config)
    keys = [item.video_key for item in dataset.items]
    assert len(keys) == 4 and len(set(keys)) == 2
    assert all(item.audio_key.startswith("audio/windows") for item in dataset.items)  # AVQA's audio cutting


def test_quarantine_removes_records_and_an_emptied_task_is_an_error(workspace: Any) -> None:
    avuie = workspace.root / "data" / "avuie"
    records = load_records(avuie, ["ave"], "train", set())
    assert len(records) == 5
    kept = load_records(avuie, ["ave"], "train", {QUARANTINED_ID})
    assert [r.id for r in kept] == [r.id for r in records if r.id != QUARANTINED_ID]
    with pytest.raises(DataError, match="no train records left for task 'ave'"):
        load_records(avuie, ["ave"], "train", {r.id for r in records})
    with pytest.raises(DataError, match="file not found"):
        load_records(avuie, ["ave"], "test", set())


def test_missing_or_misshapen_features_are_named(workspace: Any, model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = model_and_tokenizer
    store = FeatureStore(workspace.params.features.out_dir)
    record = workspace.records[0]
    stray = dataclasses.replace(record, media={"video": "raw/elsewhere.mp4", "audio": record.media["audio"]})
    with pytest.raises(FeatureStoreError, match="no features for 1 media keys \\(video/raw/elsewhere.mp4\\)"):
        AvuieDataset([stray], tokenizer, model.config, store, workspace.params)
    narrow = copy.deepcopy(model.config)
    narrow.vision_hidden_size = 16
    with pytest.raises(FeatureStoreError, match="expected \\(segments, tokens, 16\\)"):
        AvuieDataset([record], tokenizer, narrow, store, workspace.params)


def test_each_epoch_is_a_permutation_drawn_from_seed_and_epoch_only() -> None:
    sampler = ResumableBatchSampler(10, 3, seed=7)
    assert sampler.batches_per_epoch == 4
    epochs = [[i for b in range(4) for i in sampler.batch(e * 4 + b)] for e in range(3)]
    assert all(sorted(order) == list(range(10)) for order in epochs)
    assert [len(sampler.batch(b)) for b in range(4)] == [3, 3, 3, 1]
    assert epochs[0] != epochs[1] != epochs[2]

    fresh = ResumableBatchSampler(10, 3, seed=7)  # a resumed run starts at any position with the same batches
    assert [fresh.batch(p) for p in (9, 2, 5)] == [sampler.batch(p) for p in (9, 2, 5)]
    assert ResumableBatchSampler(10, 3, seed=8).batch(0) != sampler.batch(0)
    assert sampler.epoch_at(6) == 1.5


def test_replicas_split_every_global_batch() -> None:
    ranks = [ResumableBatchSampler(7, 2, seed=0, num_replicas=2, rank=r) for r in range(2)]
    assert ranks[0].batches_per_epoch == 2
    seen = [i for p in range(2) for s in ranks for i in s.batch(p)]
    assert len(seen) == 8 and set(seen) == set(range(7))  # padded by wrap-around to full slices
    assert set(ranks[0].batch(0)).isdisjoint(ranks[1].batch(0))
    np.testing.assert_array_equal(ranks[0].epoch_order(0), ranks[1].epoch_order(0))
    with pytest.raises(ValueError, match="rank 2 outside"):
        ResumableBatchSampler(7, 2, seed=0, num_replicas=2, rank=2)


def _padded_tokens(sampler: ResumableBatchSampler, lengths: np.ndarray, num_batches: int) -> int:
    return sum(int(lengths[sampler.batch(p)].max()) * len(sampler.batch(p)) for p in range(num_batches))


def test_length_grouped_batches_keep_each_epoch_a_permutation_and_cut_the_padding() -> None:
    lengths = np.random.default_rng(0).choice([20, 60, 350], size=1001)  # AVQA-, AVE-, AVVP-like answers
    plain = ResumableBatchSampler(1001, 8, seed=3)
    grouped = ResumableBatchSampler(1001, 8, seed=3, lengths=lengths.tolist())
    per_epoch = grouped.batches_per_epoch  # 126: the last batch holds one example
    for epoch in range(2):
        order = [i for b in range(per_epoch) for i in grouped.batch(epoch * per_epoch + b)]
        assert sorted(order) == list(range(1001))
    assert len(grouped.batch(per_epoch - 1)) == 1  # the smaller last batch stays last
    assert _padded_tokens(plain, lengths, per_epoch) > 1.5 * lengths.sum()  # random batches: mostly padding
    assert _padded_tokens(grouped, lengths, per_epoch) < 1.15 * lengths.sum()  # 2 mixed batches per group of 16
    maxima = [int(lengths[grouped.batch(p)].max()) for p in range(16)]  # one group's worth of batches
    assert maxima != sorted(maxima, reverse=True)  # the batches are shuffled, not served longest first
    fresh = ResumableBatchSampler(1001, 8, seed=3, lengths=lengths.tolist())  # resumable: same batches anywhere
    assert [fresh.batch(p) for p in (200, 3, 127)] == [grouped.batch(p) for p in (200, 3, 127)]

    ranks = [
        ResumableBatchSampler(7, 2, seed=0, lengths=[5, 1, 9, 3, 7, 2, 8], num_replicas=2, rank=r) for r in range(2)
    ]
    seen = [i for p in range(ranks[0].batches_per_epoch) for s in ranks for i in s.batch(p)]
    assert len(seen) == 8 and set(seen) == set(range(7))
    with pytest.raises(ValueError, match="3 lengths for 7 examples"):
        ResumableBatchSampler(7, 2, seed=0, lengths=[1, 2, 3])


def test_direct_record_of_a_mask_task_keeps_the_labelled_second_and_the_mask_block() -> None:
    # A parsed AVS answer holds only the objects; the direct answer needs the label's frame for its "{nth}" second.
    label = AvsLabel(frame=2, mask="gt/v1_3.png", objects=("dog",))
    record = AvuieRecord(
        id="s4/train/v1_3", task="s4", split="train", dataset="avsbench", item_id="v1_3", source="s4/train.jsonl",
        video_id="v1", media={"video": "frames/v1", "audio": "v1.wav"}, instruction="Which object sounds?",
        target=format_avs_answer(label, "A dog barks on the left, a cat sits silently."), reasoning=True,
        label=label.to_dict(),
    )  # fmt: skip
    direct = direct_record(record)
    assert direct.target == format_avs_answer(label, None)
    assert "third second" in direct.target and direct.target.endswith(
        "<mask_start><mask_0><mask_1><mask_2><mask_3><mask_4><mask_5><mask_end>."
    )
    assert not direct.reasoning


def test_arig_examples_carry_the_image_features_through_the_model(
    workspace: Any, tmp_path: Path, model_and_tokenizer: tuple[Any, Any]
) -> None:
    # ARIG: one frame as <image> (P, Dv) and the clip's audio; no <video>.
    model, tokenizer = model_and_tokenizer
    config, params = model.config, workspace.params
    record = AvuieRecord(
        id="arig/train/v_1", task="arig", split="train", dataset="avsbench", item_id="v_1", source="meta.csv:1",
        video_id="v", media={"image": "frames/v_1.png", "audio": "v.wav"}, instruction=TASKS[Task.ARIG].instruction(),
        target=format_arig_answer(ArigLabel(10, 20, 60, 90), "A dog barks."), reasoning=True,
        label={**ArigLabel(10, 20, 60, 90).to_dict(), "object": "dog_barking", "frame": 0, "mask": "gt/v_1.png"},
    )  # fmt: skip
    num_patches = 4
    generator = torch.Generator().manual_seed(3)
    tensors = {
        image_key(record): torch.randn(num_patches, config.vision_hidden_size, generator=generator),
        audio_key(record, params): torch.randn(5, 6, config.audio_hidden_size, generator=generator),
    }
    writer = StoreWriter(tmp_path / "store", {"fixture": "arig"})
    writer.begin()
    writer.write(0, tensors)
    writer.finish([sorted(tensors)])
    dataset = AvuieDataset([record], tokenizer, config, FeatureStore(tmp_path / "store"), params)
    example = dataset[0]
    assert example.video_features is None and torch.equal(example.image_features, tensors[image_key(record)])
    assert example.input_ids.count(config.image_token_id) == config.num_visual_queries
    assert example.input_ids.count(config.video_token_id) == 0
    batch = collate([example, example], pad_token_id=tokenizer.pad_token_id)
    assert batch["image_features"].shape == (2, num_patches, config.vision_hidden_size)
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    wrong = {**tensors, image_key(record): torch.randn(1, num_patches, config.vision_hidden_size)}
    writer = StoreWriter(tmp_path / "bad", {"fixture": "arig"})
    writer.begin()
    writer.write(0, wrong)
    writer.finish([sorted(wrong)])
    with pytest.raises(FeatureStoreError, match=r"expected \(tokens, "):
        AvuieDataset([record], tokenizer, config, FeatureStore(tmp_path / "bad"), params)
