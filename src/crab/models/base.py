"""The ``base_models`` stage and the loaders of the frozen encoders, the LLM and the tokenizer.

Every later stage starts from four components (DESIGN.md sections 2 and 6, crab-reference sections 1.2, 1.4,
1.6, 1.7): ``CLIPVisionModel`` + ``CLIPImageProcessor``, BEATs, ``LlamaForCausalLM`` and its tokenizer with Crab's
17 tokens. The ``tiny`` profile *creates* them, seeded, in the formats the ``paper`` profile reads from local
folders (openai/clip-vit-large-patch14, the official BEATs checkpoint, Llama-2-7b-chat-hf), so both profiles
use the same path-based loaders below::

    models/base/
      clip/          config.json, model.safetensors, preprocessor_config.json   (HF folder)
      beats/beats.pt {"cfg": dict, "model": state_dict}                         (official BEATs format)
      llm/           config.json, generation_config.json, model.safetensors     (HF folder)
      tokenizer/     tokenizer.json, tokenizer_config.json (chat template inside)
      manifest.json  sizes, parameter counts, token ids, CLIP feature layer, seeds, library versions

The tokenizer is a byte-level BPE trained on the AV-UIE train text (:mod:`crab.models.tokenizer`); the LLM
vocabulary is its length. The folder is built in a temp sibling and renamed into place; the same params give
byte-identical weights and ``tokenizer.json``. How it differs from the obvious build:

- the LLM config leaves ``pad_token_id`` unset (pad = eos lives in the tokenizer and the generation config):
  ``LlamaModel`` passes ``pad_token_id`` to ``nn.Embedding(padding_idx=...)``, which would zero ``</s>``'s
  input embedding and freeze it, since Crab pads with eos;
- the generation config is greedy: Llama-2-chat ships sampling defaults that Crab inherited (section 5.1);
- loading is strict: missing or mismatched weights are errors; only the text tower of a full ``CLIPModel``
  checkpoint (as openai/clip-vit-large-patch14 is) may be left unused; weights load only from safetensors.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tokenizers
import torch
import transformers
from transformers import (AutoTokenizer, CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel, GenerationConfig,
                          LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerBase)  # fmt: skip
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from crab.atomic import replace_dir
from crab.avuie.build import OUT_DIR as AVUIE_DIR
from crab.config import Params, TinyLlmConfig, TinyVisionConfig
from crab.errors import CrabError
from crab.features.fbank import BEATS_SAMPLE_RATE, num_fbank_frames
from crab.models.beats import BEATs, beats_tiny, load_beats, save_beats_checkpoint
from crab.models.mask_decoder import mask_decoder_tiny_config
from crab.models.tokenizer import (CRAB_ADDED_TOKENS, MAX_SEQUENCE_LENGTH, PLACEHOLDER_TOKENS, SYSTEM_PROMPT,
                                   avuie_training_texts, check_tokenizer, train_bpe_tokenizer)  # fmt: skip

__all__ = [
    "LLM_FILES", "TOKENIZER_FILES", "VISION_FILES", "BaseModelPaths", "BaseModels", "BaseModelsError",
    "BaseModelsResult", "base_models", "fit_llm_to_tokenizer", "load_audio", "load_base_models", "load_llm",
    "load_tokenizer", "load_vision", "missing_files", "tiny_clip", "tiny_llama",
]  # fmt: skip

log = logging.getLogger(__name__)

VISION_FILES = (("config.json",), ("preprocessor_config.json",), ("model.safetensors", "model.safetensors.index.json"))
LLM_FILES = (("config.json",), ("model.safetensors", "model.safetensors.index.json"))
TOKENIZER_FILES = (("tokenizer_config.json",), ("tokenizer.json", "tokenizer.model"))
#: Weights of a full ``CLIPModel`` checkpoint that the vision tower does not use.
_CLIP_OTHER_TOWER = ("text_model.", "text_projection.", "visual_projection.", "logit_scale")


class BaseModelsError(CrabError):
    """Base models that are missing, incomplete or do not fit together; the message names the path."""


@dataclass(frozen=True)
class BaseModelPaths:
    """Where each component lives inside a base-models folder (module docstring)."""

    root: Path
    vision: Path  # HF folder: CLIPVisionModel + CLIPImageProcessor
    audio: Path  # official BEATs checkpoint file
    llm: Path  # HF folder: LlamaForCausalLM
    tokenizer: Path  # HF tokenizer folder
    manifest: Path

    @classmethod
    def of(cls, out_dir: str | Path) -> BaseModelPaths:
        """The folder's layout; a component whose manifest entry names a ``path`` is read from there.

        The tiny manifest names the layout above (relative paths); the paper one the absolute paths of the
        released weights, which ``base_models`` checks but does not copy (:mod:`crab.models.pretrained`).
        """
        r = Path(out_dir)
        paths = {
            "vision": r / "clip",
            "audio": r / "beats" / "beats.pt",
            "llm": r / "llm",
            "tokenizer": r / "tokenizer",
        }
        manifest = r / "manifest.json"
        if manifest.is_file():
            try:
                entries = json.loads(manifest.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise BaseModelsError(f"{manifest}: not valid JSON ({err.msg})") from None
            paths |= {
                k: r / entries[k]["path"] for k in paths if isinstance(entries.get(k), dict) and "path" in entries[k]
            }
        return cls(r, paths["vision"], paths["audio"], paths["llm"], paths["tokenizer"], manifest)


@dataclass(frozen=True)
class BaseModelsResult:
    """What ``base_models`` wrote: the folder and its manifest (also in ``manifest.json``)."""

    out_dir: Path
    manifest: dict[str, Any]


@dataclass
class BaseModels:
    """The loaded components, in eval mode (freezing is the caller's choice)."""

    vision: CLIPVisionModel
    image_processor: CLIPImageProcessorPil
    audio: BEATs
    llm: LlamaForCausalLM
    tokenizer: PreTrainedTokenizerBase
    manifest: dict[str, Any]


def base_models(params: Params) -> BaseModelsResult:
    """Create the tiny profile's base models in ``base_models.out_dir`` (module docstring); for ``profile: paper``,
    check the released weights and extend their tokenizer instead (:mod:`crab.models.pretrained`).

    Args:
        params: reads ``profile``, ``base_models`` and ``avuie.tasks`` (train splits in ``data/avuie``: the corpus).

    Returns:
        The output folder and the manifest.

    Raises:
        PretrainedWeightsError: (paper) the local weights are missing or do not fit Crab.
        DataError: an AV-UIE ``train.jsonl`` is missing or malformed (run ``crab avuie_build``).
        TokenizerError: the trained tokenizer fails its checks.
    """
    if params.profile == "paper":
        from crab.models.pretrained import paper_base_models  # imports this module

        return BaseModelsResult(out_dir=Path(params.base_models.out_dir), manifest=paper_base_models(params))
    cfg = params.base_models
    seeds = {"vision": cfg.seed, "audio": cfg.seed + 1, "llm": cfg.seed + 2}
    out_dir = Path(cfg.out_dir)
    start = time.perf_counter()
    with replace_dir(out_dir) as tmp:
        paths = BaseModelPaths.of(tmp)
        corpus = avuie_training_texts(AVUIE_DIR, params.avuie.tasks)
        tokenizer = train_bpe_tokenizer(corpus.texts, cfg.tokenizer.vocab_size, cfg.tokenizer.min_frequency)
        check_tokenizer(tokenizer, corpus.texts)
        tokenizer.save_pretrained(paths.tokenizer, save_jinja_files=False)  # template inside tokenizer_config

        vision, processor = tiny_clip(cfg.vision, seeds["vision"])
        vision.save_pretrained(paths.vision)
        processor.save_pretrained(paths.vision)

        audio = beats_tiny(seeds["audio"], cfg.audio)
        paths.audio.parent.mkdir(parents=True)
        save_beats_checkpoint(audio, audio.cfg, paths.audio)

        llm = tiny_llama(cfg.llm, tokenizer, seeds["llm"])
        llm.save_pretrained(paths.llm)

        manifest = _manifest(params, seeds, tokenizer, vision, audio, llm, corpus.num_records)
        paths.manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    counts = ", ".join(f"{part} {manifest[part]['num_parameters']:,}" for part in ("vision", "audio", "llm"))
    log.info("base_models: wrote %s in %.1f s (parameters: %s)", out_dir, time.perf_counter() - start, counts)
    return BaseModelsResult(out_dir=out_dir, manifest=manifest)


def tiny_clip(cfg: TinyVisionConfig, seed: int) -> tuple[CLIPVisionModel, CLIPImageProcessorPil]:
    """A seeded random-init CLIP vision tower with OpenAI CLIP's conventions, and its image processor.

    Args:
        cfg: sizes (``base_models.vision``).
        seed: seed of a forked RNG (the global RNG is untouched).

    Returns:
        The model in eval mode (quick-GELU, pre-LN like ViT-L/14) and a processor that resizes the shortest
        side to ``image_size``, centre-crops ``image_size`` and normalises with CLIP's mean/std:
        pixel_values (B, 3, image_size, image_size).
    """
    config = CLIPVisionConfig(
        image_size=cfg.image_size, patch_size=cfg.patch_size, hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPVisionModel(config).eval()
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": cfg.image_size}, crop_size={"height": cfg.image_size, "width": cfg.image_size},
        image_mean=list(OPENAI_CLIP_MEAN), image_std=list(OPENAI_CLIP_STD),
    )  # fmt: skip
    return model, processor


def tiny_llama(cfg: TinyLlmConfig, tokenizer: PreTrainedTokenizerBase, seed: int) -> LlamaForCausalLM:
    """A seeded random-init Llama-2-style LLM whose vocabulary is the tokenizer's.

    Args:
        cfg: sizes (``base_models.llm``).
        tokenizer: gives the vocabulary size (added tokens included) and the BOS / EOS / pad ids.
        seed: seed of a forked RNG.

    Returns:
        The model in eval mode: Llama-2's activation, norm epsilon, RoPE defaults, context length and untied
        LM head; a greedy generation config that pads with eos.
    """
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
        hidden_act="silu", max_position_embeddings=MAX_SEQUENCE_LENGTH, rms_norm_eps=1e-5, initializer_range=0.02,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=None,  # not eos: padding_idx would zero and freeze </s>'s embedding (module docstring)
        tie_word_embeddings=False,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, do_sample=False,
    )  # fmt: skip
    return model


