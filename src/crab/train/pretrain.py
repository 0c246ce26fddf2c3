"""The ``pretrain`` stage: align the Q-Former projectors to the LLM (crab-reference sections 3.2-3.3).

Builds :class:`~crab.models.modeling_crab.CrabForConditionalGeneration` from the base models (the LLM's
weights are copied in; its config becomes the model's ``text_config``, so the LLM sizes are read from the
loaded checkpoint, never restated), trains it on the mixture of ``pretrain.tasks`` train splits and
writes ``pretrain.out_dir``::

    models/pretrain/        config.json, generation_config.json, model.safetensors (save_pretrained),
                            the tokenizer files, train_summary.json,
                            mask_decoder/ (with pretrain.segmentation: the pre-trained mask decoder)
    models/pretrain_log/    dvclive: metrics.json, plots/metrics/train/*.tsv (loss curve for dvc plots) of the
                            alignment; language/, grounding/, segmentation/: the other phases' logs

Phases. The tiny profile (``pretrain.language`` set) first trains its random-init LLM on the train records
of every task it will answer (``pretrain.tasks`` and ``finetune.tasks``) as text (:mod:`crab.train.language`),
so it arrives at alignment speaking AV-UIE as Llama-2-chat speaks English; the paper profile has no such phase. Then the projectors align: which
components train is declared by params (house-style 4.1): both projectors always, the LLM only when
``pretrain.train_llm`` (False in both profiles, as in Crab's projector-only pre-training; Crab's stages also
updated the LM head and the embeddings by accident, which we do not copy). ``pretrain.direct_answers`` (tiny)
aligns on direct answers (:func:`crab.train.data.direct_record`: the instruction asks for the answer without
reasoning), and the language phase then learns each record in both forms, so the frozen LLM already knows
which form the request selects and the projectors only have to carry the media. When the
config standardises features (tiny), the projectors' statistics are those of the mixture's features
(:func:`crab.train.data.feature_statistics`), fixed before alignment and saved with the model. Then, with
``pretrain.grounding`` set (tiny), the LLM trains, full, together with the aligned projectors on the task data
(:func:`_ground`): the frozen text-taught LLM reads the projected media too poorly for fine-tuning's adapter to
build on, which Llama-2 does not. Its ``answers`` form is ``both`` in the tiny profile: each record with its
reasoning and as a direct answer (on direct answers alone the LLM forgot the reasoning it had learned, and the
fine-tuned model then answered without reading the media: ``benchmarks/media_reliance.py``). Last, with
``pretrain.segmentation`` set, Crab's segmentation pre-training trains the mask decoder alone on the aligned
model (:mod:`crab.train.seg_pretrain`); the segmentation stages start from it.

How it differs from the authors' code: Crab runs two separate pre-training stages (visual on image / video
captions, audio on AudioCaps) plus a segmentation one; the tiny profile aligns both projectors at once on
AV-Synth captions and task data (the paper profile's separate caption corpora come with real data).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

from crab.config import Params
from crab.errors import CrabError
from crab.models.base import BaseModelPaths, fit_llm_to_tokenizer, load_llm, load_tokenizer
from crab.models.configuration_crab import CrabConfig, crab_llama2_7b_config, crab_tiny_config
from crab.models.modeling_crab import CrabForConditionalGeneration, set_trainable
from crab.quality.quarantine import load_quarantined_avuie
from crab.train.data import (
    AVUIE_DIR,
    AVUIE_REPORT,
    direct_record,
    feature_statistics,
    load_records,
    training_dataset,
)
from crab.train.language import learn_language
from crab.train.loop import fit
from crab.train.stage import SUMMARY_NAME, StagePaths, TrainSetup, publish_stage, summary_json

__all__ = [
    "PretrainResult",
    "build_crab_config",
    "build_crab_model",
    "load_pretrained",
    "pretrain",
    "setup_pretrain",
]

log = logging.getLogger(__name__)

#: The tiny profile's first phase (:mod:`crab.train.language`); its log is ``<log_dir>/language``.
LANGUAGE_PHASE = "language"
#: The tiny profile's phase after alignment (``pretrain.grounding``); its log is ``<log_dir>/grounding``.
GROUNDING_PHASE = "grounding"


@dataclass(frozen=True)
class PretrainResult:
    """What ``pretrain`` wrote and how training went (also in ``train_summary.json``)."""

    out_dir: Path
    log_dir: Path
    num_examples: dict[str, int]  # per task
    num_steps: int
    final_loss: float
    trainable: dict[str, int]  # trainable parameters per component


def build_crab_config(
    profile: str,
    llm_config: Any,
    tokenizer: PreTrainedTokenizerBase,
    manifest: dict[str, Any],
    *,
    visual_feature_positions: bool = False,
) -> CrabConfig:
    """The Crab config for a loaded base LLM: its own config as ``text_config``, projectors from the builder.

    Args:
        profile: ``"tiny"`` (``crab_tiny_config`` projectors) or ``"paper"`` (``crab_llama2_7b_config``).
        llm_config: the loaded LLM's ``LlamaConfig``.
        tokenizer: gives the placeholder ids.
        manifest: the base models' manifest (feature widths, CLIP feature layer, patches per frame).
        visual_feature_positions: give the visual projector one learned position embedding per CLIP patch
            (``pretrain.visual_feature_positions``; ``CrabConfig.visual_feature_positions``).

    Returns:
        The config.
    """
    ids = {name: tokenizer.convert_tokens_to_ids(f"<{name}>") for name in ("video", "audio", "image")}
    vision, audio = manifest["vision"], manifest["audio"]
    if profile == "tiny":
        template = crab_tiny_config(
            llm_config.vocab_size, video_token_id=ids["video"], audio_token_id=ids["audio"],
            image_token_id=ids["image"], vision_hidden_size=vision["hidden_size"],
            audio_hidden_size=audio["hidden_size"], vision_feature_layer=vision["feature_layer"],
        )  # fmt: skip
    else:
        template = crab_llama2_7b_config(
            vocab_size=llm_config.vocab_size, image_token_id=ids["image"], video_token_id=ids["video"],
            audio_token_id=ids["audio"], vision_hidden_size=vision["hidden_size"], audio_hidden_size=audio["hidden_size"],
        )  # fmt: skip
    return CrabConfig(
        text_config=llm_config,
        visual_qformer_config=template.visual_qformer_config,
        audio_qformer_config=template.audio_qformer_config,
        num_visual_queries=template.num_visual_queries,
        num_audio_queries=template.num_audio_queries,
        video_token_id=ids["video"],
        audio_token_id=ids["audio"],
        image_token_id=ids["image"],
        vision_feature_layer=template.vision_feature_layer,
        vision_hidden_size=template.vision_hidden_size,
        audio_hidden_size=template.audio_hidden_size,
        standardize_features=template.standardize_features,
        visual_feature_positions=vision["num_patches"] if visual_feature_positions else 0,
    )


def build_crab_model(
    base_dir: str | Path, profile: str, seed: int, *, visual_feature_positions: bool = False
) -> tuple[CrabForConditionalGeneration, PreTrainedTokenizerBase]:
    """Crab with fresh projectors (seeded) and the base LLM's weights; the tokenizer of the base models.

    Only the LLM, the tokenizer and the manifest are read: the encoders ran in the ``features`` stage.

    Args:
        base_dir: the ``base_models`` folder.
        profile: see :func:`build_crab_config`.
        seed: seeds the projector initialisation (the global RNG is left untouched).
        visual_feature_positions: see :func:`build_crab_config`.

    Raises:
        BaseModelsError: a base-model file is missing or does not fit.
        CrabError: the LLM vocabulary differs from the tokenizer's.
    """
    paths = BaseModelPaths.of(base_dir)
    tokenizer = load_tokenizer(paths.tokenizer)
    llm: LlamaForCausalLM = load_llm(paths.llm)
    manifest = json.loads(paths.manifest.read_text(encoding="utf-8"))
    # paper: Llama-2's 32000 rows + Crab's 17, seeded by base_models as load_base_models does, not by this stage
    fit_llm_to_tokenizer(llm, tokenizer, manifest["seed"])
    config = build_crab_config(
        profile, llm.config, tokenizer, manifest, visual_feature_positions=visual_feature_positions
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CrabForConditionalGeneration(config)
    model.language_model.load_state_dict(llm.state_dict(), strict=True)
    model.generation_config = llm.generation_config
    return model, tokenizer


def setup_pretrain(params: Params) -> TrainSetup:
    """Model with the declared trainable components, and the pre-training mixture."""
    cfg = params.pretrain
    model, tokenizer = build_crab_model(
        params.base_models.out_dir, params.profile, cfg.seed, visual_feature_positions=cfg.visual_feature_positions
    )
    trainable = set_trainable(model, llm="full" if cfg.train_llm else "frozen", projectors=True)
    dataset = training_dataset(
        params, cfg.tasks, tokenizer, model.config, answers="direct" if cfg.direct_answers else "reasoning"
    )
    if model.config.standardize_features:
        stats = feature_statistics(dataset)
        for modality, projector in (("video", model.visual_projector), ("audio", model.audio_projector)):
            if modality in stats:
                projector.set_feature_statistics(*stats[modality])
            else:
                log.warning("pretrain: no %s features in the mixture; the %s projector is not standardised",
                            modality, modality)  # fmt: skip
    fingerprint = {"stage": "pretrain", "profile": params.profile, "config": dataclasses.asdict(cfg),
                   "trainable": trainable}  # fmt: skip
    return TrainSetup(model, tokenizer, dataset, trainable, fingerprint)


def _ground(params: Params, setup: TrainSetup, work_dir: Path) -> dict[str, Any]:
    """The grounding phase: LLM (full) and projectors on ``pretrain.grounding``'s mixture, from the aligned model.

    Why: the tiny LLM learned the AV-UIE language from text alone and is frozen while the projectors align, so
    it answers from the media only as far as a fixed reader allows (AV-Synth, AVE-only harness: 0.09 per-second
    accuracy after alignment; 0.65 after 900 more steps with the LLM trained too). Training the LLM jointly
    from the start instead lets it learn the templates before the media (see :mod:`crab.train.language`).

    Returns:
        The phase's summary (trainable parameters, examples per task, steps, final loss, loss history).
    """
    cfg = params.pretrain
    grounding = cfg.grounding
    assert grounding is not None
    trainable = set_trainable(setup.model, llm="full", projectors=True)
    dataset = training_dataset(params, grounding.tasks, setup.tokenizer, setup.model.config,
                               answers=grounding.answers, repeat=grounding.repeat)  # fmt: skip
    fingerprint = {"stage": f"pretrain.{GROUNDING_PHASE}", "profile": params.profile,
                   "config": dataclasses.asdict(cfg), "trainable": trainable}  # fmt: skip
    result = fit(
        setup.model, dataset, setup.collate_fn, grounding.optim, seed=cfg.seed, work_dir=work_dir,
        fingerprint=fingerprint, desc=f"pretrain.{GROUNDING_PHASE}",
    )  # fmt: skip
    return {"trainable_parameters": trainable, "num_examples": dataset.task_counts(),
            "num_steps": result.plan.num_steps, "final_loss": result.final_loss, "history": result.history}  # fmt: skip


def pretrain(params: Params) -> PretrainResult:
    """The ``pretrain`` stage (module docstring); resumes a killed run from its latest checkpoint.

    Args:
        params: reads ``profile``, ``base_models.out_dir``, ``features.out_dir``, ``media`` and ``pretrain``.

    Returns:
        The :class:`PretrainResult`.

    Raises:
        BaseModelsError, DataError, FeatureStoreError: missing or inconsistent inputs (named).
    """
    cfg = params.pretrain
    paths = StagePaths.of(cfg.out_dir)
    setup = setup_pretrain(params)
    phases, language = [], None
    if cfg.language is not None:
        phases.append(LANGUAGE_PHASE)
        # every task the LLM will answer: the alignment mixture and the fine-tuning tasks
        tasks = [*cfg.tasks, *(t for t in params.finetune.tasks if t not in cfg.tasks)]
        records = load_records(AVUIE_DIR, tasks, "train", load_quarantined_avuie(AVUIE_REPORT))
        if cfg.direct_answers:  # both forms: as the finetune asks (reasoning) and as alignment asks (direct)
            records += [direct_record(r) for r in records if r.reasoning]
        fingerprint = {"stage": f"pretrain.{LANGUAGE_PHASE}", "profile": params.profile, "tasks": tasks,
                       "base_models": params.base_models.out_dir}  # fmt: skip
        language = learn_language(
            setup.model.language_model, setup.tokenizer, records, cfg.language, seed=cfg.seed,
            work_dir=paths.phase_work_dir(LANGUAGE_PHASE), fingerprint=fingerprint,
        )  # fmt: skip
    result = fit(
        setup.model, setup.dataset, setup.collate_fn, cfg.optim, seed=cfg.seed, work_dir=paths.work_dir,
        fingerprint=setup.fingerprint, desc="pretrain",
    )  # fmt: skip
    grounding = None
    if cfg.grounding is not None:  # tiny: the LLM learns to read the aligned media tokens
        phases.append(GROUNDING_PHASE)
        grounding = _ground(params, setup, paths.phase_work_dir(GROUNDING_PHASE))
    segmentation = None
    if cfg.segmentation is not None:  # Crab's P3, on the aligned model (crab.train.seg_pretrain)
        from crab.train import seg_pretrain  # imports finetune_avs, which imports this module

        phases.append(seg_pretrain.SEGMENTATION_PHASE)
        segmentation = seg_pretrain.train_decoder(
            params, setup.model, setup.tokenizer, paths.phase_work_dir(seg_pretrain.SEGMENTATION_PHASE)
        )
    extra = {"seed": cfg.seed, "tasks": list(cfg.tasks), "train_llm": cfg.train_llm,
             "direct_answers": cfg.direct_answers, "base_models": params.base_models.out_dir,
             "language": None if language is None else {"num_steps": language.plan.num_steps,
                                                         "loss_history": language.history},
             "grounding": grounding,
             "segmentation": None if segmentation is None else seg_pretrain.summary(segmentation)}  # fmt: skip

    def write(folder: Path) -> None:
        setup.model.save_pretrained(folder)
        setup.tokenizer.save_pretrained(folder)
        if segmentation is not None:
            seg_pretrain.save_decoder(segmentation.decoder, folder)
        (folder / SUMMARY_NAME).write_text(summary_json("pretrain", setup, result, extra), encoding="utf-8")

    publish_stage(paths, write, phases)
    return PretrainResult(
        paths.out_dir, paths.log_dir, setup.dataset.task_counts(), result.plan.num_steps, result.final_loss,
        setup.trainable,
    )  # fmt: skip


def load_pretrained(
    out_dir: str | Path, dtype: torch.dtype = torch.float32
) -> tuple[CrabForConditionalGeneration, PreTrainedTokenizerBase]:
    """Load a ``pretrain`` output folder (model in eval mode, tokenizer), offline and from safetensors.

    Raises:
        CrabError: the folder is missing or holds no model (run ``crab pretrain``).
    """
    out_dir = Path(out_dir)
    if not (out_dir / "config.json").is_file() or not (out_dir / "model.safetensors").is_file():
        raise CrabError(f"{out_dir}: no pre-trained Crab model (config.json, model.safetensors); run `crab pretrain`")
    model = CrabForConditionalGeneration.from_pretrained(
        out_dir, dtype=dtype, local_files_only=True, use_safetensors=True
    )
    return model.eval(), load_tokenizer(out_dir)
