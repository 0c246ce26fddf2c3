"""The key map from the authors' released Crab checkpoints onto our modules, applied strictly.

Crab releases torch pickles of parameter dicts (crab-reference sections 3.1-3.6, 6; Crab README "Quick
Start" / "Training"): ``finetune_weights.bin`` (stage F1: both projectors + I-LoRA), ``visual_pretrain.bin``
(P1), ``audio_pretrain.bin`` (P2), ``segmentation_pretrain.bin`` (P3) and ``avs_finetune_weights.bin`` /
``avss_finetune_weights.bin`` (F2). Where every key name comes from, all read in the authors' code:

* Prefixes. F1/F2 files are ``{n: p for n, p in peft_model.named_parameters() if any(m in n for m in
  save_modules)}`` (``scripts/pretrain/trainer.py: UnifiedTrainer._save_checkpoint``), so keys start with
  ``base_model.model.`` (the PEFT-0.3 fork's ``PeftModel.base_model`` -> ``LoraModel.model``) and are then
  loaded with ``model.load_state_dict(ckpt, strict=False)`` (``scripts/quick_start.py``). Pre-training files
  are ``non_lora_trainables.bin`` of a plain ``UnifiedForCausalLM`` (no ``base_model.model.``), loaded with
  ``model.model.load_state_dict`` after popping ``model.embed_tokens.weight``
  (``scripts/finetune/finetune_hyperlora.py``). Inside, ``model.`` is the LLaMA model carrying the
  multimodal modules (``models/unified_arch.py: UnifiedMetaModel.init_multimodal_modules``:
  ``vl_projector``, ``al_projector``, ``seg_module``) and ``lm_head.`` the LM head.
* Projectors (``models/multimodal_encoder.py: VLProjector / ALProjector``): ``visual_ln`` / ``audio_ln``
  (LayerNorm), ``visual_Qformer`` / ``audio_Qformer`` (BLIP-2 ``BertLMHeadModel``), ``visual_query_tokens``
  / ``audio_query_tokens`` (1, Q, Hq), ``visual_proj`` / ``audio_proj`` = ``build_mlp(depth=2)`` =
  ``Sequential(Linear, GELU, Linear)``, hence indices ``0`` and ``2``.
* Q-Former internals (``models/Qformer.py`` is only shipped as ``.pyc``; it is LAVIS'
  ``lavis/models/blip2_models/Qformer.py``, which Crab imports as ``BertConfig, BertLMHeadModel``):
  ``bert.embeddings.{word_embeddings, position_embeddings, LayerNorm}``, ``bert.encoder.layer.{i}.
  {attention, crossattention}.{self.{query,key,value}, output.{dense,LayerNorm}}``, ``intermediate`` /
  ``output`` (text FFN), ``intermediate_query`` / ``output_query`` (query FFN), ``cls.predictions.*``
  (MLM head). The renaming onto transformers' ``Blip2QFormerModel`` is the one of transformers'
  ``models/blip_2/convert_blip_2_original_to_pytorch.py``: ``bert.embeddings.LayerNorm`` -> ``layernorm``,
  ``.self.`` -> ``.attention.``; everything else keeps its name.
* I-LoRA (``peft_hyper/tuners/lora.py: Linear``): the adapted linear *is* the ``nn.Linear`` and holds
  ``lora_A`` (r, d_in), ``lora_B0 .. lora_B{n-1}`` (d_out, r) and ``lora_route`` (n, d_in) as plain
  attributes (no adapter name in the key), on ``model.layers.{i}.self_attn.{q,k,v,o}_proj`` and
  ``model.layers.{i}.mlp.{gate,up,down}_proj``. Ours (:mod:`crab.lora.layer`) keeps one A, the router, and
  ONE stacked ``ia_lora_B`` of shape (d_out, n * r) whose column block i is ``B_i``: the converter
  concatenates the heads along dim 1 in head order.

Every reference key is either mapped, dropped with a reason (weights Crab instantiates and saves but
never runs: the Q-Former's BERT word/position embeddings, text-branch FFNs and MLM head, which our
``Blip2QFormerModel`` does not have), or skipped with a reason (the segmentation branch, not implemented
yet; the AVS stage's embeddings unless asked for). An unknown key, a key in a file that should not hold
it, a shape that does not fit our module, or a missing weight is a :class:`ConversionError` naming the
file and the key. The mapping is pure tensor bookkeeping; :mod:`crab.convert.writer` builds the model.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import torch

from crab.errors import CrabError

__all__ = [
    "AUDIO_PRETRAIN_FILE",
    "AVSS_EMBEDDINGS_REASON",
    "AVS_EMBEDDINGS_REASON",
    "AVSS_FILE",
    "AVS_FILE",
    "CHECKPOINT_FILES",
    "FILE_COMPONENTS",
    "FINETUNE_FILE",
    "NOT_THIS_STAGE_REASON",
    "PRETRAIN_LLM_REASON",
    "RULES",
    "SEGMENTATION_PRETRAIN_FILE",
    "VISUAL_PRETRAIN_FILE",
    "ConversionError",
    "FileReport",
    "KeyMatch",
    "Rule",
    "check_shape",
    "match_key",
    "normalise_key",
]

FINETUNE_FILE = "finetune_weights.bin"
VISUAL_PRETRAIN_FILE = "visual_pretrain.bin"
AUDIO_PRETRAIN_FILE = "audio_pretrain.bin"
SEGMENTATION_PRETRAIN_FILE = "segmentation_pretrain.bin"
AVS_FILE = "avs_finetune_weights.bin"
AVSS_FILE = "avss_finetune_weights.bin"
#: Released files in reading order; only ``finetune_weights.bin`` is required.
CHECKPOINT_FILES = (FINETUNE_FILE, VISUAL_PRETRAIN_FILE, AUDIO_PRETRAIN_FILE, SEGMENTATION_PRETRAIN_FILE, AVS_FILE,
                    AVSS_FILE)  # fmt: skip

#: PEFT-0.3 ``PeftModel`` prefix of F1/F2 keys (stripped); what remains starts with ``model.`` or ``lm_head.``.
_PEFT_PREFIX = "base_model.model."

Component = Literal["visual_projector", "audio_projector", "ia_lora", "llm", "segmentation"]
Action = Literal["map", "drop", "skip"]


class ConversionError(CrabError):
    """A checkpoint that does not fit our modules; the message names the file and the key."""


@dataclass(frozen=True)
class Rule:
    """One row of the key map.

    Attributes:
        component: what the key belongs to (decides which files may hold it).
        pattern: regex that must fully match the normalised key (prefix ``base_model.model.`` removed).
        target: ``re`` replacement template giving our key (None for dropped / skipped keys). Projector
            targets are relative to ``CrabForConditionalGeneration``; LoRA targets name the adapted linear
            (``language_model.model.layers.{i}.self_attn.q_proj``) and the part (``A``, ``B{j}``, ``router``).
        action: ``map``, ``drop`` (never used by Crab either) or ``skip`` (no module of ours yet / opt-in).
        reason: why a key is dropped or skipped (the report groups keys by it).
    """

    component: Component
    pattern: re.Pattern[str]
    target: str | None
    action: Action
    reason: str = ""


@dataclass(frozen=True)
class KeyMatch:
    """A reference key resolved by the key map: the rule and, for mapped keys, our key."""

    rule: Rule
    target: str | None


@dataclass
class FileReport:
    """What happened to the keys of one checkpoint file (written to ``conversion_report.json``)."""

    file: str
    num_keys: int = 0
    mapped: Counter[str] = field(default_factory=Counter)  # component -> reference keys mapped
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> reference keys dropped
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> reference keys skipped

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "num_keys": self.num_keys, "mapped": dict(self.mapped),
                "dropped": dict(self.dropped), "skipped": dict(self.skipped)}  # fmt: skip


_BERT_EMBEDDINGS = (
    "BERT word/position embeddings of the Q-Former: Crab calls it with query_embeds only, so only the "
    "embedding LayerNorm runs (our Blip2QFormerModel.layernorm); Blip2QFormerModel has no text embeddings"
)
_TEXT_FFN = (
    "text-branch FFN of a Q-Former layer (intermediate/output): it only runs on text tokens after the "
    "queries, and Crab passes none; our Q-Former is built without it (use_qformer_text_input=False)"
)
_MLM_HEAD = "MLM head of BertLMHeadModel: Crab only calls .bert, so it never runs"
_SEGMENTATION = "segmentation module not implemented yet (issue 'All of Crab's tasks')"
PRETRAIN_LLM_REASON = (
    "LLM embeddings / LM head saved by pre-training: Crab's fine-tuning pops model.embed_tokens.weight and "
    "its inference (quick_start.py) never reads pre-training files, so the LLM keeps Llama-2's weights"
)
AVS_EMBEDDINGS_REASON = (
    "AVS-stage (F2) embeddings / LM head: Crab loads them only with the segmentation module, for AVS "
    "tasks; pass --avs-embeddings to use them"
)
AVSS_EMBEDDINGS_REASON = "AVSS-stage embeddings / LM head: used only with the 71-class segmentation module"
#: Format with ``projector`` and ``file``.
NOT_THIS_STAGE_REASON = "{projector} in {file}: not the result of that projector's own stage"


def _projector_rules(crab_name: str, stem: str, ours: str) -> list[Rule]:
    """The rows of one Q-Former projector (``vl_projector``/``visual``, ``al_projector``/``audio``)."""
    root = rf"model\.{crab_name}\."
    bert = rf"{root}{stem}_Qformer\.bert\."
    layer = rf"{bert}encoder\.layer\.(\d+)\."
    wb = r"(weight|bias)"

    def rule(pattern: str, target: str | None, action: Action = "map", reason: str = "") -> Rule:
        return Rule(ours, re.compile(pattern), target, action, reason)  # type: ignore[arg-type]

    return [
        rule(rf"{root}{stem}_ln\.{wb}", rf"{ours}.feature_norm.\1"),
        rule(rf"{root}{stem}_query_tokens", f"{ours}.query_tokens"),
        rule(rf"{root}{stem}_proj\.0\.{wb}", rf"{ours}.linear_1.\1"),
        rule(rf"{root}{stem}_proj\.2\.{wb}", rf"{ours}.linear_2.\1"),
        rule(rf"{bert}embeddings\.LayerNorm\.{wb}", rf"{ours}.qformer.layernorm.\1"),
        rule(
            rf"{layer}(attention|crossattention)\.self\.(query|key|value)\.{wb}",
            rf"{ours}.qformer.encoder.layer.\1.\2.attention.\3.\4",
        ),  # fmt: skip
        rule(
            rf"{layer}(attention|crossattention)\.output\.(dense|LayerNorm)\.{wb}",
            rf"{ours}.qformer.encoder.layer.\1.\2.output.\3.\4",
        ),  # fmt: skip
        rule(
            rf"{layer}(intermediate_query\.dense|output_query\.dense|output_query\.LayerNorm)\.{wb}",
            rf"{ours}.qformer.encoder.layer.\1.\2.\3",
        ),  # fmt: skip
        rule(
            rf"{bert}embeddings\.(word_embeddings\.weight|position_embeddings\.weight|position_ids)",
            None,
            "drop",
            _BERT_EMBEDDINGS,
        ),  # fmt: skip
        rule(rf"{layer}(intermediate\.dense|output\.dense|output\.LayerNorm)\.{wb}", None, "drop", _TEXT_FFN),
        rule(rf"{root}{stem}_Qformer\.cls\.predictions\..+", None, "drop", _MLM_HEAD),
    ]


_LINEAR = r"model\.layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)"

#: The key map; the first rule whose pattern fully matches a normalised key applies.
RULES: tuple[Rule, ...] = (
    *_projector_rules("vl_projector", "visual", "visual_projector"),
    *_projector_rules("al_projector", "audio", "audio_projector"),
    Rule("ia_lora", re.compile(rf"{_LINEAR}\.lora_A\.weight"), r"language_model.model.layers.\1.\2:A", "map"),
    Rule("ia_lora", re.compile(rf"{_LINEAR}\.lora_B(\d+)\.weight"), r"language_model.model.layers.\1.\2:B\3", "map"),
    Rule("ia_lora", re.compile(rf"{_LINEAR}\.lora_route\.weight"), r"language_model.model.layers.\1.\2:router", "map"),
    Rule("llm", re.compile(r"model\.embed_tokens\.weight"), "language_model.model.embed_tokens.weight", "map"),
    Rule("llm", re.compile(r"lm_head\.weight"), "language_model.lm_head.weight", "map"),
    Rule("segmentation", re.compile(r"model\.seg_module\..+"), None, "skip", _SEGMENTATION),
)  # fmt: skip

#: Which components each file may hold; anything else in that file is an error.
FILE_COMPONENTS: dict[str, frozenset[str]] = {
    FINETUNE_FILE: frozenset({"visual_projector", "audio_projector", "ia_lora"}),
    VISUAL_PRETRAIN_FILE: frozenset({"visual_projector", "audio_projector", "llm"}),
    AUDIO_PRETRAIN_FILE: frozenset({"visual_projector", "audio_projector", "llm"}),
    SEGMENTATION_PRETRAIN_FILE: frozenset({"visual_projector", "audio_projector", "llm", "segmentation"}),
    AVS_FILE: frozenset({"llm", "segmentation"}),
    AVSS_FILE: frozenset({"llm", "segmentation"}),
}


def normalise_key(key: str) -> str:
    """Strip the PEFT wrapper prefix ``base_model.model.`` (F1/F2 files); pre-training keys pass unchanged."""
    return key[len(_PEFT_PREFIX) :] if key.startswith(_PEFT_PREFIX) else key


def match_key(file_name: str, key: str) -> KeyMatch:
    """Resolve one reference key of ``file_name`` through :data:`RULES`.

    Args:
        file_name: the checkpoint's file name (one of :data:`CHECKPOINT_FILES`), for the allowed components.
        key: the key as stored in the file.

    Returns:
        The matching rule and our key (``None`` for dropped / skipped keys).

    Raises:
        ConversionError: no rule matches (unknown key), or the key's component does not belong in this file.
    """
    normalised = normalise_key(key)
    for rule in RULES:
        found = rule.pattern.fullmatch(normalised)
        if found is None:
            continue
        if rule.component not in FILE_COMPONENTS[file_name]:
            raise ConversionError(
                f"{file_name}: key {key!r} belongs to the {rule.component} weights, which Crab does not save in "
                f"this file (it holds {', '.join(sorted(FILE_COMPONENTS[file_name]))})"
            )
        return KeyMatch(rule, found.expand(rule.target) if rule.target is not None else None)
    raise ConversionError(f"{file_name}: unknown key {key!r}: not in the Crab key map (crab.convert.keymap.RULES)")


def check_shape(file_name: str, key: str, tensor: torch.Tensor, expected: tuple[int, ...]) -> None:
    """Raise a :class:`ConversionError` naming the file, the key and both shapes if they differ."""
    if tuple(tensor.shape) != tuple(expected):
        raise ConversionError(f"{file_name}: {key!r}: expected shape {tuple(expected)}, found {tuple(tensor.shape)}")
