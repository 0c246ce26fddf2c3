"""Per-task router statistics of the routed adapters, gathered while the ``evaluate`` stage generates.

Paper Figure 5 (the router weights of the three LoRA-B heads per task) and DESIGN.md section 6 ("router
weights can be captured per task"). :func:`record_router_stats` wraps the evaluate stage's greedy decoding:
it feeds every routed layer (IA-LoRA or LoRA-MoE, :func:`crab.lora.router.capture_router_weights`) into a
float64 running sum of router probabilities and a token count, during the forwards generation runs anyway
(no second forward pass). :meth:`RouterRecording.summary` turns them into the JSON the ``report`` stage
plots (``metrics/router_<task>.json``)::

    {"task": "ave", "adapter": "ia_lora", "num_heads": 3, "head_mean": [h1, h2, h3],
     "layers": [{"name": "language_model.model.layers.0.self_attn.q_proj", "module": "q_proj",
                 "layer_index": 0, "mean": [h1, h2, h3], "tokens": 5120}, ...]}

**Which tokens count.** Every token the LLM processes for a kept sequence: the prompt's tokens (features
spliced in included) on the prefill step, and each generated token that is fed back on a decoding step.
Left padding is excluded (the attention mask is read from the decoder's own forward arguments by a
forward pre-hook), and so is everything a row is fed after it produced its EOS (the EOS itself and the
pad tokens that fill the row while the rest of the batch finishes). A token is therefore counted the same
whatever batch it decoded in: per sequence, ``prompt tokens + answer tokens - 1`` (the last generated
token is never fed back).

``head_mean`` is the plain mean of the layers' means; every adapted layer sees the same tokens, so it is
also the token-weighted mean. With plain LoRA (no router) the recording is empty and the summary says so
(``"layers": []``, ``"num_heads": null``, ``"head_mean": []``), so the stage output always exists.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

import torch
from torch import nn

from crab.lora.layer import RoutedLoraLayer
from crab.lora.router import RouterCapture, capture_router_weights

__all__ = ["RouterRecording", "adapter_kind", "record_router_stats", "router_stats_filename"]

log = logging.getLogger(__name__)

_PEFT_PREFIX = "base_model.model."  # what PeftModel adds in front of the wrapped model's module names
_LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")


def router_stats_filename(task: str) -> str:
    """``router_<task>.json``: the file name of a task's router statistics in the metrics folder."""
    return f"router_{task}.json"


def adapter_kind(model: nn.Module) -> str:
    """The active adapter's method as in ``finetune.adapter`` (``"ia_lora"``, ``"lora"``, ``"lora_moe"``).

    Read from the loaded model's PEFT config (what was evaluated), not from params; ``"none"`` for a
    model without one.
    """
    configs = getattr(model, "peft_config", None)
    if not configs:
        return "none"
    active = getattr(model, "active_adapter", None)
    name = active if isinstance(active, str) and active in configs else next(iter(configs))
    peft_type = configs[name].peft_type
    return str(getattr(peft_type, "value", peft_type)).lower()


