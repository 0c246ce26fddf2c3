"""The ``report`` stage on a complete fake set of stage outputs (evaluation outputs contract).

Runs the real notebooks through papermill on the ``python3`` kernel and checks the ipynb + HTML outputs:
our numbers and the paper's are in the HTML, no code input is, and optional inputs that are missing
(the finetune curves here) are reported as "not available" instead of failing.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from crab.config import Params
from crab.datasets.media import write_binary_mask, write_class_mask
from crab.errors import CrabError, DataError
from crab.eval.metrics_avqa import AVQA_TYPE_KEYS
from crab.report import report

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VIDEO = "This is a video:\n<video_start><video><video_end>\nThis is an audio:\n<audio_start><audio><audio_end>\n"


def _write(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True), encoding="utf-8")


def _avqa_result(accuracy: float, group: float, per_type: float) -> dict:
    return {
        "accuracy": accuracy,
        "accuracy_per_group": {"Audio": group, "Visual": group + 0.1, "Audio-Visual": group - 0.1},
        "accuracy_per_type": dict.fromkeys(AVQA_TYPE_KEYS, per_type),
    }


def write_fake_outputs(root: Path) -> None:
    """Every input of the report stage, in the shapes of the contract; no finetune dvclive logs."""
    generation = {"max_new_tokens": 160, "seconds": 12.5, "tokens_per_s": 321.0}
    _write(root / "metrics/ave.json", {
        "task": "ave", "split": "test", "dataset": "AV-Synth", "num_samples": 80, "accuracy": 0.6125,
        "parse_failure_rate": 0.0375, "generation": generation,
        "baselines": {"all_background": {"accuracy": 0.25}, "majority": {"accuracy": 0.1},
                      "segment_majority": {"accuracy": 0.3375}, "chance": {"accuracy": 0.0345}},
    })  # fmt: skip
    _write(root / "metrics/avqa.json", {
        "task": "avqa", "split": "test", "dataset": "AV-Synth", "num_samples": 240, "parse_failure_rate": 0.0125,
        "generation": generation, **_avqa_result(0.5432, 0.5, 0.55),
        "baselines": {"type_majority": _avqa_result(0.4167, 0.4, 0.41), "majority": _avqa_result(0.2, 0.2, 0.2),
                      "chance": _avqa_result(0.1, 0.1, 0.1)},
    })  # fmt: skip
    f_keys = [f"{level}_{score}" for level in ("segment", "event")
              for score in ("audio", "visual", "audio_visual", "type_av", "event_av")]  # fmt: skip
    _write(root / "metrics/avvp.json", {
        "task": "avvp", "split": "test", "dataset": "AV-Synth", "num_samples": 30, "parse_failure_rate": 0.0,
        "generation": generation, **dict.fromkeys(f_keys, 0.5678),
        "baselines": {"empty": dict.fromkeys(f_keys, 0.0), "prior_classes": dict.fromkeys(f_keys, 0.2468),
                      "segment_prior": dict.fromkeys(f_keys, 0.2)},
    })  # fmt: skip
    ave_preds = [
        {"id": f"ave/test/clip{i}", "task": "ave", "video_id": f"clip{i}", "instruction": VIDEO + "Describe the events.",
         "target": "So the event is <event> Accordion </event>, <range> 0,10 </range>.",
         "prediction": f"The accordion plays. So the event is <event> Accordion </event>, <range> {i},10 </range>.",
         "parsed": {"event": "Accordion", "start": i, "end": 10}, "label": {"event": "Accordion", "start": 0, "end": 10},
         "correct": (10 - i) / 10}
        for i in range(4)
    ]  # fmt: skip
    avqa_preds = [
        {"id": f"avqa/test/{i}", "task": "avqa", "video_id": str(i), "instruction": VIDEO + f"Question {i}?",
         "target": "So the answer is <answer> yes </answer>.", "prediction": "So the answer is <answer> no </answer>."
         if i % 2 else "So the answer is <answer> yes </answer>.", "parsed": {"answer": "no" if i % 2 else "yes"},
         "label": {"answer": "yes"}, "correct": not i % 2}
        for i in range(6)
    ]  # fmt: skip
    for task, preds in (("ave", ave_preds), ("avqa", avqa_preds)):
        path = root / f"predictions/{task}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(p) + "\n" for p in preds), encoding="utf-8")
    tsv = root / "models/pretrain_log/plots/metrics/train/loss.tsv"
    tsv.parent.mkdir(parents=True, exist_ok=True)
    tsv.write_text("step\tloss\n" + "".join(f"{s}\t{5.0 / (s + 1)}\n" for s in range(20)), encoding="utf-8")
    (tsv.parent / "lr.tsv").write_text("step\tlr\n" + "".join(f"{s}\t0.001\n" for s in range(20)), encoding="utf-8")
    split = {"num_records": 4, "num_excluded": 0, "num_with_reasoning": 4, "avg_target_words": 50.0}
    majority = {"Audio/Counting": {"answer": "two", "rate": 0.4567, "num_questions": 20}}
    _write(root / "data/avuie/stats.json", {"seed": 0, "use_reasoning": True, "tasks": {
        "ave": {"dataset": "ave", "num_read": 12, "num_rejected_by_reader": 0, "num_excluded": 1, "num_duplicates": 0,
                "duplicates": [], "targets": {"scene": 12}, "splits": {"train": split, "test": split}},
        "avqa": {"dataset": "music_avqa", "num_read": 8, "num_rejected_by_reader": 0, "num_excluded": 0,
                 "num_duplicates": 0, "duplicates": [], "targets": {"scene": 8},
                 "splits": {"test": {**split, "majority_answer": majority}}},
    }})  # fmt: skip
    failed_check = {
        "expectation": "expect_column_values_to_be_in_set",
        "column": "category",
        "success": False,
        "unexpected_count": 1,
        "severity": "critical",
        "reason": "unknown category {category!r}",
    }
    _write(root / "reports/validation/raw.json", {"stage": "validate_raw", "max_failure_rate": 0.05, "datasets": {
        "ave": {"root": "data/raw/ave", "present": True, "num_items": 13, "num_passed": 12, "num_quarantined": 1,
                "failure_rate": 1 / 13, "expectations": [failed_check],
                "quarantined": [{"item_id": "x", "split": "train", "source": "data/raw/ave/trainSet.txt:3",
                                 "reasons": ["unknown category 'Dog'"]}]},
    }})  # fmt: skip
    # reports/validation/avuie.json is left out: the data notebook must say "not available".
    box = {"ciou": 0.0111, "auc": 0.0789, "mean_ciou": 0.05}
    _write(root / "metrics/arig.json", {
        "task": "arig", "split": "test", "dataset": "AV-Synth", "num_samples": 20, "ciou": 0.1234, "auc": 0.2468,
        "mean_ciou": 0.3, "parse_failure_rate": 0.05, "generation": generation,
        "baselines": {"centre_box": box, "full_frame": {**box, "ciou": 0.0}, "prior_box": {**box, "ciou": 0.0555}},
    })  # fmt: skip
    for task, (miou, f_score) in (("s4", (0.4123, 0.5012)), ("ms3", (0.4321, 0.5487))):
        _write_mask_outputs(root, task, {"num_videos": 2, "miou": miou, "f_score": f_score},
                            {"empty_mask": {"miou": 0.1111, "f_score": 0.0555},
                             "full_frame_mask": {"miou": 0.2222, "f_score": 0.3333}})  # fmt: skip
    subsets = {"seen_miou": 0.3456, "seen_f_score": 0.4567, "unseen_miou": 0.2678, "unseen_f_score": 0.3789,
               "null_s": 0.1234}  # fmt: skip
    _write_mask_outputs(root, "ref_avs", {"num_seen": 1, "num_unseen": 1, "num_null": 1, **subsets},
                        {"empty_mask": {**subsets, "seen_miou": 0.0375, "null_s": 0.0},
                         "full_frame_mask": {**subsets, "seen_miou": 0.0341, "null_s": 1.0}})  # fmt: skip
    classes = {"miou": 0.2345, "f_score": 0.2456, "miou_no_background": 0.1357, "f_score_no_background": 0.1468}
    _write_mask_outputs(
        root,
        "avss",
        {"num_videos": 2, **classes},
        {"all_background": {**classes, "miou": 0.0562}, "frequent_class_full_frame": classes},
    )
    frame = root / "data/raw/arig/v_1.png"
    frame.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((30, 40, 3), 120, np.uint8)).save(frame)
    arig_rows = [{"id": f"arig/test/v{i}_1", "task": "arig", "video_id": f"v{i}", "instruction": "Locate.",
                  "target": "<obj>(1,2)(30,40)</obj>", "prediction": "<obj>(1,2)(20,40)</obj>" if i else "none",
                  "parsed": {"x0": 1, "y0": 2, "x1": 20, "y1": 40} if i else None, "correct": 0.65 * i,
                  "label": {"x0": 1, "y0": 2, "x1": 30, "y1": 40, "object": "dog_barking", "frame": 0, "mask": "m"},
                  "media": {"image": str(frame.relative_to(root)), "audio": "a.wav"}} for i in range(2)]  # fmt: skip
    (root / "predictions/arig.jsonl").write_text("".join(json.dumps(r) + "\n" for r in arig_rows), encoding="utf-8")


def _write_mask_outputs(root: Path, task: str, scores: dict, baselines: dict) -> None:
    """``evaluate_avs`` / ``evaluate_avss``'s outputs for a mask task: metrics (``scores`` and ``baselines``), 3
    predictions, their frames, truths and masks (8x8; AVSS class-index maps)."""
    _write(root / f"metrics/{task}.json", {
        "task": task, "split": "test", "dataset": "AV-Synth", "num_samples": 3, **scores, "object_accuracy": 0.3333,
        "parse_failure_rate": 0.0, "generation": {"max_new_tokens": 160, "seconds": 3.0, "tokens_per_s": 99.0},
        "baselines": baselines,
    })  # fmt: skip
    rows = []
    for video, frame in (("a", 0), ("a", 1), ("b", 0)):
        frames = root / f"data/raw/{task}/frames/{video}"
        frames.mkdir(parents=True, exist_ok=True)
        for index in (1, 2):
            Image.fromarray(np.full((8, 8, 3), 90 * index, np.uint8)).save(frames / f"{video}_{index}.png")
        truth, predicted = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
        truth[2:6, 2:6], predicted[3:7, 3:7] = True, True
        name = f"{video}_{frame + 1}"
        if task == "avss":  # class-index maps (28 = guitar), read as sounding / not by the figure
            write_class_mask(root / f"data/raw/{task}/masks/{name}.png", truth.astype(np.int64) * 28)
            write_class_mask(root / f"predictions/{task}_masks/{name}.png", predicted.astype(np.int64) * 28)
        else:
            write_binary_mask(root / f"data/raw/{task}/masks/{name}.png", truth)
            write_binary_mask(root / f"predictions/{task}_masks/{name}.png", predicted)
        rows.append({"id": f"{task}/test/{name}", "task": task, "video_id": video, "instruction": VIDEO + "Segment.",
                     "target": "So the object is <object> dog </object>.", "prediction": "<object> dog </object>",
                     "parsed": {"objects": ["dog"]}, "correct": 9 / 23, "mask": f"{task}_masks/{name}.png",
                     "label": {"frame": frame, "mask": f"data/raw/{task}/masks/{name}.png", "objects": ["dog"]},
                     "media": {"video": f"data/raw/{task}/frames/{video}", "audio": f"{video}.wav"}})  # fmt: skip
    (root / f"predictions/{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    write_fake_outputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_report_writes_notebooks_and_offline_html(tiny_params: Params, workdir: Path) -> None:
    result = report(tiny_params)

    assert set(result.html) == {"results", "data"}
    results_html = (workdir / "reports/results.html").read_text(encoding="utf-8")
    for number in ("61.25", "54.32", "33.75", "41.67", "80.15", "78.94", "90.73", "82.18"):
        assert number in results_html, number
    assert "AV-Synth AVE test (synthetic)" in results_html and "MUSIC-AVQA test (real)" in results_html
    for number in ("56.78", "24.68", "59.00", "54.44", "60.32", "51.28"):  # AVVP: ours, best baseline, published
        assert number in results_html, number
    assert "AV-Synth AVVP test (synthetic)" in results_html and "LLP test (real)" in results_html
    assert "NOT comparable" in results_html
    for number in ("41.23", "43.21", "54.87", "22.22", "58.21", "45.55", "55.60", "66.24"):  # S4 / MS3, Tables 1, 5
        assert number in results_html, number
    for number in ("12.34", "0.25", "5.55", "41.78", "44.02"):  # ARIG: ours (cIoU %, AUC), best baseline, published
        assert number in results_html, number
    for number in ("34.56", "0.46", "26.78", "0.12", "3.75", "40.54"):  # Ref-AVS: Tables 1, 5 and per subset
        assert number in results_html, number
    for number in ("23.45", "24.56", "5.62", "26.59"):  # AVSS: ours, all_background, Crab's published mIoU
        assert number in results_html, number
    assert "AV-Synth MS3 test (synthetic)" in results_html and "AVSBench / Ref-AVS test (real)" in results_html
    assert results_html.count("data:image/png;base64,") >= 4  # curves, S4 and MS3 masks, ARIG boxes (+ router)
    assert "finetune training curves: not available" in results_html
    assert "finetune_avs training curves: not available" in results_html
    assert "pretrain training curves: not available" not in results_html
    assert "data:image/png;base64," in results_html
    assert "&lt;answer&gt; no &lt;/answer&gt;" in results_html  # tags escaped, reasoning shown
    assert "✗ incorrect" in results_html and "✓ correct" in results_html
    data_html = (workdir / "reports/data.html").read_text(encoding="utf-8")
    assert "reports/validation/avuie.json: not available" in data_html
    assert "unknown category &#x27;Dog&#x27;" in data_html or "unknown category 'Dog'" in data_html
    assert "45.67" in data_html
    for html in (results_html, data_html):
        assert "rt.table1" not in html and "import matplotlib" not in html and "papermill overrides" not in html
        assert 'class="jp-Cell jp-CodeCell' in html
        assert not re.search(r'class="jp-Cell jp-CodeCell(?![^"]*jp-mod-noInput)', html)  # every code input hidden
        assert "cdnjs" not in html and "<script src=" not in html
    executed = nbformat.read(workdir / "reports/results.ipynb", as_version=4)
    assert executed.metadata.papermill.parameters["tasks"] == [
        "ave", "avvp", "avqa", "arig", "s4", "ms3", "ref_avs", "avss"
    ]  # fmt: skip
    assert executed.metadata.kernelspec.name == "python3"
    assert sorted(p.name for p in (workdir / "reports").iterdir()) == [
        "data.html", "data.ipynb", "results.html", "results.ipynb", "validation"
    ]  # fmt: skip


def test_report_fails_without_metrics_of_an_evaluated_task(tiny_params: Params, workdir: Path) -> None:
    (workdir / "metrics/avqa.json").unlink()
    with pytest.raises(DataError, match=r"metrics/avqa.json: no metrics for evaluated task 'avqa'"):
        report(tiny_params)
    assert not (workdir / "reports/results.html").exists()


def test_report_keeps_the_failed_notebook(tiny_params: Params, workdir: Path) -> None:
    (workdir / "notebooks/data.ipynb").unlink()  # only results.ipynb reads predictions
    (workdir / "predictions/ave.jsonl").write_text("{not json\n", encoding="utf-8")
    with pytest.raises(CrabError, match=r"notebooks/results.ipynb: cell \d+ raised DataError"):
        report(tiny_params)
    assert (workdir / "reports/results.failed.ipynb").is_file()
    assert not (workdir / "reports/results.ipynb").exists()
    assert not [p for p in (workdir / "reports").iterdir() if p.name.startswith(".")]
