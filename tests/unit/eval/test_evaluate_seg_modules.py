"""The segmentation ``evaluate`` modules load through ``crab.eval.load_metric`` (by path, offline) and return
exactly the pure functions' results."""

import numpy as np
import pytest
import torch

from crab.eval import load_metric
from crab.eval.metrics_avs import avs_scores, ref_avs_null_score, ref_avs_scores
from crab.eval.metrics_avss import avss_scores

_GEN = torch.Generator().manual_seed(0)
# Five 2-frame 4x4 items; item 2's second frame and all of item 4 have an empty ground truth.
LOGITS = [3 * torch.randn(2, 4, 4, generator=_GEN) for _ in range(5)]
TRUTH = [(torch.rand(2, 4, 4, generator=_GEN) > 0.5).long() for _ in range(5)]
TRUTH[2][1] = 0
TRUTH[4][:] = 0
CLASS_PRED = [torch.randint(0, 5, (3, 4, 4), generator=_GEN) for _ in range(3)]
CLASS_TRUTH = [torch.randint(0, 5, (3, 4, 4), generator=_GEN) for _ in range(3)]


def load(name: str, **kwargs):
    return load_metric(name, **kwargs)


@pytest.fixture(scope="module")
def offline():
    """Hub switched off while the modules load (importing evaluate costs seconds, so once per module)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_EVALUATE_OFFLINE", "1")
        yield


def test_modules_are_evaluate_metrics_named_after_their_folder(offline):
    import evaluate

    avs, avss = load("avs_segmentation"), load("avss_segmentation")
    assert isinstance(avs, evaluate.Metric) and isinstance(avss, evaluate.Metric)
    assert (avs.name, avss.name) == ("avs_segmentation", "avss_segmentation")


@pytest.mark.parametrize("config", ["default", "s4", "ms3"])
def test_avs_configs_equal_the_pure_function(offline, config):
    expected = avs_scores(LOGITS, TRUTH)
    assert expected["num_scored_frames"] == 7
    assert load("avs_segmentation", config_name=config).compute(predictions=LOGITS, references=TRUTH) == expected


def test_avs_module_accumulates_mixed_input_types(offline):
    metric = load("avs_segmentation", config_name="s4")
    metric.add_batch(predictions=LOGITS[:2], references=TRUTH[:2])
    metric.add(prediction=LOGITS[2].numpy(), reference=TRUTH[2].tolist())
    metric.add_batch(predictions=[x.tolist() for x in LOGITS[3:]], references=[y.numpy() for y in TRUTH[3:]])
    assert metric.compute() == avs_scores(LOGITS, TRUTH)


def test_ref_avs_module_keeps_order_and_batch_size(offline):
    metric = load("avs_segmentation", config_name="ref_avs")
    assert metric.compute(predictions=LOGITS, references=TRUTH) == ref_avs_scores(LOGITS, TRUTH)
    got = metric.compute(predictions=LOGITS, references=TRUTH, batch_size=2)
    assert got == ref_avs_scores(LOGITS, TRUTH, batch_size=2)
    assert got["num_batches"] == 3


def test_ref_avs_null_module_needs_no_references(offline):
    metric = load("avs_segmentation", config_name="ref_avs_null")
    assert metric.compute(predictions=LOGITS, batch_size=3) == ref_avs_null_score(LOGITS, batch_size=3)
    metric.add(prediction=LOGITS[0])
    assert metric.compute() == ref_avs_null_score(LOGITS[:1])


def test_avs_module_errors(offline):
    with pytest.raises(ValueError, match="unknown config 'avss'"):
        load("avs_segmentation", config_name="avss")
    metric = load("avs_segmentation", config_name="ms3")
    with pytest.raises(ValueError, match="references are required"):
        metric.add_batch(predictions=LOGITS)
    with pytest.raises(ValueError, match="item 0: prediction shape"):
        metric.add_batch(predictions=[np.zeros((2, 8, 8))], references=TRUTH[:1])
    with pytest.raises(ValueError, match="nothing to score"):
        metric.compute()
    with pytest.raises(ValueError, match="batch_size is for the Ref-AVS configs"):
        metric.compute(predictions=LOGITS, references=TRUTH, batch_size=4)


def test_avss_module_equals_the_pure_function(offline):
    metric = load("avss_segmentation", num_classes=5)
    expected = avss_scores(CLASS_PRED, CLASS_TRUTH, num_classes=5)
    assert metric.compute(predictions=CLASS_PRED, references=CLASS_TRUTH) == expected
    metric.add(prediction=CLASS_PRED[0].tolist(), reference=CLASS_TRUTH[0].numpy())
    metric.add_batch(predictions=CLASS_PRED[1:], references=CLASS_TRUTH[1:])
    assert metric.compute() == expected


def test_avss_module_defaults_to_71_classes_and_checks_indices(offline):
    metric = load("avss_segmentation")
    assert len(metric.compute(predictions=CLASS_PRED, references=CLASS_TRUTH)["iou_per_class"]) == 71
    small = load("avss_segmentation", num_classes=3)
    with pytest.raises(ValueError, match=r"video 0 prediction: class index range .* outside \[0, 3\)"):
        small.add_batch(predictions=CLASS_PRED, references=CLASS_TRUTH)
