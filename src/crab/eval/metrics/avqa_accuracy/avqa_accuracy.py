"""``evaluate`` module for MUSIC-AVQA accuracy: a thin wrapper over :func:`crab.eval.metrics_avqa.avqa_accuracy`.

Loaded by path (``crab.eval.load_metric("avqa_accuracy")``), never from the hub. ``evaluate`` copies this
file into its module cache, so it imports the metric from the installed ``crab`` package rather than
relatively. Inputs mirror the pure function: ``predictions`` (parsed answer strings, ``None`` for a parse
failure), ``references`` (answer words) and ``question_types`` (``[modality, kind]`` per question) as a
third input column, so ``add_batch`` works too. Arrow cannot hold ``None`` in the first row of a string
column, so :meth:`AvqaAccuracy.add_batch` stores each prediction with a ``parsed`` flag.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import evaluate

from crab.eval.metrics_avqa import avqa_accuracy

_DESCRIPTION = """MUSIC-AVQA accuracy (GeWu-Lab/MUSIC-AVQA main_avst.py): exact match of the parsed answer
against the answer word (case-insensitive, whitespace-trimmed), per question type, per modality group
(pooled over the group's questions) and overall (over all questions)."""

_CITATION = """@inproceedings{li2022avqa, title={Learning to Answer Questions in Dynamic Audio-Visual Scenarios},
author={Li, Guangyao and Wei, Yake and Tian, Yapeng and Xu, Chenliang and Wen, Ji-Rong and Hu, Di},
booktitle={CVPR}, year={2022}}"""

_INPUTS = """Args:
    predictions: list of parsed answers (str), None where no <answer> tag was found.
    references: list of reference answer words.
    question_types: list of [modality, kind], e.g. ["Audio-Visual", "Temporal"].
Returns:
    {"accuracy", "accuracy_per_group", "accuracy_per_type", "num_questions", "num_questions_per_type",
     "num_correct", "num_parse_failures"}."""


class AvqaAccuracy(evaluate.Metric):
    """MUSIC-AVQA accuracy by type, group and overall (see :mod:`crab.eval.metrics_avqa` for the rules)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": {"answer": datasets.Value("string"), "parsed": datasets.Value("bool")},
                    "references": datasets.Value("string"),
                    "question_types": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def add_batch(self, *, predictions: Sequence[str | None] | None = None, references=None, **kw):
        """Add a batch; ``None`` predictions are parse failures, as in the pure function."""
        if predictions is not None:
            predictions = [{"answer": p or "", "parsed": p is not None} for p in predictions]
        if kw.get("question_types") is not None:
            kw["question_types"] = [list(t) for t in kw["question_types"]]
        return super().add_batch(predictions=predictions, references=references, **kw)

    def add(self, *, prediction: str | None = None, reference: str | None = None, **kw):
        """Add one prediction (``None`` = parse failure), its reference and ``question_type=[modality, kind]``."""
        question_type = kw.pop("question_type", None)
        if question_type is None:
            raise ValueError("AvqaAccuracy.add needs question_type=[modality, kind]")
        return self.add_batch(predictions=[prediction], references=[reference], question_types=[question_type], **kw)

    def _compute(
        self, predictions: list[Mapping[str, Any]], references: list[str], question_types: list[list[str]]
    ) -> dict:
        answers = [p["answer"] if p["parsed"] else None for p in predictions]
        return avqa_accuracy(answers, references, question_types)
