"""``crab convert-crab-weights``: the authors' released checkpoints as our two model folders.

Reads the Crab checkpoint files of a folder (torch pickles of parameter dicts, loaded with
``torch.load(path, map_location="cpu", weights_only=True)``), maps them with :mod:`crab.convert.mapping`
and writes, atomically under ``out_dir``::

    pretrain/                 config.json, generation_config.json, model.safetensors, tokenizer files
                              (CrabForConditionalGeneration.save_pretrained: what ``crab pretrain`` writes)
    finetune/                 adapter_config.json, adapter_model.safetensors (PEFT save_pretrained: IA-LoRA
                              + both projectors as modules_to_save: what ``crab finetune`` writes)
    conversion_report.json    per file: keys mapped / dropped / skipped (with reasons), rank, heads, sources

so that ``crab.train.finetune.load_finetuned(out_dir / "pretrain", out_dir / "finetune")`` (and hence
``crab infer`` / ``crab evaluate`` with ``pretrain.out_dir`` / ``finetune.out_dir`` pointed there) runs
the released model. The LLM comes from a local Llama-2-7b-chat-hf folder (or any Llama folder whose sizes
fit the checkpoints, e.g. a tiny one in tests). Choices, and how they differ from Crab:

* Tokenizer: Crab's 17 tokens are added (:func:`crab.models.tokenizer.add_crab_tokens`, ids 32000-32016
  for Llama-2), pad = eos, left padding, Llama-2's chat template if the folder has none.
* New token rows: Crab's F1 never trains or saves them (crab-reference 1.6, 7.7); its inference draws them
  from ``N(0, initializer_range)`` with the global RNG. Here they are drawn the same way from a seeded
  generator (``seed``), so a conversion is reproducible; ``use_avs_embeddings`` takes the whole embedding
  and LM-head matrices of ``avs_finetune_weights.bin`` instead (Crab's AVS-task model).
* Decoding: a greedy generation config (Llama-2-chat ships sampling defaults, crab-reference 5.1).
* I-LoRA hyper-parameters that are not in the checkpoint are Crab's hard-coded ones: ``lora_alpha`` 16
  (scaling 2 with r = 8), dropout 0.05 (crab-reference 2.2); r and the head count are read from the weights.
* The projector sizes come from ``template`` (default :func:`crab_llama2_7b_config`); every checkpoint
  tensor is checked against them, except the Q-Former head count, which no shape reveals.

Memory: the LLM is loaded once (the Crab model around it is assembled on the ``meta`` device); in fp32,
Llama-2-7B needs about 27 GB of RAM (``dtype=torch.bfloat16`` halves it).
"""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import get_peft_model
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

import crab.lora  # noqa: F401  (registers ia_lora with peft before the adapter is built)
from crab.atomic import replace_dir
from crab.convert.keymap import CHECKPOINT_FILES, ConversionError, FileReport
from crab.convert.mapping import CrabWeights, map_checkpoints, target_shapes
from crab.lora import build_adapter_config, llm_target_regex
from crab.models.base import load_llm, load_tokenizer
from crab.models.configuration_crab import CrabConfig, crab_llama2_7b_config
from crab.models.modeling_crab import CrabForConditionalGeneration, CrabQFormerProjector
from crab.models.tokenizer import LLAMA2_CHAT_TEMPLATE, add_crab_tokens
from crab.train.finetune import PROJECTORS

__all__ = ["CRAB_LORA_ALPHA", "CRAB_LORA_DROPOUT", "ConversionResult", "convert_crab_weights", "read_checkpoints"]

log = logging.getLogger(__name__)

#: Crab's hard-coded I-LoRA alpha and dropout (``scripts/quick_start.py``, crab-reference 2.2).
CRAB_LORA_ALPHA = 16.0
CRAB_LORA_DROPOUT = 0.05
REPORT_NAME = "conversion_report.json"


@dataclass(frozen=True)
class ConversionResult:
    """What ``convert_crab_weights`` wrote."""

    out_dir: Path
    pretrain_dir: Path
    finetune_dir: Path
    reports: list[FileReport]
    rank: int
    num_heads: int


