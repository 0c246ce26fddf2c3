"""Mask decoder: shapes, chained query generator, registered scale weights, persisted PE, gradients, overfit."""

from __future__ import annotations

import math

import pytest
import torch

from crab.models.mask_decoder import (
    CrabMaskDecoder,
    CrabMaskDecoderConfig,
    CrabQueryGenerator,
    class_map,
    factorized_class_log_probs,
    gather_mask_token_hidden,
    mask_decoder_paper_config,
    mask_decoder_tiny_config,
)
from crab.models.seg_loss import segmentation_loss

LLM, CLIP = 16, 16  # tiny LLM and CLIP widths


def _config(num_classes: int = 1, **overrides) -> CrabMaskDecoderConfig:
    """A decoder small enough for a CPU test: 4x4 grid (32 px, patch 8), width 32, 8 queries."""
    sizes = dict(
        llm_hidden_size=LLM,
        vision_hidden_size=CLIP,
        hidden_size=32,
        num_queries=8,
        query_generator_intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        mlp_dim=32,
        mask_embedding_size=8,
        image_size=32,
        patch_size=8,
        low_res_mask_size=16,
        num_classes=num_classes,
    )
    sizes.update(overrides)
    return CrabMaskDecoderConfig(**sizes)


def _decoder(config: CrabMaskDecoderConfig, seed: int = 0) -> CrabMaskDecoder:
    torch.manual_seed(seed)
    return CrabMaskDecoder(config).eval()


def _inputs(batch: int, frames: int, seed: int = 1, patches: int = 16) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(B, 6, LLM) mask-token states and two levels of (B, T, P, CLIP) patch tokens."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, 6, LLM, generator=g)
    return hidden, [torch.randn(batch, frames, patches, CLIP, generator=g) for _ in range(2)]


@pytest.mark.parametrize("num_classes", [1, 71])
def test_output_shape_binary_and_avss_heads(num_classes: int) -> None:
    decoder = _decoder(_config(num_classes))
    hidden, features = _inputs(batch=2, frames=3)
    assert decoder(hidden, features).shape == (2, 3, num_classes, 32, 32)


def test_frame_flattened_features_give_the_same_masks() -> None:
    decoder = _decoder(_config())
    hidden, features = _inputs(batch=2, frames=3)
    stacked = decoder(hidden, features)
    flattened = decoder(hidden, [f.flatten(0, 1) for f in features])  # (B*T, P, D), sample-major
    torch.testing.assert_close(flattened, stacked)
    assert not torch.allclose(stacked[:, 0], stacked[:, 1])  # frames share the prompt, not the masks


def test_samples_are_independent_in_a_batch() -> None:
    decoder = _decoder(_config())
    hidden, features = _inputs(batch=2, frames=2)
    batched = decoder(hidden, features)
    alone = decoder(hidden[1:], [f[1:] for f in features])
    torch.testing.assert_close(batched[1:], alone, atol=1e-5, rtol=1e-5)


def test_tiny_profile_config_matches_tiny_clip_and_llm() -> None:
    config = mask_decoder_tiny_config()  # tiny CLIP: 112 px, patch 16 -> 7x7 grid of width 64; LLM width 128
    decoder = _decoder(config)
    hidden = torch.randn(1, 6, 128)
    features = [torch.randn(1, 2, 49, 64) for _ in range(2)]
    assert decoder(hidden, features).shape == (1, 2, 1, 112, 112)


def test_paper_config_parameter_count() -> None:
    with torch.device("meta"):
        decoder = CrabMaskDecoder(mask_decoder_paper_config())
    counted = sum(p.numel() for p in decoder.parameters())
    d, h, clip, q, e, mlp = 256, 4096, 1024, 300, 32, 2048
    expected = (
        (h * h + h) + (h * d + d)  # prompt projection 4096 -> 4096 -> 256
        + 3 + 2  # token and scale weights
        + (clip * d + 2 * d + 9 * d * d + 2 * d)  # neck: 1x1 conv, LN2d, 3x3 conv, LN2d (no conv bias)
        + d + q * d + 2 * d  # no-mask, query and level embeddings
        + 2 * (2 * (4 * d * d + 4 * d) + 3 * 2 * d + (d * mlp + mlp + mlp * d + d))  # 2 query-generator layers
        + (4 * d * d + d + 2 * d)  # upsample 2x: transposed conv + LN2d
        + 2 * (  # one two-way transformer per level, depth 2
            2 * ((4 * d * d + 4 * d) + 2 * (3 * (d * 128 + 128) + 128 * d + d) + (2 * d * mlp + mlp + d) + 4 * 2 * d)
            + (3 * (d * 128 + 128) + 128 * d + d) + 2 * d  # final token->image attention + LN
        )
        + (4 * d * e + e + 2 * e)  # output upscaling: transposed conv 256 -> 32 + LN2d
        + (2 * (d * d + d) + d * e + e)  # query MLP 256-256-256-32
        + (q * d + d + d * d + d + d * e + e)  # query-map MLP 300-256-256-32
        + e  # binary classifier, no bias
    )  # fmt: skip
    assert counted == expected == 29_087_429


