"""The report's spatial parts: the paper's Table 5 layout, the mask tasks' scores, the mask and ARIG box figures.

Inputs are the ``evaluate_avs`` stage's outputs (:mod:`crab.eval.run_avs`): ``metrics/<task>.json`` (mIoU and F
per video, object accuracy, the ``empty_mask`` / ``full_frame_mask`` baselines) and ``predictions/<task>.jsonl``
(per frame: the label with its ground-truth mask, the record's media, the frame's IoU as ``correct`` and the
predicted mask file under ``predictions/<task>_masks/``), and the ``evaluate`` stage's ARIG predictions (the
parsed and ground-truth boxes in the 224x224 frame, the frame in ``media.image``). Light imports only (pandas, numpy, PIL through
:mod:`crab.datasets.media`): the report driver and the notebook kernel must not load torch.

Published numbers: the Crab paper (Du et al., CVPR 2025, arXiv:2503.13068) Table 5, comparison with specialised
models. Its caption names S4, but the printed table has no S4 column; the S4 column here holds our number and
the baselines only. Seen / Unseen are Ref-AVS mIoU, Null is Ref-AVS's S metric (lower is better), all in percent
as printed except Null, printed as a fraction.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crab.avuie.arig import ARIG_FRAME_SIZE
from crab.datasets.media import read_binary_mask, read_frame_folder, read_image
from crab.report_tables import (
    BASELINE,
    OUR_METHOD,
    OURS,
    PAPER,
    comparison_table,
    dataset_label,
    percent,
    published_rows,
)

__all__ = [
    "MASK_TASKS",
    "PAPER_TABLE5",
    "TABLE5_COLUMNS",
    "BoxExample",
    "MaskExample",
    "box_examples",
    "box_figure",
    "mask_examples",
    "mask_figure",
    "segmentation_table",
    "table5",
]

#: The mask tasks the pipeline evaluates, in Table 5's order.
MASK_TASKS: tuple[str, ...] = ("s4", "ms3", "avss", "ref_avs")
#: Table 5's columns (mIoU, except Null: Ref-AVS's S on the null split, a fraction, lower is better).
TABLE5_COLUMNS: tuple[str, ...] = ("S4", "MS3", "AVSS", "Ref-AVS Seen", "Ref-AVS Unseen", "Ref-AVS Null (S, lower)")
#: The Table 5 columns each mask task fills: column -> result key, and whether the paper prints it as a fraction.
_TABLE5_TASK_COLUMNS: dict[str, dict[str, tuple[str, bool]]] = {
    "s4": {"S4": ("miou", False)},
    "ms3": {"MS3": ("miou", False)},
    "avss": {"AVSS": ("miou", False)},
    "ref_avs": {"Ref-AVS Seen": ("seen_miou", False), "Ref-AVS Unseen": ("unseen_miou", False),
                "Ref-AVS Null (S, lower)": ("null_s", True)},
}  # fmt: skip
#: Ref-AVS's test subsets, each a row of the per-task mask table (null: its S only).
_REF_AVS_SUBSETS = ("seen", "unseen", "null")
#: Table 5 as printed ("-" is None); the backbone each method uses is part of its name.
PAPER_TABLE5 = published_rows(
    f"{PAPER}, Table 5",
    "AVSBench / Ref-AVS test (real)",
    TABLE5_COLUMNS,
    [
        ("AVSBench (ResNet-50)", None, 54.00, None, 0.51, 0.55, 0.21),
        ("TPAVI (PVT-v2)", None, 54.00, 29.80, None, None, None),
        ("AVSegFormer (PVT-v2)", None, 58.40, 24.90, 33.47, 36.05, 0.17),
        ("GAVS (PVT-v2)", None, None, None, 28.93, 29.82, 0.19),
        ("EEMC (PVT-v2)", None, None, None, 34.20, 49.54, 0.01),
        ("Crab (ViT-L/14)", None, 58.21, 26.59, 40.54, 45.55, 0.01),
    ],
)


def table5(metrics_by_task: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Table 5 layout: the published rows, our mIoU per evaluated mask task and each task's trivial baselines.

    Args:
        metrics_by_task: task -> its metrics; ``s4``, ``ms3``, ``avss`` and ``ref_avs`` are read, other tasks are ignored. A
            Ref-AVS subset without test samples leaves its cell empty.

    Returns:
        Columns ``Method, Kind, Evaluated on, Source`` and :data:`TABLE5_COLUMNS` (percent; NaN = not reported).
        Our row joins the tasks' dataset labels; each baseline row is one task's (alphabetical per task).
    """
    tasks = [t for t in MASK_TASKS if t in metrics_by_task]

    def values(task: str, result: Mapping[str, Any]) -> dict[str, float]:
        return {column: float(result.get(key, np.nan)) if fraction else percent(result.get(key))
                for column, (key, fraction) in _TABLE5_TASK_COLUMNS[task].items()}  # fmt: skip

    return comparison_table(PAPER_TABLE5, metrics_by_task, tasks, values, TABLE5_COLUMNS)