def _manifest(
    params: Params, seeds: dict[str, int], tokenizer: PreTrainedTokenizerBase, vision: CLIPVisionModel, audio: BEATs,
    llm: LlamaForCausalLM, num_train_records: dict[str, int],
) -> dict[str, Any]:  # fmt: skip
    """The manifest: everything later stages need to know without loading the weights."""
    vcfg, lcfg = params.base_models.vision, llm.config
    return {
        "profile": params.profile,
        "seed": params.base_models.seed,
        "seeds": seeds,
        "versions": library_versions(),
        "vision": {
            "path": "clip",
            **dataclasses.asdict(vcfg),
            "num_patches": (vcfg.image_size // vcfg.patch_size) ** 2,
            "num_hidden_states": vcfg.num_layers + 1,  # index 0 = patch embedding
            "mask_feature_layers": list(mask_decoder_tiny_config().vision_feature_layers),  # the decoder's levels
            "num_parameters": _num_parameters(vision),
        },
        "audio": audio_manifest(audio, "beats/beats.pt"),
        "llm": {
            "path": "llm",
            **dataclasses.asdict(params.base_models.llm),
            "vocab_size": lcfg.vocab_size,
            "max_position_embeddings": lcfg.max_position_embeddings,
            "num_parameters": _num_parameters(llm),
        },
        # num_train_records: AV-UIE train records per task in the tokenizer's corpus.
        "tokenizer": {**tokenizer_manifest(tokenizer), "num_train_records": num_train_records},
    }


def tokenizer_manifest(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """The manifest's ``tokenizer`` entry in both profiles: sizes, special and added token ids, chat settings."""
    added = {t: tokenizer.convert_tokens_to_ids(t) for t in CRAB_ADDED_TOKENS}
    return {
        "path": "tokenizer",
        "vocab_size": len(tokenizer),
        "base_vocab_size": len(tokenizer) - len(added),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "unk_token_id": tokenizer.unk_token_id,
        "padding_side": tokenizer.padding_side,
        "system_prompt": SYSTEM_PROMPT,
        "added_token_ids": added,
        "placeholder_token_ids": {t: added[t] for t in PLACEHOLDER_TOKENS},
    }


def audio_manifest(audio: BEATs, path: str) -> dict[str, Any]:
    """The manifest's ``audio`` entry in both profiles: where the checkpoint is, its sizes, tokens per second."""
    cfg = audio.cfg
    return {
        "path": path,
        "hidden_size": cfg.encoder_embed_dim,
        "num_layers": cfg.encoder_layers,
        "num_heads": cfg.encoder_attention_heads,
        "patch_size": cfg.input_patch_size,
        "num_tokens_per_second": audio.num_tokens(num_fbank_frames(BEATS_SAMPLE_RATE)),  # 1 s of audio
        "num_parameters": _num_parameters(audio),
    }


def library_versions() -> dict[str, str]:
    """Versions of the libraries that wrote a manifest (torch, transformers, tokenizers)."""
    return {lib.__name__: lib.__version__ for lib in (torch, transformers, tokenizers)}


def _num_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_base_models(out_dir: str | Path, dtype: torch.dtype = torch.float32) -> BaseModels:
    """Load every component of a ``base_models`` folder, strictly and offline.

    Args:
        out_dir: the folder (``base_models.out_dir``).
        dtype: dtype of the HF models (Crab runs everything in fp32).

    Returns:
        The components and the manifest.

    Raises:
        BaseModelsError: files are missing (all listed), weights do not match a config, or the LLM
            vocabulary or the added-token ids disagree with the tokenizer / manifest.
    """
    paths = BaseModelPaths.of(out_dir)  # check everything first, to name every missing piece at once
    required = ((paths.vision, VISION_FILES), (paths.audio.parent, ((paths.audio.name,),)), (paths.llm, LLM_FILES),
                (paths.tokenizer, TOKENIZER_FILES), (paths.root, ((paths.manifest.name,),)))  # fmt: skip
    missing = [entry for folder, files in required for entry in missing_files(folder, files)]
    if missing:
        raise BaseModelsError(f"{paths.root}: missing {', '.join(missing)}; run `crab base_models`")
    try:
        manifest = json.loads(paths.manifest.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise BaseModelsError(f"{paths.manifest}: not valid JSON ({err.msg})") from None
    vision, processor = load_vision(paths.vision, dtype)
    tokenizer, llm = load_tokenizer(paths.tokenizer), load_llm(paths.llm, dtype)
    fit_llm_to_tokenizer(llm, tokenizer, seed=manifest["seed"])
    expected = manifest.get("tokenizer", {}).get("added_token_ids", {})
    actual = {t: tokenizer.convert_tokens_to_ids(t) for t in CRAB_ADDED_TOKENS}
    if expected != actual:
        raise BaseModelsError(f"{paths.tokenizer}: added-token ids {actual} differ from the manifest's {expected}")
    return BaseModels(vision, processor, load_audio(paths.audio), llm, tokenizer, manifest)


def fit_llm_to_tokenizer(llm: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, seed: int) -> None:
    """Give a released LLM the rows of Crab's 17 tokens, as Crab's ``resize_token_embeddings(32017)`` does.

    The new rows of the input embedding and the LM head get HF's default N(0, initializer_range) init (Crab's
    "mean of the old embeddings" init is commented out, crab-reference 1.6), from an RNG seeded with ``seed``.
    A tiny LLM, created with the tokenizer's size, is left as it is.

    Raises:
        BaseModelsError: the vocabulary is neither the tokenizer's size nor that size less Crab's 17 tokens.
    """
    size, vocab = len(tokenizer), llm.config.vocab_size
    if vocab == size:
        return
    if vocab != size - len(CRAB_ADDED_TOKENS) or tokenizer.convert_tokens_to_ids(CRAB_ADDED_TOKENS[0]) != vocab:
        raise BaseModelsError(
            f"LLM vocab_size {vocab} fits neither the tokenizer ({size}) nor it without Crab's tokens"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        llm.resize_token_embeddings(size, mean_resizing=False)


def load_vision(path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[CLIPVisionModel, CLIPImageProcessorPil]:
    """Load a CLIP vision tower and its image processor from a local HF folder (tiny, or openai/clip-vit-*).

    Args:
        path: folder with ``config.json`` (``CLIPVisionConfig`` or full ``CLIPConfig``), ``preprocessor_config.json``
            and safetensors weights.
        dtype: dtype of the model.

    Returns:
        The model in eval mode, and the processor: PIL images -> pixel_values (B, 3, S, S).

    Raises:
        BaseModelsError: a file is missing, or weights do not fit (a full CLIPModel's text tower may be unused).
    """
    path = Path(path)
    _require(path, VISION_FILES)
    model = _from_pretrained(CLIPVisionModel, path, dtype, _CLIP_OTHER_TOWER)
    processor = CLIPImageProcessorPil.from_pretrained(path, local_files_only=True)
    return model, processor


def load_audio(path: str | Path) -> BEATs:
    """``load_beats`` (official ``{cfg, model}`` format, ``weights_only=True``, strict) with a missing-file error."""
    _require(Path(path).parent, ((Path(path).name,),))
    return load_beats(path)


def load_llm(path: str | Path, dtype: torch.dtype = torch.float32) -> LlamaForCausalLM:
    """Load a ``LlamaForCausalLM`` from a local HF folder (tiny, or Llama-2-7b-chat-hf), safetensors only.

    Raises:
        BaseModelsError: a file is missing, or weights are missing / mismatched / unexpected.
    """
    path = Path(path)
    _require(path, LLM_FILES)
    return _from_pretrained(LlamaForCausalLM, path, dtype, ())


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a local HF folder (``AutoTokenizer``, so Llama-2's folder works too).

    Raises:
        BaseModelsError: a file is missing.
    """
    path = Path(path)
    _require(path, TOKENIZER_FILES)
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def _from_pretrained(cls: type[PreTrainedModel], path: Path, dtype: torch.dtype, allowed: tuple[str, ...]) -> Any:
    """``cls.from_pretrained`` offline from safetensors; a weight that does not fit (bar ``allowed``) is an error."""
    try:
        kwargs = {"local_files_only": True, "use_safetensors": True, "output_loading_info": True}
        model, info = cls.from_pretrained(path, dtype=dtype, **kwargs)
    except (OSError, RuntimeError, ValueError) as err:  # unreadable files, shape mismatches
        raise BaseModelsError(f"{path}: cannot load {cls.__name__}: {' '.join(str(err).split())[:300]}") from err
    unexpected = sorted(k for k in info["unexpected_keys"] if not k.startswith(allowed))
    problems = {"missing": sorted(info["missing_keys"]), "unexpected": unexpected,
                "mismatched": sorted(str(k) for k in info["mismatched_keys"])}  # fmt: skip
    if any(problems.values()):
        detail = "; ".join(f"{kind} {keys[:5]}{' ...' * (len(keys) > 5)}" for kind, keys in problems.items() if keys)
        raise BaseModelsError(f"{path}: weights do not match the config ({detail})")
    return model.eval()


def missing_files(folder: Path, required: tuple[tuple[str, ...], ...]) -> list[str]:
    """Missing entries of a folder; each requirement lists alternatives, e.g. single or sharded weights."""
    if not folder.is_dir():
        return [f"{folder}/ (folder)"]
    missing = []
    for alternatives in required:
        if not any((folder / name).is_file() for name in alternatives):
            first, *others = alternatives
            missing.append(str(folder / first) + (f" (or {', '.join(others)})" if others else ""))
    return missing


def _require(folder: Path, required: tuple[tuple[str, ...], ...]) -> None:
    missing = missing_files(folder, required)
    if missing:
        raise BaseModelsError(f"{folder}: missing {', '.join(missing)}")
