"""Router analysis and the optional router load-balance loss of the routed adapters (IA-LoRA, LoRA-MoE).

Reference section 2: Crab's analysis code (``utils/tsen_lora.py``, the dead ``models/modeling_llama.py``)
reads the per-layer router weights to show which B heads each task uses; section 2.3 sketches a
load-balance loss (``cv_squared``) that Crab left commented out.

* :func:`capture_router_weights` accumulates, during normal forward passes (no second pass), the running
  sum of the router probabilities per head and the number of tokens for every routed layer (any
  :class:`~crab.lora.layer.RoutedLoraLayer`: IA-LoRA or LoRA-MoE). By default
  every token of every forward is counted; after :meth:`RouterCapture.set_token_mask` only tokens whose
  mask entry is true are (e.g. the attention mask, to skip padding). The mask must have the shape of the
  layer input without its feature dim, otherwise a ``ValueError`` is raised rather than guessing.
* :func:`router_aux_loss` sums ``coef * loss(probs)`` over the layers whose adapter has
  ``router_aux_loss_coef > 0``, from the probabilities the last forward kept (all tokens, padding
  included). It returns a zero tensor when the loss is off, which is the Crab setting.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Optional

import torch
from torch import nn

from crab.lora.layer import RoutedLoraLayer

__all__ = [
    "RouterCapture",
    "RouterStats",
    "capture_router_weights",
    "cv_squared",
    "load_balance_loss",
    "router_aux_loss",
]

logger = logging.getLogger(__name__)


@dataclass
class RouterStats:
    """Running router statistics of one layer.

    Attributes:
        prob_sum: sum over counted tokens of the router probabilities, shape (num_heads,), float64.
        token_count: number of counted tokens, shape (), float64 (a tensor, so counting never syncs a GPU).
    """

    prob_sum: torch.Tensor
    token_count: torch.Tensor

    def mean_probs(self) -> torch.Tensor:
        """Average routing weight per head over the counted tokens, shape (num_heads,); zeros if none."""
        return self.prob_sum / self.token_count.clamp_min(1.0)


class RouterCapture:
    """Collects :class:`RouterStats` per layer while :func:`capture_router_weights` is active.

    Attributes:
        stats: layer name (as in ``model.named_modules()``) -> statistics, filled on first use.
        adapter_name: the adapter whose router is observed.
    """

    def __init__(self, adapter_name: str) -> None:
        self.adapter_name = adapter_name
        self.stats: dict[str, RouterStats] = {}
        self._token_mask: Optional[torch.Tensor] = None

    def set_token_mask(self, mask: Optional[torch.Tensor]) -> None:
        """Count only tokens where ``mask`` is true in the following forwards; None counts all tokens.

        Args:
            mask: shape (B, L) for layer inputs of shape (B, L, d_in), any dtype (nonzero = counted).
        """
        self._token_mask = mask

    def observe(self, layer_name: str, adapter_name: str, probs: torch.Tensor) -> None:
        """Add one forward's router probabilities to ``stats[layer_name]``.

        Args:
            layer_name: the reporting layer.
            adapter_name: the adapter that computed ``probs``; other adapters are ignored.
            probs: shape (..., num_heads), float32.

        Raises:
            ValueError: if a token mask is set and its shape is not ``probs.shape[:-1]``.
        """
        if adapter_name != self.adapter_name:
            return
        probs = probs.detach().double()
        num_heads = probs.shape[-1]
        if self._token_mask is None:
            prob_sum = probs.reshape(-1, num_heads).sum(dim=0)  # (num_heads,)
            count = torch.tensor(float(probs.numel() // num_heads), dtype=torch.float64, device=probs.device)
        else:
            if tuple(self._token_mask.shape) != tuple(probs.shape[:-1]):
                raise ValueError(
                    f"token mask shape {tuple(self._token_mask.shape)} does not match the router input "
                    f"{tuple(probs.shape[:-1])} of {layer_name}; set a matching mask or None"
                )
            weight = (self._token_mask != 0).to(device=probs.device, dtype=torch.float64)  # (...)
            prob_sum = (probs * weight.unsqueeze(-1)).reshape(-1, num_heads).sum(dim=0)  # (num_heads,)
            count = weight.sum()
        entry = self.stats.get(layer_name)
        if entry is None:
            self.stats[layer_name] = RouterStats(prob_sum=prob_sum, token_count=count)
        else:
            entry.prob_sum = entry.prob_sum + prob_sum
            entry.token_count = entry.token_count + count


def _routed_layers(model: nn.Module) -> list[tuple[str, RoutedLoraLayer]]:
    return [(name, module) for name, module in model.named_modules() if isinstance(module, RoutedLoraLayer)]


@contextmanager
def capture_router_weights(model: nn.Module, adapter_name: Optional[str] = None) -> Iterator[RouterCapture]:
    """Record router statistics of every routed layer (IA-LoRA, LoRA-MoE) during the forwards in the block.

    Example::

        with capture_router_weights(peft_model) as capture:
            capture.set_token_mask(batch["attention_mask"])
            peft_model(**batch)
        head_usage = {name: s.mean_probs() for name, s in capture.stats.items()}

    Args:
        model: a model containing routed layers (a ``PeftModel`` or the injected model).
        adapter_name: adapter to observe; None means the first active adapter.

    Yields:
        The :class:`RouterCapture` whose ``stats`` fill up as forwards run.

    Raises:
        ValueError: if the model has no routed layer, or a layer already has an observer.
    """
    layers = _routed_layers(model)
    if not layers:
        raise ValueError("the model has no IA-LoRA layer (nor LoRA-MoE layer) to capture router weights from")
    if adapter_name is None:
        adapter_name = layers[0][1].active_adapters[0]
    busy = [name for name, layer in layers if layer.router_observer is not None]
    if busy:
        raise ValueError(f"router weights are already being captured on {busy[0]} (nested capture)")
    capture = RouterCapture(adapter_name)
    for name, layer in layers:
        layer.router_observer = partial(capture.observe, name)
    try:
        yield capture
    finally:
        for _, layer in layers:
            layer.router_observer = None
        logger.debug("captured router weights of %d layers", len(capture.stats))


def cv_squared(values: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation ``Var(v) / (Mean(v)^2 + 1e-10)`` (Crab's ``cv_squared``).

    Args:
        values: shape (n,).

    Returns:
        Scalar tensor; 0 when ``n == 1``.
    """
    if values.numel() <= 1:
        return values.new_zeros(())
    values = values.float()
    return values.var() / (values.mean() ** 2 + 1e-10)


