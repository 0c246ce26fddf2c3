"""Routed-LoRA tuner layers: ``num_heads`` LoRA heads mixed per token by a softmax router.

Implements reference section 2.1 (IA-LoRA, Crab ``peft_hyper/tuners/lora.py: Linear``)::

    y = W0 x + (alpha / r) * sum_i w_i(x) * B_i(A(dropout(x))),   w = softmax(R x) per token (float32)

:class:`RoutedLoraLayer` / :class:`RoutedLoraLinear` hold the state and the fused math once;
:class:`IALoraLayer` / :class:`IALoraLinear` (one shared A) and the LoRA-MoE layer of :mod:`crab.lora.moe`
(one A_i per head, reference section 2.4) only name their modules and say whether A is shared. The
stacked A has ``a * r`` rows, ``a = 1`` (IA-LoRA) or ``num_heads`` (LoRA-MoE, row block i is ``A_i``),
so ``A x`` reshaped to ``(..., a, r)`` broadcasts against the ``num_heads`` gates in both cases.

Notable differences from the authors' code (same function at eval time):

* **Fused heads.** Crab loops over the heads and recomputes ``A(dropout(x))`` per head, drawing a new
  dropout mask each time. Here ``h = A(dropout(x))`` is computed once (for LoRA-MoE: all ``A_i`` stacked
  in one GEMM), the gates are folded in with a broadcast product and all heads run as ONE GEMM against
  the stacked B: ``flatten(w ⊗ h) @ B_stacked^T``.
  With one shared dropout mask the training-time noise differs slightly from Crab; eval is identical.
* **Stacked B storage.** ``ia_lora_B[adapter]`` is one ``nn.Linear(num_heads * r, d_out)``, i.e. a single
  weight of shape ``(d_out, num_heads * r)`` whose column block ``[:, i*r:(i+1)*r]`` is head ``B_i``
  (the ``lora_B{i}.weight`` of a Crab checkpoint, so conversion is one ``torch.cat(dim=1)``).
* **Fused A + router GEMM.** When dropout is inactive (eval mode, or ``lora_dropout=0``) A and the router
  read the same input, so they run as one GEMM ``x @ [A; R]^T``. Measured on the 2-core CPU box
  (tokens x d_in -> d_out, r=8, 3 heads, median ms, forward+backward): 2048x1024->1024: 9.8 separate vs
  7.6 fused; 1024x4096->4096: 26.1 vs 16.7; 2048x1024->2816: 20.9 vs 19.3; forward-only times are
  equal within noise. The fused-head form itself is 4-5x faster than Crab's per-head loop.
* **One pass over the output.** The stacked-B GEMM accumulates into (a copy of) the base output,
  ``addmm(W0 x, flatten(w ⊗ h), B^T)``: one read and one write of the (tokens, d_out) tensor, where writing
  a delta and adding it takes at least two of each (three with a dtype cast in between).
* **Compute in the activations' dtype.** The adapter weights are cast to ``x``'s dtype (a few KB), never
  ``x`` to the weights' dtype. peft keeps adapter weights in float32 in a bf16 model
  (``autocast_adapter_dtype``); casting the activations up, as peft's LoRA does, costs extra passes over
  every (tokens, d_in) and (tokens, d_out) tensor forward and backward. The router softmax is still
  computed in float32, gradients still reach the float32 weights in float32 (autocast-style mixed
  precision), and in a float32 model nothing changes. ``benchmarks/ia_lora.py`` measures the effect.
* **Router observability.** ``router_observer`` (set by :func:`crab.lora.router.capture_router_weights`)
  receives the float32 probabilities of every forward, and ``last_router_probs`` keeps them (with their
  graph) only when the adapter's load-balance loss is on, so nothing is retained otherwise.
* **No merging.** The weight update depends on the token through the router, so it cannot be folded
  into ``W0``; :meth:`RoutedLoraLayer.merge` raises. ``unload`` and disabling adapters work.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Optional

import torch
import torch.nn.functional as F
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from crab.lora.config import RoutedLoraConfig

__all__ = [
    "MERGE_ERROR",
    "IALoraLayer",
    "IALoraLinear",
    "RoutedLoraLayer",
    "RoutedLoraLinear",
    "RouterObserver",
    "merge_error",
]


def merge_error(method_name: str) -> str:
    """The message raised when merging a routed adapter named ``method_name`` (e.g. ``"IA-LoRA"``)."""
    return (
        f"{method_name} cannot be merged into the base weights: its per-token router makes the weight update "
        "depend on the input. Keep the adapter unmerged, or call unload() to get the base model back."
    )


MERGE_ERROR = merge_error("IA-LoRA")

# Called as observer(adapter_name, probs) with probs of shape (..., num_heads), float32, detached.
RouterObserver = Callable[[str, torch.Tensor], None]


def _cast(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``weight`` in ``dtype``; a no-op (and no autograd node) when it already is."""
    return weight if weight.dtype == dtype else weight.to(dtype)