def _decoder(model: nn.Module) -> nn.Module:
    """The module that receives the LLM's ``attention_mask`` and ``input_ids`` / ``inputs_embeds``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not hasattr(base, "get_decoder"):
        raise ValueError(f"{type(base).__name__} has no get_decoder(); cannot read the attention mask")
    return base.get_decoder()


class _TokenMask:
    """Forward pre-hook on the decoder: sets the capture's token mask for each forward (module docstring).

    Args:
        capture: the active router capture.
        eos_token_id: the EOS id generation stops at.
    """

    def __init__(self, capture: RouterCapture, eos_token_id: int) -> None:
        self.capture = capture
        self.eos_token_id = eos_token_id
        self._finished: Optional[torch.Tensor] = None  # (B,) rows that already fed their EOS

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        inputs_embeds = kwargs.get("inputs_embeds")
        current = inputs_embeds if inputs_embeds is not None else input_ids
        if current is None:
            self.capture.set_token_mask(None)
            return
        batch, length = current.shape[0], current.shape[1]
        attention_mask = kwargs.get("attention_mask")
        if attention_mask is None or attention_mask.dim() != 2:
            # no 2-D padding mask (an unpadded call): every token of this forward is real
            attention_mask = torch.ones(batch, length, dtype=torch.bool, device=current.device)
        mask = attention_mask[:, -length:] != 0  # (B, L): the positions this forward computes
        is_prefill = attention_mask.shape[1] == length  # nothing cached before: a new batch of prompts
        if is_prefill or self._finished is None or self._finished.shape[0] != batch:
            self._finished = torch.zeros(batch, dtype=torch.bool, device=mask.device)
        if not is_prefill and input_ids is not None:
            is_eos = input_ids == self.eos_token_id  # (B, L)
            mask = mask & ~self._finished.unsqueeze(-1) & ~is_eos
            self._finished = self._finished | is_eos.any(dim=-1)
        self.capture.set_token_mask(mask)


class RouterRecording:
    """The statistics :func:`record_router_stats` gathered.

    Attributes:
        adapter: the adapter kind (:func:`adapter_kind`).
        capture: the router capture, or None when the model has no routed layer (plain LoRA).
        layer_order: routed layer names in the model's module order.
    """

    def __init__(self, adapter: str, capture: Optional[RouterCapture], layer_order: list[str]) -> None:
        self.adapter = adapter
        self.capture = capture
        self.layer_order = layer_order

    def summary(self, task: str) -> dict[str, Any]:
        """The JSON-able statistics of one task (module docstring for the layout).

        Args:
            task: the evaluated task.

        Returns:
            ``{"task", "adapter", "num_heads", "head_mean", "layers"}``; layers in the model's module
            order, each ``{"name", "module", "layer_index", "mean", "tokens"}`` (``layer_index`` None when
            the name has no ``.layers.<i>.``).
        """
        layers: list[dict[str, Any]] = []
        stats = {} if self.capture is None else self.capture.stats
        for name in self.layer_order:
            entry = stats.get(name)
            if entry is None:  # a routed layer no forward reached
                continue
            short = name.removeprefix(_PEFT_PREFIX)
            index = _LAYER_INDEX.search(f".{short}.")
            layers.append({
                "name": short,
                "module": short.rsplit(".", 1)[-1],
                "layer_index": None if index is None else int(index.group(1)),
                "mean": [float(v) for v in entry.mean_probs().cpu()],
                "tokens": int(entry.token_count.item()),
            })  # fmt: skip
        num_heads = len(layers[0]["mean"]) if layers else None
        head_mean = [sum(layer["mean"][h] for layer in layers) / len(layers) for h in range(num_heads or 0)]
        return {"task": task, "adapter": self.adapter, "num_heads": num_heads, "head_mean": head_mean, "layers": layers}


@contextmanager
def record_router_stats(model: nn.Module, eos_token_id: int) -> Iterator[RouterRecording]:
    """Gather router statistics over the generation run inside the block (module docstring).

    Example::

        with record_router_stats(model, eos_token_id=tokenizer.eos_token_id) as router:
            answers, stats = generate_greedy(model, prompts, ...)
        summary = router.summary("ave")

    Args:
        model: the evaluated model (a ``PeftModel`` around Crab); one without routed layers (plain LoRA)
            gives an empty recording.
        eos_token_id: the EOS id generation stops at (tokens fed after it are not counted).

    Yields:
        The :class:`RouterRecording`, filled as forwards run.

    Raises:
        ValueError: the model has routed layers but no ``get_decoder()`` to read the attention mask from.
    """
    adapter = adapter_kind(model)
    layer_order = [name for name, module in model.named_modules() if isinstance(module, RoutedLoraLayer)]
    if not layer_order:
        log.info("router statistics: adapter %s has no router; writing an empty summary", adapter)
        yield RouterRecording(adapter, None, [])
        return
    decoder = _decoder(model)
    with capture_router_weights(model) as capture:
        handle = decoder.register_forward_pre_hook(_TokenMask(capture, eos_token_id), with_kwargs=True)
        try:
            yield RouterRecording(adapter, capture, layer_order)
        finally:
            handle.remove()
            capture.set_token_mask(None)
