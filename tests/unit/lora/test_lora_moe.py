"""Unit tests of crab.lora.moe: the fused LoRA-MoE layer against a per-expert loop, peft integration,
router capture and aux loss, save/load in a fresh process, and the ``finetune`` stage's ``attach_adapter``.

``naive_lora_moe`` is a deliberately plain loop over the experts written from reference section 2.4
(n independent (A_i, B_i) pairs, the IA-LoRA token router): ``y = W0 x + alpha/r * sum_i w_i B_i A_i x``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftConfig, get_peft_model
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
from peft.utils import PeftType
from torch import nn

from crab.config import load_params
from crab.lora import (
    IALoraConfig,
    IALoraLinear,
    LoraMoeConfig,
    LoraMoeLinear,
    LoraMoeModel,
    RoutedLoraConfig,
    build_adapter_config,
    capture_router_weights,
    load_balance_loss,
    register_lora_moe,
    router_aux_loss,
)
from crab.models.configuration_crab import crab_tiny_config
from crab.models.modeling_crab import CrabForConditionalGeneration
from crab.train.finetune import attach_adapter, trainable_components

REPO = Path(__file__).resolve().parents[3]
PARTS = ("A", "B", "router")

# Output of the seeded layer in `test_seeded_layer_matches_pinned_values` (torch 2.13, CPU, float32).
EXPECTED_BASE_OUT = torch.tensor([[0.16284698, -0.13851885, 0.51355171, -0.50146210],
                                  [-1.53350282, 0.02834483, 0.39504629, 0.72499162]])  # fmt: skip
EXPECTED_OUT = torch.tensor([[0.19328849, -0.13090953, 0.47844070, -0.47241592],
                             [-1.53905487, -0.35796791, 0.43975338, 0.64784485]])  # fmt: skip

LOAD_SCRIPT = textwrap.dedent(
    """
    import sys
    from collections import OrderedDict
    import torch
    from torch import nn
    import crab.lora  # registers LORA_MOE with peft
    from peft import PeftConfig, PeftModel

    adapter_dir, base_path, x_path, out_path = sys.argv[1:5]
    base = nn.Sequential(OrderedDict(
        q_proj=nn.Linear(8, 8), act=nn.ReLU(), v_proj=nn.Linear(8, 8), head=nn.Linear(8, 2)))
    base.load_state_dict(torch.load(base_path))
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        out = model(torch.load(x_path))
    torch.save({"out": out, "config_cls": type(PeftConfig.from_pretrained(adapter_dir)).__name__,
                "layer_cls": type(model.base_model.model.q_proj).__name__}, out_path)
    """
)


def naive_lora_moe(layer: LoraMoeLinear, x: torch.Tensor, dropped_x: torch.Tensor | None = None) -> torch.Tensor:
    """y = W0 x + sum_i w_i(x) * B_i(A_i(dropout(x))) * alpha/r, one expert at a time."""
    name = "default"
    r, num_heads, scaling = layer.r[name], layer.num_heads[name], layer.scaling[name]
    lora_A, lora_B = layer.lora_moe_A[name].weight, layer.lora_moe_B[name].weight  # (n*r, d_in), (d_out, n*r)
    a_input = x if dropped_x is None else dropped_x
    w = torch.softmax(layer.lora_moe_router[name](x).float(), dim=-1).to(x.dtype)  # (..., num_heads)
    y = layer.base_layer(x)
    for i in range(num_heads):
        expert_A, expert_B = lora_A[i * r : (i + 1) * r], lora_B[:, i * r : (i + 1) * r]  # (r, d_in), (d_out, r)
        y = y + w[..., i : i + 1] * F.linear(F.linear(a_input, expert_A), expert_B) * scaling
    return y


def make_layer(d_in: int = 16, d_out: int = 12, dtype: torch.dtype = torch.float32, **config_kwargs) -> LoraMoeLinear:
    """A LoRA-MoE layer with random (non-zero) B unless init_weights=True is passed."""
    torch.manual_seed(0)
    kwargs = {"r": 4, "lora_alpha": 8, "num_heads": 3, "lora_dropout": 0.0, "init_weights": False}
    kwargs.update(config_kwargs)
    return LoraMoeLinear(nn.Linear(d_in, d_out, bias=True, dtype=dtype), "default", LoraMoeConfig(**kwargs))


def seq_base() -> nn.Sequential:
    """The small base model of the peft tests (same layout as in LOAD_SCRIPT)."""
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(q_proj=nn.Linear(8, 8), act=nn.ReLU(), v_proj=nn.Linear(8, 8), head=nn.Linear(8, 2))
    )


def moe_peft(**config_kwargs):
    return get_peft_model(seq_base(), LoraMoeConfig(target_modules=["q_proj", "v_proj"], **config_kwargs))


def moe_layers(model: nn.Module) -> list[LoraMoeLinear]:
    return [m for m in model.modules() if isinstance(m, LoraMoeLinear)]


# ---------------------------------------------------------------- layer math


@pytest.mark.parametrize("training", [False, True])
def test_fused_equals_naive_per_expert_loop_in_float64(training):
    layer = make_layer(dtype=torch.float64).train(training)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    fused, naive = layer(x), naive_lora_moe(layer, x)
    assert (fused - layer.base_layer(x)).abs().max() > 0.1  # the adapter term is far from zero
    torch.testing.assert_close(fused, naive, atol=1e-6, rtol=0)


def test_fused_gradients_equal_the_per_expert_loop_in_float64():
    layer = make_layer(dtype=torch.float64)
    clone = make_layer(dtype=torch.float64)
    x = torch.randn(3, 16, dtype=torch.float64)
    x_fused, x_naive = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    grad_out = torch.randn(3, 12, dtype=torch.float64)
    (layer(x_fused) * grad_out).sum().backward()
    (naive_lora_moe(clone, x_naive) * grad_out).sum().backward()
    for part in PARTS:
        grad = getattr(layer, f"lora_moe_{part}")["default"].weight.grad
        assert grad.abs().max() > 1e-3, part
        torch.testing.assert_close(grad, getattr(clone, f"lora_moe_{part}")["default"].weight.grad, atol=1e-6, rtol=0)
    torch.testing.assert_close(x_fused.grad, x_naive.grad, atol=1e-6, rtol=0)


def test_fused_equals_naive_with_dropout_on_the_separate_gemm_path():
    layer = make_layer(dtype=torch.float64, lora_dropout=0.3).train()
    x = torch.randn(3, 16, dtype=torch.float64)
    torch.manual_seed(7)
    fused = layer(x)
    torch.manual_seed(7)
    dropped = F.dropout(x, p=0.3, training=True)  # one mask shared by all experts
    torch.testing.assert_close(fused, naive_lora_moe(layer, x, dropped_x=dropped), atol=1e-6, rtol=0)
    assert not torch.allclose(fused, naive_lora_moe(layer, x), atol=1e-3)


def test_seeded_layer_matches_pinned_values():
    torch.manual_seed(0)
    config = LoraMoeConfig(r=2, lora_alpha=4, lora_dropout=0.0, num_heads=3, init_weights=False)
    layer = LoraMoeLinear(nn.Linear(6, 4), "default", config)
    x = torch.randn(2, 6)
    with torch.no_grad():
        torch.testing.assert_close(layer.base_layer(x), EXPECTED_BASE_OUT, atol=1e-6, rtol=0)
        torch.testing.assert_close(layer(x), EXPECTED_OUT, atol=1e-6, rtol=0)


def test_experts_with_equal_A_reduce_to_ia_lora():
    # Tying every A_i to one A gives IA-LoRA's function: the two methods differ only in A.
    moe = make_layer(dtype=torch.float64)
    torch.manual_seed(1)
    config = IALoraConfig(r=4, lora_alpha=8, num_heads=3, lora_dropout=0.0, init_weights=False)
    ia = IALoraLinear(nn.Linear(16, 12, dtype=torch.float64), "default", config)
    with torch.no_grad():
        moe.lora_moe_A["default"].weight.copy_(ia.ia_lora_A["default"].weight.repeat(3, 1))
        for part in ("B", "router"):
            getattr(moe, f"lora_moe_{part}")["default"].weight.copy_(getattr(ia, f"ia_lora_{part}")["default"].weight)
        moe.base_layer.load_state_dict(ia.base_layer.state_dict())
        x = torch.randn(4, 16, dtype=torch.float64)
        torch.testing.assert_close(moe(x), ia(x), atol=1e-12, rtol=0)


def test_one_expert_equals_peft_lora_with_the_same_weights():
    # With num_heads=1 the router weight is exactly 1, so LoRA-MoE is plain LoRA.
    moe = make_layer(dtype=torch.float64, num_heads=1)
    lora = get_peft_model(
        nn.Sequential(OrderedDict(q_proj=nn.Linear(16, 12, dtype=torch.float64))),
        LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj"], init_lora_weights=False),
    ).base_model.model.q_proj
    with torch.no_grad():
        lora.base_layer.load_state_dict(moe.base_layer.state_dict())
        lora.lora_A["default"].weight.copy_(moe.lora_moe_A["default"].weight)
        lora.lora_B["default"].weight.copy_(moe.lora_moe_B["default"].weight)
        x = torch.randn(5, 16, dtype=torch.float64)
        torch.testing.assert_close(moe(x), lora(x), atol=1e-12, rtol=0)


def test_stacked_shapes_and_init():
    layer = make_layer(d_in=16, d_out=12, init_weights=True)
    assert layer.lora_moe_A["default"].weight.shape == (3 * 4, 16)  # (num_heads * r, d_in), row block i = A_i
    assert layer.lora_moe_B["default"].weight.shape == (12, 3 * 4)  # (d_out, num_heads * r)
    assert layer.lora_moe_router["default"].weight.shape == (3, 16)
    assert torch.count_nonzero(layer.lora_moe_B["default"].weight) == 0
    bound = 1 / math.sqrt(16)  # kaiming_uniform_(a=sqrt(5)) on fan_in 16, as for separate A_i
    for weight in (layer.lora_moe_A["default"].weight, layer.lora_moe_router["default"].weight):
        assert weight.abs().max() <= bound
        assert weight.abs().max() > 0.5 * bound
    x = torch.randn(3, 16)
    with torch.no_grad():
        assert torch.equal(layer(x), layer.base_layer(x))


def test_router_rows_sum_to_one_in_float32_for_bf16_input():
    layer = make_layer(dtype=torch.bfloat16)
    seen = []
    layer.router_observer = lambda adapter, probs: seen.append(probs)
    out = layer(torch.randn(2, 7, 16, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16
    (probs,) = seen
    assert probs.dtype == torch.float32 and probs.shape == (2, 7, 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 7), atol=1e-6, rtol=0)
    assert probs.std(dim=-1).max() > 0  # per-token weights, not a constant


# ---------------------------------------------------------------- peft integration


def test_only_adapter_parameters_are_trainable_and_counts_are_num_heads_loras():
    model = moe_peft()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        f"base_model.model.{proj}.lora_moe_{part}.default.weight" for proj in ("q_proj", "v_proj") for part in PARTS
    }
    counts = dict.fromkeys(PARTS, 0)
    for name, param in model.named_parameters():
        if param.requires_grad:
            counts[name.split(".")[-3].removeprefix("lora_moe_")] += param.numel()
    lora = get_peft_model(seq_base(), LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    assert counts["A"] + counts["B"] == 3 * sum(p.numel() for p in lora.parameters() if p.requires_grad)
    assert counts == {"A": 2 * 3 * 8 * 8, "B": 2 * 8 * 3 * 8, "router": 2 * 3 * 8}


def test_merge_raises_while_unload_and_disable_give_the_base():
    model = moe_peft(init_weights=False)
    x = torch.randn(3, 8)
    with torch.no_grad():
        base = seq_base()(x)
        assert not torch.allclose(model(x), base)
        with model.disable_adapter():
            assert torch.equal(model(x), base)
    with pytest.raises(NotImplementedError, match="LoRA-MoE cannot be merged"):
        model.merge_and_unload()
    assert isinstance(model.base_model.model.q_proj, LoraMoeLinear)
    unloaded = model.unload()
    assert type(unloaded.q_proj) is nn.Linear
    assert torch.equal(unloaded(x), base)


def test_ia_lora_cannot_stack_on_lora_moe():
    model = moe_peft()
    with pytest.raises(ValueError, match="different peft types"):
        model.add_adapter("other", IALoraConfig(target_modules=["q_proj"]))


def test_save_then_load_in_a_fresh_process_gives_identical_output(tmp_path: Path):
    model = moe_peft(r=2, num_heads=2, lora_dropout=0.1)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randn(6, 8)
    model.train()
    for _ in range(3):
        model(x).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["peft_type"] == "LORA_MOE"
    torch.save(seq_base().state_dict(), tmp_path / "base.pt")
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        expected = model(x)
        with model.disable_adapter():
            assert (expected - model(x)).abs().max() > 1e-4  # the trained adapter changes the output
    args = [str(tmp_path / name) for name in ("adapter", "base.pt", "x.pt", "out.pt")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    loaded = torch.load(tmp_path / "out.pt")
    assert (loaded["config_cls"], loaded["layer_cls"]) == ("LoraMoeConfig", "LoraMoeLinear")
    assert torch.equal(loaded["out"], expected)


# ---------------------------------------------------------------- router capture and aux loss


def test_router_capture_api_reads_lora_moe_layers():
    model = moe_peft(init_weights=False)
    x = torch.randn(2, 5, 8)
    with torch.no_grad(), capture_router_weights(model) as capture:
        capture.set_token_mask(torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]))
        model(x)
    assert set(capture.stats) == {"base_model.model.q_proj", "base_model.model.v_proj"}
    for stats in capture.stats.values():
        assert stats.token_count.item() == 8
        torch.testing.assert_close(stats.mean_probs().sum(), torch.tensor(1.0, dtype=torch.float64))
    assert all(layer.router_observer is None for layer in moe_layers(model))


def test_aux_loss_is_off_by_default_and_trains_the_router_when_on():
    model = moe_peft()
    model(torch.randn(4, 8))
    assert router_aux_loss(model).item() == 0.0 and all(not m.last_router_probs for m in moe_layers(model))
    model = moe_peft(router_aux_loss_coef=0.5, router_aux_loss_type="switch")
    model(torch.randn(6, 8))
    layers = moe_layers(model)
    expected = sum(0.5 * load_balance_loss(m.last_router_probs["default"], "switch") for m in layers)
    loss = router_aux_loss(model)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert layers[0].lora_moe_router["default"].weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- config, builder, registry


def test_config_builder_and_registry():
    config = build_adapter_config("lora_moe", r=4, alpha=8, dropout=0.1, num_heads=5, router_aux_loss_coef=0.1)
    assert type(config) is LoraMoeConfig and config.peft_type is PeftType.LORA_MOE
    assert (config.r, config.lora_alpha, config.num_heads, config.router_aux_loss_coef) == (4, 8, 5, 0.1)
    assert build_adapter_config("lora_moe").num_heads == 3
    register_lora_moe()  # idempotent
    assert PEFT_TYPE_TO_CONFIG_MAPPING[PeftType.LORA_MOE] is LoraMoeConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING[PeftType.LORA_MOE] is LoraMoeModel
    assert PEFT_TYPE_TO_PREFIX_MAPPING[PeftType.LORA_MOE] == "lora_moe_"
    with pytest.raises(ValueError, match="num_heads"):
        LoraMoeConfig(num_heads=0)
    with pytest.raises(TypeError, match="abstract"):
        RoutedLoraConfig()


def test_config_round_trips_through_peft(tmp_path: Path):
    config = LoraMoeConfig(r=4, num_heads=5, router_aux_loss_coef=0.1, modules_to_save=["head"])
    config.save_pretrained(tmp_path)
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert type(loaded) is LoraMoeConfig
    assert loaded.to_dict() == config.to_dict()


# ---------------------------------------------------------------- finetune stage


def test_attach_adapter_with_lora_moe_trains_adapter_and_projectors_only():
    params = load_params(REPO / "params.yaml")
    lora = dataclasses.replace(params.finetune.lora, r=2, alpha=4, num_heads=2, router_aux_loss_coef=0.5)
    cfg = dataclasses.replace(params.finetune, adapter="lora_moe", lora=lora)
    config = crab_tiny_config(64, video_token_id=5, audio_token_id=6, image_token_id=7)
    torch.manual_seed(0)
    base = CrabForConditionalGeneration(config)
    projector_sizes = {name: sum(p.numel() for p in getattr(base, name).parameters())
                       for name in ("visual_projector", "audio_projector")}  # fmt: skip
    model = attach_adapter(base, cfg)

    layers = {name: m for name, m in model.named_modules() if isinstance(m, LoraMoeLinear)}
    assert len(layers) == 7 * config.text_config.num_hidden_layers
    assert all(".language_model." in name for name in layers)
    assert all(m.num_heads["default"] == 2 and m.router_aux_loss_coef["default"] == 0.5 for m in layers.values())
    # num_heads x (A + B) + router, per adapted linear
    expected_adapter = sum(2 * 2 * (m.in_features + m.out_features) + 2 * m.in_features for m in layers.values())
    assert trainable_components(model) == {"adapter": expected_adapter, **projector_sizes}

    ids = torch.randint(8, 64, (2, 6), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids)
    assert router_aux_loss(model).item() > 0.0