def _dropout_is_active(dropout: nn.Module) -> bool:
    """Whether ``dropout`` would change its input now (a training-mode ``nn.Dropout`` with p > 0)."""
    return isinstance(dropout, nn.Dropout) and dropout.training and dropout.p > 0.0


class RoutedLoraLayer(BaseTunerLayer):
    """State of a routed LoRA on one base layer; one entry per adapter name in each dict.

    Subclasses set ``method_name`` (for messages), ``prefix``, ``shares_A`` (one A for all heads, or one
    ``A_i`` per head), ``adapter_layer_names`` (the A, B and router ``nn.ModuleDict`` attribute names, which
    are also the state-dict key parts), ``dropout_name`` and ``other_param_names``.

    Args:
        base_layer: the frozen ``nn.Linear`` being adapted.

    Raises:
        TypeError: if the base layer is not an ``nn.Linear``.
    """

    method_name: str
    prefix: str
    shares_A: bool
    dropout_name: str

    def __init__(self, base_layer: nn.Module, **kwargs: Any) -> None:
        self.base_layer = base_layer
        self.r: dict[str, int] = {}
        self.lora_alpha: dict[str, float] = {}
        self.scaling: dict[str, float] = {}
        self.num_heads: dict[str, int] = {}
        self.router_aux_loss_coef: dict[str, float] = {}
        self.router_aux_loss_type: dict[str, str] = {}
        for name in (self.dropout_name, *self.adapter_layer_names):  # dropout, A, B, router
            setattr(self, name, nn.ModuleDict({}))
        self.router_observer: Optional[RouterObserver] = None
        self.last_router_probs: dict[str, torch.Tensor] = {}
        self.kwargs = kwargs
        self._disable_adapters = False
        self.merged_adapters: list[str] = []

        base = self.get_base_layer()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"{self.method_name} supports nn.Linear targets only, got {type(base).__name__}")
        self.in_features = base.in_features
        self.out_features = base.out_features

    def adapter_modules(self) -> tuple[nn.ModuleDict, nn.ModuleDict, nn.ModuleDict, nn.ModuleDict]:
        """The A, B, router and dropout ``nn.ModuleDict`` s, keyed by adapter name.

        Shapes per adapter: A ``(a * r, d_in)`` with ``a = 1`` if ``shares_A`` else ``num_heads``;
        B ``(d_out, num_heads * r)``, column block i is ``B_i``; router ``(num_heads, d_in)``.
        """
        a_name, b_name, router_name = self.adapter_layer_names
        dropout = getattr(self, self.dropout_name)
        return getattr(self, a_name), getattr(self, b_name), getattr(self, router_name), dropout

    def update_layer(self, adapter_name: str, config: RoutedLoraConfig) -> None:
        """Create (or replace) the adapter ``adapter_name`` on this layer.

        Args:
            adapter_name: adapter key, ``"default"`` for a single adapter.
            config: hyperparameters of the adapter.
        """
        r, num_heads = config.r, config.num_heads
        self.r[adapter_name] = r
        self.lora_alpha[adapter_name] = config.lora_alpha
        self.scaling[adapter_name] = config.lora_alpha / r
        self.num_heads[adapter_name] = num_heads
        self.router_aux_loss_coef[adapter_name] = config.router_aux_loss_coef
        self.router_aux_loss_type[adapter_name] = config.router_aux_loss_type
        lora_A, lora_B, router, dropout = self.adapter_modules()
        dropout[adapter_name] = nn.Dropout(p=config.lora_dropout) if config.lora_dropout > 0.0 else nn.Identity()
        num_A = 1 if self.shares_A else num_heads
        lora_A[adapter_name] = nn.Linear(self.in_features, num_A * r, bias=False)
        lora_B[adapter_name] = nn.Linear(num_heads * r, self.out_features, bias=False)
        router[adapter_name] = nn.Linear(self.in_features, num_heads, bias=False)
        self.reset_adapter_parameters(adapter_name, init_weights=config.init_weights)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def reset_adapter_parameters(self, adapter_name: str, init_weights: bool = True) -> None:
        """Crab's init: A and router kaiming-uniform(a=sqrt(5)) (bound 1/sqrt(d_in)), B zero.

        A stacked LoRA-MoE A gets the same bound as ``num_heads`` separate ``A_i`` (the fan-in is d_in).

        Args:
            adapter_name: adapter to (re)initialise.
            init_weights: False draws B like A instead of zero (a non-trivial adapter for tests).
        """
        lora_A, lora_B, router, _ = self.adapter_modules()
        if adapter_name not in lora_A:
            return
        nn.init.kaiming_uniform_(lora_A[adapter_name].weight, a=math.sqrt(5))
        nn.init.kaiming_uniform_(router[adapter_name].weight, a=math.sqrt(5))
        if init_weights:
            nn.init.zeros_(lora_B[adapter_name].weight)
        else:
            nn.init.kaiming_uniform_(lora_B[adapter_name].weight, a=math.sqrt(5))

    def delete_adapter(self, adapter_name: str) -> None:
        """Delete ``adapter_name`` from this layer (also drops its kept router probabilities)."""
        self.last_router_probs.pop(adapter_name, None)
        super().delete_adapter(adapter_name)

    def merge(self, safe_merge: bool = False, adapter_names: Optional[list[str]] = None) -> None:
        """Always raises: a per-token router cannot be merged.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError(merge_error(self.method_name))

    def unmerge(self) -> None:
        """Nothing to undo, since merging is impossible."""


class RoutedLoraLinear(nn.Module, RoutedLoraLayer):
    """An ``nn.Linear`` wrapped with a routed LoRA; concrete classes also inherit their layer class.

    Args:
        base_layer: the ``nn.Linear`` to adapt (kept frozen as ``base_layer``).
        adapter_name: name of the first adapter.
        config: its hyperparameters.
    """

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: RoutedLoraConfig, **kwargs: Any) -> None:
        super().__init__()
        RoutedLoraLayer.__init__(self, base_layer, **kwargs)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    def adapter_delta(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        """The term ``(alpha/r) * sum_i w_i(x) B_i A_i dropout(x)`` of one adapter (``A_i = A`` for IA-LoRA).

        Args:
            adapter_name: which adapter.
            x: input of the base layer, shape (..., d_in).

        Returns:
            The delta, shape (..., d_out), in the compute dtype (``x``'s; see the module docstring).
        """
        weighted, lora_B = self._routed_input(adapter_name, x)
        return F.linear(weighted, lora_B)  # (..., d_out)

    def _routed_input(self, adapter_name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``flatten(scaling * w(x) ⊗ A dropout(x))`` and the stacked B, both in the compute dtype (``x``'s).

        Args:
            adapter_name: which adapter.
            x: input of the base layer, shape (..., d_in).

        Returns:
            ``weighted`` of shape (..., num_heads * r) and ``lora_B`` of shape (d_out, num_heads * r).
        """
        lora_A_dict, lora_B_dict, router_dict, dropout_dict = self.adapter_modules()
        lora_A = lora_A_dict[adapter_name].weight  # (a * r, d_in), a = 1 or num_heads
        router = router_dict[adapter_name].weight  # (num_heads, d_in)
        dropout = dropout_dict[adapter_name]
        r, num_heads = self.r[adapter_name], self.num_heads[adapter_name]
        dtype = x.dtype
        if _dropout_is_active(dropout):
            h = F.linear(dropout(x), _cast(lora_A, dtype))  # (..., a * r)
            logits = F.linear(x, _cast(router, dtype))  # (..., num_heads); the router sees the undropped x
        else:
            fused = _cast(torch.cat([lora_A, router], dim=0), dtype)  # (a * r + num_heads, d_in)
            sizes = [lora_A.shape[0], num_heads]
            h, logits = F.linear(x, fused).split_with_sizes(sizes, dim=-1)  # (..., a * r), (..., num_heads)
        probs = torch.softmax(logits, dim=-1, dtype=torch.float32)  # (..., num_heads)
        self._record_router_probs(adapter_name, probs)

        # Scaling is folded into the float32 gates: (..., num_heads) is the smallest tensor on the path.
        gates = _cast(probs * self.scaling[adapter_name], h.dtype)  # (..., num_heads)
        # h as (..., a, r): a shared A broadcasts over the heads, LoRA-MoE pairs head i with its own A_i x.
        weighted = (gates.unsqueeze(-1) * h.unflatten(-1, (-1, r))).flatten(-2)  # (..., num_heads * r)
        return weighted, _cast(lora_B_dict[adapter_name].weight, weighted.dtype)

    def _record_router_probs(self, adapter_name: str, probs: torch.Tensor) -> None:
        """Hand ``probs`` (..., num_heads) to the observer and keep them for the aux loss if it is on."""
        if self.router_observer is not None:
            self.router_observer(adapter_name, probs.detach())
        if self.router_aux_loss_coef[adapter_name] > 0.0:
            self.last_router_probs[adapter_name] = probs

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Base output plus the routed delta of every active adapter.

        Args:
            x: input, shape (..., d_in).

        Returns:
            Output of shape (..., d_out) in the base layer's output dtype.
        """
        result = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return result
        lora_A_dict = self.adapter_modules()[0]
        for adapter_name in self.active_adapters:
            if adapter_name not in lora_A_dict:
                continue
            weighted, lora_B = self._routed_input(adapter_name, x)  # (..., num_heads * r), (d_out, num_heads * r)
            if weighted.dtype == result.dtype:
                # result + weighted @ B^T as one GEMM accumulating into a copy of the base output.
                flat = torch.addmm(
                    result.reshape(-1, self.out_features), weighted.reshape(-1, lora_B.shape[1]), lora_B.t()
                )  # (tokens, d_out)
                result = flat.view(result.shape)  # (..., d_out)
            else:  # a base layer whose output dtype differs from its input's
                result = result + F.linear(weighted, lora_B).to(result.dtype)
        return result

    def __repr__(self) -> str:
        return self.prefix.rstrip("_") + "." + super().__repr__()


class IALoraLayer(RoutedLoraLayer):
    """IA-LoRA state on one base layer: one shared A (r, d_in), stacked B heads, router (reference 2.1)."""

    method_name = "IA-LoRA"
    prefix = "ia_lora_"
    shares_A = True
    adapter_layer_names: tuple[str, ...] = ("ia_lora_A", "ia_lora_B", "ia_lora_router")
    dropout_name = "ia_lora_dropout"
    other_param_names: tuple[str, ...] = (
        "r",
        "lora_alpha",
        "scaling",
        "num_heads",
        "ia_lora_dropout",
        "router_aux_loss_coef",
        "router_aux_loss_type",
    )


class IALoraLinear(RoutedLoraLinear, IALoraLayer):
    """An ``nn.Linear`` wrapped with IA-LoRA (the module that replaces each target linear).

    Args:
        base_layer: the ``nn.Linear`` to adapt (kept frozen as ``base_layer``).
        adapter_name: name of the first adapter.
        config: its hyperparameters (an :class:`~crab.lora.config.IALoraConfig`).
    """