def test_query_generator_layers_are_chained() -> None:
    torch.manual_seed(0)
    generator = CrabQueryGenerator(num_layers=2, hidden_size=8, num_heads=2, intermediate_size=16).eval()
    queries, prompts = torch.randn(3, 5, 8), torch.randn(3, 2, 8)
    out = generator(queries, prompts)
    chained = generator.layers[1](generator.layers[0](queries, prompts), prompts)
    parallel = generator.layers[1](queries, prompts)  # Crab's bug: every layer fed the original queries
    torch.testing.assert_close(out, chained)
    assert (out - parallel).abs().max() > 1e-2


def test_first_query_generator_layer_changes_the_masks() -> None:
    decoder = _decoder(_config())
    hidden, features = _inputs(batch=1, frames=1)
    before = decoder(hidden, features)
    with torch.no_grad():
        decoder.query_generator.layers[0].ffn[2].weight.mul_(3.0)  # only matters if layer 0 feeds layer 1
    assert (decoder(hidden, features) - before).abs().max() > 1e-4


def test_scale_and_token_weights_are_registered_trained_and_saved() -> None:
    decoder = _decoder(_config())
    names = dict(decoder.named_parameters())
    state = decoder.state_dict()
    for name, size in (("token_weights", 3), ("scale_weights", 2)):
        assert names[name].shape == (size,) and name in state
        torch.testing.assert_close(names[name].detach(), torch.full((size,), 1 / size))  # Crab's 1/3 and 1/2
    hidden, features = _inputs(batch=1, frames=1)
    decoder(hidden, features).sum().backward()
    assert decoder.token_weights.grad.abs().min() > 0 and decoder.scale_weights.grad.abs().min() > 0


