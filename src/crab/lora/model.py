"""IA-LoRA injection (peft ``BaseTuner``) and its registration as the peft method ``ia_lora``.

Reference section 2.2: Crab wraps the ``q/k/v/o/gate/up/down_proj`` linears of every LLaMA layer. Here
the matching is peft's own (suffix list, regex string, ``layers_to_transform``, ``exclude_modules``), so
a regex from :func:`crab.lora.config.llm_target_regex` keeps the adapter on the LLM only.

Registration goes through peft's public seam, ``register_peft_method``; after it
``peft.get_peft_model(model, IALoraConfig(...))``, ``save_pretrained`` and ``PeftModel.from_pretrained``
work like for any built-in method, provided ``crab.lora`` is imported (a checkpoint saved with
``"peft_type": "IA_LORA"`` otherwise fails with ``KeyError: 'IA_LORA'``).
"""

from __future__ import annotations

import logging
from typing import Any

from peft.mapping import (
    PEFT_TYPE_TO_CONFIG_MAPPING,
    PEFT_TYPE_TO_MIXED_MODEL_MAPPING,
    PEFT_TYPE_TO_PREFIX_MAPPING,
    PEFT_TYPE_TO_TUNER_MAPPING,
)
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils import register_peft_method
from torch import nn

from crab.lora.config import IA_LORA_PEFT_TYPE, LLAMA_TARGET_MODULES, IALoraConfig
from crab.lora.layer import MERGE_ERROR, IALoraLayer, IALoraLinear

__all__ = ["IA_LORA_NAME", "IA_LORA_PREFIX", "IALoraModel", "register_ia_lora"]

logger = logging.getLogger(__name__)

IA_LORA_NAME = "ia_lora"
IA_LORA_PREFIX = "ia_lora_"


class IALoraModel(BaseTuner):
    """Injects :class:`~crab.lora.layer.IALoraLinear` into the matched linears of a model.

    Built by peft (``get_peft_model`` / ``PeftModel.from_pretrained``), not directly.

    Args:
        model: the model to adapt (modified in place).
        peft_config: an :class:`IALoraConfig` or a dict of them keyed by adapter name.
        adapter_name: name of the adapter to inject.
    """

    prefix: str = IA_LORA_PREFIX
    tuner_layer_cls = IALoraLayer
    target_module_mapping: dict[str, list[str]] = {"llama": list(LLAMA_TARGET_MODULES)}

    def _create_and_replace(
        self,
        peft_config: IALoraConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **optional_kwargs: Any,
    ) -> None:
        """Wrap ``target`` in an IA-LoRA layer, or add an adapter to an existing one."""
        if isinstance(target, IALoraLayer):
            target.update_layer(adapter_name, peft_config)
            return
        if isinstance(target, BaseTunerLayer):
            raise TypeError(f"{current_key} already carries a {type(target).__name__}; IA-LoRA cannot stack on it")
        if not isinstance(target, nn.Linear):
            raise TypeError(f"IA-LoRA supports nn.Linear targets only; {current_key} is {type(target).__name__}")
        new_module = IALoraLinear(target, adapter_name, config=peft_config)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    def _check_merge_allowed(self) -> None:
        """Refuse ``merge_adapter``/``merge_and_unload`` before anything is modified.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError(MERGE_ERROR)


def register_ia_lora() -> None:
    """Register IA-LoRA with peft under the name ``ia_lora`` (``PeftType.IA_LORA``); idempotent.

    Any earlier registration (e.g. from a reloaded module) is dropped first, so the mappings always point
    at the classes currently imported.
    """
    for mapping in (
        PEFT_TYPE_TO_CONFIG_MAPPING,
        PEFT_TYPE_TO_TUNER_MAPPING,
        PEFT_TYPE_TO_MIXED_MODEL_MAPPING,
        PEFT_TYPE_TO_PREFIX_MAPPING,
    ):
        mapping.pop(IA_LORA_PEFT_TYPE, None)
    register_peft_method(
        name=IA_LORA_NAME,
        config_cls=IALoraConfig,
        model_cls=IALoraModel,
        prefix=IA_LORA_PREFIX,
        is_mixed_compatible=False,
    )
    logger.debug("registered peft method %s", IA_LORA_NAME)
