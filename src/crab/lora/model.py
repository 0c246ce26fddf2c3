"""Routed-LoRA injection (peft ``BaseTuner``) and the registration of IA-LoRA as the peft method ``ia_lora``.

Reference section 2.2: Crab wraps the ``q/k/v/o/gate/up/down_proj`` linears of every LLaMA layer. Here
the matching is peft's own (suffix list, regex string, ``layers_to_transform``, ``exclude_modules``), so
a regex from :func:`crab.lora.config.llm_target_regex` keeps the adapter on the LLM only.

:class:`RoutedLoraModel` holds the injection once; :class:`IALoraModel` and the LoRA-MoE model of
:mod:`crab.lora.moe` only name their layer class and prefix. Registration goes through peft's public
seam, ``register_peft_method`` (:func:`register_routed_method`); after it
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
from peft.utils import PeftType, register_peft_method
from torch import nn

from crab.lora.config import IA_LORA_PEFT_TYPE, LLAMA_TARGET_MODULES, IALoraConfig, RoutedLoraConfig
from crab.lora.layer import IALoraLayer, IALoraLinear, RoutedLoraLayer, RoutedLoraLinear, merge_error

__all__ = [
    "IA_LORA_NAME",
    "IA_LORA_PREFIX",
    "IALoraModel",
    "RoutedLoraModel",
    "register_ia_lora",
    "register_routed_method",
]

logger = logging.getLogger(__name__)

IA_LORA_NAME = "ia_lora"
IA_LORA_PREFIX = "ia_lora_"


class RoutedLoraModel(BaseTuner):
    """Injects a routed-LoRA linear into the matched linears of a model.

    Subclasses set ``prefix``, ``tuner_layer_cls`` and ``linear_cls`` (the layer's ``nn.Module``). Built by
    peft (``get_peft_model`` / ``PeftModel.from_pretrained``), not directly.

    Args:
        model: the model to adapt (modified in place).
        peft_config: a config of the method, or a dict of them keyed by adapter name.
        adapter_name: name of the adapter to inject.
    """

    tuner_layer_cls: type[RoutedLoraLayer]
    linear_cls: type[RoutedLoraLinear]
    target_module_mapping: dict[str, list[str]] = {"llama": list(LLAMA_TARGET_MODULES)}

    def _create_and_replace(
        self,
        peft_config: RoutedLoraConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **optional_kwargs: Any,
    ) -> None:
        """Wrap ``target`` in the method's layer, or add an adapter to an existing one."""
        method_name = self.tuner_layer_cls.method_name
        if isinstance(target, self.tuner_layer_cls):
            target.update_layer(adapter_name, peft_config)
            return
        if isinstance(target, BaseTunerLayer):
            raise TypeError(
                f"{current_key} already carries a {type(target).__name__}; {method_name} cannot stack on it"
            )
        if not isinstance(target, nn.Linear):
            raise TypeError(f"{method_name} supports nn.Linear targets only; {current_key} is {type(target).__name__}")
        new_module = self.linear_cls(target, adapter_name, config=peft_config)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    def _check_merge_allowed(self) -> None:
        """Refuse ``merge_adapter``/``merge_and_unload`` before anything is modified.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError(merge_error(self.tuner_layer_cls.method_name))


class IALoraModel(RoutedLoraModel):
    """Injects :class:`~crab.lora.layer.IALoraLinear` into the matched linears of a model."""

    prefix: str = IA_LORA_PREFIX
    tuner_layer_cls = IALoraLayer
    linear_cls = IALoraLinear


def register_routed_method(
    name: str, peft_type: PeftType, config_cls: type[RoutedLoraConfig], model_cls: type[RoutedLoraModel]
) -> None:
    """Register a routed-LoRA method with peft under ``name``; idempotent.

    Any earlier registration (e.g. from a reloaded module) is dropped first, so the mappings always point
    at the classes currently imported.

    Args:
        name: the lower-case method name, ``peft_type``'s value in lower case (e.g. ``"ia_lora"``).
        peft_type: the ``PeftType`` member, already added to the enum.
        config_cls: the method's config class.
        model_cls: the method's tuner class; its ``prefix`` is registered as the method's prefix.
    """
    for mapping in (
        PEFT_TYPE_TO_CONFIG_MAPPING,
        PEFT_TYPE_TO_TUNER_MAPPING,
        PEFT_TYPE_TO_MIXED_MODEL_MAPPING,
        PEFT_TYPE_TO_PREFIX_MAPPING,
    ):
        mapping.pop(peft_type, None)
    register_peft_method(
        name=name, config_cls=config_cls, model_cls=model_cls, prefix=model_cls.prefix, is_mixed_compatible=False
    )
    logger.debug("registered peft method %s", name)


def register_ia_lora() -> None:
    """Register IA-LoRA with peft under the name ``ia_lora`` (``PeftType.IA_LORA``); idempotent."""
    register_routed_method(IA_LORA_NAME, IA_LORA_PEFT_TYPE, IALoraConfig, IALoraModel)
