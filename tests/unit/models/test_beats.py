"""Tests for ``crab.models.beats``: token counts, official key layout, checkpoint round trip, attention maths.

The official key names and shapes checked below were read from microsoft/unilm ``beats/BEATs.py`` and
``beats/backbone.py`` (``patch_embedding``, ``layer_norm``, ``post_extract_proj``, ``encoder.pos_conv.0``
wrapped by ``nn.utils.weight_norm(dim=2)`` hence ``weight_g`` (1, 1, 128) / ``weight_v`` (768, 48, 128),
``encoder.layers.{i}.self_attn.{k,v,q,out}_proj``, ``grep_linear`` = ``Linear(head_dim, 8)``, ``grep_a`` =
ones(1, H, 1, 1), ``relative_attention_bias`` = ``Embedding(num_buckets, H)`` created in layer 0 and assigned
to every other layer, ``self_attn_layer_norm``, ``fc1``, ``fc2``, ``final_layer_norm``, ``encoder.layer_norm``,
``predictor``). The official README loads the checkpoint with a strict ``load_state_dict``, so a model with
the same keys and shapes loads it. The BEATs paper reports about 90 M parameters for BEATs.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import pytest
import torch
import torch.nn.functional as F

from crab.models.beats import (
    BEATs,
    BEATsConfig,
    BeatsCheckpointError,
    beats_iter3_plus_as2m_config,
    beats_tiny,
    beats_tiny_config,
    load_beats,
    save_beats_checkpoint,
)

# Measured on the meta device; unique parameters (the shared relative bias counted once).
REAL_NUM_PARAMETERS = 90_717_055
# beats_tiny(seed=0) on _fbank(1, 98, seed=7), tokens 0..2, channels 0..2 (torch 2.13.0 CPU).
EXPECTED_TINY_CORNER = torch.tensor(
    [
        [1.2954487, 0.6195182, -0.4098385],
        [0.8493555, 1.5105435, -0.2973167],
        [1.2980251, 0.9593019, -2.9439480],
    ]
)


def _fbank(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    """A stand-in normalised fbank, (B, T, 128)."""
    return torch.randn(batch, frames, 128, generator=torch.Generator().manual_seed(seed)) * 0.5


@pytest.fixture(scope="module")
def tiny() -> BEATs:
    return beats_tiny(seed=0)


@pytest.fixture(scope="module")
def real_on_meta() -> BEATs:
    with torch.device("meta"):
        return BEATs(beats_iter3_plus_as2m_config())


@pytest.mark.parametrize(("frames", "tokens"), [(98, 48), (198, 96), (16, 8), (31, 8)])
def test_token_count(tiny: BEATs, frames: int, tokens: int) -> None:
    with torch.no_grad():
        out = tiny.extract_features(_fbank(2, frames))
    assert out.shape == (2, tokens, 64)
    assert tiny.num_tokens(frames) == tokens


def test_real_config_key_layout(real_on_meta: BEATs) -> None:
    state = real_on_meta.state_dict()
    expected_shapes = {
        "patch_embedding.weight": (512, 1, 16, 16),
        "layer_norm.weight": (512,),
        "post_extract_proj.weight": (768, 512),
        "post_extract_proj.bias": (768,),
        "encoder.pos_conv.0.weight_g": (1, 1, 128),
        "encoder.pos_conv.0.weight_v": (768, 48, 128),
        "encoder.pos_conv.0.bias": (768,),
        "encoder.layer_norm.weight": (768,),
        "encoder.layers.0.self_attn.relative_attention_bias.weight": (320, 12),
        "encoder.layers.11.self_attn.relative_attention_bias.weight": (320, 12),
        "encoder.layers.0.self_attn.grep_linear.weight": (8, 64),
        "encoder.layers.0.self_attn.grep_linear.bias": (8,),
        "encoder.layers.0.self_attn.grep_a": (1, 12, 1, 1),
        "encoder.layers.0.self_attn.q_proj.weight": (768, 768),
        "encoder.layers.11.self_attn.out_proj.bias": (768,),
        "encoder.layers.5.self_attn_layer_norm.weight": (768,),
        "encoder.layers.5.fc1.weight": (3072, 768),
        "encoder.layers.5.fc2.weight": (768, 3072),
        "encoder.layers.11.final_layer_norm.bias": (768,),
        "predictor.weight": (527, 768),
        "predictor.bias": (527,),
    }
    for key, shape in expected_shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert "patch_embedding.bias" not in state  # conv_bias=False
    assert len(state) == 12 * 20 + 12  # 20 tensors per layer + 12 outside the layers
    assert not any("parametrizations" in key or key.endswith("pos_conv.0.weight") for key in state)


def test_real_config_parameter_count(real_on_meta: BEATs) -> None:
    num_parameters = sum(p.numel() for p in real_on_meta.parameters())
    assert num_parameters == REAL_NUM_PARAMETERS  # "90M" in the BEATs paper
    shared = {id(layer.self_attn.relative_attention_bias.weight) for layer in real_on_meta.encoder.layers}
    assert len(shared) == 1  # one relative-bias table for all 12 layers, as officially


def test_tiny_mirrors_the_real_layout(tiny: BEATs, real_on_meta: BEATs) -> None:
    def layout(state: dict[str, torch.Tensor]) -> set[str]:
        return {key for key in state if not key.startswith("encoder.layers.") or key.split(".")[2] in ("0", "1")}

    assert layout(tiny.state_dict()) == layout(real_on_meta.state_dict())


def test_save_load_round_trip(tiny: BEATs, tmp_path) -> None:
    path = tmp_path / "beats_tiny.pt"
    save_beats_checkpoint(tiny, beats_tiny_config(), path)
    raw = torch.load(path, map_location="cpu", weights_only=True)  # the official format loads this way
    assert set(raw) == {"cfg", "model"}
    assert raw["cfg"] == beats_tiny_config().to_dict()
    assert set(raw["model"]) == set(tiny.state_dict())

    loaded = load_beats(path)
    assert not loaded.training
    fbank = _fbank(2, 98)
    with torch.no_grad():
        assert torch.equal(loaded.extract_features(fbank), tiny.extract_features(fbank))
        assert torch.equal(loaded.classify(fbank), tiny.classify(fbank))


def test_load_names_missing_and_unexpected_keys(tiny: BEATs, tmp_path) -> None:
    state = dict(tiny.state_dict())
    del state["encoder.layers.1.fc2.bias"]
    state["encoder.extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad_keys.pt"
    torch.save({"cfg": beats_tiny_config().to_dict(), "model": state}, path)
    with pytest.raises(BeatsCheckpointError, match=r"missing keys \['encoder.layers.1.fc2.bias'\]") as info:
        load_beats(path)
    assert "unexpected keys ['encoder.extra.weight']" in str(info.value)


def test_load_rejects_bad_shapes_and_formats(tiny: BEATs, tmp_path) -> None:
    path = tmp_path / "bad_shape.pt"
    wrong_width = dataclasses.replace(beats_tiny_config(), encoder_ffn_embed_dim=96)
    torch.save({"cfg": wrong_width.to_dict(), "model": tiny.state_dict()}, path)
    with pytest.raises(BeatsCheckpointError, match="fc1.weight"):
        load_beats(path)
    torch.save(tiny.state_dict(), path)
    with pytest.raises(BeatsCheckpointError, match="'cfg' and 'model'"):
        load_beats(path)


def test_config_from_dict(caplog: pytest.LogCaptureFixture) -> None:
    real = beats_iter3_plus_as2m_config()
    assert BEATsConfig.from_dict(real.to_dict()) == real
    with caplog.at_level(logging.WARNING, logger="crab.models.beats"):
        partial = BEATsConfig.from_dict({"encoder_layers": 2, "some_future_key": 1})
    assert "some_future_key" in caplog.text
    assert partial.encoder_layers == 2 and partial.max_distance == 1280  # official default
    with pytest.raises(ValueError, match="deep_norm"):
        dataclasses.replace(real, layer_norm_first=True)
    with pytest.raises(ValueError, match="divisible"):
        dataclasses.replace(real, encoder_attention_heads=7)


def test_all_valid_padding_mask_equals_none(tiny: BEATs) -> None:
    fbank = _fbank(2, 98)
    with torch.no_grad():
        masked = tiny.extract_features(fbank, torch.zeros(2, 98, dtype=torch.bool))
        assert torch.equal(masked, tiny.extract_features(fbank))


def test_padded_frames_do_not_leak(tiny: BEATs) -> None:
    frame_mask = torch.zeros(1, 98, dtype=torch.bool)
    frame_mask[:, 58:] = True  # time patches 4 and 5 (frames 64..95) are fully padded; patch 3 is not
    token_mask = tiny.token_padding_mask(frame_mask)
    assert token_mask.shape == (1, 48)
    assert token_mask[0].nonzero().flatten().tolist() == list(range(32, 48))

    fbank = _fbank(1, 98)
    changed = fbank.clone()
    changed[:, 64:] = 5.0  # only frames inside fully padded patches (and the snipped tail)
    with torch.no_grad():
        a = tiny.extract_features(fbank, frame_mask)
        b = tiny.extract_features(changed, frame_mask)
        torch.testing.assert_close(a[:, :32], b[:, :32], atol=1e-6, rtol=0)
        probs = tiny.classify(fbank, frame_mask)
    assert probs.shape == (1, 10) and bool(((probs > 0) & (probs < 1)).all())


def _reference_attention(attn, x: torch.Tensor, position_bias: torch.Tensor) -> torch.Tensor:
    """The official equations, one head at a time, with the official fp16 trick (q / 32, minus max, times 32)."""
    length, _ = x.shape
    alpha = 32.0
    q, k, v = attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)  # (N, C)
    heads = []
    for h in range(attn.num_heads):
        cols = slice(h * attn.head_dim, (h + 1) * attn.head_dim)
        q_h, k_h, v_h = q[:, cols], k[:, cols], v[:, cols]  # (N, d)
        scores = (q_h * attn.head_dim**-0.5 / alpha) @ k_h.T  # (N, N)
        scores = (scores - scores.max(dim=-1, keepdim=True).values) * alpha
        gate_logits = attn.grep_linear(q_h).view(length, 2, 4).sum(-1)  # (N, 2)
        gate_a, gate_b = torch.sigmoid(gate_logits).chunk(2, dim=-1)  # (N, 1) each
        gate = gate_a * (gate_b * attn.grep_a[0, h] - 1.0) + 2.0
        heads.append(torch.softmax(scores + gate * position_bias[h], dim=-1) @ v_h)
    return attn.out_proj(torch.cat(heads, dim=-1))


def test_gated_relative_attention_matches_per_head_loop() -> None:
    model = beats_tiny(seed=3)
    attn = model.encoder.layers[0].self_attn
    with torch.no_grad():
        attn.relative_attention_bias.weight.normal_(0.0, 1.0)  # make the bias matter
        attn.grep_a.uniform_(0.5, 1.5)
        x = torch.randn(2, 40, 64, generator=torch.Generator().manual_seed(1))
        out, bias = attn(x, None, None)
        assert bias.shape == (2, 40, 40)
        for b in range(2):
            torch.testing.assert_close(out[b], _reference_attention(attn, x[b], bias), atol=1e-5, rtol=1e-5)


def test_relative_position_buckets() -> None:
    attn = beats_tiny(seed=0).encoder.layers[0].self_attn  # 32 buckets, max distance 64
    buckets = attn._buckets(200, torch.device("cpu"))
    assert buckets[0, 0] == 0 and buckets[0, 7] == 16 + 7 and buckets[7, 0] == 7  # exact below 8
    assert buckets[0, 199] == 31 and buckets[199, 0] == 15  # clamped far away, both directions
    assert buckets[0, 16] == 16 + 8 + int(math.log(16 / 8) / math.log(64 / 8) * 8)  # log region


def test_layer_wise_gradient_decay() -> None:
    fbank = _fbank(1, 32).requires_grad_(True)

    def input_grad(ratio: float) -> torch.Tensor:
        model = beats_tiny(seed=0)
        model.encoder.cfg = dataclasses.replace(model.cfg, layer_wise_gradient_decay_ratio=ratio)
        fbank.grad = None
        model.extract_features(fbank).square().sum().backward()
        return fbank.grad.clone()

    torch.testing.assert_close(input_grad(0.6), 0.6**2 * input_grad(1.0), atol=1e-6, rtol=1e-4)


def test_pinned_tiny_output() -> None:
    model = beats_tiny(seed=0)
    with torch.no_grad():
        out = model.extract_features(_fbank(1, 98, seed=7))
    assert torch.isfinite(out).all()
    assert F.layer_norm(out, (64,)).sub(out).abs().max() < 1e-4  # post-LN: final_layer_norm is the last op
    torch.testing.assert_close(out[0, :3, :3], EXPECTED_TINY_CORNER, atol=1e-4, rtol=0)



def test_load_refuses_pickled_objects(tmp_path) -> None:
    path = tmp_path / "pickled.pt"
    torch.save({"cfg": beats_tiny_config(), "model": {}}, path)  # a dataclass, not a plain dict
    with pytest.raises(BeatsCheckpointError, match="weights_only"):
        load_beats(path)
