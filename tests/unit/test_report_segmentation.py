"""The report's segmentation parts: Table 5 layout, the mask tasks' score table and the mask figure inputs."""

import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from crab.datasets.media import write_binary_mask
from crab.errors import DataError
from crab.report_segmentation import (
    PAPER_TABLE5,
    TABLE5_COLUMNS,
    box_examples,
    box_figure,
    mask_examples,
    mask_figure,
    segmentation_table,
    table5,
)


def mask_metrics(task, miou, f_score, empty=(0.1, 0.05), full=(0.2, 0.3), dataset="AV-Synth"):
    return {
        "task": task, "split": "test", "dataset": dataset, "num_samples": 10, "num_videos": 2, "miou": miou,
        "f_score": f_score, "object_accuracy": 0.5, "parse_failure_rate": 0.1,
        "baselines": {"empty_mask": {"miou": empty[0], "f_score": empty[1]},
                      "full_frame_mask": {"miou": full[0], "f_score": full[1]}},
    }  # fmt: skip


def row(frame, method):
    (index,) = frame.index[frame["Method"] == method]
    return frame.loc[index]


def test_published_table5_matches_the_paper():
    values = {r.method: list(r.values.values()) for r in PAPER_TABLE5}
    assert values["Crab (ViT-L/14)"] == [None, 58.21, 26.59, 40.54, 45.55, 0.01]
    assert values["AVSegFormer (PVT-v2)"] == [None, 58.40, 24.90, 33.47, 36.05, 0.17]
    assert values["TPAVI (PVT-v2)"] == [None, 54.00, 29.80, None, None, None]
    assert all(v[0] is None for v in values.values())  # the printed table has no S4 column
    assert len(values) == 6 and all("Table 5" in r.source for r in PAPER_TABLE5)


def test_table5_puts_our_miou_and_every_baseline_beside_the_paper():
    frame = table5({"s4": mask_metrics("s4", 0.412, 0.5), "ms3": mask_metrics("ms3", 0.421, 0.548), "ave": {}})
    assert list(frame.columns) == ["Method", "Kind", "Evaluated on", "Source", *TABLE5_COLUMNS]
    assert list(frame["Kind"]) == ["published"] * 6 + ["ours"] + ["trivial baseline"] * 4
    ours = row(frame, "Crab (ours)")
    assert [ours["S4"], ours["MS3"]] == pytest.approx([41.2, 42.1])
    assert all(math.isnan(ours[c]) for c in TABLE5_COLUMNS[2:])  # AVSS, Ref-AVS: not evaluated
    assert ours["Evaluated on"] == "AV-Synth S4 test (synthetic); AV-Synth MS3 test (synthetic)"
    baselines = frame[frame["Kind"] == "trivial baseline"]
    assert list(baselines["Method"]) == ["empty_mask", "full_frame_mask"] * 2
    assert (
        baselines["S4"].tolist()[:2] == pytest.approx([10.0, 20.0])
        and baselines["S4"].isna().tolist()[2:] == [True] * 2
    )
    assert list(baselines["Source"]) == ["metrics/s4.json"] * 2 + ["metrics/ms3.json"] * 2
    assert list(table5({})["Kind"]) == ["published"] * 6


def test_segmentation_table_lists_scores_object_accuracy_and_parse_failures():
    frame = segmentation_table({"ms3": mask_metrics("ms3", 0.4, 0.5), "s4": mask_metrics("s4", 0.3, 0.35)})
    assert list(frame["Task"]) == ["s4"] * 3 + ["ms3"] * 3  # Table 5's order
    ours = frame.iloc[0]
    assert [ours["mIoU"], ours["F-score"], ours["Object accuracy"], ours["Parse failures (%)"]] == pytest.approx(
        [30.0, 35.0, 50.0, 10.0]
    )
    empty = frame.iloc[1]
    assert empty["Method"] == "empty_mask" and empty["mIoU"] == pytest.approx(10.0)
    assert math.isnan(empty["Object accuracy"]) and math.isnan(empty["Parse failures (%)"])


def _write_item(root, name, iou):
    """A 2-frame folder, its ground truth (left half) and a prediction whose IoU is ``iou``-like; a predictions row."""
    frames = root / "frames" / name
    for index in (1, 2):
        frames.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 40 * index, np.uint8)).save(frames / f"{name}_{index}.png")
    truth = np.zeros((8, 8), bool)
    truth[:, :4] = True
    write_binary_mask(root / "gt" / f"{name}.png", truth)
    predicted = np.zeros((8, 8), bool)
    predicted[:, : round(8 * iou)] = True
    write_binary_mask(root / "predictions" / "s4_masks" / f"{name}.png", predicted)
    return {"id": f"s4/test/{name}", "correct": iou, "parsed": {"objects": ["dog"]} if iou else None,
            "label": {"frame": 1, "mask": str(root / "gt" / f"{name}.png"), "objects": ["dog"]},
            "media": {"video": str(frames)}, "mask": f"s4_masks/{name}.png"}  # fmt: skip


def test_mask_examples_spread_over_the_iou_range_and_read_every_image(tmp_path):
    rows = [_write_item(tmp_path, f"v{i}_{i + 1}", iou) for i, iou in enumerate([0.5, 0.0, 0.25, 0.125, 0.375])]
    examples = mask_examples(rows, tmp_path / "predictions", 3)
    assert [e.iou for e in examples] == [0.0, 0.25, 0.5]  # worst, middle, best
    worst, middle = examples[0], examples[1]
    assert worst.answer == "no answer" and middle.answer == "dog"
    assert middle.frame.shape == (8, 8, 3) and int(middle.frame[0, 0, 0]) == 80  # frame index 1: the 2nd file
    assert middle.truth[:, :4].all() and not middle.truth[:, 4:].any()
    assert middle.prediction[:, :2].all() and not middle.prediction[:, 2:].any()
    assert len(mask_examples(rows, tmp_path / "predictions", 10)) == 5 and mask_examples([], tmp_path, 3) == []
    fig = mask_figure(examples)
    assert len(fig.axes) == 9 and fig.axes[5].get_title() == "ours: IoU 0.25 (dog)"
    (tmp_path / "predictions" / "s4_masks" / "v2_3.png").unlink()
    with pytest.raises(DataError, match="v2_3.png"):
        mask_examples(rows, tmp_path / "predictions", 5)


