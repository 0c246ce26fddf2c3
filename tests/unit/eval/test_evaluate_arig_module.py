"""The ``arig_ciou`` ``evaluate`` module loads by path, offline, and returns exactly the pure function's result."""

from __future__ import annotations


import pytest

import crab.eval
from crab.avuie.arig import ArigLabel
from crab.eval.metrics_arig import arig_ciou

# cIoU_i against (0, 0, 100, 100): 0.25, 0.5, 0 (parse failure), 1/7 -> ciou 0.25, AUC 0.2375 (test_metrics_arig).
PREDICTIONS = [ArigLabel(0, 0, 50, 50), {"x0": 0, "y0": 0, "x1": 200, "y1": 100}, None, (50, 50, 150, 150)]
REFERENCES = [{"x0": 0, "y0": 0, "x1": 100, "y1": 100}] * 3 + [ArigLabel(0, 0, 100, 100)]


@pytest.fixture(scope="module")
def metric():
    """The module loaded once by its path (as ``crab.eval.load_metric`` does), hub switched off."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_EVALUATE_OFFLINE", "1")
        yield crab.eval.load_metric("arig_ciou")


def test_module_is_an_evaluate_metric_named_after_its_folder(metric):
    import evaluate

    assert isinstance(metric, evaluate.Metric)
    assert metric.name == "arig_ciou"


def test_module_equals_pure_function(metric):
    expected = arig_ciou(PREDICTIONS, REFERENCES)
    assert expected["ciou"] == 0.25 and expected["auc"] == pytest.approx(0.2375)
    assert expected["num_parse_failures"] == 1
    assert metric.compute(predictions=PREDICTIONS, references=REFERENCES) == expected


def test_module_accumulates_batches_and_single_adds(metric):
    metric.add(prediction=None, reference=REFERENCES[2])  # a parse failure first: Arrow's first row
    metric.add_batch(predictions=PREDICTIONS[:2], references=REFERENCES[:2])
    metric.add(prediction=PREDICTIONS[3], reference=REFERENCES[3])
    order = [2, 0, 1, 3]
    assert metric.compute() == arig_ciou([PREDICTIONS[i] for i in order], [REFERENCES[i] for i in order])


def test_module_rejects_an_invalid_reference(metric):
    with pytest.raises(ValueError, match="empty or outside"):
        metric.compute(predictions=[None], references=[(5, 5, 5, 9)])
