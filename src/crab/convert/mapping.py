"""Apply the Crab key map to loaded checkpoint dicts: validate every tensor and assemble our weights.

Implements the checks of :mod:`crab.convert.keymap` file by file, before any model is built, so a bad
checkpoint fails fast (the paper LLM takes minutes to load). The expected shapes come from our own
modules, built on the ``meta`` device from the target :class:`~crab.models.configuration_crab.CrabConfig`
(:func:`target_shapes`), never restated. Which weights go where:

* ``finetune_weights.bin`` (F1, required): both projectors as fine-tuned -> the adapter's
  ``modules_to_save``; the I-LoRA heads -> the adapter. It must hold every projector weight and A, all B
  heads and the router of every adapted linear (32 layers x 7 linears for Llama-2-7B).
* ``visual_pretrain.bin`` / ``audio_pretrain.bin`` (P1 / P2, optional): the projector of that stage -> the
  pre-trained Crab folder (our ``pretrain`` output). A projector without its pre-training file takes the
  F1 weights there. The other projector, if a pre-training file holds it, is dropped (not that stage's result).
* ``segmentation_pretrain.bin``, ``avs_finetune_weights.bin``, ``avss_finetune_weights.bin``: the
  segmentation module is skipped and counted (not implemented yet); the F2 embeddings / LM head of
  ``avs_finetune_weights.bin`` replace the LLM's only on request (``use_avs_embeddings``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from crab.convert.keymap import (AUDIO_PRETRAIN_FILE, AVS_EMBEDDINGS_REASON, AVSS_EMBEDDINGS_REASON, AVSS_FILE,
                                 FINETUNE_FILE, NOT_THIS_STAGE_REASON, PRETRAIN_LLM_REASON, SEGMENTATION_PRETRAIN_FILE,
                                 VISUAL_PRETRAIN_FILE, ConversionError, FileReport, check_shape, match_key)  # fmt: skip
from crab.models.configuration_crab import CrabConfig
from crab.models.modeling_crab import CrabForConditionalGeneration

__all__ = ["CrabWeights", "TargetShapes", "map_checkpoints", "target_shapes"]

PROJECTORS = ("visual_projector", "audio_projector")
#: The pre-training file whose projector becomes the pre-trained folder's projector.
_PRETRAIN_FILE_OF = {"visual_projector": VISUAL_PRETRAIN_FILE, "audio_projector": AUDIO_PRETRAIN_FILE}
_ADAPTED = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)  # fmt: skip  (crab-reference 2.2: Crab's seven target linears)


@dataclass(frozen=True)
class TargetShapes:
    """Shapes of our weights that the checkpoints fill.

    Attributes:
        projectors: our projector keys (``visual_projector.qformer.layernorm.weight`` ...) -> shape.
        linears: adapted linear (``language_model.model.layers.0.self_attn.q_proj``) -> (d_out, d_in).
        llm: ``language_model.model.embed_tokens.weight`` / ``language_model.lm_head.weight`` -> (V, H).
    """

    projectors: dict[str, tuple[int, ...]]
    linears: dict[str, tuple[int, int]]
    llm: dict[str, tuple[int, ...]]


@dataclass
class CrabWeights:
    """Validated weights in our key space, ready to load.

    Attributes:
        base_projectors: projector weights of the pre-trained Crab folder (keys as in ``target_shapes``).
        finetune_projectors: F1 projector weights (the adapter's ``modules_to_save``).
        lora: keys of the adapted model, e.g.
            ``language_model.model.layers.0.self_attn.q_proj.ia_lora_B.default.weight``;
            ``ia_lora_B`` is (d_out, num_heads * rank), column block i = Crab's ``lora_B{i}``.
        llm: LLM weights to replace (only the F2 embeddings / LM head, on request).
        rank: I-LoRA rank r (Crab: 8).
        num_heads: number of B heads (Crab's released checkpoints: 3).
        projector_sources: projector -> file its pre-trained-folder weights come from.
        reports: one per file read.
    """

    base_projectors: dict[str, torch.Tensor]
    finetune_projectors: dict[str, torch.Tensor]
    lora: dict[str, torch.Tensor]
    llm: dict[str, torch.Tensor]
    rank: int
    num_heads: int
    projector_sources: dict[str, str]
    reports: list[FileReport] = field(default_factory=list)


def target_shapes(config: CrabConfig) -> TargetShapes:
    """Our weights' shapes for ``config``, read from the model built on the ``meta`` device (no memory).

    Args:
        config: the target Crab config (its ``text_config`` already has the final vocabulary).

    Returns:
        The shapes of the projector weights, the seven adapted linears of every LLM layer and the embeddings.
    """
    with torch.device("meta"):
        model = CrabForConditionalGeneration(config)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    projectors = {k: s for k, s in shapes.items() if k.split(".", 1)[0] in PROJECTORS}
    linears = {}
    for layer in range(config.text_config.num_hidden_layers):
        for sub in _ADAPTED:
            name = f"language_model.model.layers.{layer}.{sub}"
            linears[name] = shapes[f"{name}.weight"]  # (d_out, d_in)
    llm = {k: shapes[k] for k in ("language_model.model.embed_tokens.weight", "language_model.lm_head.weight")}
    return TargetShapes(projectors, linears, llm)


def map_checkpoints(
    state_dicts: Mapping[str, Mapping[str, torch.Tensor]], shapes: TargetShapes, *, use_avs_embeddings: bool = False
) -> CrabWeights:
    """Map and validate the loaded checkpoint files.

    Args:
        state_dicts: file name (one of ``keymap.CHECKPOINT_FILES``) -> its key -> tensor dict;
            ``finetune_weights.bin`` is required.
        shapes: our shapes (:func:`target_shapes`).
        use_avs_embeddings: take ``embed_tokens`` / ``lm_head`` from ``avs_finetune_weights.bin``.

    Returns:
        The weights in our key space with one report per file.

    Raises:
        ConversionError: the F1 file is missing; a key is unknown, misplaced, duplicated or has the wrong
            shape; a required weight is missing (each names the file and the key).
    """
    if FINETUNE_FILE not in state_dicts:
        raise ConversionError(f"{FINETUNE_FILE} is required (the fine-tuned projectors and I-LoRA weights)")
    reports, projectors, lora_parts, llm = [], {}, {}, {}
    for file_name, state_dict in state_dicts.items():
        report = FileReport(file_name, num_keys=len(state_dict))
        projectors[file_name] = {}
        for key, tensor in state_dict.items():
            _map_key(file_name, key, tensor, shapes, use_avs_embeddings, report, projectors[file_name],
                     lora_parts, llm)  # fmt: skip
        reports.append(report)

    finetune_projectors = projectors[FINETUNE_FILE]
    for projector in PROJECTORS:
        _require_complete(FINETUNE_FILE, projector, finetune_projectors, shapes)
    base_projectors, sources = {}, {}
    for projector, pretrain_file in _PRETRAIN_FILE_OF.items():
        source = pretrain_file if pretrain_file in state_dicts else FINETUNE_FILE
        _require_complete(source, projector, projectors[source], shapes)
        base_projectors.update({k: t for k, t in projectors[source].items() if k.startswith(f"{projector}.")})
        sources[projector] = source
    lora, rank, num_heads = _assemble_lora(lora_parts, shapes)
    return CrabWeights(base_projectors, finetune_projectors, lora, llm, rank, num_heads, sources, reports)


def _map_key(
    file_name: str, key: str, tensor: object, shapes: TargetShapes, use_avs_embeddings: bool, report: FileReport,
    projectors: dict[str, torch.Tensor], lora_parts: dict[str, dict[str, tuple[str, torch.Tensor]]],
    llm: dict[str, torch.Tensor],
) -> None:  # fmt: skip
    """Route one reference key into ``projectors`` / ``lora_parts`` / ``llm`` and count it in ``report``."""
    match = match_key(file_name, key)
    rule = match.rule
    if rule.action != "map":
        (report.dropped if rule.action == "drop" else report.skipped)[rule.reason] += 1
        return
    if not isinstance(tensor, torch.Tensor):
        raise ConversionError(f"{file_name}: {key!r}: expected a tensor, found {type(tensor).__name__}")
    target = match.target
    if rule.component in PROJECTORS:
        if file_name != FINETUNE_FILE and _PRETRAIN_FILE_OF[rule.component] != file_name:
            report.dropped[NOT_THIS_STAGE_REASON.format(projector=rule.component, file=file_name)] += 1
            return
        if target not in shapes.projectors:
            raise ConversionError(f"{file_name}: {key!r} maps to {target}, which our model does not have "
                                  "(a Q-Former layer beyond the config's num_hidden_layers?)")  # fmt: skip
        check_shape(file_name, key, tensor, shapes.projectors[target])
        _put(file_name, key, projectors, target, tensor)
    elif rule.component == "ia_lora":
        linear, part = target.split(":")
        if linear not in shapes.linears:
            raise ConversionError(f"{file_name}: {key!r}: our LLM has no {linear} (fewer layers than the checkpoint)")
        parts = lora_parts.setdefault(linear, {})
        if part in parts:
            raise ConversionError(f"{file_name}: {key!r} duplicates {parts[part][0]!r}")
        parts[part] = (key, tensor)
    else:  # llm
        if file_name in (VISUAL_PRETRAIN_FILE, AUDIO_PRETRAIN_FILE, SEGMENTATION_PRETRAIN_FILE):
            report.dropped[PRETRAIN_LLM_REASON] += 1
            return
        if file_name == AVSS_FILE or not use_avs_embeddings:
            report.skipped[AVSS_EMBEDDINGS_REASON if file_name == AVSS_FILE else AVS_EMBEDDINGS_REASON] += 1
            return
        check_shape(file_name, key, tensor, shapes.llm[target])
        _put(file_name, key, llm, target, tensor)
    report.mapped[rule.component] += 1


def _put(file_name: str, key: str, into: dict[str, torch.Tensor], target: str, tensor: torch.Tensor) -> None:
    if target in into:
        raise ConversionError(f"{file_name}: {key!r} maps to {target}, already given by another key of the file")
    into[target] = tensor


def _require_complete(
    file_name: str, projector: str, weights: Mapping[str, torch.Tensor], shapes: TargetShapes
) -> None:
    """Every weight of ``projector`` must have come from ``file_name``."""
    missing = sorted(k for k in shapes.projectors if k.startswith(f"{projector}.") and k not in weights)
    if missing:
        raise ConversionError(
            f"{file_name}: lacks {len(missing)} of the {projector} weights (first: {missing[0]}); "
            "the file is not a complete Crab projector checkpoint"
        )


def _assemble_lora(
    parts: Mapping[str, Mapping[str, tuple[str, torch.Tensor]]], shapes: TargetShapes
) -> tuple[dict[str, torch.Tensor], int, int]:
    """Check every adapted linear's A, B_0..B_{n-1} and router, and stack the B heads.

    Returns:
        Our adapter keys -> tensors (B stacked as ``cat([B_0, ..., B_{n-1}], dim=1)``: (d_out, n * r)),
        the rank r and the number of heads n (both read from the checkpoint, then required everywhere).
    """
    missing = [name for name in shapes.linears if name not in parts]
    if missing:
        raise ConversionError(f"{FINETUNE_FILE}: no I-LoRA weights for {len(missing)} of our {len(shapes.linears)} "
                              f"adapted linears (first: {missing[0]})")  # fmt: skip
    first = parts[next(iter(shapes.linears))]
    if "A" not in first or "router" not in first:
        raise ConversionError(f"{FINETUNE_FILE}: {next(iter(shapes.linears))} lacks lora_A or lora_route")
    rank, num_heads = first["A"][1].shape[0], first["router"][1].shape[0]
    lora = {}
    for name, (d_out, d_in) in shapes.linears.items():
        got = parts[name]
        expected = {"A": (rank, d_in), "router": (num_heads, d_in)} | {f"B{i}": (d_out, rank) for i in range(num_heads)}
        absent = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        if absent or extra:
            crab_names = {"A": "lora_A", "router": "lora_route"}
            detail = ", ".join([f"missing {crab_names.get(p, 'lora_' + p)}" for p in absent] +
                               [f"unexpected {got[p][0]!r}" for p in extra])  # fmt: skip
            raise ConversionError(f"{FINETUNE_FILE}: {name} ({num_heads} heads): {detail}")
        for part, shape in expected.items():
            check_shape(FINETUNE_FILE, got[part][0], got[part][1], shape)
        heads = [got[f"B{i}"][1] for i in range(num_heads)]  # each (d_out, r)
        lora[f"{name}.ia_lora_A.default.weight"] = got["A"][1]  # (r, d_in)
        lora[f"{name}.ia_lora_B.default.weight"] = torch.cat(heads, dim=1)  # (d_out, n * r), block i = B_i
        lora[f"{name}.ia_lora_router.default.weight"] = got["router"][1]  # (n, d_in)
    return lora, rank, num_heads
