"""The ``evaluate`` modules load by path, offline, and return exactly the pure functions' results."""

import pytest

from crab.eval import load_metric, metric_path
from crab.eval.metrics_ave import ave_accuracy
from crab.eval.metrics_avqa import avqa_accuracy

AVE_PREDICTIONS = [None, {"event": "Bark", "start": 3, "end": 6}, {"event": "Cat", "start": 0, "end": 10}]
AVE_REFERENCES = [{"event": "Bark", "start": 2, "end": 6}] * 3

AVQA_PREDICTIONS = [None, "two", "Two ", " YES", "acoustic guitar", "no"]
AVQA_ANSWERS = ["piano", "two", "three", "yes", "acoustic_guitar", "no"]
AVQA_TYPES = [
    ["Audio-Visual", "Temporal"],
    ["Audio", "Counting"],
    ["Audio", "Counting"],
    ["Audio", "Comparative"],
    ["Visual", "Location"],
    ("Audio-Visual", "Existential"),
]


@pytest.fixture(scope="module")
def metrics():
    """Both modules, loaded once: importing evaluate costs seconds."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_EVALUATE_OFFLINE", "1")
        yield {"ave": load_metric("ave_accuracy"), "avqa": load_metric("avqa_accuracy")}


def test_modules_are_evaluate_metrics_named_after_their_folder(metrics):
    import evaluate

    assert isinstance(metrics["ave"], evaluate.Metric)
    assert metrics["ave"].name == "ave_accuracy"
    assert metrics["avqa"].name == "avqa_accuracy"
    assert (metric_path("ave_accuracy") / "ave_accuracy.py").is_file()


def test_ave_module_equals_pure_function(metrics):
    expected = ave_accuracy(AVE_PREDICTIONS, AVE_REFERENCES)
    assert expected["accuracy"] == pytest.approx((6 + 9 + 0) / 30)
    assert metrics["ave"].compute(predictions=AVE_PREDICTIONS, references=AVE_REFERENCES) == expected


def test_ave_module_accumulates_batches(metrics):
    metrics["ave"].add_batch(predictions=AVE_PREDICTIONS[:1], references=AVE_REFERENCES[:1])
    metrics["ave"].add_batch(predictions=AVE_PREDICTIONS[1:], references=AVE_REFERENCES[1:])
    assert metrics["ave"].compute() == ave_accuracy(AVE_PREDICTIONS, AVE_REFERENCES)


def test_avqa_module_equals_pure_function(metrics):
    expected = avqa_accuracy(AVQA_PREDICTIONS, AVQA_ANSWERS, AVQA_TYPES)
    assert expected["accuracy"] == pytest.approx(3 / 6)
    got = metrics["avqa"].compute(predictions=AVQA_PREDICTIONS, references=AVQA_ANSWERS, question_types=AVQA_TYPES)
    assert got == expected


def test_avqa_module_accumulates_batches_and_single_adds(metrics):
    metrics["avqa"].add(prediction=None, reference="piano", question_type=AVQA_TYPES[0])
    metrics["avqa"].add_batch(
        predictions=AVQA_PREDICTIONS[1:], references=AVQA_ANSWERS[1:], question_types=AVQA_TYPES[1:]
    )
    assert metrics["avqa"].compute() == avqa_accuracy(AVQA_PREDICTIONS, AVQA_ANSWERS, AVQA_TYPES)


def test_unknown_metric_name_raises():
    with pytest.raises(ValueError, match="unknown metric 'accuracy'"):
        load_metric("accuracy")
