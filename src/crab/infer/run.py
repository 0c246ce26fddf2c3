"""Running Crab on user media: the ``features`` stage's encoders, the fine-tuned model, greedy decoding, parsing.

The core of ``crab infer`` (package docstring). :func:`infer` answers a list of requests: it checks the
trained model's folders, then every file's header (milliseconds, before anything loads), then loads the
model and the frozen encoders, computes each clip's features with the ``features`` stage's own shard code
(so they equal what the feature store would hold for that file), and decodes all prompts together with the
evaluation's greedy decoder, ``evaluate.batch_size`` at a time (each answer is what it would be alone). A
request that fails at any step becomes its error; the others go on.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from crab.config import Params
from crab.datasets.media import probe
from crab.errors import CrabError
from crab.eval.generation import generate_greedy
from crab.features.extract import MediaItem, compute_shard, ExtractCounters, load_encoders
from crab.features.store import audio_cut, audio_key, video_key
from crab.infer.requests import InferRequest
from crab.models.base import BaseModelPaths
from crab.models.collator import CrabExample, build_example
from crab.tasks import TASKS
from crab.train.data import encode_prompt
from crab.train.finetune import adapter_folders, load_finetuned, use_task_adapter

__all__ = ["InferModel", "check_trained_model", "infer", "load_infer_model", "media_features", "result_record"]

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
    """

    model: PeftModel
    tokenizer: PreTrainedTokenizerBase
    encoders: Any


def check_trained_model(params: Params) -> None:
    """Check that the folders of a trained pipeline exist, before any slow work.

    Args:
        params: reads ``base_models.out_dir``, ``pretrain.out_dir`` and ``finetune.out_dir``.

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
    missing = []
    for folder, names in required:
        absent = [name for name in names if not (folder / name).is_file()]
        if absent:
            missing.append(f"{folder} ({', '.join(absent)})")
    if missing:
        raise CrabError(f"no trained model: missing {'; '.join(missing)}; {_RUN_PIPELINE}")


def load_infer_model(params: Params) -> InferModel:
    """Load the fine-tuned model and the frozen encoders named by ``params``.

    Raises:
        CrabError: a folder is missing or incomplete (:func:`check_trained_model`), or the encoders do not
            fit the params.
    """
    check_trained_model(params)
    model, tokenizer = load_finetuned(params.pretrain.out_dir, params.finetune.out_dir)
    model.to(torch.device("cuda" if torch.cuda.is_available() else "cpu")).eval()
    encoders = load_encoders(Path(params.base_models.out_dir))
    return InferModel(model, tokenizer, encoders)


def media_features(request: InferRequest, encoders: Any, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
    """The request's video and audio features, computed by the ``features`` stage's own code.

    Args:
        request: the input.
        encoders: :attr:`InferModel.encoders`.
        params: reads ``media`` and ``features`` (dtype, batch size); the encoders carry the CLIP layer.

    Returns:
        Video ``(T, P, Dv)`` CLIP patch tokens and audio ``(C, N, Da)`` BEATs tokens in ``features.dtype``:
        what the feature store would hold for these files (T = ``min(media.num_frames, frames)``; C and N
        from the task's audio cutting).

    Raises:
        DataError: a file is missing, undecodable or lacks the stream, or its audio is too short to cut.
    """
    record = {"task": str(request.task), "media": {"video": request.video, "audio": request.audio}}
    vkey, akey = video_key(record), audio_key(record, params)
    items = [
        MediaItem(vkey, "video", request.video),
        MediaItem(akey, "audio", request.audio, audio_cut(request.task, params.media)),
    ]
    out = compute_shard(items, encoders, params, ExtractCounters())
    return out[vkey], out[akey]


def result_record(request: InferRequest, text: str) -> dict[str, Any]:
    """The JSON record of one answer: inputs, prompt, generated text and the evaluation parser's answer.

    Args:
        request: the input.
        text: the decoded generation (reasoning + answer).

    Returns:
        ``{"task", "inputs": {"video", "audio", "question"}, "prompt", "generated", "answer", "parse_ok"}``;
        ``answer`` is ``{"event", "start", "end"}`` (AVE, ``[start, end)`` in seconds), ``{"audio": [...],
        "visual": [...]}`` of such spans (AVVP, the AV-UIE label layout), ``{"answer"}`` (AVQA) or ``None``
        when the answer tags are missing or malformed.
    """
    parsed = TASKS[request.task].parse_answer(text)
    if parsed is not None and hasattr(parsed, "to_dict"):  # a label with its own JSON layout (AVVP)
        answer = parsed.to_dict()
    else:
        answer = None if parsed is None else dataclasses.asdict(parsed)
    return {
        "task": str(request.task),
        "inputs": request.inputs(),
        "prompt": request.instruction(),
        "generated": text,
        "answer": answer,
        "parse_ok": parsed is not None,
    }


def _check_media(request: InferRequest) -> None:
    """Header checks (nothing decoded): the video has a video stream, the audio source an audio stream."""
    probe(request.video, need_video=True, need_audio=request.audio == request.video)
    if request.audio != request.video:
        probe(request.audio, need_audio=True)


def infer(
    params: Params, requests: Sequence[InferRequest | CrabError], model: InferModel | None = None
) -> list[dict[str, Any] | CrabError]:
    """Answer every request; a bad one becomes its error and the others still run (module docstring).

    Args:
        params: the params (model folders, ``media``, ``features``, ``finetune.tasks``, ``evaluate``).
        requests: the inputs; an entry that is already an error (a bad batch entry) is passed through.
        model: a loaded :class:`InferModel`; loaded from ``params`` when ``None`` and any request is valid.

    Returns:
        Per request, in order: its :func:`result_record`, or the :class:`CrabError` that stopped it.

    Raises:
        CrabError: the trained model is missing (checked first, whatever the requests).
    """
    if model is None:
        check_trained_model(params)
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
    model = model or load_infer_model(params)
    config = model.model.get_base_model().config
    examples: dict[int, CrabExample] = {}
    for index in pending:
        request = outcomes[index]
        if request.task not in params.finetune.tasks:
            log.warning("task %s is not in finetune.tasks %s: the model was not tuned for it", request.task,
                        list(params.finetune.tasks))  # fmt: skip
        try:
            video, audio = media_features(request, model.encoders, params)  # (T, P, Dv), (C, N, Da)
        except CrabError as err:
            outcomes[index] = err
            continue
        prompt_ids = encode_prompt(model.tokenizer, request.instruction())
        examples[index] = build_example(prompt_ids, [], config, video_features=video, audio_features=audio)
    eos_id = model.tokenizer.eos_token_id
    pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else eos_id
    task_of = {i: str(outcomes[i].task) for i in examples}
    for task in sorted(set(task_of.values())):  # one group per task: its own adapter in the single-task baseline
        order = [i for i in examples if task_of[i] == task]
        try:
            use_task_adapter(model.model, task)
        except CrabError as err:  # a single-task model without this task's adapter
            for index in order:
                outcomes[index] = err
            continue
        answer_ids, _ = generate_greedy(
            model.model, [examples[i] for i in order], batch_size=params.evaluate.batch_size,
            max_new_tokens=params.evaluate.max_new_tokens, eos_token_id=eos_id, pad_token_id=pad_id,
            cache=params.evaluate.cache,
        )  # fmt: skip
        texts = model.tokenizer.batch_decode(answer_ids, skip_special_tokens=True)
        for index, text in zip(order, texts, strict=True):
            outcomes[index] = result_record(outcomes[index], text)
    return outcomes
