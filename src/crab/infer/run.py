"""Running Crab on user media: the ``features`` stage's encoders, the fine-tuned model, greedy decoding, parsing.

The core of ``crab infer`` (package docstring). :func:`infer` answers a list of requests: it checks the
trained model's folders, then every file's header (milliseconds, before anything loads), then loads the
model and the frozen encoders, computes each clip's features with the ``features`` stage's own shard code
(so they equal what the feature store would hold for that file), and decodes all prompts together with the
evaluation's greedy decoder, ``evaluate.batch_size`` at a time (each answer is what it would be alone). A
request that fails at any step becomes its error; the others go on.

The mask tasks use the segmentation model of their stage, as ``evaluate_avs`` / ``evaluate_avss`` do, each loaded
only when one of its tasks is asked (:func:`crab.train.finetune_avs.mask_stage`): ``finetune_avs`` (the binary head)
for S4 / MS3 / Ref-AVS, ``finetune_avss`` (the 71-class head) for AVSS. The clip is read as the dataset's frames
(an mp4's five, or ten for AVSS and Ref-AVS, sampled over it, or a frame folder as it is) with its audio
segments, the answer is decoded greedily, and its six mask tokens drive the mask decoder on the asked second's
CLIP levels. The mask is written as a PNG at the frame's own resolution, as evaluation writes its predictions:
binary (probability > 0.5, as scored) as 0 / 255 grey, AVSS as the class-index map of the bilinearly resized
logits' argmax (AVSBench-semantic's ``labels_semantic`` format); the record names the file and, for AVSS, the
classes in the map.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from crab.config import Params
from crab.datasets.media import probe, read_frame_folder, write_binary_mask, write_class_mask
from crab.datasets.vocab_seg import AVSS_CLASSES
from crab.errors import CrabError
from crab.eval.generation import generate_greedy
from crab.eval.metrics_avs import resize_logits
from crab.eval.run_avs import binary_mask, decode_mask_answers, predict_frame_logits
from crab.features.extract import ExtractCounters, MediaItem, compute_shard, load_encoders
from crab.features.store import audio_cut, audio_key, image_key, levels_key, video_key
from crab.infer.requests import MASK_TASK_FRAMES, InferRequest
from crab.models.base import BaseModelPaths
from crab.models.collator import CrabExample, build_example, pad_token_id
from crab.models.mask_decoder import class_map
from crab.tasks import TASKS
from crab.train.data import encode_prompt
from crab.train.finetune import adapter_folders, load_finetuned, use_task_adapter
from crab.train.finetune_avs import AVS_WEIGHTS_NAME, MASK_STAGES, MaskStage, load_finetuned_avs, mask_stage

__all__ = [
    "InferModel",
    "MediaFeatures",
    "check_trained_model",
    "infer",
    "load_infer_model",
    "mask_stages",
    "media_features",
    "result_record",
]

log = logging.getLogger(__name__)

_RUN_PIPELINE = "run `dvc repro` (or `make run`) first"


@dataclass(frozen=True)
class InferModel:
    """What inference loads: the fine-tuned model, its tokenizer and the frozen encoders.

    Attributes:
        model: the ``PeftModel`` (pre-trained Crab + adapter), eval mode, on the GPU when there is one.
        tokenizer: the model's tokenizer.
        encoders: the ``features`` stage's encoder triple (CLIP, its image processor, BEATs), on the CPU
            as in that stage.
        mask_models: per segmentation stage (``finetune_avs``, ``finetune_avss``: one decoder head each), its model
            (decoder, its embeddings and LM head, the same adapter); only the stages of the asked mask tasks.
    """

    model: PeftModel
    tokenizer: PreTrainedTokenizerBase
    encoders: Any
    mask_models: dict[MaskStage, PeftModel] = dataclasses.field(default_factory=dict)


def mask_stages(requests: Sequence[InferRequest | CrabError]) -> list[MaskStage]:
    """The segmentation stages whose models the valid requests need, in :data:`MASK_STAGES` order."""
    asked = {mask_stage(r.task) for r in requests if isinstance(r, InferRequest) and TASKS[r.task].masks}
    return [stage for stage in MASK_STAGES if stage in asked]


def check_trained_model(params: Params, stages: Sequence[MaskStage] = ()) -> None:
    """Check that the folders of a trained pipeline exist, before any slow work.

    Args:
        params: reads ``base_models.out_dir``, ``pretrain.out_dir`` and ``finetune.out_dir`` (and each of
            ``stages``' ``out_dir``).
        stages: the segmentation stages of the asked mask tasks (:func:`mask_stages`): their folders are needed too.

    Raises:
        CrabError: names every missing folder with its missing files, and says to run the pipeline first.
    """
    base = BaseModelPaths.of(params.base_models.out_dir)
    pretrain, finetune = Path(params.pretrain.out_dir), Path(params.finetune.out_dir)
    required = [
        (base.vision, ("config.json", "preprocessor_config.json")),
        (base.audio.parent, (base.audio.name,)),
        (pretrain, ("config.json", "model.safetensors")),
    ]
    try:  # one shared adapter, or the single-task baseline's adapter per task
        required += [(folder, ("adapter_config.json", "adapter_model.safetensors"))
                     for folder in adapter_folders(finetune).values()]  # fmt: skip
    except CrabError:
        required.append((finetune, ("adapter_config.json", "adapter_model.safetensors")))
    required += [(Path(getattr(params, stage).out_dir), ("config.json", AVS_WEIGHTS_NAME)) for stage in stages]
    missing = []
    for folder, names in required:
        absent = [name for name in names if not (folder / name).is_file()]
        if absent:
            missing.append(f"{folder} ({', '.join(absent)})")
    if missing:
        raise CrabError(f"no trained model: missing {'; '.join(missing)}; {_RUN_PIPELINE}")


def load_infer_model(params: Params, stages: Sequence[MaskStage] = ()) -> InferModel:
    """Load the fine-tuned model and the frozen encoders named by ``params``, and the model of each of ``stages``.

    Raises:
        CrabError: a folder is missing or incomplete (:func:`check_trained_model`), or the encoders do not
            fit the params.
    """
    check_trained_model(params, stages)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_finetuned(params.pretrain.out_dir, params.finetune.out_dir)
    model.to(device).eval()
    mask_models = {}
    for stage in stages:
        mask_model, _ = load_finetuned_avs(params.pretrain.out_dir, params.finetune.out_dir,
                                           getattr(params, stage).out_dir)  # fmt: skip
        mask_models[stage] = mask_model.to(device).eval()
    encoders = load_encoders(Path(params.base_models.out_dir))
    return InferModel(model, tokenizer, encoders, mask_models)


class MediaFeatures(NamedTuple):
    """A request's features, as the feature store would hold them for its files.

    Attributes:
        video: ``(T, P, Dv)`` CLIP patch tokens of the sampled frames (``None`` for ARIG).
        image: ``(P, Dv)`` CLIP patch tokens of ARIG's one frame (else ``None``).
        audio: ``(C, N, Da)`` BEATs tokens of the audio clips.
        levels: ``(T, L, P, Dv)`` the mask decoder's CLIP levels of a mask task's frames (else ``None``).
    """

    video: torch.Tensor | None
    image: torch.Tensor | None
    audio: torch.Tensor
    levels: torch.Tensor | None


def media_features(request: InferRequest, encoders: Any, params: Params) -> MediaFeatures:
    """The request's features, computed by the ``features`` stage's own code (:func:`compute_shard`).

    Args:
        request: the input.
        encoders: :attr:`InferModel.encoders`.
        params: reads ``media`` and ``features`` (dtype, batch size); the encoders carry the CLIP layers.

    Returns:
        In ``features.dtype``: the video (T = ``min(media.num_frames, frames)``; a mask task's 5, a frame folder's
        count) or, for ARIG, the image (one frame of the file: an image, or the middle of a clip); the audio (C
        and N from the task's audio cutting); a mask task's decoder levels.

    Raises:
        DataError: a file is missing, undecodable or lacks the stream, or its audio is too short to cut.
    """
    spec = TASKS[request.task]
    if spec.masks:  # one frame per second of the clip: AVSBench's five, Ref-AVS's ten (as the features stage reads)
        num_frames = MASK_TASK_FRAMES[request.task]
        params = dataclasses.replace(params, media=dataclasses.replace(params.media, num_frames=num_frames))
    image = spec.visual == "image"  # ARIG: one frame as <image>
    record = {
        "task": str(request.task),
        "media": {"image" if image else "video": request.video, "audio": request.audio},
    }
    vkey = image_key(record) if image else video_key(record)
    akey = audio_key(record, params)
    items = [
        MediaItem(vkey, "image" if image else "video", request.video),
        MediaItem(akey, "audio", request.audio, audio_cut(request.task, params.media)),
    ]
    if spec.masks:
        items.append(MediaItem(levels_key(record), "levels", request.video))
    out = compute_shard(items, encoders, params, ExtractCounters())
    return MediaFeatures(
        video=None if image else out[vkey], image=out[vkey] if image else None, audio=out[akey],
        levels=out[levels_key(record)] if spec.masks else None,
    )  # fmt: skip


def result_record(
    request: InferRequest, text: str, mask: str | None = None, classes: list[str] | None = None
) -> dict[str, Any]:
    """The JSON record of one answer: inputs, prompt, generated text and the evaluation parser's answer.

    Args:
        request: the input.
        text: the decoded generation (reasoning + answer).
        mask: a mask task's written mask file (``None``: the answer had no well-formed mask block).
        classes: AVSS: the names of the object classes in the written class map (``None`` without a map).

    Returns:
        ``{"task", "inputs": {"video", "audio", "question"}, "prompt", "generated", "answer", "parse_ok"}``;
        ``answer`` is ``{"event", "start", "end"}`` (AVE, ``[start, end)`` in seconds), ``{"audio": [...],
        "visual": [...]}`` of such spans (AVVP, the AV-UIE label layout), ``{"answer"}`` (AVQA), ``{"objects"}``
        (S4 / MS3: the sounding objects named, ``[]`` for none, ``None`` without an object tag) or ``None``
        when the answer tags are missing or malformed. A mask task's record also has ``inputs.second`` and
        ``"mask"``; an AVSS record also ``"classes"``.
    """
    parsed = TASKS[request.task].parse_answer(text)
    if parsed is not None and hasattr(parsed, "to_dict"):  # its own JSON layout (AVVP label, S4 / MS3 objects)
        answer = parsed.to_dict()
    else:
        answer = None if parsed is None else dataclasses.asdict(parsed)
    record = {
        "task": str(request.task),
        "inputs": request.inputs(),
        "prompt": request.instruction(),
        "generated": text,
        "answer": answer,
        "parse_ok": parsed is not None,
    }
    if TASKS[request.task].masks:
        record["mask"] = mask
        record["parse_ok"] = parsed is not None and mask is not None
    if TASKS[request.task].mask_classes > 1:
        record["classes"] = classes
    return record


def mask_path(masks_dir: str | Path, request: InferRequest) -> Path:
    """Where a mask task's mask goes: ``<masks_dir>/<task>_<clip name>_s<second>.png``.

    The clip name is the video's file stem, or a frame folder's name, or, for a folder called ``frames``
    (AVSBench-semantic's ``v2/{uid}/frames``, Ref-AVS's ``media/{vid}/frames``), its parent's: the clip's id.
    """
    video = Path(request.video)
    name = video.parent.name if video.name == "frames" and video.is_dir() else video.stem
    return Path(masks_dir) / f"{request.task}_{name}_s{request.second}.png"


def _frame_size(video: str) -> tuple[int, int]:
    """``(H, W)`` of the video's frames: the header's for a file, the first frame's for a frame folder."""
    if Path(video).is_dir():
        return tuple(read_frame_folder(video)[0].shape[:2])  # type: ignore[return-value]
    info = probe(video, need_video=True)
    return int(info.height), int(info.width)


def _write_mask(model: PeftModel, example: CrabExample, answer: list[int], levels: torch.Tensor,
                request: InferRequest, masks_dir: str | Path) -> tuple[str | None, list[str] | None]:  # fmt: skip
    """Decode the answer's mask at the asked second and write it as PNG, as evaluation writes its predictions.

    Returns:
        The file (``None`` without a mask block) and, for AVSS, the object classes in the map (else ``None``).
    """
    frame = min(request.second - 1, levels.shape[0] - 1)  # a frame folder may hold fewer frames than the clip
    logits = predict_frame_logits(model, example, answer, levels[frame])  # (C, S, S) or None
    if logits is None:
        return None, None
    logits = resize_logits(logits, _frame_size(request.video))  # (C, H, W) at the frame's resolution
    path = mask_path(masks_dir, request)
    if TASKS[request.task].mask_classes == 1:
        return str(write_binary_mask(path, binary_mask(logits[0]))), None
    class_head = model.get_base_model().config.mask_decoder_config.class_head
    classes = class_map(logits[None], class_head)[0].numpy()  # (H, W) class indices, as evaluate_avss scores
    present = [AVSS_CLASSES[k] for k in np.unique(classes) if k != 0]  # background (0) is not an object
    return str(write_class_mask(path, classes)), present


def _check_media(request: InferRequest) -> None:
    """Header checks (nothing decoded): the video has a video stream, the audio source an audio stream; a frame
    folder (mask tasks) is read when its features are computed, with an error naming the file at fault."""
    if Path(request.video).is_dir():
        probe(request.audio, need_audio=True)
        return
    probe(request.video, need_video=True, need_audio=request.audio == request.video)
    if request.audio != request.video:
        probe(request.audio, need_audio=True)


def infer(
    params: Params,
    requests: Sequence[InferRequest | CrabError],
    model: InferModel | None = None,
    masks_dir: str | Path = "masks",
) -> list[dict[str, Any] | CrabError]:
    """Answer every request; a bad one becomes its error and the others still run (module docstring).

    Args:
        params: the params (model folders, ``media``, ``features``, ``finetune.tasks``, ``evaluate``).
        requests: the inputs; an entry that is already an error (a bad batch entry) is passed through.
        model: a loaded :class:`InferModel`; loaded from ``params`` when ``None`` and any request is valid
            (with the mask models of the asked mask tasks' stages).
        masks_dir: where the mask tasks' PNG masks go (:func:`mask_path`).

    Returns:
        Per request, in order: its :func:`result_record`, or the :class:`CrabError` that stopped it.

    Raises:
        CrabError: the trained model is missing (checked first, whatever the requests), or ``model`` lacks the
            model of an asked mask task's stage.
    """
    stages = mask_stages(requests)
    if model is None:
        check_trained_model(params, stages)
    outcomes: list[Any] = list(requests)
    for index, request in enumerate(requests):
        if isinstance(request, InferRequest):
            try:
                _check_media(request)
            except CrabError as err:
                outcomes[index] = err
    pending = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, InferRequest)]
    if not pending:
        return outcomes
    model = model or load_infer_model(params, stages)
    absent = [stage for stage in stages if stage not in model.mask_models]
    if absent:
        raise CrabError(f"a mask task was asked but the loaded model has no {' / '.join(absent)} part")
    examples: dict[int, CrabExample] = {}
    levels: dict[int, torch.Tensor] = {}
    for index in pending:
        request = outcomes[index]
        if request.task not in params.finetune.tasks:
            log.warning("task %s is not in finetune.tasks %s: the model was not tuned for it", request.task,
                        list(params.finetune.tasks))  # fmt: skip
        try:
            features = media_features(request, model.encoders, params)
        except CrabError as err:
            outcomes[index] = err
            continue
        task_model = _task_model(model, request)
        prompt_ids = encode_prompt(model.tokenizer, request.instruction())
        examples[index] = build_example(
            prompt_ids, [], task_model.get_base_model().config, video_features=features.video,
            audio_features=features.audio, image_features=features.image,
        )  # fmt: skip
        if features.levels is not None:
            levels[index] = features.levels  # (T, L, P, Dv)
    eos_id = model.tokenizer.eos_token_id
    pad_id = pad_token_id(model.tokenizer)
    task_of = {i: str(outcomes[i].task) for i in examples}
    for task in sorted(set(task_of.values())):  # one group per task: its own adapter in the single-task baseline
        order = [i for i in examples if task_of[i] == task]
        task_model = _task_model(model, outcomes[order[0]])
        try:
            use_task_adapter(task_model, task)
        except CrabError as err:  # a single-task model without this task's adapter
            for index in order:
                outcomes[index] = err
            continue
        answer_ids, _ = generate_greedy(
            task_model, [examples[i] for i in order], batch_size=params.evaluate.batch_size,
            max_new_tokens=params.evaluate.max_new_tokens, eos_token_id=eos_id, pad_token_id=pad_id,
            cache=params.evaluate.cache,
        )  # fmt: skip
        if TASKS[outcomes[order[0]].task].masks:  # the mask block is special tokens: keep it
            texts = decode_mask_answers(model.tokenizer, answer_ids)
        else:
            texts = model.tokenizer.batch_decode(answer_ids, skip_special_tokens=True)
        for index, ids, text in zip(order, answer_ids, texts, strict=True):
            mask, classes = None, None
            if index in levels:
                mask, classes = _write_mask(task_model, examples[index], list(ids), levels[index], outcomes[index],
                                            masks_dir)  # fmt: skip
            outcomes[index] = result_record(outcomes[index], text, mask, classes)
    return outcomes


def _task_model(model: InferModel, request: InferRequest) -> PeftModel:
    """The model that answers ``request``: its segmentation stage's for a mask task, else the fine-tuned one."""
    return model.mask_models[mask_stage(request.task)] if TASKS[request.task].masks else model.model
