"""The report's router analysis (paper Figure 5): tables and an automatic reading of the router weights.

Input: ``metrics/router_<task>.json``, written by the ``evaluate`` stage (:mod:`crab.eval.router_stats`):
per task, the mean router weight of every LoRA-B head in every adapted linear over the test tokens.
The paper's Figure 5 scatters the weight of head B1 against B2 (and B2 against B3), one point per
layer, coloured by task; the notebook draws that figure and a (layer x head) heat-map per task from
:func:`router_points` and :func:`router_heatmap`, and prints :func:`router_reading`.

The reading measures, per task, which head carries the largest mean weight, which heads are used above
uniform (``1/N``: those the task relies on), and how far the router is from uniform: the mean absolute
deviation ``MAD = mean_{layers, heads} |w - 1/N|`` (0 for a router that ignores its input; a router that
always picks one head reaches ``2 (N - 1) / N^2``). Across tasks it names the pair whose per-layer head
weights differ most (mean absolute difference over the layers both have). A MAD below
:data:`NEAR_UNIFORM_MAD` is called near-uniform: IA-LoRA's router starts near-uniform (crab-reference
section 2), so a short run may leave it there, and the heads are then not specialised at all.

No torch here: the report stage imports only pandas and numpy.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crab.errors import DataError
from crab.report_tables import read_json

__all__ = [
    "NEAR_UNIFORM_MAD",
    "head_names",
    "read_router_stats",
    "router_heatmap",
    "router_points",
    "router_reading",
    "router_summary_table",
    "task_difference",
    "uniform_deviation",
]

#: A mean absolute deviation from uniform below this is read as "near-uniform" (no head preference).
NEAR_UNIFORM_MAD = 0.01
_KEYS = ("task", "adapter", "num_heads", "head_mean", "layers")
_LAYER_KEYS = ("name", "module", "layer_index", "mean", "tokens")


def read_router_stats(path: str | Path) -> dict[str, Any]:
    """Read ``metrics/router_<task>.json`` and check its layout.

    Raises:
        DataError: missing, unreadable, a key missing, or a layer whose weights have the wrong length.
    """
    stats = read_json(path)
    if not isinstance(stats, dict):
        raise DataError(path, "not a router statistics file (not a JSON object)")
    for key in _KEYS:
        if key not in stats:
            raise DataError(path, f"missing key {key!r}")
    for layer in stats["layers"]:
        missing = [k for k in _LAYER_KEYS if k not in layer]
        if missing:
            raise DataError(path, f"layer {layer.get('name')!r} misses {missing}")
        if len(layer["mean"]) != stats["num_heads"]:
            raise DataError(path, f"layer {layer['name']!r} has {len(layer['mean'])} weights, not {stats['num_heads']}")
    return stats


def head_names(num_heads: int) -> list[str]:
    """``["B1", "B2", ...]``: the paper's names of the LoRA-B heads."""
    return [f"B{h + 1}" for h in range(num_heads)]


def _weights(stats: Mapping[str, Any]) -> np.ndarray:
    """(num_layers, num_heads) mean router weights, rows in the file's layer order."""
    if not stats["layers"]:
        return np.zeros((0, stats["num_heads"] or 0))
    return np.array([layer["mean"] for layer in stats["layers"]], dtype=np.float64)  # (num_layers, num_heads)


def _label(layer: Mapping[str, Any]) -> str:
    """``"L3 q_proj"`` (or the layer's name when it has no index)."""
    return layer["name"] if layer["layer_index"] is None else f"L{layer['layer_index']} {layer['module']}"


def uniform_deviation(stats: Mapping[str, Any]) -> float:
    """Mean absolute deviation of the layers' head weights from uniform ``1/N`` (NaN without a router)."""
    weights = _weights(stats)
    if weights.size == 0:
        return float("nan")
    return float(np.abs(weights - 1.0 / weights.shape[1]).mean())


def task_difference(first: Mapping[str, Any], second: Mapping[str, Any]) -> float:
    """Mean absolute difference of two tasks' head weights over the layers both have (NaN if none)."""
    a = {layer["name"]: layer["mean"] for layer in first["layers"]}
    b = {layer["name"]: layer["mean"] for layer in second["layers"]}
    shared = [name for name in a if name in b and len(a[name]) == len(b[name])]
    if not shared:
        return float("nan")
    return float(np.abs(np.array([a[n] for n in shared]) - np.array([b[n] for n in shared])).mean())


