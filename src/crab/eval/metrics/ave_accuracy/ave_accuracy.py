"""``evaluate`` module for AVE per-second accuracy: a thin wrapper over :func:`crab.eval.metrics_ave.ave_accuracy`.

Loaded by path (``crab.eval.load_metric("ave_accuracy")``), never from the hub. ``evaluate`` copies this
file into its module cache, so it imports the metric from the installed ``crab`` package rather than
relatively. Inputs are what the pure function takes: parsed predictions (``AveLabel``-like objects or
``{"event", "start", "end"}`` dicts, ``None`` for a parse failure) and reference labels. Arrow cannot hold
``None`` in the first row of a column, so :meth:`AveAccuracy.add_batch` stores each prediction with a
``parsed`` flag and :meth:`AveAccuracy._compute` turns unparsed rows back into ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import datasets
import evaluate

from crab.eval.metric_inputs import EncodedInputsMixin
from crab.eval.metrics_ave import ave_accuracy, event_fields

_DESCRIPTION = """AVE per-second accuracy (YapengTian/AVE-ECCV18 protocol): a predicted event and range
[start, end) label the 10 one-second segments (event inside the range, background outside); accuracy is
the mean over videos x segments of (predicted label == ground-truth label)."""

_CITATION = """@inproceedings{tian2018ave, title={Audio-Visual Event Localization in Unconstrained Videos},
author={Tian, Yapeng and Shi, Jing and Li, Bochen and Duan, Zhiyao and Xu, Chenliang}, booktitle={ECCV}, year={2018}}"""

_INPUTS = """Args:
    predictions: list of parsed predictions, each with event/start/end (attributes or keys), None if unparsable.
    references: list of ground-truth labels {"event": str, "start": int, "end": int}.
Returns:
    {"accuracy", "num_videos", "num_segments", "num_correct_segments", "num_parse_failures"}."""

_EVENT = {"event": datasets.Value("string"), "start": datasets.Value("int64"), "end": datasets.Value("int64")}


def _encode(prediction: Any) -> dict[str, Any]:
    if prediction is None:
        return {"event": "", "start": 0, "end": 0, "parsed": False}
    event, start, end = event_fields(prediction)
    return {"event": event, "start": start, "end": end, "parsed": True}


def _reference(reference: Any) -> dict[str, Any]:
    event, start, end = event_fields(reference)
    return {"event": event, "start": start, "end": end}


class AveAccuracy(EncodedInputsMixin, evaluate.Metric):
    """AVE per-second accuracy (see :mod:`crab.eval.metrics_ave` for the rules)."""

    encode_prediction = staticmethod(_encode)
    encode_reference = staticmethod(_reference)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": {**_EVENT, "parsed": datasets.Value("bool")}, "references": _EVENT}
            ),
        )

    def _compute(self, predictions: list[Mapping[str, Any]], references: list[Mapping[str, Any]]) -> dict:
        return ave_accuracy([p if p["parsed"] else None for p in predictions], references)
