"""``evaluate`` module for ARIG cIoU and AUC: a thin wrapper over :func:`crab.eval.metrics_arig.arig_ciou`.

Loaded by path (``crab.eval.load_metric("arig_ciou")``), never from the hub. ``evaluate`` copies this file
into its module cache, so it imports the metric from the installed ``crab`` package rather than relatively.

Inputs: ``predictions`` are parsed boxes (``ArigLabel``-like objects, ``{"x0", "y0", "x1", "y1"}`` dicts or
``(x0, y0, x1, y1)`` tuples), ``None`` for a parse failure; ``references`` are ground-truth BOXES in the same
forms, because that is what the AV-UIE ``label`` of an ARIG record holds (``ArigLabel.to_dict()``). The pure
function also takes ``(224, 224)`` masks as references; this module does not (an Arrow row per 50k-pixel
mask is wasteful, and AV-UIE stores no masks for ARIG). Arrow cannot hold ``None`` in the first row of a
column, so :meth:`ArigCiou.add_batch` stores each prediction with a ``parsed`` flag and
:meth:`ArigCiou._compute` turns unparsed rows back into ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import datasets
import evaluate

from crab.eval.metric_inputs import EncodedInputsMixin
from crab.eval.metrics_arig import arig_ciou, box_fields

_DESCRIPTION = """ARIG (audio-referred image grounding) cIoU and AUC in the sound-source-localisation convention
(hche11/Localizing-Visual-Sounds-the-Hard-Way): the predicted box is rasterised on the 224x224 frame,
cIoU_i = sum(pred*gt) / (sum(gt) + sum(pred*[gt==0])); "ciou" is the fraction of samples with cIoU_i >= 0.5
and "auc" the trapezoid area under the success rate over thresholds 0, 0.05, ..., 1. An unparsable answer
is an empty map."""

_CITATION = """@inproceedings{chen2021localizing, title={Localizing Visual Sounds the Hard Way},
author={Chen, Honglie and Xie, Weidi and Afouras, Triantafyllos and Nagrani, Arsha and Vedaldi, Andrea and
Zisserman, Andrew}, booktitle={CVPR}, year={2021}}"""

_INPUTS = """Args:
    predictions: list of parsed boxes (x0, y0, x1, y1 as attributes, keys or a 4-tuple; end-exclusive
        pixels of the 224x224 frame), None if unparsable.
    references: list of ground-truth boxes {"x0": int, "y0": int, "x1": int, "y1": int}.
Returns:
    {"ciou", "auc", "mean_ciou", "success_rates", "num_samples", "num_parse_failures"}."""

_BOX = {name: datasets.Value("int64") for name in ("x0", "y0", "x1", "y1")}


def _encode(prediction: Any) -> dict[str, Any]:
    if prediction is None:
        return {"x0": 0, "y0": 0, "x1": 0, "y1": 0, "parsed": False}
    x0, y0, x1, y1 = box_fields(prediction)
    return {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "parsed": True}


def _reference(reference: Any) -> dict[str, int]:
    x0, y0, x1, y1 = box_fields(reference)
    return {"x0": x0, "y0": y0, "x1": x1, "y1": y1}


class ArigCiou(EncodedInputsMixin, evaluate.Metric):
    """ARIG cIoU and AUC (see :mod:`crab.eval.metrics_arig` for the rules)."""

    encode_prediction = staticmethod(_encode)
    encode_reference = staticmethod(_reference)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": {**_BOX, "parsed": datasets.Value("bool")}, "references": _BOX}),
        )

    def _compute(self, predictions: list[Mapping[str, Any]], references: list[Mapping[str, Any]]) -> dict:
        return arig_ciou([p if p["parsed"] else None for p in predictions], references)
