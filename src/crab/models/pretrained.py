"""The paper profile's ``base_models``: check the released weights on disk and extend Llama-2's tokenizer.

DESIGN.md section 2: the paper profile reads ``openai/clip-vit-large-patch14``, the official BEATs iter3+ AS2M
checkpoint and ``Llama-2-7b-chat-hf`` from local paths (``base_models.pretrained``); nothing is downloaded.
The stage does not copy the weights (15 GB that DVC would cache a second time). It writes::

    models/base/
      tokenizer/     Llama-2's tokenizer + Crab's 17 tokens (32017), pad = eos on the left, the chat template
      manifest.json  absolute paths of the three weights, their sizes, the CLIP layers, token ids

and every loader reads the component paths from the manifest (:meth:`crab.models.base.BaseModelPaths.of`).
What is checked before anything is written, so that a wrong folder fails here and not an hour into training:

* all three paths exist with the files their formats need; every missing one is named in one error, with the
  params key that points at it;
* the configs fit Crab: the CLIP vision tower has the layers Crab reads (23 for the LLM, 14 and 22 for the mask
  decoder) and a processor whose crop equals its image size; the BEATs checkpoint loads strictly with
  ``weights_only=True``; the LLM is a Llama whose vocabulary is its tokenizer's, before or after Crab's tokens.

The LLM's embedding and LM head get their 17 new rows when the Crab model is built
(:func:`crab.models.base.fit_llm_to_tokenizer`), seeded, with HF's default N(0, 0.02) init as Crab does.
Sizes are logged, not enforced (ViT-L/14: width 1024, 24 layers, 224 px; Llama-2-7B: width 4096), so that
stand-ins of the same formats, and other sizes of the same families, pass.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, PreTrainedTokenizerBase

from crab.atomic import replace_dir
from crab.config import Params, PretrainedPathsConfig
from crab.errors import CrabError
from crab.models.base import (LLM_FILES, TOKENIZER_FILES, VISION_FILES, audio_manifest, library_versions,
                              missing_files, tokenizer_manifest)  # fmt: skip
from crab.models.beats import BeatsCheckpointError, load_beats
from crab.models.mask_decoder import mask_decoder_paper_config
from crab.models.tokenizer import CRAB_ADDED_TOKENS, LLAMA2_CHAT_TEMPLATE, MAX_SEQUENCE_LENGTH, add_crab_tokens

__all__ = ["PAPER_FEATURE_LAYER", "PretrainedWeightsError", "check_pretrained", "extend_pretrained_tokenizer",
           "paper_base_models"]  # fmt: skip

log = logging.getLogger(__name__)

#: CLIP ``hidden_states`` index whose patch tokens feed the LLM (crab-reference 8: layer 23 of ViT-L/14's 24).
PAPER_FEATURE_LAYER = 23


class PretrainedWeightsError(CrabError):
    """The paper profile's local weights are missing or do not fit Crab; the message names paths and params keys."""


def check_pretrained(paths: PretrainedPathsConfig) -> dict[str, Any]:
    """Check the three local weights (module docstring) and describe them for the manifest.

    Args:
        paths: ``base_models.pretrained``.

    Returns:
        ``{"vision": {...}, "audio": {...}, "llm": {...}}``: absolute path and sizes of each.

    Raises:
        PretrainedWeightsError: something is missing (everything missing is listed, with its params key) or a
            component does not fit Crab.
    """
    audio = Path(paths.audio)
    where = {
        "vision": (Path(paths.vision), VISION_FILES),
        "audio": (audio.parent, ((audio.name,),)),
        "llm": (Path(paths.llm), LLM_FILES + TOKENIZER_FILES),
    }  # the released Llama folder holds its tokenizer
    missing = [f"base_models.pretrained.{key}: {entry}" for key, (folder, required) in where.items()
               for entry in missing_files(folder, required)]  # fmt: skip
    if missing:
        raise PretrainedWeightsError(
            "profile 'paper' reads the released weights from local paths (nothing is downloaded); missing: "
            + "; ".join(missing)
        )
    return {"vision": _check_vision(Path(paths.vision)), "audio": _check_audio(Path(paths.audio)),
            "llm": _check_llm(Path(paths.llm))}  # fmt: skip


