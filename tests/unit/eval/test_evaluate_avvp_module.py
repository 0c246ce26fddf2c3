"""The ``avvp_f`` evaluate module loads through ``crab.eval.load_metric`` (by path, offline) and returns exactly
the pure function's results."""

import pytest

import crab.eval
from crab.avuie.avvp import AvvpEvent, AvvpLabel
from crab.eval.metrics_avvp import avvp_f

EMPTY = {"audio": [], "visual": []}
SPEECH_DOG = {
    "audio": [{"event": "Speech", "start": 0, "end": 4}, {"event": "Dog", "start": 2, "end": 10}],
    "visual": [{"event": "Dog", "start": 2, "end": 10}],
}
# Label object, dict with triples, parse failure, empty prediction.
PREDICTIONS = [
    AvvpLabel(audio=(AvvpEvent("Speech", ((0, 3),)), AvvpEvent("Dog", ((2, 10),))), visual=()),
    {"audio": [("Speech", 0, 10)], "visual": [("Dog", 0, 10)]},
    None,
    EMPTY,
]
REFERENCES = [SPEECH_DOG, SPEECH_DOG, SPEECH_DOG, EMPTY]


@pytest.fixture(scope="module")
def metric():
    """The module, loaded once: importing evaluate costs seconds."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_EVALUATE_OFFLINE", "1")
        yield crab.eval.load_metric("avvp_f")


def test_module_is_an_evaluate_metric_named_after_its_folder(metric):
    import evaluate

    assert isinstance(metric, evaluate.Metric)
    assert metric.name == "avvp_f"


def test_module_equals_pure_function(metric):
    expected = avvp_f(PREDICTIONS, REFERENCES)
    # Video 1, segment audio: Speech 3/4 TP, FN 1 -> 6/7; Dog exact -> 1; visual Dog missed -> 0.
    # Video 2: audio Speech TP 4 FP 6 -> 8/14, Dog missed -> 0; visual Dog TP 8 FP 2 -> 16/18.
    # Video 3 (parse failure): 0 everywhere active; video 4: 1.0.
    assert expected["segment_audio"] == pytest.approx(((6 / 7 + 1) / 2 + (8 / 14) / 2 + 0 + 1) / 4)
    assert expected["segment_visual"] == pytest.approx((0 + 16 / 18 + 0 + 1) / 4)
    assert expected["num_parse_failures"] == 1
    assert metric.compute(predictions=PREDICTIONS, references=REFERENCES) == expected


def test_module_accumulates_batches_starting_with_a_parse_failure_and_empty_lists(metric):
    # Arrow infers nothing from a first row of None / empty lists: the features and the parsed flag carry it.
    metric.add_batch(predictions=PREDICTIONS[2:], references=REFERENCES[2:])
    metric.add(prediction=PREDICTIONS[0], reference=REFERENCES[0])
    metric.add_batch(predictions=PREDICTIONS[1:2], references=REFERENCES[1:2])
    order = [2, 3, 0, 1]
    expected = avvp_f([PREDICTIONS[i] for i in order], [REFERENCES[i] for i in order])
    assert metric.compute() == expected


def test_all_empty_set_scores_one(metric):
    result = metric.compute(predictions=[EMPTY, None], references=[EMPTY, EMPTY])
    assert result["segment_type_av"] == 1.0 and result["event_event_av"] == 1.0
    assert (result["num_videos"], result["num_parse_failures"]) == (2, 1)