def _mask_rows(task: str, result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-task table's score cells of one result (ours or a baseline's): one row for S4 / MS3, one per
    Ref-AVS subset present (``Task`` ``ref_avs/seen``, ...)."""
    if task != "ref_avs":
        return [{"Task": task, "mIoU": percent(result["miou"]), "F-score": percent(result["f_score"])}]
    rows = []
    for subset in _REF_AVS_SUBSETS:
        if subset == "null" and "null_s" in result:
            rows.append({"Task": "ref_avs/null", "Null S (lower)": float(result["null_s"])})
        elif f"{subset}_miou" in result:
            rows.append({"Task": f"ref_avs/{subset}", "mIoU": percent(result[f"{subset}_miou"]),
                         "F-score": percent(result[f"{subset}_f_score"])})  # fmt: skip
    return rows


def segmentation_table(metrics_by_task: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per evaluated mask task (Ref-AVS: per test subset): our mIoU, F, object accuracy and parse failures, and
    every trivial baseline.

    Returns:
        Columns ``Task, Method, Kind, Evaluated on, mIoU, F-score, Null S (lower), Object accuracy, Parse failures
        (%)`` (percent, except Ref-AVS's null S, a fraction; NaN where not applicable: a baseline names no object
        and parses nothing, only the null subset has an S).
    """
    rows = []
    for task in (t for t in MASK_TASKS if t in metrics_by_task):
        m = metrics_by_task[task]
        on = dataset_label(m)
        ours = {"Method": OUR_METHOD, "Kind": OURS, "Evaluated on": on, "Object accuracy": percent(m["object_accuracy"]),
                "Parse failures (%)": percent(m["parse_failure_rate"])}  # fmt: skip
        rows += [{**ours, **cells} for cells in _mask_rows(task, m)]
        for name, result in sorted(m["baselines"].items()):
            rows += [
                {"Method": name, "Kind": BASELINE, "Evaluated on": on, **cells} for cells in _mask_rows(task, result)
            ]
    columns = ["Task", "Method", "Kind", "Evaluated on", "mIoU", "F-score", "Null S (lower)", "Object accuracy",
               "Parse failures (%)"]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    frame[columns[4:]] = frame[columns[4:]].astype(float)
    return frame


def _spread_by_score(rows: Sequence[Mapping[str, Any]], num: int) -> list[Mapping[str, Any]]:
    """Up to ``num`` rows at evenly spaced ranks of their score (``correct``; ids break ties), worst first."""
    ranked = sorted(rows, key=lambda r: (float(r["correct"]), r["id"]))
    count = min(num, len(ranked))
    if count <= 0:
        return []
    return [ranked[i] for i in sorted({round(i * (len(ranked) - 1) / max(count - 1, 1)) for i in range(count)})]


@dataclass(frozen=True)
class MaskExample:
    """One test frame for the figure: the frame, its ground truth and our predicted mask, with the frame's IoU.

    Attributes:
        record_id: the AV-UIE record id.
        frame: ``(H, W, 3)`` uint8, the labelled frame.
        truth: ``(H, W)`` bool ground truth.
        prediction: ``(H, W)`` bool predicted mask (as ``evaluate_avs`` wrote it), at the ground truth's size.
        iou: the frame's IoU (``correct`` in the predictions).
        answer: what the answer's ``<object>`` tag named (``"none"`` for a silent frame), ``"no tag"`` if it
            parsed without one (real MS3), or ``"no answer"`` if it did not parse (an empty mask was scored).
    """

    record_id: str
    frame: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray
    iou: float
    answer: str


def _answer(parsed: Mapping[str, Any] | None) -> str:
    if parsed is None:
        return "no answer"
    objects = parsed.get("objects")
    return "no tag" if objects is None else ", ".join(objects) or "none"