def test_scale_weights_sum_the_levels_and_level_one_is_gated_by_level_zero() -> None:
    decoder = _decoder(_config())
    hidden, features = _inputs(batch=1, frames=1)
    with torch.no_grad():
        decoder.scale_weights.copy_(torch.tensor([0.0, 1.0]))  # output = level 1 only
    features[0].requires_grad_(True)
    only_level_one = decoder(hidden, features)
    only_level_one.sum().backward()
    assert features[0].grad.abs().max() > 0  # level 0 reaches level 1 through its mask gating level 1's grid
    with torch.no_grad():
        decoder.scale_weights.copy_(torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(decoder(hidden, features), 2 * only_level_one.detach())


def test_positional_buffers_are_persisted_and_restored() -> None:
    source, target = _decoder(_config(), seed=0), _decoder(_config(), seed=1)
    keys = [k for k in source.state_dict() if k.endswith("gaussian_matrix")]
    assert keys == ["positional_encodings.0.gaussian_matrix", "positional_encodings.1.gaussian_matrix"]
    assert all(k not in dict(source.named_parameters()) for k in keys)  # fixed buffers, not trained
    assert not torch.equal(source.state_dict()[keys[0]], target.state_dict()[keys[0]])
    target.load_state_dict(source.state_dict())
    for key in keys:
        torch.testing.assert_close(target.state_dict()[key], source.state_dict()[key])
    hidden, features = _inputs(batch=1, frames=2)
    torch.testing.assert_close(target(hidden, features), source(hidden, features))


def test_positional_encoding_of_a_grid() -> None:
    pe = _decoder(_config()).positional_encodings[0]
    matrix = pe.gaussian_matrix  # (2, 16)
    encoding = pe(2, 3)  # (32, 2, 3)
    x, y = 2 * (2 + 0.5) / 3 - 1, 2 * (1 + 0.5) / 2 - 1  # pixel centre of row 1, column 2, in [-1, 1]
    angles = 2 * math.pi * (x * matrix[0] + y * matrix[1])
    torch.testing.assert_close(encoding[:, 1, 2], torch.cat([angles.sin(), angles.cos()]))


def test_gradients_reach_every_mask_token() -> None:
    decoder = _decoder(_config()).train()
    hidden, features = _inputs(batch=2, frames=2)
    hidden.requires_grad_(True)
    decoder(hidden, features).square().mean().backward()
    assert (hidden.grad.abs().sum(dim=-1) > 0).all()  # (B, 6): every token of every sample


@pytest.mark.parametrize(
    ("hidden_shape", "feature_shapes", "message"),
    [
        ((2, 5, LLM), [(2, 1, 16, CLIP)] * 2, "mask_token_hidden"),
        ((2, 6, LLM), [(2, 1, 16, CLIP)], "2 feature levels"),
        ((2, 6, LLM), [(2, 1, 9, CLIP)] * 2, "16 patches"),
        ((2, 6, LLM), [(2, 1, 16, 8)] * 2, "width 16"),
        ((2, 6, LLM), [(3, 16, CLIP)] * 2, "B=2"),
        ((2, 6, LLM), [(2, 1, 16, CLIP), (2, 2, 16, CLIP)], "frames per sample"),
    ],
)
def test_bad_inputs_raise(hidden_shape: tuple, feature_shapes: list, message: str) -> None:
    decoder = _decoder(_config())
    with pytest.raises(ValueError, match=message):
        decoder(torch.randn(hidden_shape), [torch.randn(shape) for shape in feature_shapes])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_mask_tokens": 5}, "multiple of num_levels"),
        ({"image_size": 30}, "multiple of patch_size"),
        ({"num_attention_heads": 3}, "must divide"),
        ({"hidden_size": 33, "num_attention_heads": 1}, "even"),
        ({"vision_feature_layers": [3]}, "needs 2 entries"),
        ({"num_classes": 0}, "num_classes must be positive"),
        ({"class_head": "sigmoid"}, "class_head must be one of"),
    ],
)
def test_config_rejects_inconsistent_sizes(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _config(**overrides)


def test_config_round_trips_through_save_pretrained(tmp_path) -> None:
    config = _config(num_classes=71, vision_feature_layers=(3, 5), class_head="factorized")
    config.save_pretrained(tmp_path)
    loaded = CrabMaskDecoderConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict() and loaded.factorized
    assert loaded.vision_feature_layers == [3, 5] and loaded.grid_size == 4 and loaded.num_tokens_per_level == 3


def test_gather_takes_the_state_before_each_mask_token() -> None:
    hidden = torch.arange(2 * 6 * 1, dtype=torch.float32).view(2, 6, 1)  # state value = 6 * row + position
    input_ids = torch.tensor([[1, 9, 50, 51, 2, 2], [1, 9, 9, 50, 51, 2]])  # <mask_0> = 50, <mask_1> = 51
    gathered = gather_mask_token_hidden(hidden, input_ids, [50, 51])
    assert gathered.squeeze(-1).tolist() == [[1.0, 2.0], [8.0, 9.0]]
    with pytest.raises(ValueError, match="sample 1: mask token id 51 occurs 0 times"):
        gather_mask_token_hidden(hidden, torch.tensor([[1, 50, 51, 2, 2, 2], [1, 50, 2, 2, 2, 2]]), [50, 51])
    with pytest.raises(ValueError, match="position 0"):
        gather_mask_token_hidden(hidden, torch.tensor([[50, 51, 2, 2, 2, 2]] * 2), [50, 51])


def test_factorized_log_probs_by_hand() -> None:
    # f = 0: background 1/2; f = log 3: objects 3/4 split by softmax(g) = (1/3, 2/3)
    channels = torch.tensor([[0.0, 5.0, 5.0], [math.log(3), 0.0, math.log(2)]]).view(2, 3, 1, 1)  # (N, C, 1, 1)
    probs = factorized_class_log_probs(channels).exp().flatten(1)  # (N, C)
    torch.testing.assert_close(probs, torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]]))


def test_factorized_cross_entropy_is_sounding_bce_plus_class_ce_on_object_pixels() -> None:
    g = torch.Generator().manual_seed(0)
    channels = torch.randn(4, 5, 3, 3, generator=g)  # (N, C, S, S)
    target = torch.randint(0, 5, (4, 3, 3), generator=g)  # 0 = background
    log_probs = factorized_class_log_probs(channels)
    ce = torch.nn.functional.nll_loss(log_probs, target, reduction="none")  # (N, S, S)
    sounding = (target > 0).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(channels[:, 0], sounding, reduction="none")
    which = torch.nn.functional.cross_entropy(channels[:, 1:], (target - 1).clamp(min=0), reduction="none")
    torch.testing.assert_close(ce, bce + sounding * which)


