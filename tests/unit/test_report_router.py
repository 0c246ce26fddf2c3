"""Router analysis of the report from hand-made router statistics: tables, heat-map and the automatic reading."""

from __future__ import annotations

import json
import math

import pytest

from crab.errors import DataError
from crab.report_router import (
    head_names,
    read_router_stats,
    router_heatmap,
    router_points,
    router_reading,
    router_summary_table,
    task_difference,
    uniform_deviation,
)


def _stats(task: str, means: list[list[float]], adapter: str = "ia_lora", modules=("q_proj", "v_proj")) -> dict:
    """Router statistics with one layer per row of ``means``, cycling through ``modules`` per LLM layer."""
    layers = []
    for i, mean in enumerate(means):
        index, module = divmod(i, len(modules))
        name = f"language_model.model.layers.{index}.self_attn.{modules[module]}"
        layers.append({"name": name, "module": modules[module], "layer_index": index, "mean": mean, "tokens": 100})
    num_heads = len(means[0]) if means else None
    head_mean = [sum(m[h] for m in means) / len(means) for h in range(num_heads or 0)]
    return {"task": task, "adapter": adapter, "num_heads": num_heads, "head_mean": head_mean, "layers": layers}


# AVE leans on B2 in every layer; AVQA on B1; AVVP is uniform.
AVE = _stats("ave", [[0.2, 0.6, 0.2], [0.3, 0.5, 0.2]])  # head mean 0.25, 0.55, 0.2
AVQA = _stats("avqa", [[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])  # head mean 0.5, 0.3, 0.2
AVVP = _stats("avvp", [[1 / 3] * 3, [1 / 3] * 3])
LORA = _stats("ave", [], adapter="lora")


def test_uniform_deviation_is_the_mean_absolute_distance_from_one_over_n() -> None:
    # |0.2-1/3| + |0.6-1/3| + |0.2-1/3| = 0.5333; second layer: 0.0333 + 0.1667 + 0.1333 = 0.3333 -> /6
    assert uniform_deviation(AVE) == pytest.approx((0.8 / 1.5 + 1 / 3) / 6)
    assert uniform_deviation(AVVP) == pytest.approx(0.0)
    assert math.isnan(uniform_deviation(LORA))


def test_task_difference_over_shared_layers() -> None:
    # layer 0: |0.2-0.5| + |0.6-0.3| + 0 = 0.6; layer 1: 0.2 + 0.2 + 0 = 0.4 -> 1.0 / 6
    assert task_difference(AVE, AVQA) == pytest.approx(1 / 6)
    assert math.isnan(task_difference(AVE, LORA))


def test_reading_names_the_top_head_the_heads_above_uniform_and_the_most_different_tasks() -> None:
    reading = router_reading({"ave": AVE, "avqa": AVQA, "avvp": AVVP})
    assert len(reading) == 4
    assert reading[0] == (
        "ave: relies most on head B2 (mean weight 0.550 against uniform 0.333); heads above uniform: B2 (0.550). "
        "Mean absolute deviation from uniform 0.1444 over 2 adapted layers; most extreme layer B2 0.600 in L0 q_proj."
    )
    assert reading[1].startswith("avqa: relies most on head B1 (mean weight 0.500 against uniform 0.333)")
    assert reading[2].startswith("avvp: the router is near-uniform (mean absolute deviation from 1/3 = 0.333 is 0.0000")
    # ave-avqa 0.1667, ave-avvp 0.1444, avqa-avvp 0.1111
    assert reading[3] == (
        "Across tasks, ave and avqa differ most: mean absolute difference of their per-layer head weights 0.1667 "
        "(different top heads: B2 vs B1)."
    )


def test_reading_of_two_tasks_and_of_an_adapter_without_router() -> None:
    reading = router_reading({"ave": AVE, "avqa": AVQA})
    assert reading[-1].startswith("Across tasks, ave and avqa differ: ")
    assert router_reading({"ave": LORA}) == [
        "ave: the lora adapter has no router, so there are no head weights to read."
    ]


def test_points_and_summary_tables() -> None:
    points = router_points({"ave": AVE, "avqa": AVQA, "lora": LORA})
    assert list(points.columns) == ["Task", "Layer", "Module", "Layer index", "B1", "B2", "B3"]
    assert list(points["Task"]) == ["ave", "ave", "avqa", "avqa"]
    assert list(points["Layer"]) == ["L0 q_proj", "L0 v_proj"] * 2
    assert list(points["B2"]) == [0.6, 0.5, 0.3, 0.3]
    summary = router_summary_table({"ave": AVE, "lora": LORA})
    assert list(summary["Top head"]) == ["B2", "-"]
    assert list(summary["Layers"]) == [2, 0]
    assert summary.loc[0, "B2"] == pytest.approx(0.55)
    assert math.isnan(summary.loc[1, "B1"])


def test_heatmap_groups_linears_into_layers_when_there_are_many() -> None:
    stats = _stats("ave", [[0.2, 0.8], [0.4, 0.6], [0.5, 0.5], [0.7, 0.3]])  # 2 LLM layers x (q, v)
    full = router_heatmap(stats)
    assert list(full.index) == ["L0 q_proj", "L0 v_proj", "L1 q_proj", "L1 v_proj"]
    assert list(full.columns) == head_names(2)
    grouped = router_heatmap(stats, max_rows=3)
    assert list(grouped.index) == ["L0", "L1"]
    assert grouped.loc["L0"].tolist() == pytest.approx([0.3, 0.7])
    assert router_heatmap(LORA).empty


def test_read_router_stats_checks_the_layout(tmp_path) -> None:
    good = tmp_path / "router_ave.json"
    good.write_text(json.dumps(AVE))
    assert read_router_stats(good) == AVE
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**AVE, "num_heads": 4}))
    with pytest.raises(DataError, match="has 3 weights, not 4"):
        read_router_stats(bad)
    bad.write_text(json.dumps({k: v for k, v in AVE.items() if k != "layers"}))
    with pytest.raises(DataError, match="missing key 'layers'"):
        read_router_stats(bad)
    with pytest.raises(DataError, match="file not found"):
        read_router_stats(tmp_path / "router_avqa.json")