def _check_vision(path: Path) -> dict[str, Any]:
    try:  # a full CLIPModel folder (openai/clip-vit-large-patch14) yields its vision_config
        config = CLIPVisionConfig.from_pretrained(path, local_files_only=True)
        processor = CLIPImageProcessorPil.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, TypeError) as err:
        raise PretrainedWeightsError(f"{path}: not a CLIP folder ({' '.join(str(err).split())[:200]})") from None
    mask_layers = mask_decoder_paper_config().vision_feature_layers
    needed = sorted({PAPER_FEATURE_LAYER, *mask_layers})
    if config.num_hidden_layers < max(needed):
        raise PretrainedWeightsError(
            f"{path}: CLIP has {config.num_hidden_layers} layers, Crab reads hidden states {needed} (ViT-L/14 has 24)"
        )
    if processor.crop_size["height"] != config.image_size:
        raise PretrainedWeightsError(f"{path}: processor crop {processor.crop_size} != image size {config.image_size}")
    return {
        "path": str(path.resolve()), "image_size": config.image_size, "patch_size": config.patch_size,
        "hidden_size": config.hidden_size, "num_layers": config.num_hidden_layers,
        "num_heads": config.num_attention_heads, "intermediate_size": config.intermediate_size,
        "feature_layer": PAPER_FEATURE_LAYER, "mask_feature_layers": mask_layers,
        "num_patches": (config.image_size // config.patch_size) ** 2, "num_hidden_states": config.num_hidden_layers + 1,
    }  # fmt: skip


def _check_audio(path: Path) -> dict[str, Any]:
    try:
        beats = load_beats(path)
    except BeatsCheckpointError as err:
        raise PretrainedWeightsError(f"base_models.pretrained.audio: {err}") from None
    return audio_manifest(beats, str(path.resolve()))


def _check_llm(path: Path) -> dict[str, Any]:
    try:
        config = LlamaConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, TypeError) as err:
        raise PretrainedWeightsError(f"{path}: not a Llama folder ({' '.join(str(err).split())[:200]})") from None
    if config.model_type != "llama":
        raise PretrainedWeightsError(f"{path}: model_type {config.model_type!r}, Crab's LLM is a Llama ('llama')")
    return {
        "path": str(path.resolve()), "hidden_size": config.hidden_size, "num_layers": config.num_hidden_layers,
        "num_heads": config.num_attention_heads, "intermediate_size": config.intermediate_size,
        "vocab_size": config.vocab_size, "max_position_embeddings": config.max_position_embeddings,
    }  # fmt: skip


def extend_pretrained_tokenizer(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Dress a released Llama-2 tokenizer as Crab uses it: its 17 tokens, pad = eos on the left, the chat template.

    The template is Llama-2-chat's own; it is set only where the folder has none (older copies of the release).

    Returns:
        Token -> id of the 17 tokens (:func:`crab.models.tokenizer.add_crab_tokens`).
    """
    ids = add_crab_tokens(tokenizer)
    tokenizer.pad_token = tokenizer.eos_token  # Crab pads with eos (crab-reference 1.6)
    # Set as init kwargs too: save_pretrained writes those, not the attributes.
    tokenizer.padding_side = tokenizer.init_kwargs["padding_side"] = "left"
    tokenizer.model_max_length = tokenizer.init_kwargs["model_max_length"] = MAX_SEQUENCE_LENGTH
    if not tokenizer.chat_template:
        tokenizer.chat_template = LLAMA2_CHAT_TEMPLATE
    return ids


def paper_base_models(params: Params) -> dict[str, Any]:
    """The ``base_models`` stage for ``profile: paper``: check, then write the tokenizer and the manifest.

    Returns:
        The manifest (also written to ``<out_dir>/manifest.json``).

    Raises:
        PretrainedWeightsError: see :func:`check_pretrained`; or the LLM's vocabulary is neither the tokenizer's
            size before Crab's 17 tokens nor after.
    """
    cfg = params.base_models
    components = check_pretrained(cfg.pretrained)
    tokenizer = AutoTokenizer.from_pretrained(cfg.pretrained.llm, local_files_only=True)
    base_vocab = len(tokenizer)
    extend_pretrained_tokenizer(tokenizer)
    if components["llm"]["vocab_size"] not in (base_vocab, len(tokenizer)):
        raise PretrainedWeightsError(
            f"{cfg.pretrained.llm}: vocab_size {components['llm']['vocab_size']} is neither the tokenizer's "
            f"{base_vocab} nor {len(tokenizer)} with Crab's tokens"
        )
    manifest = {
        "profile": params.profile,
        "seed": cfg.seed,
        "versions": library_versions(),
        **components,
        "tokenizer": tokenizer_manifest(tokenizer),
        "pretrained": dataclasses.asdict(cfg.pretrained),
    }
    with replace_dir(Path(cfg.out_dir)) as tmp:
        tokenizer.save_pretrained(tmp / "tokenizer", save_jinja_files=False)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    sizes = {k: f"width {v['hidden_size']}, {v['num_layers']} layers" for k, v in components.items()}
    log.info("base_models (paper): %s; tokenizer %d + %d tokens -> %s", sizes, base_vocab, len(CRAB_ADDED_TOKENS),
             cfg.out_dir)  # fmt: skip
    return manifest
