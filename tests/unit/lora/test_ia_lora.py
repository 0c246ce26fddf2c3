"""Unit tests of crab.lora: the fused IA-LoRA layer against the paper formula, router, config, registry.

The equivalence tests compare the fused layer with ``naive_ia_lora``, a deliberately plain per-head loop
written from reference section 2.1 (Crab's ``Linear.forward``: A recomputed for every head).
"""

from __future__ import annotations

import importlib
import math
import re

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftConfig, get_peft_model
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
from peft.utils import PeftType
from torch import nn

import crab.lora
from crab.lora import (
    IALoraConfig,
    IALoraLinear,
    IALoraModel,
    build_adapter_config,
    capture_router_weights,
    cv_squared,
    llm_target_regex,
    load_balance_loss,
    register_ia_lora,
    router_aux_loss,
)
from crab.lora.config import _ensure_peft_type

# Output of the seeded layer in `seeded_layer` on `torch.manual_seed(0)` inputs (torch 2.13, CPU, float32).
EXPECTED_OUT = torch.tensor(
    [
        [1.17420840, 0.24736974, -0.32980466, -1.10861015],
        [-0.19766314, 0.21010762, -0.19614254, -0.35854462],
    ]
)
EXPECTED_BASE_OUT = torch.tensor(
    [
        [0.86898696, 0.30159742, -0.58842427, -1.11328423],
        [-0.20377961, 0.17697611, -0.06371748, -0.32704872],
    ]
)


def naive_ia_lora(layer: IALoraLinear, x: torch.Tensor, dropped_x: torch.Tensor | None = None) -> torch.Tensor:
    """y = W0 x + sum_i w_i(x) * B_i(A(dropout(x))) * alpha/r, one head at a time (Crab style)."""
    name = "default"
    lora_A, router = layer.ia_lora_A[name], layer.ia_lora_router[name]
    r, num_heads, scaling = layer.r[name], layer.num_heads[name], layer.scaling[name]
    heads = [layer.ia_lora_B[name].weight[:, i * r : (i + 1) * r] for i in range(num_heads)]  # each (d_out, r)
    a_input = x if dropped_x is None else dropped_x
    w = torch.softmax(router(x).float(), dim=-1).to(x.dtype)  # (..., num_heads)
    y = layer.base_layer(x)
    for i in range(num_heads):
        y = y + w[..., i : i + 1] * F.linear(lora_A(a_input), heads[i]) * scaling
    return y


def make_layer(
    d_in: int = 16,
    d_out: int = 12,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    **config_kwargs,
) -> IALoraLinear:
    """An IA-LoRA layer with a random (non-zero) B unless init_weights=True is passed."""
    torch.manual_seed(seed)
    kwargs = {"r": 4, "lora_alpha": 8, "num_heads": 3, "lora_dropout": 0.0, "init_weights": False}
    kwargs.update(config_kwargs)
    base = nn.Linear(d_in, d_out, bias=True, dtype=dtype)
    return IALoraLinear(base, "default", IALoraConfig(**kwargs))


