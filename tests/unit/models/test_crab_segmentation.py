"""Crab with the optional mask decoder: config checks, forward, mask-token positions, gradients, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from crab.models.configuration_crab import CrabConfig, crab_llama2_7b_config, crab_tiny_config
from crab.models.mask_decoder import CrabMaskDecoderConfig
from crab.models.modeling_crab import CrabForConditionalGeneration, parameter_counts, set_trainable

PAD, BOS, EOS = 0, 1, 2
VIDEO, AUDIO, IMAGE = 5, 6, 7
MASK_START, MASK_END = 8, 9
MASKS = [10, 11, 12, 13, 14, 15]  # <mask_0> ... <mask_5>
VOCAB = 96
WIDTH = 64  # tiny CLIP width
PATCHES = 49  # tiny CLIP: 112 px, patch 16 -> 7x7
FRAMES = 2  # frames per segmentation sample (they share the sample's prompt)
COMPONENTS = ("visual_projector", "audio_projector", "language_model")

# Left-padded batch of three rows, 20 tokens each. Row 0 (a video prompt, 2 frames x 4 queries) and row 2 hold
# the mask tokens; row 1 is a text task without them. The decoder must read the states one position before each
# <mask_i> (those predicting it): row 0 <mask_0..5> sit at 12..17, row 2 at 7..12.
ROWS = [
    [BOS] + [VIDEO] * 8 + [20, 21, MASK_START, *MASKS, MASK_END, EOS],
    [PAD] * 4 + [BOS] + list(range(22, 36)) + [EOS],
    [PAD] * 3 + [BOS, 23, 24, MASK_START, *MASKS, MASK_END, 30, 31, 32, 33, 34, EOS],
]
STATE_POSITIONS = {0: [11, 12, 13, 14, 15, 16], 2: [6, 7, 8, 9, 10, 11]}  # (row -> positions read)


def _config(**kwargs) -> CrabConfig:
    return crab_tiny_config(
        VOCAB, video_token_id=VIDEO, audio_token_id=AUDIO, image_token_id=IMAGE, bos_token_id=BOS, eos_token_id=EOS,
        vision_hidden_size=WIDTH, audio_hidden_size=WIDTH, **kwargs,
    )  # fmt: skip


def _decoder_config() -> CrabConfig:
    return _config(use_mask_decoder=True, mask_token_ids=MASKS)


def _model(config: CrabConfig, seed: int = 0) -> CrabForConditionalGeneration:
    torch.manual_seed(seed)
    return CrabForConditionalGeneration(config).eval()


@pytest.fixture(scope="module")
def model() -> CrabForConditionalGeneration:
    return _model(_decoder_config())


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _batch() -> dict[str, torch.Tensor]:
    input_ids = torch.tensor(ROWS)
    attention_mask = (input_ids != PAD).long()
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": (attention_mask.cumsum(-1) - 1).clamp(min=0),
        "video_features": _randn(1, 1, 2, PATCHES, WIDTH),  # (B_v, T, P, Dv) for row 0's <video>
    }


def _mask_features(rows: int = 2, seed: int = 2) -> list[torch.Tensor]:
    """Two levels of (rows, FRAMES, P, Dv) CLIP patch tokens."""
    return [_randn(seed + level, rows, FRAMES, PATCHES, WIDTH) for level in range(2)]


def test_the_batch_layout_matches_the_hand_listed_positions() -> None:
    input_ids = torch.tensor(ROWS)
    assert input_ids.shape == (3, 20)
    for row, positions in STATE_POSITIONS.items():
        assert [ROWS[row][p + 1] for p in positions] == MASKS  # the next token of each state is <mask_i>
        assert ROWS[row][positions[0]] == MASK_START


# --- without a decoder nothing changes ---------------------------------------------------------------------


def test_a_model_without_decoder_is_unchanged_and_a_decoder_only_adds_its_own_keys() -> None:
    plain_config = _config()
    assert plain_config.mask_decoder_config is None and plain_config.mask_token_ids is None
    plain, with_decoder = _model(plain_config), _model(_decoder_config())
    assert plain.mask_decoder is None
    plain_state, decoder_state = plain.state_dict(), with_decoder.state_dict()
    assert all(key.split(".")[0] in COMPONENTS for key in plain_state)
    assert set(decoder_state) - set(plain_state) == {k for k in decoder_state if k.startswith("mask_decoder.")}
    assert [k for k in decoder_state if not k.startswith("mask_decoder.")] == list(plain_state)  # same order too
    for key in ("positional_encodings.0.gaussian_matrix", "positional_encodings.1.gaussian_matrix", "scale_weights"):
        assert f"mask_decoder.{key}" in decoder_state
    assert list(parameter_counts(plain)) == list(COMPONENTS)
    assert "CrabMaskDecoder" in with_decoder._no_split_modules  # a device map keeps the decoder on one device
    assert "CrabMaskDecoder" not in plain._no_split_modules  # accelerate's FSDP wrap fails on an absent class


def test_a_config_saved_before_the_decoder_existed_loads_without_one(tmp_path: Path) -> None:
    _config().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    saved = json.loads(path.read_text())
    assert saved["mask_decoder_config"] is None
    del saved["mask_decoder_config"], saved["mask_token_ids"]  # what older checkpoints hold
    path.write_text(json.dumps(saved))
    loaded = CrabConfig.from_pretrained(tmp_path)
    assert loaded.mask_decoder_config is None and loaded.mask_token_ids is None


def test_plain_forward_output_has_no_mask_logits(model: CrabForConditionalGeneration) -> None:
    with torch.no_grad():
        out = model(**_batch())
    assert out.mask_logits is None and out.hidden_states is None
    assert out.logits.shape == (3, 20, VOCAB)


# --- forward with mask features ----------------------------------------------------------------------------


def test_forward_returns_mask_logits_and_keeps_the_lm_loss(model: CrabForConditionalGeneration) -> None:
    batch = _batch()
    labels = torch.where(batch["attention_mask"].bool(), batch["input_ids"], -100)
    with torch.no_grad():
        out = model(**batch, labels=labels, mask_features=_mask_features())
        lm_only = model(**batch, labels=labels)
    assert out.mask_logits.shape == (2, FRAMES, 1, 112, 112)  # (B_s, T, C, S, S): rows 0 and 2
    assert out.hidden_states is None  # taken for the decoder only
    torch.testing.assert_close(out.loss, lm_only.loss, rtol=0, atol=0)
    torch.testing.assert_close(out.logits, lm_only.logits, rtol=0, atol=0)


def test_decoder_reads_the_final_states_predicting_each_mask_token(model: CrabForConditionalGeneration) -> None:
    batch = _batch()
    features = _mask_features()
    with torch.no_grad():
        mask_logits = model(**batch, mask_features=features).mask_logits
        embeds = model.embed_inputs(batch["input_ids"], video_features=batch["video_features"])
        hidden = model.language_model.model(
            inputs_embeds=embeds, attention_mask=batch["attention_mask"], position_ids=batch["position_ids"]
        ).last_hidden_state  # (B, L, H) after the final RMSNorm
        rows = torch.tensor([0, 2])
        positions = torch.tensor([STATE_POSITIONS[0], STATE_POSITIONS[2]])  # (2, 6)
        expected = model.mask_decoder(hidden[rows[:, None], positions], features)
        off_by_one = model.mask_decoder(hidden[rows[:, None], positions - 1], features)  # Crab's inference
    torch.testing.assert_close(mask_logits, expected, rtol=1e-5, atol=1e-6)
    assert (mask_logits - off_by_one).abs().max() > 1e-3


def test_gradients_reach_exactly_the_mask_positions_and_the_decoder() -> None:
    model = _model(_decoder_config())
    captured = {}

    def keep(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        output.retain_grad()
        captured["hidden"] = output  # (B, L, H) final-norm output

    handle = model.language_model.model.norm.register_forward_hook(keep)
    model(**_batch(), mask_features=_mask_features()).mask_logits.square().mean().backward()
    handle.remove()
    reached = captured["hidden"].grad.abs().sum(-1) > 0  # (B, L)
    expected = torch.zeros(3, 20, dtype=torch.bool)
    for row, positions in STATE_POSITIONS.items():
        expected[row, positions] = True
    assert torch.equal(reached, expected)
    decoder = model.mask_decoder
    for name, parameter in (
        ("prompt_projection.0.weight", decoder.prompt_projection[0].weight),
        ("token_weights", decoder.token_weights),
        ("scale_weights", decoder.scale_weights),
        ("classifier.weight", decoder.classifier.weight),
    ):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert model.language_model.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0  # into the LLM


@pytest.mark.parametrize("rows", [1, 3])
def test_mask_feature_row_count_mismatch_names_both_numbers(model: CrabForConditionalGeneration, rows: int) -> None:
    with pytest.raises(ValueError, match=f"level 0: {rows} rows, but 2 samples in input_ids contain mask tokens"):
        model(**_batch(), mask_features=_mask_features(rows=rows))
    with pytest.raises(ValueError, match=r"level 1 must be \(B_s, T, P, Dv\), got \(2, 49, 64\)"):
        model(**_batch(), mask_features=[f[:, 0] if level else f for level, f in enumerate(_mask_features())])


def test_a_row_missing_a_mask_token_is_named_by_its_batch_row(model: CrabForConditionalGeneration) -> None:
    batch = _batch()
    batch["input_ids"][2, 11] = 40  # row 2 loses <mask_4>
    with pytest.raises(ValueError, match=r"batch rows with mask tokens \[0, 2\]: sample 1: mask token id 14 occurs 0"):
        model(**batch, mask_features=_mask_features())


def test_mask_features_need_a_decoder_and_input_ids(model: CrabForConditionalGeneration) -> None:
    plain = _model(_config())
    with pytest.raises(ValueError, match="no mask decoder"):
        plain(**_batch(), mask_features=_mask_features())
    batch = _batch()
    embeds = model.embed_inputs(batch.pop("input_ids"), video_features=batch.pop("video_features"))
    with pytest.raises(ValueError, match="need input_ids"):
        model(**batch, inputs_embeds=embeds, mask_features=_mask_features())


# --- inference -----------------------------------------------------------------------------------------------


def test_predict_masks_equals_the_training_forward_and_skips_rows_without_masks(
    model: CrabForConditionalGeneration,
) -> None:
    batch = _batch()
    features = _mask_features(rows=3, seed=7)  # inference gives a row per sample
    with torch.no_grad():
        training = model(**batch, mask_features=[f[[0, 2]] for f in features]).mask_logits
    del batch["position_ids"]  # predict_masks derives them from the mask, as generation does
    prediction = model.predict_masks(mask_features=features, **batch)
    assert prediction.has_masks.tolist() == [True, False, True]
    torch.testing.assert_close(prediction.mask_logits, training, rtol=1e-5, atol=1e-6)

    batch["input_ids"][2, 11] = MASKS[3]  # a generation that repeats <mask_3> and lacks <mask_4>
    prediction = model.predict_masks(mask_features=features, **batch)
    assert prediction.has_masks.tolist() == [True, False, False]
    torch.testing.assert_close(prediction.mask_logits, training[:1], rtol=1e-5, atol=1e-6)
    batch["input_ids"][0, 16] = MASKS[3]
    assert model.predict_masks(mask_features=features, **batch).mask_logits.shape == (0, FRAMES, 1, 112, 112)
    with pytest.raises(ValueError, match=r"expected \(B=3, T, P, Dv\)"):
        model.predict_masks(mask_features=[f[:2] for f in features], **batch)


# --- save / load, init, trainable components ---------------------------------------------------------------


def test_save_load_round_trip_gives_identical_mask_logits(tmp_path: Path) -> None:
    model = _model(_decoder_config(), seed=3)
    with torch.no_grad():  # away from their init (1/3, 1/2), which a reload that re-initialised would also give
        model.mask_decoder.token_weights.copy_(torch.tensor([0.2, 0.5, 0.3]))
        model.mask_decoder.scale_weights.copy_(torch.tensor([0.3, 0.9]))
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", framework="pt") as stored:
        keys = set(stored.keys())
    assert {"mask_decoder.positional_encodings.0.gaussian_matrix", "mask_decoder.scale_weights"} <= keys
    torch.manual_seed(99)  # a re-drawn positional matrix would differ
    reloaded = CrabForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded.config.mask_decoder_config, CrabMaskDecoderConfig)
    assert reloaded.config.mask_token_ids == MASKS
    reloaded_state = reloaded.state_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(reloaded_state[key], value, rtol=0, atol=0, msg=key)
    with torch.no_grad():
        before = model(**_batch(), mask_features=_mask_features()).mask_logits
        after = reloaded(**_batch(), mask_features=_mask_features()).mask_logits
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_decoder_keeps_its_own_init_inside_the_model(model: CrabForConditionalGeneration) -> None:
    decoder = model.mask_decoder
    linear = decoder.prompt_projection[0]  # Linear(128, 128): Kaiming-uniform(a=sqrt(5)) bound 1/sqrt(128)
    bound = 128**-0.5  # 0.0884; std bound / sqrt(3) = 0.051, where transformers' generic init gives 0.02
    assert linear.weight.abs().max() <= bound and 0.045 < linear.weight.std() < 0.057
    assert linear.bias.abs().max() <= bound and linear.bias.abs().sum() > 0  # the generic init zeroes biases
    assert 0.9 < decoder.query_embed.weight.std() < 1.1  # N(0, 1) embeddings
    torch.testing.assert_close(decoder.token_weights.detach(), torch.full((3,), 1 / 3))


def test_parameter_counts_and_set_trainable_with_a_decoder() -> None:
    fresh = _model(_decoder_config())
    totals = parameter_counts(fresh)
    assert list(totals) == [*COMPONENTS, "mask_decoder"]
    assert totals["mask_decoder"] == sum(p.numel() for p in fresh.mask_decoder.parameters()) > 0
    counts = set_trainable(fresh, llm="frozen", projectors=False, mask_decoder=True)
    assert counts == {
        "visual_projector": 0,
        "audio_projector": 0,
        "language_model": 0,
        "mask_decoder": totals["mask_decoder"],
    }
    assert set_trainable(fresh, llm="frozen", projectors=True)["mask_decoder"] == 0  # off unless asked for
    with pytest.raises(ValueError, match="no mask decoder"):
        set_trainable(_model(_config()), llm="frozen", projectors=True, mask_decoder=True)


def test_paper_config_with_decoder_on_meta() -> None:
    config = crab_llama2_7b_config(use_mask_decoder=True, num_mask_classes=71)
    assert config.mask_token_ids == [32011, 32012, 32013, 32014, 32015, 32016]  # crab-reference 1.6
    assert crab_llama2_7b_config().mask_decoder_config is None
    with torch.device("meta"):
        paper = CrabForConditionalGeneration(config)
    # The binary decoder's 29,087,429 parameters (pinned in test_mask_decoder.py) + 70 more classifier rows of 32.
    assert parameter_counts(paper)["mask_decoder"] == 29_087_429 + 70 * 32


# --- config validation ---------------------------------------------------------------------------------------


def _config_with(**overrides) -> CrabConfig:
    """A CrabConfig like the tiny one with a decoder, with some fields replaced."""
    base = _decoder_config()
    fields = {
        "text_config": base.text_config,
        "visual_qformer_config": base.visual_qformer_config,
        "audio_qformer_config": base.audio_qformer_config,
        "video_token_id": VIDEO,
        "audio_token_id": AUDIO,
        "image_token_id": IMAGE,
        "vision_hidden_size": WIDTH,
        "audio_hidden_size": WIDTH,
        "mask_decoder_config": base.mask_decoder_config,
        "mask_token_ids": MASKS,
    }
    fields.update(overrides)
    return CrabConfig(**fields)


def _decoder_sizes(**overrides) -> CrabMaskDecoderConfig:
    sizes = _decoder_config().mask_decoder_config.to_dict()
    sizes.update(overrides)
    return CrabMaskDecoderConfig(**sizes)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mask_token_ids": None}, "mask_token_ids is None"),
        ({"mask_token_ids": MASKS[:5]}, "has 5 ids but mask_decoder_config.num_mask_tokens=6"),
        ({"mask_token_ids": [10, 11, 12, 13, 14, 10]}, "must differ from each other"),
        ({"mask_token_ids": [10, 11, 12, 13, 14, VIDEO]}, "reuse placeholder ids {'video_token_id': 5}"),
        ({"mask_token_ids": [10, 11, 12, 13, 14, VOCAB]}, r"\[96\] are outside the vocabulary of 96 tokens"),
        (
            {"mask_decoder_config": _decoder_sizes(llm_hidden_size=64)},
            "mask_decoder_config.llm_hidden_size=64 but text_config.hidden_size=128",
        ),
        (
            {"mask_decoder_config": _decoder_sizes(vision_hidden_size=32)},
            "mask_decoder_config.vision_hidden_size=32 but vision_hidden_size=64",
        ),
    ],
)
def test_config_rejects_a_decoder_that_does_not_fit(overrides: dict, message: str) -> None:
    assert _config_with().mask_token_ids == MASKS  # the unchanged fields are valid
    with pytest.raises(ValueError, match=message):
        _config_with(**overrides)


def test_tiny_builder_needs_mask_token_ids_and_round_trips_the_decoder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs mask_token_ids"):
        _config(use_mask_decoder=True)
    config = _config(use_mask_decoder=True, mask_token_ids=tuple(MASKS), num_mask_classes=3)
    assert config.mask_token_ids == MASKS and config.mask_decoder_config.num_classes == 3
    config.save_pretrained(tmp_path)
    loaded = CrabConfig.from_pretrained(tmp_path)
    assert loaded.mask_decoder_config.to_dict() == config.mask_decoder_config.to_dict()
    assert loaded.mask_token_ids == MASKS