def mask_examples(rows: Sequence[Mapping[str, Any]], predictions_dir: str | Path, num: int) -> list[MaskExample]:
    """``num`` test frames spread over the IoU range (id order breaks ties), each with its images read.

    Why spread: the first ``num`` frames by id would show one or two videos; sorting by IoU and taking evenly
    spaced ranks shows the best, the worst and the typical prediction.

    Args:
        rows: ``predictions/<task>.jsonl`` rows of a mask task.
        predictions_dir: the ``predictions`` folder (the rows' ``mask`` paths are relative to it).
        num: how many frames.

    Raises:
        DataError: a frame folder, ground-truth or predicted mask file is missing or unreadable.
    """
    examples = []
    for row in _spread_by_score(rows, num):
        label = row["label"]
        truth = read_binary_mask(label["mask"])
        prediction = read_binary_mask(Path(predictions_dir) / row["mask"], size=truth.shape[0])
        frame = read_frame_folder(row["media"]["video"])[label["frame"]]  # (H, W, 3)
        examples.append(MaskExample(row["id"], frame, truth, prediction, float(row["correct"]), _answer(row["parsed"])))
    return examples


def mask_figure(examples: Sequence[MaskExample]) -> Any:
    """A matplotlib figure: one row per example, columns frame, ground truth over it, our prediction over it.

    Imports matplotlib here, so the module stays importable without it.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(max(len(examples), 1), 3, figsize=(7.5, 2.5 * max(len(examples), 1)), squeeze=False)
    for ax_row, example in zip(axes, examples, strict=False):
        for ax, mask, title in ((ax_row[0], None, example.record_id.split("/")[-1]),
                                (ax_row[1], example.truth, "ground truth"),
                                (ax_row[2], example.prediction, f"ours: IoU {example.iou:.2f} ({example.answer})")):  # fmt: skip
            ax.imshow(example.frame)
            if mask is not None:
                ax.imshow(np.ma.masked_where(~mask, mask), cmap="autumn", alpha=0.55, vmin=0, vmax=1)
            ax.set_title(textwrap.fill(title, 34), fontsize=7)  # long object lists wrap instead of overlapping
            ax.axis("off")
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class BoxExample:
    """One ARIG test frame for the figure: the frame at 224x224, the ground-truth and the predicted box.

    Attributes:
        record_id: the AV-UIE record id.
        frame: ``(224, 224, 3)`` uint8, the frame resized as the model saw it (boxes live in this frame).
        truth: ``(x0, y0, x1, y1)`` end-exclusive.
        prediction: the parsed box, or ``None`` when the answer had no well-formed box.
        ciou: the frame's cIoU (``correct`` in the predictions).
    """

    record_id: str
    frame: np.ndarray
    truth: tuple[int, int, int, int]
    prediction: tuple[int, int, int, int] | None
    ciou: float


def _box(item: Mapping[str, Any]) -> tuple[int, int, int, int]:
    return int(item["x0"]), int(item["y0"]), int(item["x1"]), int(item["y1"])


def box_examples(rows: Sequence[Mapping[str, Any]], num: int) -> list[BoxExample]:
    """``num`` ARIG test frames spread over the cIoU range (as :func:`mask_examples`), each with its frame read.

    Raises:
        DataError: a frame is missing or unreadable.
    """
    from PIL import Image

    examples = []
    for row in _spread_by_score(rows, num):
        image = Image.fromarray(read_image(row["media"]["image"])).resize((ARIG_FRAME_SIZE, ARIG_FRAME_SIZE))
        parsed = row.get("parsed")
        examples.append(BoxExample(row["id"], np.asarray(image), _box(row["label"]),
                                   None if parsed is None else _box(parsed), float(row["correct"])))  # fmt: skip
    return examples


def box_figure(examples: Sequence[BoxExample]) -> Any:
    """A matplotlib figure: each frame with the ground-truth box (green) and ours (red, dashed), titled by cIoU."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(1, max(len(examples), 1), figsize=(2.6 * max(len(examples), 1), 2.9), squeeze=False)
    for ax, example in zip(axes[0], examples, strict=False):
        ax.imshow(example.frame)
        boxes = [(example.truth, "lime", "-")]
        if example.prediction is not None:
            boxes.append((example.prediction, "red", "--"))
        for (x0, y0, x1, y1), colour, style in boxes:  # end-exclusive pixel edges: the box covers x0..x1
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour,
                                   linestyle=style, linewidth=1.5))  # fmt: skip
        ours = "no box" if example.prediction is None else f"cIoU {example.ciou:.2f}"
        ax.set_title(textwrap.fill(f"{example.record_id.split('/')[-1]}: {ours}", 30), fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    return fig
