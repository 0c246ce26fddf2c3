"""LoRA-MoE, the paper's mixture-of-LoRA baseline (reference section 2.4), as the peft method ``lora_moe``.

Every adapted linear ``W0`` gets ``num_heads`` independent experts ``(A_i, B_i)`` and the same per-token
float32 softmax router as IA-LoRA::

    y = W0 x + (alpha / r) * sum_i w_i(x) * B_i(A_i(dropout(x))),   w = softmax(R x) per token

It isolates what IA-LoRA's shared A buys: same router, same rank per head, same init (A_i and router
kaiming-uniform, B_i zero), but ``num_heads`` times LoRA's A and B parameters instead of one A.

How it differs from the authors' code: Crab's ``peft_hyper/tuners/mmoelora*.py`` are dead MOELoRA
variants (routing per task id, rank split across experts, imports that do not exist); the baseline the
paper compares against is this one, which is not in their code. It is computed fused, without a loop over
experts: the A_i are stacked row-wise into one ``(num_heads * r, d_in)`` weight, so ONE GEMM
``x @ [A_1; ...; A_n; R]^T`` gives every expert's ``A_i x`` and the router logits (two GEMMs while dropout
is active), and ONE GEMM against the column-stacked ``B = [B_1 ... B_n]`` applies the router-weighted
experts. All of that is :class:`~crab.lora.layer.RoutedLoraLinear`, shared with IA-LoRA; this module only
names the modules (``lora_moe_A``, ``lora_moe_B``, ``lora_moe_router``) and registers the method, so the
router capture and aux loss of :mod:`crab.lora.router` work unchanged.
"""

from __future__ import annotations

from crab.lora.config import LORA_MOE_PEFT_TYPE, LoraMoeConfig
from crab.lora.layer import RoutedLoraLayer, RoutedLoraLinear
from crab.lora.model import RoutedLoraModel, register_routed_method

__all__ = ["LORA_MOE_NAME", "LORA_MOE_PREFIX", "LoraMoeLayer", "LoraMoeLinear", "LoraMoeModel", "register_lora_moe"]

LORA_MOE_NAME = "lora_moe"
LORA_MOE_PREFIX = "lora_moe_"


class LoraMoeLayer(RoutedLoraLayer):
    """LoRA-MoE state on one base layer: stacked A ``(num_heads * r, d_in)`` whose row block i is ``A_i``,
    stacked B ``(d_out, num_heads * r)`` whose column block i is ``B_i``, router ``(num_heads, d_in)``."""

    method_name = "LoRA-MoE"
    prefix = LORA_MOE_PREFIX
    shares_A = False
    adapter_layer_names: tuple[str, ...] = ("lora_moe_A", "lora_moe_B", "lora_moe_router")
    dropout_name = "lora_moe_dropout"
    other_param_names: tuple[str, ...] = (
        "r",
        "lora_alpha",
        "scaling",
        "num_heads",
        "lora_moe_dropout",
        "router_aux_loss_coef",
        "router_aux_loss_type",
    )


class LoraMoeLinear(RoutedLoraLinear, LoraMoeLayer):
    """An ``nn.Linear`` wrapped with LoRA-MoE (the module that replaces each target linear).

    Args:
        base_layer: the ``nn.Linear`` to adapt (kept frozen as ``base_layer``).
        adapter_name: name of the first adapter.
        config: its hyperparameters (a :class:`~crab.lora.config.LoraMoeConfig`).
    """


class LoraMoeModel(RoutedLoraModel):
    """Injects :class:`LoraMoeLinear` into the matched linears of a model (built by peft)."""

    prefix: str = LORA_MOE_PREFIX
    tuner_layer_cls = LoraMoeLayer
    linear_cls = LoraMoeLinear


def register_lora_moe() -> None:
    """Register LoRA-MoE with peft under the name ``lora_moe`` (``PeftType.LORA_MOE``); idempotent."""
    register_routed_method(LORA_MOE_NAME, LORA_MOE_PEFT_TYPE, LoraMoeConfig, LoraMoeModel)