def load_balance_loss(probs: torch.Tensor, kind: str) -> torch.Tensor:
    """Load-balance loss of one layer's router probabilities.

    Args:
        probs: shape (..., num_heads), rows summing to 1.
        kind: ``"cv"``: ``cv_squared`` of the per-head importance ``sum_tokens probs`` (Shazeer et al. 2017,
            Crab section 2.3 without its task-dependent head mask), 0 when balanced; ``"switch"``:
            ``num_heads * sum_i f_i * P_i`` with ``f_i`` the fraction of tokens whose top head is i and
            ``P_i`` the mean probability (Fedus et al. 2021), 1 when balanced.

    Returns:
        Scalar float32 tensor.

    Raises:
        ValueError: on an unknown ``kind``.
    """
    num_heads = probs.shape[-1]
    flat = probs.reshape(-1, num_heads).float()  # (tokens, num_heads)
    if kind == "cv":
        return cv_squared(flat.sum(dim=0))
    if kind == "switch":
        top = flat.argmax(dim=-1)  # (tokens,)
        fraction = torch.bincount(top, minlength=num_heads).float() / max(flat.shape[0], 1)  # (num_heads,)
        return num_heads * (fraction * flat.mean(dim=0)).sum()
    raise ValueError(f"unknown load-balance loss {kind!r}; expected 'cv' or 'switch'")


def router_aux_loss(model: nn.Module) -> torch.Tensor:
    """Sum of ``coef * load_balance_loss`` over the routed layers and active adapters with ``coef > 0``.

    Uses the probabilities kept by the latest forward (``layer.last_router_probs``), so call it after the
    forward and before the next one, and add the result to the task loss.

    Args:
        model: a model containing routed layers (IA-LoRA or LoRA-MoE).

    Returns:
        Scalar float32 tensor; an exact zero (no graph) when the loss is off everywhere.
    """
    total: Optional[torch.Tensor] = None
    for _, layer in _routed_layers(model):
        if layer.disable_adapters:
            continue
        for adapter_name in layer.active_adapters:
            coef = layer.router_aux_loss_coef.get(adapter_name, 0.0)
            probs = layer.last_router_probs.get(adapter_name)
            if coef <= 0.0 or probs is None:
                continue
            term = coef * load_balance_loss(probs, layer.router_aux_loss_type[adapter_name])
            total = term if total is None else total + term
    if total is not None:
        return total
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return torch.zeros((), dtype=torch.float32, device=device)