def test_report_segmentation_does_not_import_torch():
    code = "import sys, crab.report_segmentation; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_box_examples_read_the_frame_at_224_and_both_boxes(tmp_path) -> None:
    frame = np.zeros((60, 80, 3), np.uint8)
    frame[:, 40:] = 200  # right half bright: after the resize to 224, columns 112.. are bright
    Image.fromarray(frame).save(tmp_path / "f.png")
    rows = [
        {"id": f"arig/test/v{i}_1", "correct": c, "media": {"image": str(tmp_path / "f.png"), "audio": "a.wav"},
         "label": {"x0": 10, "y0": 20, "x1": 60, "y1": 90, "object": "dog_barking", "frame": 0, "mask": "m.png"},
         "parsed": None if c == 0 else {"x0": 10, "y0": 20, "x1": 35, "y1": 90}}
        for i, c in enumerate([0.5, 0.0, 0.25])
    ]  # fmt: skip
    examples = box_examples(rows, 2)
    assert [e.ciou for e in examples] == [0.0, 0.5] and examples[0].prediction is None
    assert examples[1].truth == (10, 20, 60, 90) and examples[1].prediction == (10, 20, 35, 90)
    assert (
        examples[1].frame.shape == (224, 224, 3)
        and examples[1].frame[0, 0, 0] == 0
        and examples[1].frame[0, 223, 0] == 200
    )
    fig = box_figure(examples)
    assert [ax.get_title() for ax in fig.axes] == ["v1_1: no box", "v0_1: cIoU 0.50"]
    assert [len(ax.patches) for ax in fig.axes] == [1, 2]  # ground truth only where nothing parsed
    assert box_examples([], 3) == []


def ref_avs_metrics(seen=(0.3, 0.4), unseen=(0.2, 0.25), null_s=0.3):
    def scores(s, u, n):
        return {"seen_miou": s[0], "seen_f_score": s[1], "unseen_miou": u[0], "unseen_f_score": u[1], "null_s": n}

    return {
        "task": "ref_avs", "split": "test", "dataset": "AV-Synth", "num_samples": 30, "num_seen": 1, "num_unseen": 1,
        "num_null": 1, **scores(seen, unseen, null_s), "object_accuracy": 0.25, "parse_failure_rate": 0.0,
        "baselines": {"empty_mask": scores((0.05, 0.1), (0.06, 0.11), 0.0),
                      "full_frame_mask": scores((0.15, 0.2), (0.16, 0.21), 1.0)},
    }  # fmt: skip


def test_table5_fills_the_ref_avs_columns_null_s_as_a_fraction():
    frame = table5({"ref_avs": ref_avs_metrics(), "s4": mask_metrics("s4", 0.412, 0.5)})
    ours = row(frame, "Crab (ours)")
    assert ours[["S4", "Ref-AVS Seen", "Ref-AVS Unseen", "Ref-AVS Null (S, lower)"]].tolist() == pytest.approx(
        [41.2, 30.0, 20.0, 0.3]
    )
    assert math.isnan(ours["MS3"]) and math.isnan(ours["AVSS"])
    full = frame[(frame["Method"] == "full_frame_mask") & (frame["Source"] == "metrics/ref_avs.json")].iloc[0]
    assert full[["Ref-AVS Seen", "Ref-AVS Null (S, lower)"]].tolist() == pytest.approx([15.0, 1.0])
    no_null = ref_avs_metrics()
    del no_null["null_s"]
    assert math.isnan(row(table5({"ref_avs": no_null}), "Crab (ours)")["Ref-AVS Null (S, lower)"])


def test_segmentation_table_has_a_row_per_ref_avs_subset():
    frame = segmentation_table({"ref_avs": ref_avs_metrics()})
    assert list(frame["Task"]) == ["ref_avs/seen", "ref_avs/unseen", "ref_avs/null"] * 3
    ours = frame[frame["Method"] == "Crab (ours)"]
    assert ours["mIoU"].tolist()[:2] == pytest.approx([30.0, 20.0]) and math.isnan(ours["mIoU"].tolist()[2])
    assert ours["Null S (lower)"].tolist()[2] == pytest.approx(0.3) and math.isnan(ours["Null S (lower)"].tolist()[0])
    assert ours["Object accuracy"].tolist() == pytest.approx([25.0] * 3)


def test_table5_and_mask_table_have_the_avss_column():
    avss = mask_metrics("avss", 0.25, 0.3)
    avss["baselines"] = {"all_background": {"miou": 0.45, "f_score": 0.46},
                         "frequent_class_full_frame": {"miou": 0.05, "f_score": 0.06}}  # fmt: skip
    frame = table5({"avss": avss, "ms3": mask_metrics("ms3", 0.421, 0.548)})
    assert row(frame, "Crab (ours)")[["MS3", "AVSS"]].tolist() == pytest.approx([42.1, 25.0])
    assert row(frame, "all_background")["AVSS"] == pytest.approx(45.0)
    table = segmentation_table({"avss": avss, "ms3": mask_metrics("ms3", 0.4, 0.5)})
    assert list(table["Task"]) == ["ms3"] * 3 + ["avss"] * 3  # Table 5's order