class TwoProj(nn.Module):
    """Tiny stand-in for an attention block: q_proj -> v_proj -> head."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.q_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.head = nn.Linear(d, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.v_proj(torch.relu(self.q_proj(x)))))


def two_proj_peft(**config_kwargs):
    torch.manual_seed(0)
    model = TwoProj()
    config = IALoraConfig(target_modules=["q_proj", "v_proj"], **config_kwargs)
    return get_peft_model(model, config)


# ---------------------------------------------------------------- layer math


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float64, 1e-6), (torch.float32, 1e-5)])
@pytest.mark.parametrize("training", [False, True])
def test_fused_equals_naive_per_head_loop(dtype, atol, training):
    layer = make_layer(dtype=dtype)
    layer.train(training)
    torch.manual_seed(1)
    x = torch.randn(2, 5, 16, dtype=dtype)
    fused, naive = layer(x), naive_ia_lora(layer, x)
    assert fused.dtype == dtype
    assert (fused - layer.base_layer(x)).abs().max() > 0.1  # the adapter term is far from zero
    torch.testing.assert_close(fused, naive, atol=atol, rtol=0)


def test_fused_equals_naive_with_dropout_on_the_separate_gemm_path():
    # Train mode with p > 0 runs A and the router as two GEMMs; one shared mask is drawn.
    layer = make_layer(dtype=torch.float64, lora_dropout=0.3).train()
    x = torch.randn(3, 16, dtype=torch.float64)
    torch.manual_seed(7)
    fused = layer(x)
    torch.manual_seed(7)
    dropped = F.dropout(x, p=0.3, training=True)
    torch.testing.assert_close(fused, naive_ia_lora(layer, x, dropped_x=dropped), atol=1e-10, rtol=0)
    assert not torch.allclose(fused, naive_ia_lora(layer, x), atol=1e-3)


def test_seeded_layer_matches_pinned_values():
    torch.manual_seed(0)
    base = nn.Linear(6, 4)
    config = IALoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, num_heads=3, init_weights=False)
    layer = IALoraLinear(base, "default", config)
    x = torch.randn(2, 6)
    with torch.no_grad():
        torch.testing.assert_close(layer.base_layer(x), EXPECTED_BASE_OUT, atol=1e-6, rtol=0)
        torch.testing.assert_close(layer(x), EXPECTED_OUT, atol=1e-6, rtol=0)


def test_stacked_b_shape_and_init():
    layer = make_layer(d_in=16, d_out=12, init_weights=True)
    assert layer.ia_lora_A["default"].weight.shape == (4, 16)
    assert layer.ia_lora_B["default"].weight.shape == (12, 3 * 4)  # (d_out, num_heads * r)
    assert layer.ia_lora_router["default"].weight.shape == (3, 16)
    assert torch.count_nonzero(layer.ia_lora_B["default"].weight) == 0
    bound = 1 / math.sqrt(16)  # kaiming_uniform_(a=sqrt(5)) on fan_in 16
    for weight in (layer.ia_lora_A["default"].weight, layer.ia_lora_router["default"].weight):
        assert weight.abs().max() <= bound
        assert weight.abs().max() > 0.5 * bound


def test_initial_output_equals_base_output():
    model = two_proj_peft()
    x = torch.randn(4, 8)
    with torch.no_grad():
        adapted = model(x)
        with model.disable_adapter():
            base = model(x)
    assert torch.equal(adapted, base)


def test_dropout_only_in_train_mode():
    layer = make_layer(lora_dropout=0.5)
    x = torch.randn(4, 16)
    layer.train()
    assert not torch.equal(layer(x), layer(x))
    layer.eval()
    first = layer(x)
    assert torch.equal(first, layer(x))
    torch.testing.assert_close(first, naive_ia_lora(layer, x), atol=1e-5, rtol=0)


def test_router_probs_are_float32_and_sum_to_one_for_bf16_input():
    layer = make_layer(dtype=torch.bfloat16)
    assert layer.ia_lora_router["default"].weight.dtype == torch.bfloat16
    x = torch.randn(2, 7, 16, dtype=torch.bfloat16)
    seen = []
    layer.router_observer = lambda adapter, probs: seen.append(probs)
    out = layer(x)
    assert out.dtype == torch.bfloat16
    (probs,) = seen
    assert probs.dtype == torch.float32 and probs.shape == (2, 7, 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 7), atol=1e-6, rtol=0)
    logits = F.linear(x, layer.ia_lora_router["default"].weight)  # (2, 7, 3), bf16
    torch.testing.assert_close(probs, torch.softmax(logits.float(), dim=-1), atol=2e-3, rtol=0)


def test_layer_rejects_non_linear_base():
    with pytest.raises(TypeError, match="nn.Linear"):
        IALoraLinear(nn.Conv1d(4, 4, 1), "default", IALoraConfig())


def test_llama2_7b_parameter_counts_match_reference():
    # Reference section 2.2: r=8, 3 heads -> q/k/v/o 143,360; gate/up 309,248; down 219,392 per layer.
    expected = {(4096, 4096): 143_360, (4096, 11008): 309_248, (11008, 4096): 219_392}
    for (d_in, d_out), count in expected.items():
        base = nn.Linear(d_in, d_out, bias=False, device="meta")
        layer = IALoraLinear(base, "default", IALoraConfig(r=8, num_heads=3))
        adapter_params = [p for n, p in layer.named_parameters() if not n.startswith("base_layer")]
        assert sum(p.numel() for p in adapter_params) == count


# ---------------------------------------------------------------- peft integration


def test_only_adapter_parameters_are_trainable():
    model = two_proj_peft()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {
        f"base_model.model.{proj}.ia_lora_{part}.default.weight"
        for proj in ("q_proj", "v_proj")
        for part in ("A", "B", "router")
    }
    assert trainable == expected
    # per layer: A 8*8 + B 8*(3*8) + router 3*8
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 2 * (64 + 192 + 24)


def test_merge_raises_and_leaves_model_intact_while_unload_works():
    model = two_proj_peft(init_weights=False)
    x = torch.randn(3, 8)
    with torch.no_grad():
        with model.disable_adapter():
            base = model(x)
    with pytest.raises(NotImplementedError, match="cannot be merged"):
        model.merge_and_unload()
    with pytest.raises(NotImplementedError, match="cannot be merged"):
        model.merge_adapter()
    assert isinstance(model.base_model.model.q_proj, IALoraLinear)
    unloaded = model.unload()
    assert type(unloaded.q_proj) is nn.Linear
    assert torch.equal(unloaded(x), base)


# ---------------------------------------------------------------- router capture and aux loss


def test_capture_counts_tokens_and_honours_mask():
    model = two_proj_peft(init_weights=False)
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    with capture_router_weights(model) as capture:
        model(x)
        capture.set_token_mask(mask)
        model(x)
        capture.set_token_mask(torch.ones(2, 4))
        with pytest.raises(ValueError, match="token mask shape"):
            model(x)
    assert set(capture.stats) == {"base_model.model.q_proj", "base_model.model.v_proj"}
    stats = capture.stats["base_model.model.q_proj"]
    assert stats.token_count.item() == 10 + 8
    torch.testing.assert_close(stats.mean_probs().sum(), torch.tensor(1.0, dtype=torch.float64))
    assert all(layer.router_observer is None for layer in model.modules() if isinstance(layer, IALoraLinear))


def test_capture_refuses_models_without_ia_lora_and_nesting():
    with pytest.raises(ValueError, match="no IA-LoRA layer"):
        with capture_router_weights(TwoProj()):
            pass
    model = two_proj_peft()
    with capture_router_weights(model):
        with pytest.raises(ValueError, match="nested"):
            with capture_router_weights(model):
                pass


def test_aux_loss_is_zero_and_keeps_nothing_when_disabled():
    model = two_proj_peft()
    model(torch.randn(4, 8))
    assert all(not layer.last_router_probs for layer in model.modules() if isinstance(layer, IALoraLinear))
    loss = router_aux_loss(model)
    assert loss.shape == () and loss.item() == 0.0 and not loss.requires_grad


@pytest.mark.parametrize("kind", ["cv", "switch"])
def test_aux_loss_sums_layers_and_trains_the_router(kind):
    model = two_proj_peft(router_aux_loss_coef=0.5, router_aux_loss_type=kind)
    model(torch.randn(6, 8))
    layers = [m for m in model.modules() if isinstance(m, IALoraLinear)]
    expected = sum(0.5 * load_balance_loss(m.last_router_probs["default"], kind) for m in layers)
    loss = router_aux_loss(model)
    torch.testing.assert_close(loss, expected)
    assert loss.item() > 0.0
    loss.backward()
    assert layers[0].ia_lora_router["default"].weight.grad.abs().sum() > 0


def test_load_balance_loss_pinned_cases():
    uniform = torch.full((4, 2), 0.5)
    one_head = torch.tensor([[1.0, 0.0]] * 4)
    assert load_balance_loss(uniform, "cv").item() == pytest.approx(0.0)
    assert load_balance_loss(uniform, "switch").item() == pytest.approx(1.0)
    # importance [4, 0]: unbiased var 8 / mean^2 4 = 2; switch: 2 * (1 * 1 + 0 * 0) = 2
    assert load_balance_loss(one_head, "cv").item() == pytest.approx(2.0)
    assert load_balance_loss(one_head, "switch").item() == pytest.approx(2.0)
    assert cv_squared(torch.tensor([3.0])).item() == 0.0
    with pytest.raises(ValueError, match="unknown load-balance loss"):
        load_balance_loss(uniform, "entropy")


# ---------------------------------------------------------------- config, builder, registry


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"r": 0}, "r must be positive"),
        ({"num_heads": 0}, "num_heads"),
        ({"lora_dropout": 1.0}, "lora_dropout"),
        ({"router_aux_loss_coef": -1.0}, "router_aux_loss_coef"),
        ({"router_aux_loss_type": "entropy"}, "router_aux_loss_type"),
        ({"layers_pattern": "layers"}, "layers_to_transform"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IALoraConfig(**kwargs)


def test_config_defaults_follow_crab():
    config = IALoraConfig()
    assert (config.r, config.lora_alpha, config.lora_dropout, config.num_heads) == (8, 16, 0.05, 3)
    assert config.scaling == 2.0
    assert config.target_modules == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert config.router_aux_loss_coef == 0.0
    assert config.peft_type is PeftType.IA_LORA


def test_config_round_trips_through_peft(tmp_path):
    config = IALoraConfig(r=4, num_heads=5, router_aux_loss_coef=0.1, modules_to_save=["head"])
    config.save_pretrained(tmp_path)
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert type(loaded) is IALoraConfig
    assert loaded.to_dict() == config.to_dict()


def test_registration_is_idempotent():
    members = len(PeftType)
    register_ia_lora()
    importlib.reload(crab.lora)
    assert len(PeftType) == members
    assert _ensure_peft_type("IA_LORA") is PeftType.IA_LORA is PeftType("IA_LORA")
    assert PEFT_TYPE_TO_CONFIG_MAPPING[PeftType.IA_LORA] is IALoraConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING[PeftType.IA_LORA] is IALoraModel
    assert isinstance(two_proj_peft().base_model, IALoraModel)


def test_build_adapter_config_kinds():
    ia = build_adapter_config("ia_lora", r=4, alpha=8, dropout=0.1, target_modules=["q_proj"])
    assert type(ia) is IALoraConfig and ia.num_heads == 3 and ia.target_modules == {"q_proj"}
    lora = build_adapter_config("lora", r=4, alpha=8, dropout=0.1, target_modules="^a$")
    assert type(lora) is LoraConfig and (lora.r, lora.lora_alpha, lora.target_modules) == (4, 8, "^a$")
    with pytest.raises(ValueError, match="single head"):
        build_adapter_config("lora", num_heads=3)
    with pytest.raises(ValueError, match="no router"):
        build_adapter_config("lora", router_aux_loss_coef=0.1)
    with pytest.raises(ValueError, match="unknown adapter kind"):
        build_adapter_config("dora")


def test_llm_target_regex_matches_only_under_the_prefix():
    pattern = llm_target_regex("language_model")
    assert re.fullmatch(pattern, "language_model.model.layers.0.self_attn.q_proj")
    assert re.fullmatch(pattern, "language_model.model.layers.1.mlp.down_proj")
    assert not re.fullmatch(pattern, "audio_projector.q_proj")
    assert not re.fullmatch(pattern, "language_model_2.q_proj")
    assert not re.fullmatch(pattern, "language_model.model.layers.0.self_attn.q_proj.base_layer")
    assert re.fullmatch(llm_target_regex(""), "q_proj")