def test_class_map_of_each_head() -> None:
    # one frame, 3 pixels; factorized: background 0.4 / objects 0.6 split 0.25 + 0.35 (pixel 0) -> class 2, though
    # background alone is the most probable; background 0.6 (pixel 1) -> 0; background 0.2 (pixel 2) -> class 1
    probs = torch.tensor([[0.4, 0.25, 0.35], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3]]).T.reshape(1, 3, 1, 3)  # (T, C, 1, 3)
    assert class_map(probs.log(), "factorized").tolist() == [[[2, 0, 1]]]  # pixels 0 and 2 are separate regions
    assert class_map(probs.log(), "softmax").tolist() == [[[0, 0, 1]]]  # Crab's argmax
    with pytest.raises(ValueError, match=r"\(T, C, H, W\)"):
        class_map(torch.zeros(3, 4, 4))


def test_factorized_class_map_gives_each_connected_region_its_jointly_most_likely_class() -> None:
    # 2 frames of 3x4; every pixel sounds (background 0.1). Frame 0: a left region (columns 0-1) whose pixels lean
    # to classes 1, 1, 1, 1, 2, 2 and a right region (column 3) that leans to class 2; column 2 is background.
    objects = torch.full((2, 2, 3, 4), 0.45)  # (T, C-1, H, W): p(class 1), p(class 2)
    objects[0, 0, :, :2] = torch.tensor([[0.6, 0.6], [0.6, 0.6], [0.3, 0.3]])
    objects[0, 1, :, :2] = 0.9 - objects[0, 0, :, :2]
    objects[0, 0, :, 3], objects[0, 1, :, 3] = 0.2, 0.7
    background = torch.full((2, 1, 3, 4), 0.1)
    background[0, 0, :, 2] = 0.9
    objects[0, :, :, 2] = 0.05
    logits = torch.cat([background, objects], dim=1).log()  # (T, C, H, W)
    # left region: class 1 has 4 pixels at 0.6 and 2 at 0.3, class 2 the reverse: its bottom row alone says class 2
    assert 4 * math.log(0.6) + 2 * math.log(0.3) > 4 * math.log(0.3) + 2 * math.log(0.6)
    expected = torch.tensor([[1, 1, 0, 2]] * 3)
    torch.testing.assert_close(class_map(logits, "factorized")[0], expected)
    torch.testing.assert_close(class_map(logits, "factorized")[1], torch.ones(3, 4, dtype=torch.long))  # ties: first


def test_factorized_head_returns_log_probs_and_gates_with_its_sounding_channel() -> None:
    decoder = _decoder(_config(num_classes=4, class_head="factorized"))
    hidden, features = _inputs(batch=2, frames=2)
    out = decoder(hidden, features)  # (B, T, C, S, S)
    torch.testing.assert_close(out.logsumexp(dim=2), torch.zeros(2, 2, 32, 32), atol=1e-5, rtol=0)
    # the level-1 gate reads channel 0 only: the class channels of level 0 leave level 1's input unchanged
    with torch.no_grad():
        decoder.scale_weights.copy_(torch.tensor([0.0, 1.0]))  # the output is level 1 alone
        before = decoder(hidden, features)
        decoder.classifier.weight[1:] += 1.0  # level 0's class logits move (so do level 1's, by the same rows)
        after = decoder(hidden, features)
        decoder.classifier.weight[1:] -= 1.0
        decoder.classifier.weight[0] += 1.0  # the sounding channel moves the output
        moved = decoder(hidden, features)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)  # a mean-over-channels gate would change it
    assert not torch.allclose(moved, before, atol=1e-3)


@pytest.mark.parametrize(("num_classes", "class_head"), [(1, "softmax"), (3, "softmax"), (3, "factorized")])
def test_tiny_overfit_halves_the_loss(num_classes: int, class_head: str) -> None:
    decoder = _decoder(_config(num_classes, class_head=class_head)).train()
    hidden, features = _inputs(batch=1, frames=1)
    rows, cols = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    if num_classes == 1:
        target = ((rows >= 8) & (rows < 24) & (cols >= 4) & (cols < 20)).float()  # a square
    else:
        target = (cols // 11 + (rows > 16).long()).clamp(max=2)  # three class regions
    target = target[None, None]  # (1, 1, 32, 32)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = segmentation_loss(decoder(hidden, features), target, bce_weight=1.0, dice_weight=0.5, ce_weight=1.0)
        optimizer.zero_grad()
        loss.loss.backward()
        optimizer.step()
        losses.append(loss.loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
