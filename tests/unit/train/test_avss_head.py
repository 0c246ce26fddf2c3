"""``benchmarks/avss_head.py``: its sounding / class counts and the class maps it scores, on hand-made heads."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest
import torch

from crab.eval.metrics_avss import avss_scores


@pytest.fixture(scope="module")
def bench(load_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return load_benchmark("avss_head")


def _log_probs(background: list[list[float]], first: list[list[float]]) -> torch.Tensor:
    """(C=3, H, W) log-probabilities: background, class 1 = ``first``, class 2 the rest."""
    bg, one = torch.tensor(background), torch.tensor(first)
    return torch.stack([bg, one, 1 - bg - one]).log()


def test_counts_by_hand(bench: ModuleType) -> None:
    # 1x4 frame: pixels 0-1 sound (background 0.2), leaning to class 1 then class 2; pixels 2-3 do not
    log_probs = _log_probs([[0.2, 0.2, 0.8, 0.8]], [[0.6, 0.2, 0.1, 0.15]])[None]  # (T, C, H, W)
    truth = torch.tensor([[[1, 1, 2, 0]]])  # (T, H, W): objects on pixels 0-2
    counts = bench.pixel_counts(log_probs, truth)
    # sounding 0, 1; labelled 0, 1, 2; hit 0, 1; class right: pixel 0 only (pixel 1 leans to 2, pixel 2 ties: 1)
    assert counts == {"predicted": 2, "labelled": 3, "hit": 2, "class_right": 1}


def test_summary_scores_each_rule_per_video(bench: ModuleType) -> None:
    frame = _log_probs([[0.2, 0.2, 0.9]], [[0.6, 0.3, 0.05]])  # (C, 1, 3): one sounding region of two pixels
    truth = torch.tensor([[1, 1, 0]])
    report = bench.summarise([("a", frame, truth), ("b", frame, torch.zeros_like(truth))])
    assert (report["frames"], report["videos"]) == (2, 2)
    assert report["sounding_precision"] == pytest.approx(0.5)  # 4 sounding pixels, 2 labelled
    assert report["sounding_recall"] == 1.0 and report["class_accuracy"] == pytest.approx(0.5)
    region = torch.tensor([[1, 1, 0]])  # joint: class 1 (0.6 * 0.3) beats class 2 (0.2 * 0.5)
    pixel = torch.tensor([[1, 2, 0]])
    argmax = torch.tensor([[1, 2, 0]])  # background 0.2 loses to 0.6 and to 0.5
    for name, expected in (("region", region), ("pixel", pixel), ("argmax", argmax)):
        scores = avss_scores([expected[None]] * 2, [truth[None], torch.zeros_like(truth)[None]])  # (T, H, W) each
        assert report[name]["miou"] == pytest.approx(scores["miou"]), name
    assert report["region"]["miou"] > report["pixel"]["miou"]
    assert report["all_background"]["miou"] == pytest.approx(
        avss_scores([torch.zeros_like(truth)[None]] * 2, [truth[None], torch.zeros_like(truth)[None]])["miou"]
    )
