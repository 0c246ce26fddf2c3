"""``crab infer``: the quick start. Run the fine-tuned Crab on a user's clip (any task of Table 1) and print JSON.

Crab ships ``scripts/quick_start.py`` over ``data/example.json`` (crab-reference section 6): one task per
run, batch size 1, prompts that differ from the training prompts, and answers printed with their special
tokens. Here one command serves every task the pipeline trains and evaluates (``ave``, ``avvp``, ``avqa``,
``arig``; the mask tasks ``s4``, ``ms3``, ``ref_avs`` and ``avss``, which also write the asked second's mask as
PNG: :mod:`crab.infer.run`) and reuses the pipeline's own pieces, so that a user's clip goes through exactly what
a test clip goes through:

* **features**: the ``features`` stage's code on the user's media (:mod:`crab.features.extract`: Crab's
  frame indices, frames resized to the CLIP crop, the task's audio cutting, Kaldi fbank, BEATs, the stored
  dtype), so the model sees the tensors it would read from the feature store for that clip;
* **prompt**: the task's one canonical instruction (:data:`crab.tasks.TASKS`), chat-templated and tokenised
  by :func:`crab.train.data.encode_prompt`, placeholders expanded by :func:`crab.models.collator.build_example`;
* **model and decoding**: :func:`crab.train.finetune.load_finetuned` over the ``pretrain`` and ``finetune``
  folders of ``params.yaml``, and greedy, batch-independent decoding (:func:`crab.eval.generation.generate_greedy`
  with ``evaluate.max_new_tokens`` and ``evaluate.batch_size``);
* **answer**: the evaluation parser (``TASKS[task].parse_answer``): AVE's event and ``[start, end)`` range,
  AVQA's answer word; ``parse_ok`` says whether the answer tags were found.

The tiny profile's models are the default; paper weights are used through a params file whose folders
point at them (``crab --params paper.yaml infer ...``). Batch mode reads a JSON list like Crab's
``example.json``. Every bad input (missing file, no audio track, unreadable video, bad entry) gives one
error line naming the file and the reason; in a batch it is skipped and the others still run.

Modules: :mod:`.requests` (inputs and batch files; no torch), :mod:`.run` (features, model, decoding,
answer records), :mod:`.command` (the CLI command: output and exit status).
"""

from crab.infer.command import infer_command
from crab.infer.requests import INFER_TASKS, InferRequest, read_batch
from crab.infer.run import InferModel, check_trained_model, infer, load_infer_model, media_features, result_record

__all__ = [
    "INFER_TASKS",
    "InferModel",
    "InferRequest",
    "check_trained_model",
    "infer",
    "infer_command",
    "load_infer_model",
    "media_features",
    "read_batch",
    "result_record",
]
