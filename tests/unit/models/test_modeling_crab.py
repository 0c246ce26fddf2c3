"""Crab model: placeholder merge, loss, left padding, batched generation, save/load, paper-size counts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig

from crab.models.collator import build_example, collate
from crab.models.configuration_crab import CrabConfig, crab_llama2_7b_config, crab_tiny_config
from crab.models.modeling_crab import CrabForConditionalGeneration, parameter_counts, set_trainable

VIDEO, AUDIO, IMAGE = 5, 6, 7
PAD, BOS, EOS = 0, 1, 2
VOCAB = 96
WIDTH = 64  # tiny vision / audio feature width
logger = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def config() -> CrabConfig:
    return crab_tiny_config(
        VOCAB,
        video_token_id=VIDEO,
        audio_token_id=AUDIO,
        image_token_id=IMAGE,
        bos_token_id=BOS,
        eos_token_id=EOS,
        num_queries=8,
    )


@pytest.fixture(scope="module")
def model(config: CrabConfig) -> CrabForConditionalGeneration:
    torch.manual_seed(0)
    return CrabForConditionalGeneration(config).eval()


def _features(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _samples(config: CrabConfig, with_answers: bool = True) -> list:
    """Three prompts of different lengths: video+audio, audio only (other clip count and length), image."""
    answer = [40, 41, EOS] if with_answers else []
    return [
        build_example(
            [BOS, 20, VIDEO, 21, AUDIO, 22],
            answer,
            config,
            video_features=_features(1, 2, 4, WIDTH),
            audio_features=_features(2, 3, 5, WIDTH),
        ),
        build_example([BOS, 23, 24, 25, AUDIO, 26, 27], answer, config, audio_features=_features(3, 2, 7, WIDTH)),
        build_example([BOS, IMAGE, 28], answer, config, image_features=_features(4, 4, WIDTH)),
    ]


def test_forward_shapes_loss_and_gradients_reach_projectors(
    model: CrabForConditionalGeneration, config: CrabConfig
) -> None:
    batch = collate(_samples(config), pad_token_id=PAD)
    assert isinstance(batch["audio_features"], list)  # ragged audio takes the list path
    out = model(**batch)
    assert out.logits.shape == (*batch["input_ids"].shape, VOCAB)
    assert torch.isfinite(out.loss)
    expected = F.cross_entropy(out.logits[:, :-1].reshape(-1, VOCAB), batch["labels"][:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, expected)  # shifted CE over labels != -100
    out.loss.backward()
    for name in ("visual_projector", "audio_projector"):
        grad = getattr(model, name).query_tokens.grad
        assert grad is not None and grad.abs().sum() > 0, name
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"video_features": _features(0, 1, 2, 4, WIDTH)},
            "video placeholders: 8 tokens in input_ids, 16 feature tokens",
        ),
        ({}, "video placeholders: 8 tokens in input_ids, 0 feature tokens"),
        (
            {"video_features": _features(0, 1, 1, 4, WIDTH), "image_features": _features(0, 1, 4, WIDTH)},
            "image placeholders: 0 tokens in input_ids, 8 feature tokens",
        ),
    ],
)
def test_placeholder_count_mismatch_names_both_numbers(
    model: CrabForConditionalGeneration, kwargs: dict, message: str
) -> None:
    input_ids = torch.tensor([[BOS] + [VIDEO] * 8 + [20]])
    with pytest.raises(ValueError, match=message):
        model(input_ids=input_ids, **kwargs)


def test_features_replace_exactly_the_placeholders(model: CrabForConditionalGeneration) -> None:
    input_ids = torch.tensor([[BOS, 20] + [VIDEO] * 16 + [21, 22]])
    video = _features(5, 1, 2, 4, WIDTH)
    with torch.no_grad():
        embeds = model.embed_inputs(input_ids, video_features=video)
        text = model.get_input_embeddings()(input_ids)
        projected = model.visual_projector(video[0])  # (T, Q, H), frame-major
    is_video = input_ids[0] == VIDEO
    torch.testing.assert_close(embeds[0, ~is_video], text[0, ~is_video], rtol=0, atol=0)
    torch.testing.assert_close(embeds[0, is_video], projected.flatten(0, 1), rtol=0, atol=0)


def test_image_is_a_one_frame_video_and_lists_equal_stacks(model: CrabForConditionalGeneration) -> None:
    image = _features(6, 2, 4, WIDTH)  # two images
    audio = [_features(7, 2, 5, WIDTH), _features(8, 1, 7, WIDTH), _features(9, 3, 5, WIDTH)]  # ragged N
    ids_image = torch.tensor([[IMAGE] * 8 + [20], [21] + [IMAGE] * 8])
    ids_video = torch.where(ids_image == IMAGE, VIDEO, ids_image)
    ids_audio = torch.tensor([[AUDIO] * 16 + [20] + [AUDIO] * 8 + [AUDIO] * 24])
    with torch.no_grad():
        as_image = model.embed_inputs(ids_image, image_features=image)
        as_video = model.embed_inputs(ids_video, video_features=image.unsqueeze(1))
        as_list = model.embed_inputs(ids_audio, audio_features=audio)
        per_item = [model.audio_projector(a).flatten(0, 1) for a in audio]
    torch.testing.assert_close(as_image, as_video, rtol=0, atol=0)
    is_audio = ids_audio[0] == AUDIO
    torch.testing.assert_close(as_list[0, is_audio], torch.cat(per_item), rtol=1e-6, atol=1e-6)


def test_left_padding_leaves_real_positions_unchanged(model: CrabForConditionalGeneration, config: CrabConfig) -> None:
    samples = _samples(config)
    batch = collate(samples, pad_token_id=PAD)
    with torch.no_grad():
        padded = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        for row, sample in enumerate(samples):
            alone = collate([sample], pad_token_id=PAD)
            single = model(**{k: v for k, v in alone.items() if k != "labels"}).logits[0]
            real = batch["attention_mask"][row].bool()
            assert int(real.sum()) < padded.shape[1] or row == 0  # the other rows are really padded
            torch.testing.assert_close(padded[row, real], single, rtol=0, atol=1e-5)


def test_batched_greedy_generation_equals_per_sample(model: CrabForConditionalGeneration, config: CrabConfig) -> None:
    samples = _samples(config, with_answers=False)
    batch = collate(samples, pad_token_id=PAD)
    del batch["labels"]
    prompt_len = batch["input_ids"].shape[1]
    new = model.generate(**batch, max_new_tokens=8, do_sample=False)[:, prompt_len:]
    del batch["position_ids"]  # transformers must derive the same positions from the attention mask
    assert torch.equal(model.generate(**batch, max_new_tokens=8, do_sample=False)[:, prompt_len:], new)
    for row, sample in enumerate(samples):
        alone = collate([sample], pad_token_id=PAD)
        del alone["labels"]
        single = model.generate(**alone, max_new_tokens=8, do_sample=False)[0, len(sample.input_ids) :]
        assert single.numel() > 0
        assert new[row, : single.numel()].tolist() == single.tolist(), row
        assert set(new[row, single.numel() :].tolist()) <= {EOS}  # finished early on EOS, then padded with EOS


def test_save_load_round_trip_gives_identical_logits(
    model: CrabForConditionalGeneration, config: CrabConfig, tmp_path: Path
) -> None:
    batch = collate(_samples(config), pad_token_id=PAD)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    reloaded = CrabForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert _without_dtype(reloaded.config.to_dict()) == _without_dtype(model.config.to_dict())
    with torch.no_grad():
        before = model(**batch).logits
        after = reloaded(**batch).logits
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_auto_config_reads_a_crab_folder(config: CrabConfig, tmp_path: Path) -> None:
    # AutoTokenizer reads a model folder's config through AutoConfig: unregistered, it fell back to a bare config
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path, local_files_only=True)
    assert type(loaded) is CrabConfig
    assert _without_dtype(loaded.to_dict()) == _without_dtype(config.to_dict())


def _without_dtype(config_dict: dict) -> dict:
    """A config dict without the entries that ``from_pretrained`` fills in (dtype, source path)."""
    return {
        k: _without_dtype(v) if isinstance(v, dict) else v
        for k, v in config_dict.items()
        if k not in ("dtype", "_name_or_path")
    }


def test_set_trainable_by_component(config: CrabConfig) -> None:
    torch.manual_seed(0)
    fresh = CrabForConditionalGeneration(config)
    totals = parameter_counts(fresh)
    counts = set_trainable(fresh, llm="frozen", projectors=True)
    assert counts == {
        "visual_projector": totals["visual_projector"],
        "audio_projector": totals["audio_projector"],
        "language_model": 0,
    }
    counts = set_trainable(fresh, llm="full", projectors=False)
    assert counts == {"visual_projector": 0, "audio_projector": 0, "language_model": totals["language_model"]}
    with pytest.raises(ValueError, match="llm must be"):
        set_trainable(fresh, llm="lora", projectors=True)  # type: ignore[arg-type]


def test_paper_config_parameter_counts_on_meta() -> None:
    with torch.device("meta"):
        paper = CrabForConditionalGeneration(crab_llama2_7b_config())
    counts = parameter_counts(paper)
    assert paper.get_input_embeddings().padding_idx is None  # EOS (Crab's pad) must stay trainable
    logger.info("paper-scale parameters: %s", counts)
    mlp = (768 * 4096 + 4096) + (4096 * 4096 + 4096)  # Linear(768, 4096) - GELU - Linear(4096, 4096)
    assert mlp == 19_931_136
    llama2_7b = 6_738_415_616  # Llama-2-7B with its 32000-token vocabulary
    assert counts["language_model"] == llama2_7b + 2 * 17 * 4096  # + 17 added rows in embeddings and LM head
    # Pinned: LayerNorm(1024) + 32 queries + 2-layer Q-Former (768, cross-attention from 1024 each layer) + MLP.
    assert counts == {"visual_projector": 39_649_280, "audio_projector": 38_862_336, "language_model": 6_738_554_880}
    qformer = sum(p.numel() for p in paper.visual_projector.qformer.parameters())
    assert counts["visual_projector"] == 2 * 1024 + 32 * 768 + qformer + mlp
