"""Unit tests of the fast paths of crab.lora.layer: addmm accumulation, compute in the activations' dtype.

Every path is compared with ``reference``, the paper formula (reference section 2.1) evaluated in float64
from the layer's own weights, for outputs and for gradients. The layer's router softmax runs in float32 by
design, so float64 layers match to ~1e-7, not to float64 precision.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from crab.lora import IALoraConfig, IALoraLinear


def make_layer(d_in: int = 16, d_out: int = 12, seed: int = 0, **config_kwargs) -> IALoraLinear:
    torch.manual_seed(seed)
    kwargs = {"r": 4, "lora_alpha": 8, "num_heads": 3, "lora_dropout": 0.0, "init_weights": False}
    kwargs.update(config_kwargs)
    return IALoraLinear(nn.Linear(d_in, d_out, bias=True), "default", IALoraConfig(**kwargs))


def reference(layer: IALoraLinear, x: torch.Tensor) -> torch.Tensor:
    """y = W0 x + b + (alpha/r) * sum_i softmax(R x)_i B_i A x, in float64 (one head at a time)."""
    name = "default"
    r, num_heads, scaling = layer.r[name], layer.num_heads[name], layer.scaling[name]
    x = x.double()
    weight, bias = layer.base_layer.weight.double(), layer.base_layer.bias.double()
    lora_A, router = layer.ia_lora_A[name].weight.double(), layer.ia_lora_router[name].weight.double()
    lora_B = layer.ia_lora_B[name].weight.double()
    w = torch.softmax(F.linear(x, router), dim=-1)  # (..., num_heads)
    y = F.linear(x, weight, bias)
    for i in range(num_heads):
        y = y + scaling * w[..., i : i + 1] * F.linear(F.linear(x, lora_A), lora_B[:, i * r : (i + 1) * r])
    return y


def adapter_grads(layer: IALoraLinear) -> dict[str, torch.Tensor]:
    return {part: getattr(layer, f"ia_lora_{part}")["default"].weight.grad for part in ("A", "B", "router")}


def reference_grads(layer: IALoraLinear, x: torch.Tensor, grad_out: torch.Tensor) -> dict[str, torch.Tensor]:
    """Float64 gradients of <reference(x), grad_out> with respect to the adapter weights and x."""
    clone = make_layer(layer.in_features, layer.out_features).double()
    clone.load_state_dict({k: v.double() for k, v in layer.state_dict().items()})
    x64 = x.detach().double().requires_grad_(True)
    (reference(clone, x64) * grad_out.double()).sum().backward()
    return {**adapter_grads(clone), "x": x64.grad}


def test_fused_gradients_equal_the_per_head_formula_in_float64():
    layer = make_layer().double().train()
    x = torch.randn(2, 5, 16, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(2, 5, 12, dtype=torch.float64)
    out = layer(x)
    torch.testing.assert_close(out, reference(layer, x), atol=1e-6, rtol=0)
    (out * grad_out).sum().backward()
    expected = reference_grads(layer, x, grad_out)
    for name, grad in {**adapter_grads(layer), "x": x.grad}.items():
        assert grad.abs().max() > 1e-3, name  # a real gradient, not a zero that trivially matches
        torch.testing.assert_close(grad, expected[name], atol=1e-6, rtol=0, msg=name)


def test_adapter_delta_is_forward_minus_base():
    layer = make_layer().double()
    x = torch.randn(3, 16, dtype=torch.float64)
    with torch.no_grad():
        delta = layer(x) - layer.base_layer(x)
        assert delta.abs().max() > 0.1
        torch.testing.assert_close(layer.adapter_delta("default", x), delta, atol=1e-6, rtol=0)


def test_bf16_model_with_float32_adapter_computes_in_bf16_close_to_float64():
    # peft's autocast_adapter_dtype keeps the adapter in float32 inside a bf16 model.
    layer = make_layer(d_in=64, d_out=48)
    layer.base_layer.to(torch.bfloat16)
    assert layer.ia_lora_A["default"].weight.dtype == torch.float32
    x = torch.randn(4, 9, 64).to(torch.bfloat16).requires_grad_(True)
    grad_out = torch.randn(4, 9, 48).to(torch.bfloat16)
    out = layer(x)
    assert out.dtype == torch.bfloat16
    expected = reference(layer, x)
    delta = expected - F.linear(x.double(), layer.base_layer.weight.double(), layer.base_layer.bias.double())
    # bf16 output rounding is ~0.4% of |y|; a wrong gate, scaling or head would be a delta-sized error.
    assert (out.double() - expected).abs().max() < 0.1 * delta.abs().max()
    assert (out.double() - expected).abs().max() < 2e-2 * expected.abs().max()
    (out * grad_out).sum().backward()
    assert x.grad.dtype == torch.bfloat16
    reference_values = reference_grads(layer, x, grad_out)
    for name, grad in {**adapter_grads(layer), "x": x.grad}.items():
        assert grad.dtype == (torch.bfloat16 if name == "x" else torch.float32), name
        want = reference_values[name]
        assert (grad.double() - want).norm() < 2e-2 * want.norm(), name


def test_autocast_bf16_matches_float32_output():
    layer = make_layer(d_in=64, d_out=48)
    x = torch.randn(4, 9, 64, requires_grad=True)
    with torch.no_grad():
        full = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), full, atol=3e-2 * full.abs().max().item(), rtol=0)
    out.float().sum().backward()
    assert all(grad.dtype == torch.float32 and grad.abs().max() > 0 for grad in adapter_grads(layer).values())


class Float64OutputLinear(nn.Linear):
    """A linear whose output dtype differs from its input's (as some quantized nn.Linear subclasses do)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).double()


def test_output_dtype_other_than_the_input_uses_the_separate_add():
    torch.manual_seed(0)
    config = IALoraConfig(r=4, lora_alpha=8, num_heads=3, lora_dropout=0.0, init_weights=False)
    layer = IALoraLinear(Float64OutputLinear(16, 12), "default", config)
    x = torch.randn(5, 16)
    with torch.no_grad():
        out = layer(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, reference(layer, x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(16,), (7, 16), (2, 3, 16)])
def test_any_leading_shape(shape):
    layer = make_layer().double()
    x = torch.randn(*shape, dtype=torch.float64)
    with torch.no_grad():
        out = layer(x)
    assert out.shape == (*shape[:-1], 12)
    torch.testing.assert_close(out, reference(layer, x), atol=1e-6, rtol=0)


def test_state_dict_keys_are_unchanged():
    # Saved adapters must keep loading: the fast paths add no parameters, buffers or renamed weights.
    assert set(make_layer().state_dict()) == {
        "base_layer.weight",
        "base_layer.bias",
        "ia_lora_A.default.weight",
        "ia_lora_B.default.weight",
        "ia_lora_router.default.weight",
    }
