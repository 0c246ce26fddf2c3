"""Interaction-aware LoRA (IA-LoRA, Crab reference section 2) as a first-class peft method.

Importing this package registers the peft method ``ia_lora`` (``PeftType.IA_LORA``), after which the
usual peft API works::

    from peft import get_peft_model
    from crab.lora import build_adapter_config, llm_target_regex

    config = build_adapter_config("ia_lora", r=8, alpha=16, dropout=0.05, num_heads=3,
                                  target_modules=llm_target_regex("language_model"))
    model = get_peft_model(model, config)

Layout follows peft's tuners: :mod:`.config` (config + builder), :mod:`.layer` (the fused layer math),
:mod:`.model` (injection + registration), :mod:`.router` (router statistics and the aux loss).
"""

from crab.lora.config import (
    IA_LORA_PEFT_TYPE,
    LLAMA_TARGET_MODULES,
    IALoraConfig,
    build_adapter_config,
    llm_target_regex,
)
from crab.lora.layer import IALoraLayer, IALoraLinear
from crab.lora.model import IALoraModel, register_ia_lora
from crab.lora.router import (
    RouterCapture,
    RouterStats,
    capture_router_weights,
    cv_squared,
    load_balance_loss,
    router_aux_loss,
)

__all__ = [
    "IA_LORA_PEFT_TYPE",
    "LLAMA_TARGET_MODULES",
    "IALoraConfig",
    "IALoraLayer",
    "IALoraLinear",
    "IALoraModel",
    "RouterCapture",
    "RouterStats",
    "build_adapter_config",
    "capture_router_weights",
    "cv_squared",
    "llm_target_regex",
    "load_balance_loss",
    "register_ia_lora",
    "router_aux_loss",
]

register_ia_lora()
