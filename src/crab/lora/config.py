"""Configurations of the routed-LoRA PEFT methods (IA-LoRA, LoRA-MoE) and the adapter-config builder.

IA-LoRA is the adapter of Crab (CVPR'25, reference section 2): every adapted linear gets one shared
down-projection A, ``num_heads`` up-projection heads B_i and a per-token softmax router. LoRA-MoE, the
paper's mixture baseline (reference section 2.4), gives every head its own A_i under the same router.
Both share every hyper-parameter, so :class:`RoutedLoraConfig` holds the fields and their validation and
:class:`IALoraConfig` / :class:`LoraMoeConfig` only fix the ``peft_type`` (saved as ``"IA_LORA"`` /
``"LORA_MOE"``). :func:`build_adapter_config` is the single entry point that also builds plain LoRA
configs, so that the adapters can be swapped from params without if-chains elsewhere. The two configs
live here rather than next to their layers because this builder needs both.

How it differs from the authors' code: Crab vendors a fork of PEFT 0.3 and hard-codes r/alpha/dropout in
the training scripts (its CLI flags are ignored). Here the values are typed and validated fields, the
target matching can be restricted to the LLM with a regex (:func:`llm_target_regex`; Crab adapts every
``q_proj`` it finds, which is only correct because it injects before building the multimodal modules),
and the optional router load-balance loss of section 2.3 (commented out in Crab) is a real, default-off field.

peft's ``register_peft_method`` only accepts names that are already members of the ``PeftType`` enum,
so importing this module adds ``PeftType.IA_LORA`` and ``PeftType.LORA_MOE`` (idempotently) before the
config classes are defined.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from peft import LoraConfig, PeftConfig
from peft.utils import PeftType

__all__ = [
    "ADAPTER_KINDS",
    "AUX_LOSS_TYPES",
    "IA_LORA_PEFT_TYPE",
    "LLAMA_TARGET_MODULES",
    "LORA_MOE_PEFT_TYPE",
    "ROUTED_ADAPTER_KINDS",
    "IALoraConfig",
    "LoraMoeConfig",
    "RoutedLoraConfig",
    "build_adapter_config",
    "llm_target_regex",
]

logger = logging.getLogger(__name__)

# The seven linears of a LLaMA decoder layer that Crab adapts (reference section 2.2).
LLAMA_TARGET_MODULES: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
AUX_LOSS_TYPES: tuple[str, ...] = ("cv", "switch")
#: The values of ``finetune.adapter``; the routed ones take ``num_heads`` and the router aux loss.
ADAPTER_KINDS: tuple[str, ...] = ("ia_lora", "lora", "lora_moe")
ROUTED_ADAPTER_KINDS: tuple[str, ...] = ("ia_lora", "lora_moe")


def _ensure_peft_type(value: str) -> PeftType:
    """Return the ``PeftType`` member ``value``, adding it to the enum first if it is missing.

    Python enums cannot be extended through a public API; this mirrors what ``EnumType`` does when it
    creates a member (checked on Python 3.11, which the project pins): the member is a ``str`` subclass
    instance registered in ``_member_names_``, ``_member_map_``, ``_value2member_map_`` and as a class
    attribute, so that
    ``PeftType(value)``, ``PeftType[value]``, ``PeftType.<value>`` and ``value in list(PeftType)`` all work.
    Calling it again returns the existing member, which makes re-imports harmless.

    Args:
        value: the enum value and name, upper case (e.g. ``"IA_LORA"``).

    Returns:
        The (possibly new) enum member.
    """
    existing = PeftType._value2member_map_.get(value)
    if existing is not None:
        return existing
    member = str.__new__(PeftType, value)
    member._name_ = value
    member._value_ = value
    member.__objclass__ = PeftType
    member._sort_order_ = len(PeftType._member_names_)
    # type.__setattr__ skips EnumType's guard against (re)assigning member names on the class.
    type.__setattr__(PeftType, value, member)
    PeftType._member_names_.append(value)
    PeftType._member_map_[value] = member
    PeftType._value2member_map_[value] = member
    logger.debug("added %s to peft.utils.PeftType", value)
    return member


IA_LORA_PEFT_TYPE: PeftType = _ensure_peft_type("IA_LORA")
LORA_MOE_PEFT_TYPE: PeftType = _ensure_peft_type("LORA_MOE")


def llm_target_regex(llm_prefix: str, module_names: Sequence[str] = LLAMA_TARGET_MODULES) -> str:
    """Build a ``target_modules`` regex that only matches linears under one sub-module (the LLM).

    peft treats a string ``target_modules`` as a regex that must ``re.fullmatch`` the module's dotted
    name, so ``llm_target_regex("language_model")`` matches ``language_model.model.layers.0.self_attn.q_proj``
    but not ``audio_projector.qformer.q_proj``.

    Args:
        llm_prefix: dotted name of the LLM sub-module inside the model being adapted (e.g.
            ``"language_model"``); an empty string matches the whole model.
        module_names: leaf names of the linears to adapt.

    Returns:
        The regex string.

    Raises:
        ValueError: if ``module_names`` is empty.
    """
    if not module_names:
        raise ValueError("module_names must name at least one module")
    names = "|".join(re.escape(name) for name in module_names)
    if not llm_prefix:
        return rf"^(.*\.)?({names})$"
    return rf"^{re.escape(llm_prefix)}\.(.*\.)?({names})$"


@dataclass
class RoutedLoraConfig(PeftConfig):
    """Fields shared by IA-LoRA and LoRA-MoE (reference section 2.1 to 2.4); use a subclass, not this class.

    Each adapted linear ``W0`` computes ``y = W0 x + (lora_alpha / r) * sum_i w_i(x) B_i A_i dropout(x)``
    with ``w = softmax(R x)`` per token; IA-LoRA ties all ``A_i`` to one shared A.

    Args:
        r: rank of A (IA-LoRA: of the shared A; LoRA-MoE: of every expert's A_i).
        lora_alpha: numerator of the scaling ``lora_alpha / r``.
        lora_dropout: dropout probability on the input of A (the router sees the undropped input).
        num_heads: number of heads routed per token (Crab's released checkpoints use 3).
        target_modules: list of module-name suffixes, or a regex string that must fully match the dotted
            module name (see :func:`llm_target_regex`); ``"all-linear"`` is also accepted by peft.
        exclude_modules: suffixes or a regex of modules never to adapt.
        layers_to_transform: layer indices to adapt (only with a list ``target_modules``).
        layers_pattern: name of the ``nn.ModuleList`` holding the layers, used with ``layers_to_transform``.
        modules_to_save: extra modules trained fully and saved with the adapter.
        router_aux_loss_coef: weight of the router load-balance loss; 0 turns it off (Crab trains without).
        router_aux_loss_type: ``"cv"`` (squared coefficient of variation of the per-head importance, as
            sketched in Crab) or ``"switch"`` (Switch Transformer ``n * sum_i f_i P_i``).
        init_weights: True gives B = 0 (the adapter starts as the identity); False draws B like A (tests).

    Raises:
        ValueError: on out-of-range values.
    """

    r: int = field(default=8, metadata={"help": "Rank of A (per head for LoRA-MoE)."})
    lora_alpha: float = field(default=16, metadata={"help": "Scaling numerator: scaling = lora_alpha / r."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the input of A."})
    num_heads: int = field(default=3, metadata={"help": "Number of routed heads."})
    target_modules: Optional[Union[list[str], str]] = field(
        default_factory=lambda: list(LLAMA_TARGET_MODULES),
        metadata={"help": "Module-name suffixes, or a regex fully matching the module name."},
    )
    exclude_modules: Optional[Union[list[str], str]] = field(
        default=None, metadata={"help": "Module-name suffixes, or a regex, never to adapt."}
    )
    layers_to_transform: Optional[Union[list[int], int]] = field(
        default=None, metadata={"help": "Layer indices to adapt."}
    )
    layers_pattern: Optional[Union[list[str], str]] = field(
        default=None, metadata={"help": "Name of the ModuleList holding the layers (with layers_to_transform)."}
    )
    modules_to_save: Optional[list[str]] = field(
        default=None, metadata={"help": "Modules trained fully and saved with the adapter."}
    )
    router_aux_loss_coef: float = field(default=0.0, metadata={"help": "Weight of the router load-balance loss."})
    router_aux_loss_type: Literal["cv", "switch"] = field(
        default="cv", metadata={"help": "Load-balance loss: 'cv' or 'switch'."}
    )
    init_weights: bool = field(default=True, metadata={"help": "True: B starts at zero."})

    def __post_init__(self) -> None:
        if type(self) is RoutedLoraConfig:
            raise TypeError("RoutedLoraConfig is abstract; use IALoraConfig or LoraMoeConfig")
        super().__post_init__()
        if isinstance(self.target_modules, list):
            self.target_modules = set(self.target_modules)
        if isinstance(self.exclude_modules, list):
            self.exclude_modules = set(self.exclude_modules)
        if self.r <= 0:
            raise ValueError(f"r must be positive, got {self.r}")
        if self.num_heads <= 0:
            raise ValueError(f"num_heads must be positive, got {self.num_heads}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.router_aux_loss_coef < 0.0:
            raise ValueError(f"router_aux_loss_coef must be >= 0, got {self.router_aux_loss_coef}")
        if self.router_aux_loss_type not in AUX_LOSS_TYPES:
            raise ValueError(f"router_aux_loss_type must be one of {AUX_LOSS_TYPES}, got {self.router_aux_loss_type!r}")
        if self.layers_pattern and self.layers_to_transform is None:
            raise ValueError("layers_pattern needs layers_to_transform")
        if isinstance(self.target_modules, str) and self.layers_to_transform is not None:
            raise ValueError("layers_to_transform cannot be combined with a regex target_modules")

    @property
    def scaling(self) -> float:
        """The factor ``lora_alpha / r`` applied to the adapter output."""
        return self.lora_alpha / self.r


@dataclass
class IALoraConfig(RoutedLoraConfig):
    """Configuration of an IA-LoRA adapter: one shared A, ``num_heads`` routed B heads (reference 2.1-2.3).

    The fields are those of :class:`RoutedLoraConfig`; saved with ``"peft_type": "IA_LORA"``.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = IA_LORA_PEFT_TYPE


@dataclass
class LoraMoeConfig(RoutedLoraConfig):
    """Configuration of a LoRA-MoE adapter: ``num_heads`` independent (A_i, B_i) experts, same router.

    The paper's mixture-of-LoRA baseline (reference section 2.4): as IA-LoRA but with one A per head, so it
    has ``num_heads`` times LoRA's A and B parameters (plus the router). The fields are those of
    :class:`RoutedLoraConfig`; saved with ``"peft_type": "LORA_MOE"``.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = LORA_MOE_PEFT_TYPE


def build_adapter_config(
    kind: Literal["ia_lora", "lora", "lora_moe"],
    *,
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.05,
    num_heads: Optional[int] = None,
    target_modules: Union[Sequence[str], str] = LLAMA_TARGET_MODULES,
    modules_to_save: Optional[Sequence[str]] = None,
    router_aux_loss_coef: float = 0.0,
    router_aux_loss_type: Literal["cv", "switch"] = "cv",
) -> PeftConfig:
    """Build the PEFT config of the LLM adapter: IA-LoRA (Crab), plain LoRA or LoRA-MoE (the baselines).

    Args:
        kind: ``"ia_lora"``, ``"lora"`` or ``"lora_moe"``.
        r: rank.
        alpha: ``lora_alpha``; the scaling is ``alpha / r``.
        dropout: dropout on the adapter input.
        num_heads: IA-LoRA / LoRA-MoE heads (None means 3); plain LoRA accepts only None or 1.
        target_modules: suffixes or a regex (see :func:`llm_target_regex`).
        modules_to_save: extra fully trained modules.
        router_aux_loss_coef: routed adapters only; must stay 0 for LoRA.
        router_aux_loss_type: routed adapters only.

    Returns:
        An :class:`IALoraConfig`, a :class:`LoraMoeConfig` or a :class:`peft.LoraConfig` (bias ``"none"``).

    Raises:
        ValueError: on an unknown kind, or on router settings passed with ``kind="lora"``.
    """
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    to_save = None if modules_to_save is None else list(modules_to_save)
    if kind in ROUTED_ADAPTER_KINDS:
        config_cls = IALoraConfig if kind == "ia_lora" else LoraMoeConfig
        return config_cls(
            r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            num_heads=3 if num_heads is None else num_heads,
            target_modules=targets,
            modules_to_save=to_save,
            router_aux_loss_coef=router_aux_loss_coef,
            router_aux_loss_type=router_aux_loss_type,
        )
    if kind == "lora":
        if num_heads not in (None, 1):
            raise ValueError(f"plain LoRA has a single head, got num_heads={num_heads}")
        if router_aux_loss_coef != 0.0:
            raise ValueError("plain LoRA has no router, so router_aux_loss_coef must be 0")
        return LoraConfig(
            r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            target_modules=targets,
            modules_to_save=to_save,
            bias="none",
        )
    raise ValueError(f"unknown adapter kind {kind!r}; expected one of {ADAPTER_KINDS}")
