"""``evaluate`` module for AVVP F-scores: a thin wrapper over :func:`crab.eval.metrics_avvp.avvp_f`.

Loaded by path (``crab.eval.load_metric("avvp_f")``), never from the hub. ``evaluate`` copies this file into
its module cache, so it imports the metric from the installed ``crab`` package rather than relatively.
Inputs are what the pure function takes: parsed predictions (``AvvpLabel``-like objects or label dicts
``{"audio": [span, ...], "visual": [...]}``, ``None`` for a parse failure) and reference labels; a span is
``{"event", "start", "end"}`` or ``(name, start, end)``. Arrow cannot hold ``None`` in the first row of a
column, so :meth:`AvvpF.add_batch` stores each prediction as span lists with a ``parsed`` flag (a parse
failure is two empty lists, flag False) and :meth:`AvvpF._compute` turns unparsed rows back into ``None``.
Spans are stored as lists of structs, which Arrow keeps as lists of dicts (an empty list stays empty).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import datasets
import evaluate

from crab.eval.metric_inputs import EncodedInputsMixin
from crab.eval.metrics_avvp import avvp_f, modality_spans

_DESCRIPTION = """AVVP (LLP) F-scores of YapengTian/AVVP-ECCV20 utils/eval_metrics.py: per video, class x 10 s
binary matrices for audio, visual and audio-visual (= audio * visual); segment-level and event-level
(IoU >= 0.5 with any ground-truth event) F averaged over active classes, then over videos. Reports audio,
visual, audio_visual, type_av (mean of the three) and event_av (pooled audio + visual counts) per level."""

_CITATION = """@inproceedings{tian2020avvp, title={Unified Multisensory Perception: Weakly-Supervised Audio-Visual
Video Parsing}, author={Tian, Yapeng and Li, Dingzeyu and Xu, Chenliang}, booktitle={ECCV}, year={2020}}"""

_INPUTS = """Args:
    predictions: list of parsed predictions ({"audio": [span], "visual": [span]} or AvvpLabel), None if unparsable.
    references: list of ground-truth labels {"audio": [span], "visual": [span]}; span = {"event", "start", "end"}.
Returns:
    {"segment_audio", "segment_visual", "segment_audio_visual", "segment_type_av", "segment_event_av",
     "event_audio", ..., "event_event_av", "num_videos", "num_parse_failures"} (F in [0, 1])."""

_SPANS = [{"event": datasets.Value("string"), "start": datasets.Value("int64"), "end": datasets.Value("int64")}]


def _spans(label: Any, modality: str) -> list[dict[str, Any]]:
    return [{"event": name, "start": start, "end": end} for name, start, end in modality_spans(label, modality)]


def _encode(prediction: Any) -> dict[str, Any]:
    if prediction is None:
        return {"audio": [], "visual": [], "parsed": False}
    return {"audio": _spans(prediction, "audio"), "visual": _spans(prediction, "visual"), "parsed": True}


def _reference(reference: Any) -> dict[str, Any]:
    return {"audio": _spans(reference, "audio"), "visual": _spans(reference, "visual")}


def _decode(row: Mapping[str, Any]) -> dict[str, list]:
    # Arrow may hand back None for an empty list column; an empty modality is an empty list either way.
    return {"audio": list(row["audio"] or []), "visual": list(row["visual"] or [])}


class AvvpF(EncodedInputsMixin, evaluate.Metric):
    """AVVP segment- and event-level F (see :mod:`crab.eval.metrics_avvp` for the rules)."""

    encode_prediction = staticmethod(_encode)
    encode_reference = staticmethod(_reference)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": {"audio": _SPANS, "visual": _SPANS, "parsed": datasets.Value("bool")},
                    "references": {"audio": _SPANS, "visual": _SPANS},
                }
            ),
        )

    def _compute(self, predictions: list[Mapping[str, Any]], references: list[Mapping[str, Any]]) -> dict:
        return avvp_f([_decode(p) if p["parsed"] else None for p in predictions], [_decode(r) for r in references])
