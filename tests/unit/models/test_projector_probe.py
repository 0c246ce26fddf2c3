"""``benchmarks/projector_probe.py``: the slot labels and slot columns its probes are scored on."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest
import torch


@pytest.fixture(scope="module")
def bench(load_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return load_benchmark("projector_probe")


def test_slot_labels_follow_each_objects_visible_seconds(bench: ModuleType) -> None:
    scene = {
        "duration_s": 6,
        "objects": [
            {"name": "Bus", "slot": "left", "visible": [[0, 2], [4, 5]], "audible": [[0, 6]]},
            {"name": "Cat", "slot": None, "visible": [], "audible": [[1, 3]]},  # off screen: no slot
            {"name": "Dog", "slot": "right", "visible": [[3, 6]], "audible": []},
        ],
    }
    ids = {"Bus": 0, "Cat": 1, "Dog": 2, bench.NONE: 3}
    expected = torch.tensor(
        [[0, 3, 3], [0, 3, 3], [3, 3, 3], [3, 3, 2], [0, 3, 2], [3, 3, 2]]
    )  # (T, left/middle/right)
    assert torch.equal(bench.slot_labels(scene, ids), expected)


def test_slot_columns_are_the_patch_columns_overlapping_each_third(bench: ModuleType) -> None:
    assert bench.slot_columns(3) == [[0], [1], [2]]
    assert bench.slot_columns(7) == [[0, 1, 2], [2, 3, 4], [4, 5, 6]]  # 112 px, patch 16: columns 2 and 4 are shared
    assert bench.slot_columns(6) == [[0, 1], [2, 3], [4, 5]]


def test_class_ids_are_shared_by_the_splits_with_none_last(bench: ModuleType) -> None:
    scenes = [
        {"split": "train", "objects": [{"name": "Dog"}, {"name": "Bus"}]},
        {"split": "test", "objects": [{"name": "Cat"}]},  # a class only the test split has
    ]
    assert bench.class_ids_of(scenes) == {"Bus": 0, "Cat": 1, "Dog": 2, bench.NONE: 3}