def read_checkpoints(checkpoint_dir: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """Load every released Crab file present in ``checkpoint_dir`` (``weights_only=True``, on the CPU).

    Returns:
        File name -> its dict, in :data:`~crab.convert.keymap.CHECKPOINT_FILES` order.

    Raises:
        ConversionError: the folder or ``finetune_weights.bin`` is missing, or a file is not a readable
            pickle of a ``{name: tensor}`` dict.
    """
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        raise ConversionError(f"{folder}: no such checkpoint folder")
    if not (folder / CHECKPOINT_FILES[0]).is_file():
        raise ConversionError(f"{folder}: no {CHECKPOINT_FILES[0]} (Crab's fine-tuned weights are required)")
    loaded = {}
    for name in CHECKPOINT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
            detail = " ".join(str(err).split())[:200]
            raise ConversionError(f"{path}: not a readable torch checkpoint ({detail})") from None
        if not isinstance(state_dict, dict) or not all(isinstance(k, str) for k in state_dict):
            kind = type(state_dict).__name__
            raise ConversionError(f"{path}: expected a dict of parameter name -> tensor, got {kind}")
        loaded[name] = state_dict
        log.info("read %s: %d keys", path, len(state_dict))
    others = sorted(p.name for p in folder.iterdir() if p.suffix == ".bin" and p.name not in CHECKPOINT_FILES)
    if others:
        log.warning("ignored files that are not Crab checkpoints: %s", ", ".join(others))
    return loaded


def convert_crab_weights(
    checkpoint_dir: str | Path,
    llm_dir: str | Path,
    out_dir: str | Path,
    *,
    tokenizer_dir: str | Path | None = None,
    template: CrabConfig | None = None,
    use_avs_embeddings: bool = False,
    lora_alpha: float = CRAB_LORA_ALPHA,
    lora_dropout: float = CRAB_LORA_DROPOUT,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> ConversionResult:
    """Convert Crab's released checkpoints into a pre-trained Crab folder and an IA-LoRA adapter.

    Args:
        checkpoint_dir: folder with ``finetune_weights.bin`` and optionally the pre-training / AVS files.
        llm_dir: local HF folder of the base LLM (Llama-2-7b-chat-hf), safetensors weights.
        out_dir: output folder (replaced atomically): ``pretrain/``, ``finetune/``, ``conversion_report.json``.
        tokenizer_dir: the tokenizer's folder, if not ``llm_dir``.
        template: gives the projector sizes (Q-Former configs, query counts, feature widths);
            default :func:`crab_llama2_7b_config`, the released model's.
        use_avs_embeddings: take embeddings and LM head from ``avs_finetune_weights.bin``.
        lora_alpha: I-LoRA alpha (scaling = alpha / r).
        lora_dropout: I-LoRA dropout (training only).
        dtype: dtype of the written weights (Crab runs fp32).
        seed: seeds the rows of the 17 added tokens.

    Returns:
        The written folders, the per-file reports, r and the head count.

    Raises:
        ConversionError: a checkpoint does not fit (file, key, expected vs found shape), or required
            weights are missing.
        CrabError: the LLM / tokenizer folder is missing or incomplete, or is larger than the tokenizer.
    """
    template = crab_llama2_7b_config() if template is None else template
    state_dicts = read_checkpoints(checkpoint_dir)  # fail fast, before the LLM
    tokenizer = _crab_tokenizer(Path(tokenizer_dir or llm_dir))
    llm_config = _llm_config(Path(llm_dir), len(tokenizer))
    config = _crab_config(template, llm_config, tokenizer)
    weights = map_checkpoints(state_dicts, target_shapes(config), use_avs_embeddings=use_avs_embeddings)
    del state_dicts  # dropped / skipped tensors (BERT embeddings, segmentation module) are freed here
    for report in weights.reports:
        log.info("%s: %d keys; mapped %s; dropped %d; skipped %s", report.file, report.num_keys, dict(report.mapped),
                 sum(report.dropped.values()), dict(report.skipped) or "none")  # fmt: skip
    model = _assemble(config, _load_llm(Path(llm_dir), len(tokenizer), dtype, seed, weights), weights, dtype)
    out_dir = Path(out_dir)
    with replace_dir(out_dir) as tmp:
        model.save_pretrained(tmp / "pretrain")
        tokenizer.save_pretrained(tmp / "pretrain")
        model.load_state_dict(weights.finetune_projectors, strict=False)  # the adapter's modules_to_save copies
        adapter_config = build_adapter_config(
            "ia_lora", r=weights.rank, alpha=lora_alpha, dropout=lora_dropout, num_heads=weights.num_heads,
            target_modules=llm_target_regex("language_model"), modules_to_save=list(PROJECTORS),
        )  # fmt: skip
        with torch.random.fork_rng(devices=[]):  # the random adapter init is overwritten; keep the caller's RNG
            peft_model = get_peft_model(model, adapter_config)
        _load_adapter(peft_model.base_model.model, weights.lora)
        peft_model.save_pretrained(tmp / "finetune")
        (tmp / REPORT_NAME).write_text(json.dumps(_report(weights), indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s (IA-LoRA r=%d, %d heads)", out_dir, weights.rank, weights.num_heads)
    return ConversionResult(out_dir, out_dir / "pretrain", out_dir / "finetune", weights.reports, weights.rank,
                            weights.num_heads)  # fmt: skip


def _crab_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    """The LLM's tokenizer with Crab's 17 tokens, pad = eos, left padding and the Llama-2 chat template."""
    tokenizer = load_tokenizer(path)
    add_crab_tokens(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # Crab pads with eos (crab-reference 1.6)
    tokenizer.padding_side = "left"
    if tokenizer.chat_template is None:
        tokenizer.chat_template = LLAMA2_CHAT_TEMPLATE
    return tokenizer


def _llm_config(path: Path, vocab_size: int) -> LlamaConfig:
    """The LLM's config with the extended vocabulary (read alone, so checkpoints are checked before loading)."""
    if not (path / "config.json").is_file():
        raise ConversionError(f"{path}: no config.json (expected a local Llama-2-7b-chat-hf folder)")
    config = LlamaConfig.from_pretrained(path, local_files_only=True)
    if config.vocab_size > vocab_size:
        raise ConversionError(f"{path}: LLM vocabulary {config.vocab_size} exceeds the tokenizer's {vocab_size}")
    config.vocab_size = vocab_size
    return config


def _crab_config(template: CrabConfig, llm_config: LlamaConfig, tokenizer: PreTrainedTokenizerBase) -> CrabConfig:
    """``template``'s projectors around ``llm_config``, placeholder ids from the tokenizer."""
    ids = {f"{name}_token_id": tokenizer.convert_tokens_to_ids(f"<{name}>") for name in ("video", "audio", "image")}
    return CrabConfig(
        text_config=llm_config, visual_qformer_config=template.visual_qformer_config,
        audio_qformer_config=template.audio_qformer_config, num_visual_queries=template.num_visual_queries,
        num_audio_queries=template.num_audio_queries, vision_feature_layer=template.vision_feature_layer,
        vision_hidden_size=template.vision_hidden_size, audio_hidden_size=template.audio_hidden_size,
        initializer_range=template.initializer_range, **ids,
    )  # fmt: skip


def _load_llm(path: Path, vocab_size: int, dtype: torch.dtype, seed: int, weights: CrabWeights) -> LlamaForCausalLM:
    """The LLM with the vocabulary extended to ``vocab_size``: seeded N(0, initializer_range) rows, or F2's."""
    llm = load_llm(path, dtype)
    old = llm.config.vocab_size
    if old != vocab_size:
        llm.resize_token_embeddings(vocab_size, mean_resizing=False)
        generator = torch.Generator().manual_seed(seed)
        std = llm.config.initializer_range
        with torch.no_grad():
            for matrix in (llm.get_input_embeddings().weight, llm.get_output_embeddings().weight):
                rows = torch.randn(vocab_size - old, matrix.shape[1], generator=generator) * std  # (17, H)
                matrix[old:] = rows.to(matrix.dtype)
        log.info("added %d token rows to %s (seeded N(0, %g))", vocab_size - old, path, std)
    if weights.llm:
        names = {"language_model.model.embed_tokens.weight": llm.get_input_embeddings().weight,
                 "language_model.lm_head.weight": llm.get_output_embeddings().weight}  # fmt: skip
        with torch.no_grad():
            for name, tensor in weights.llm.items():
                names[name].copy_(tensor.to(names[name].dtype))
        log.info("embeddings / LM head from the AVS-stage checkpoint: %s", sorted(weights.llm))
    return llm


def _assemble(
    config: CrabConfig, llm: LlamaForCausalLM, weights: CrabWeights, dtype: torch.dtype
) -> CrabForConditionalGeneration:
    """The Crab model around the loaded LLM (shell on ``meta``, so no second LLM is allocated), base projectors in."""
    with torch.device("meta"):
        model = CrabForConditionalGeneration(config)
    model.language_model = llm
    model.visual_projector = CrabQFormerProjector(config.visual_qformer_config, config.num_visual_queries,
                                                  config.text_config.hidden_size).to(dtype)  # fmt: skip
    model.audio_projector = CrabQFormerProjector(config.audio_qformer_config, config.num_audio_queries,
                                                 config.text_config.hidden_size).to(dtype)  # fmt: skip
    result = model.load_state_dict(weights.base_projectors, strict=False)
    projector_keys = {k for k in model.state_dict() if k.split(".", 1)[0] in PROJECTORS}
    missing = sorted(projector_keys & set(result.missing_keys))
    if missing or result.unexpected_keys:  # mapping.py checked completeness; this guards the assembly
        raise ConversionError(
            f"projector weights do not load: missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}"
        )
    meta = [name for name, t in model.state_dict().items() if t.is_meta]
    if meta:
        raise ConversionError(f"weights left unset after assembly: {meta[:3]}")
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id, eos_token_id=config.text_config.eos_token_id,
        pad_token_id=config.text_config.eos_token_id, do_sample=False,
    )  # fmt: skip
    return model.eval()


def _load_adapter(model: torch.nn.Module, lora: dict[str, torch.Tensor]) -> None:
    """Load the IA-LoRA tensors into the injected model; every adapter weight must be given, nothing else."""
    adapter_keys = {k for k in model.state_dict() if ".ia_lora_" in k}
    result = model.load_state_dict(lora, strict=False)
    missing = sorted(adapter_keys & set(result.missing_keys))
    if missing or result.unexpected_keys:
        raise ConversionError(
            f"I-LoRA weights do not fit the adapter: missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}"
        )


def _report(weights: CrabWeights) -> dict[str, object]:
    return {
        "files": [r.as_dict() for r in weights.reports],
        "ia_lora": {"rank": weights.rank, "num_heads": weights.num_heads, "num_linears": len(weights.lora) // 3},
        "pretrain_projectors_from": weights.projector_sources,
        "finetune_projectors_from": "finetune_weights.bin",
        "llm_replaced_from_avs": sorted(weights.llm),
    }