def router_points(stats_by_task: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per task and adapted layer, one column per head: the points of the Figure 5 scatter.

    Args:
        stats_by_task: task -> router statistics (:func:`read_router_stats`); tasks without a router
            are left out.

    Returns:
        Columns ``Task, Layer, Module, Layer index, B1 .. BN``.
    """
    rows = []
    num_heads = 0
    for task, stats in stats_by_task.items():
        for layer in stats["layers"]:
            num_heads = max(num_heads, len(layer["mean"]))
            rows.append({"Task": task, "Layer": _label(layer), "Module": layer["module"],
                         "Layer index": layer["layer_index"], **dict(zip(head_names(len(layer["mean"])), layer["mean"]))})  # fmt: skip
    return pd.DataFrame(rows, columns=["Task", "Layer", "Module", "Layer index", *head_names(num_heads)])


def router_heatmap(stats: Mapping[str, Any], max_rows: int = 64) -> pd.DataFrame:
    """The (layer x head) matrix of one task's mean router weights, for a heat-map.

    Args:
        stats: one task's router statistics.
        max_rows: with more adapted linears than this (7 per layer at paper scale: 224), rows are the
            transformer layers, each the mean over its adapted linears; otherwise one row per linear.

    Returns:
        Index: ``"L<i> <module>"`` (or ``"L<i>"`` when grouped), columns ``B1 .. BN``; empty without a router.
    """
    if not stats["layers"]:
        return pd.DataFrame()
    frame = pd.DataFrame(_weights(stats), index=[_label(layer) for layer in stats["layers"]],
                         columns=head_names(stats["num_heads"]))  # fmt: skip
    indices = [layer["layer_index"] for layer in stats["layers"]]
    if len(frame) > max_rows and None not in indices:
        frame = frame.groupby(np.array(indices), sort=True).mean()
        frame.index = [f"L{i}" for i in frame.index]
    return frame


def router_summary_table(stats_by_task: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per task: adapter, adapted layers, tokens, mean weight per head, top head and deviation from uniform.

    Returns:
        Columns ``Task, Adapter, Layers, Tokens, B1 .. BN, Top head, MAD from uniform`` (N the largest
        head count; ``Layers`` 0 and NaN weights for a task without a router).
    """
    num_heads = max((s["num_heads"] or 0 for s in stats_by_task.values()), default=0)
    rows = []
    for task, stats in stats_by_task.items():
        means = dict(zip(head_names(num_heads), stats["head_mean"]))
        top = head_names(len(stats["head_mean"]))[int(np.argmax(stats["head_mean"]))] if stats["head_mean"] else "-"
        rows.append({"Task": task, "Adapter": stats["adapter"], "Layers": len(stats["layers"]),
                     "Tokens": stats["layers"][0]["tokens"] if stats["layers"] else 0,
                     **{h: means.get(h, float("nan")) for h in head_names(num_heads)},
                     "Top head": top, "MAD from uniform": uniform_deviation(stats)})  # fmt: skip
    columns = ["Task", "Adapter", "Layers", "Tokens", *head_names(num_heads), "Top head", "MAD from uniform"]
    return pd.DataFrame(rows, columns=columns)


def _task_sentence(task: str, stats: Mapping[str, Any]) -> str:
    """One task's reading (module docstring)."""
    if not stats["layers"]:
        return f"{task}: the {stats['adapter']} adapter has no router, so there are no head weights to read."
    num_heads, means = stats["num_heads"], stats["head_mean"]
    uniform = 1.0 / num_heads
    names = head_names(num_heads)
    top = int(np.argmax(means))
    mad = uniform_deviation(stats)
    weights = _weights(stats)
    row, col = np.unravel_index(int(np.argmax(np.abs(weights - uniform))), weights.shape)
    extreme = f"{names[col]} {weights[row, col]:.3f} in {_label(stats['layers'][row])}"
    if mad < NEAR_UNIFORM_MAD:
        return (f"{task}: the router is near-uniform (mean absolute deviation from 1/{num_heads} = {uniform:.3f} is "
                f"{mad:.4f} over {len(stats['layers'])} adapted layers, below {NEAR_UNIFORM_MAD}): the task uses "
                f"all heads about equally; largest mean weight {names[top]} {means[top]:.3f}, "
                f"most extreme layer {extreme}.")  # fmt: skip
    above = [f"{names[h]} ({means[h]:.3f})" for h in np.argsort(means)[::-1] if means[h] > uniform]
    return (f"{task}: relies most on head {names[top]} (mean weight {means[top]:.3f} against uniform {uniform:.3f}); "
            f"heads above uniform: {', '.join(above)}. Mean absolute deviation from uniform {mad:.4f} over "
            f"{len(stats['layers'])} adapted layers; most extreme layer {extreme}.")  # fmt: skip


def router_reading(stats_by_task: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The automatic reading of the router weights: one paragraph per task, then one comparing the tasks.

    Args:
        stats_by_task: task -> router statistics (:func:`read_router_stats`), in report order.

    Returns:
        Sentences (markdown-free text), one per task, plus a last one comparing the tasks that have a
        router (which pair differs most) when there are two or more.
    """
    sentences = [_task_sentence(task, stats) for task, stats in stats_by_task.items()]
    routed = {task: stats for task, stats in stats_by_task.items() if stats["layers"]}
    pairs: Sequence[tuple[str, str]] = list(itertools.combinations(routed, 2))
    if pairs:
        differences = {pair: task_difference(routed[pair[0]], routed[pair[1]]) for pair in pairs}
        comparable = {pair: value for pair, value in differences.items() if not np.isnan(value)}
        if not comparable:
            sentences.append(
                "Across tasks: no adapted layer is shared by two tasks, so their routers cannot be compared."
            )
            return sentences
        (first, second), value = max(comparable.items(), key=lambda item: item[1])  # first pair on ties
        tops = {task: head_names(s["num_heads"])[int(np.argmax(s["head_mean"]))] for task, s in routed.items()}
        shared = "the same top head" if tops[first] == tops[second] else "different top heads"
        verb = "differ most" if len(comparable) > 1 else "differ"
        sentences.append(f"Across tasks, {first} and {second} {verb}: mean absolute difference of their "
                         f"per-layer head weights {value:.4f} ({shared}: {tops[first]} vs {tops[second]}).")  # fmt: skip
    return sentences
