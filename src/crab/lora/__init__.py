"""The LLM adapters of Crab as first-class peft methods: IA-LoRA (Crab reference section 2) and LoRA-MoE.

Importing this package registers the peft methods ``ia_lora`` (``PeftType.IA_LORA``) and ``lora_moe``
(``PeftType.LORA_MOE``, the paper's mixture-of-LoRA baseline), after which the usual peft API works::

    from peft import get_peft_model
    from crab.lora import build_adapter_config, llm_target_regex

    config = build_adapter_config("ia_lora", r=8, alpha=16, dropout=0.05, num_heads=3,
                                  target_modules=llm_target_regex("language_model"))
    model = get_peft_model(model, config)

``build_adapter_config`` also builds ``"lora"`` (peft's plain LoRA) and ``"lora_moe"`` configs.
Layout follows peft's tuners: :mod:`.config` (configs + builder), :mod:`.layer` (the fused layer math,
shared by both routed methods), :mod:`.model` (injection + registration), :mod:`.moe` (LoRA-MoE's layer,
model and registration), :mod:`.router` (router statistics and the aux loss, for both methods).
"""

from crab.lora.config import (
    ADAPTER_KINDS,
    IA_LORA_PEFT_TYPE,
    LLAMA_TARGET_MODULES,
    LORA_MOE_PEFT_TYPE,
    ROUTED_ADAPTER_KINDS,
    IALoraConfig,
    LoraMoeConfig,
    RoutedLoraConfig,
    build_adapter_config,
    llm_target_regex,
)
from crab.lora.layer import IALoraLayer, IALoraLinear, RoutedLoraLayer, RoutedLoraLinear
from crab.lora.model import IALoraModel, RoutedLoraModel, register_ia_lora
from crab.lora.moe import LoraMoeLayer, LoraMoeLinear, LoraMoeModel, register_lora_moe
from crab.lora.router import (
    RouterCapture,
    RouterStats,
    capture_router_weights,
    cv_squared,
    load_balance_loss,
    router_aux_loss,
)

__all__ = [
    "ADAPTER_KINDS",
    "IA_LORA_PEFT_TYPE",
    "LLAMA_TARGET_MODULES",
    "LORA_MOE_PEFT_TYPE",
    "ROUTED_ADAPTER_KINDS",
    "IALoraConfig",
    "IALoraLayer",
    "IALoraLinear",
    "IALoraModel",
    "LoraMoeConfig",
    "LoraMoeLayer",
    "LoraMoeLinear",
    "LoraMoeModel",
    "RoutedLoraConfig",
    "RoutedLoraLayer",
    "RoutedLoraLinear",
    "RoutedLoraModel",
    "RouterCapture",
    "RouterStats",
    "build_adapter_config",
    "capture_router_weights",
    "cv_squared",
    "llm_target_regex",
    "load_balance_loss",
    "register_ia_lora",
    "register_lora_moe",
    "router_aux_loss",
]

register_ia_lora()
register_lora_moe()
