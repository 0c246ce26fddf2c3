"""Crab's segmentation pre-training (P3, crab-reference 3.4): the last phase of the ``pretrain`` stage.

Crab trains its mask decoder alone before any AVS fine-tuning: on LVIS, one image and a named category per
sample, answer ``It is <mask_start>...<mask_end>``, every other weight frozen, BCE + Dice on the instance
mask. So the decoder arrives at ``finetune_avs`` knowing how to turn the six mask tokens' hidden states and
the CLIP levels into a mask, and F2 only has to teach it *which* object sounds.

Here (``pretrain.segmentation`` set): after alignment, :func:`train_decoder` adds the profile's binary decoder
(seeded by ``pretrain.seed``) to the aligned model and trains it alone, with the ``finetune_avs`` objective
(:func:`crab.train.segmentation.segmentation_step`, weights ``pretrain.segmentation.loss``), on the train
records of ``pretrain.segmentation.tasks`` (``seg``: LVIS, or its AV-Synth stand-in). The pre-trained Crab
itself stays decoder-free (``finetune`` does not use one); the decoder goes beside it::

    models/pretrain/mask_decoder/   config.json (CrabMaskDecoderConfig), model.safetensors

and :func:`load_pretrained_decoder` starts ``finetune_avs`` / ``finetune_avss`` from it. A class head
(AVSS: 71) has another shape than the binary head trained here, so it keeps its seeded init, as Crab's AVSS
run could not load that layer either.

Deviation from the reference: Crab pre-trains with 128 decoder queries and fine-tunes with 300, so its own
fine-tuning script cannot load the pre-trained query embeddings and first query-MLP layer (crab-reference
3.4). One decoder config serves both here, and :func:`load_pretrained_decoder` refuses other sizes.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerBase

from crab.config import Params
from crab.errors import CrabError
from crab.models.mask_decoder import CrabMaskDecoder, CrabMaskDecoderConfig
from crab.models.modeling_crab import CrabForConditionalGeneration
from crab.train.data import training_dataset
from crab.train.finetune_avs import SegmentationObjective, add_mask_decoder, profile_decoder_config
from crab.train.loop import FitResult, fit
from crab.train.stage import TrainSetup

__all__ = [
    "DECODER_DIRNAME",
    "SEGMENTATION_PHASE",
    "SegmentationPretraining",
    "load_pretrained_decoder",
    "save_decoder",
    "summary",
    "train_decoder",
]

log = logging.getLogger(__name__)

#: The phase's name: its work folder (``StagePaths.phase_work_dir``) and its log folder under ``pretrain_log``.
SEGMENTATION_PHASE = "segmentation"
#: The pre-trained decoder's folder inside ``pretrain.out_dir``.
DECODER_DIRNAME = "mask_decoder"
_WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class SegmentationPretraining:
    """What the phase trained: the decoder and how it went."""

    decoder: CrabMaskDecoder
    setup: TrainSetup
    result: FitResult


def train_decoder(
    params: Params, model: CrabForConditionalGeneration, tokenizer: PreTrainedTokenizerBase, work_dir: Path
) -> SegmentationPretraining:
    """Train the profile's binary decoder alone on ``model`` (frozen, aligned) and ``pretrain.segmentation``'s
    tasks (module docstring); resumable like any ``fit``.

    Raises:
        CrabError: ``pretrain.segmentation`` is not set, or the manifest names no decoder levels.
        DataError, FeatureStoreError: missing data or features (named).
    """
    cfg = params.pretrain.segmentation
    if cfg is None:
        raise CrabError("pretrain.segmentation is not set: no segmentation pre-training to run")
    decoder = profile_decoder_config(params, model.config, num_classes=1)
    seg_model = add_mask_decoder(model, tokenizer, decoder, params.pretrain.seed)
    for name, param in seg_model.named_parameters():
        param.requires_grad_(name.startswith("mask_decoder."))
    trainable = {"mask_decoder": sum(p.numel() for p in seg_model.mask_decoder.parameters())}
    dataset = training_dataset(params, list(cfg.tasks), tokenizer, seg_model.config, with_masks=True)
    # the whole pretrain section: the phase starts from the aligned model, so any change there restarts it
    fingerprint = {"stage": f"pretrain.{SEGMENTATION_PHASE}", "profile": params.profile,
                   "pretrain": dataclasses.asdict(params.pretrain), "trainable": trainable}  # fmt: skip
    setup = TrainSetup(SegmentationObjective(seg_model, cfg.loss), tokenizer, dataset, trainable, fingerprint)
    result = fit(
        setup.model, dataset, setup.collate_fn, cfg.optim, seed=params.pretrain.seed, work_dir=work_dir,
        fingerprint=fingerprint, desc=f"pretrain.{SEGMENTATION_PHASE}",
    )  # fmt: skip
    return SegmentationPretraining(seg_model.mask_decoder, setup, result)


def save_decoder(decoder: CrabMaskDecoder, pretrain_folder: Path) -> None:
    """Write the decoder into ``<pretrain_folder>/mask_decoder/`` (config + safetensors)."""
    folder = pretrain_folder / DECODER_DIRNAME
    decoder.config.save_pretrained(folder)
    weights = {k: v.detach().contiguous() for k, v in decoder.state_dict().items()}
    save_file(weights, folder / _WEIGHTS, metadata={"format": "pt"})


def load_pretrained_decoder(model: CrabForConditionalGeneration, pretrain_dir: str | Path) -> list[str]:
    """Give ``model``'s decoder the pre-trained decoder's weights, in place, where ``pretrain`` wrote one.

    Every tensor of the same shape is loaded; a head of another size (AVSS's 71 classes against the binary
    head) keeps its init, except that a factorized class head's sounding channel (row 0 of its classifier) takes
    the binary head's row: "an object is here" is what that head learned.

    Returns:
        The decoder tensors left at their init (all of them when ``pretrain`` trained no decoder).

    Raises:
        CrabError: the model has no decoder, or the pre-trained one has other sizes than ``model``'s (besides
            the head) or tensors ``model``'s lacks.
    """
    if model.mask_decoder is None:
        raise CrabError("the model has no mask decoder to initialise")
    state = model.mask_decoder.state_dict()
    folder = Path(pretrain_dir) / DECODER_DIRNAME
    if not (folder / "config.json").is_file():
        log.info("%s: no pre-trained mask decoder; the decoder starts from its seeded init", folder)
        return sorted(state)
    saved = CrabMaskDecoderConfig.from_pretrained(folder, local_files_only=True)
    own = model.mask_decoder.config
    sizes = [n for n in CrabMaskDecoderConfig.__annotations__ if n not in ("num_classes", "class_head")]
    differ = {n: (getattr(saved, n), getattr(own, n)) for n in sizes if getattr(saved, n) != getattr(own, n)}
    if differ:
        raise CrabError(f"{folder}: the pre-trained decoder has other sizes (saved, wanted): {differ}")
    weights = load_file(folder / _WEIGHTS)
    unknown = sorted(set(weights) - set(state))
    if unknown:
        raise CrabError(f"{folder}: tensors the decoder does not have: {unknown[:3]}")
    loaded = {k: v for k, v in weights.items() if v.shape == state[k].shape}
    head = "classifier.weight"
    if own.factorized and saved.num_classes == 1 and head not in loaded:
        classifier = state[head].clone()  # (C, E)
        classifier[0] = weights[head][0]  # the binary head's (E,) row -> the sounding channel
        loaded[head] = classifier
    model.mask_decoder.load_state_dict(loaded, strict=False)
    left = sorted(set(state) - set(loaded))
    log.info("mask decoder: %d of %d tensors from %s%s", len(loaded), len(state), folder,
             f" ({', '.join(left)} keep their init: a {own.class_head} head of {own.num_classes} vs {saved.num_classes})"
             if left else "")  # fmt: skip
    return left


def summary(pretraining: SegmentationPretraining) -> dict[str, Any]:
    """The phase's part of ``train_summary.json``."""
    result = pretraining.result
    return {"num_examples": pretraining.setup.dataset.task_counts(), "num_steps": result.plan.num_steps,
            "final_loss": result.final_loss, "loss_history": [row["loss"] for row in result.history],
            "trainable": pretraining.setup.trainable}  # fmt: skip
