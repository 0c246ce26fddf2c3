"""Report tables from hand-made metrics dicts: layout, values, published numbers and dataset labels."""

import json
import math

import pandas as pd
import pytest

from crab.errors import DataError
from crab.report_tables import (
    PAPER_TABLE1,
    PAPER_TABLE2_AVE,
    PAPER_TABLE3_AVQA,
    avqa_table,
    avqa_type_table,
    ave_table,
    best_baseline,
    comparability_note,
    dataset_label,
    example_predictions,
    load_training_curves,
    parse_failure_table,
    read_metrics,
    read_predictions,
    table1,
    to_html,
)

PREFIX = "This is a video:\n<video_start><video><video_end>\nThis is an audio:\n<audio_start><audio><audio_end>\n"


def ave_metrics(dataset="AV-Synth"):
    return {
        "task": "ave", "split": "test", "dataset": dataset, "num_samples": 80, "accuracy": 0.6125,
        "parse_failure_rate": 0.05, "generation": {"max_new_tokens": 160, "seconds": 4.0, "tokens_per_s": 250.0},
        "baselines": {"all_background": {"accuracy": 0.25}, "majority": {"accuracy": 0.1},
                      "segment_majority": {"accuracy": 0.3375}, "chance": {"accuracy": 0.0345}},
    }  # fmt: skip


def avqa_result(accuracy, audio, visual, av, per_type):
    return {"accuracy": accuracy, "accuracy_per_group": {"Audio": audio, "Visual": visual, "Audio-Visual": av},
            "accuracy_per_type": per_type}  # fmt: skip


def avqa_metrics(dataset="AV-Synth"):
    return {
        "task": "avqa", "split": "test", "dataset": dataset, "num_samples": 30, "parse_failure_rate": 0.1,
        **avqa_result(0.5, 0.6, 0.4, None, {"Audio/Counting": 0.6, "Visual/Location": 0.4}),
        "num_questions_per_type": {"Audio/Counting": 10, "Visual/Location": 20},
        "baselines": {"type_majority": avqa_result(0.45, 0.5, 0.3, None, {"Audio/Counting": 0.5, "Visual/Location": 0.3}),
                      "chance": avqa_result(0.1, 0.2, 0.05, None, {"Audio/Counting": 0.2})},
    }  # fmt: skip


def row(frame, method):
    (index,) = frame.index[frame["Method"] == method]
    return frame.loc[index]


def test_published_numbers_match_the_paper_tables():
    t1 = {r.method: r.values for r in PAPER_TABLE1}
    assert t1["Crab"] == {"AVE Acc": 80.15, "AVQA Acc": 78.94}
    assert t1["VALOR"] == {"AVE Acc": None, "AVQA Acc": 78.90}
    assert {r.method: r.values["AVE Acc"] for r in PAPER_TABLE2_AVE} == {
        "AVT": 75.80, "PSP": 77.80, "MM-Pyramid": 77.80, "MPN": 77.60, "Crab": 80.15, "DG-SCT": 82.18
    }  # fmt: skip
    t3 = {r.method: r.values for r in PAPER_TABLE3_AVQA}
    assert list(t3) == ["ST-AVQA", "COCA", "PSTP-Net", "LAVISH", "TSPM", "Crab"]
    assert t3["Crab"] == {"Audio": 76.58, "Visual": 90.73, "Audio-Visual": 74.13, "Avg": 78.94}
    assert t3["TSPM"] == {"Audio": 76.91, "Visual": 83.61, "Audio-Visual": 73.51, "Avg": 76.79}
    assert all("Table 1" in r.source for r in PAPER_TABLE1)
    assert all("Table 3" in r.source and r.evaluated_on == "MUSIC-AVQA test (real)" for r in PAPER_TABLE3_AVQA)
    assert [r.source for r in PAPER_TABLE2_AVE if r.method == "DG-SCT"] == ["DG-SCT (Duan et al., NeurIPS 2023)"]


def test_table1_puts_ours_and_best_baseline_beside_the_paper():
    frame = table1({"ave": ave_metrics(), "avqa": avqa_metrics()})
    assert list(frame.columns) == ["Method", "Kind", "Evaluated on", "Source", "AVE Acc", "AVQA Acc"]
    assert list(frame["Kind"]) == ["published"] * 3 + ["ours", "trivial baseline"]
    crab = row(frame, "Crab")
    assert (crab["AVE Acc"], crab["AVQA Acc"], crab["Evaluated on"]) == (80.15, 78.94, "real benchmarks")
    ours = row(frame, "Crab (ours)")
    assert ours["AVE Acc"] == pytest.approx(61.25) and ours["AVQA Acc"] == pytest.approx(50.0)
    assert ours["Evaluated on"] == "AV-Synth AVE test (synthetic); AV-Synth AVQA test (synthetic)"
    best = frame.iloc[-1]
    assert best["Method"] == "Best trivial baseline (ave: segment_majority, avqa: type_majority)"
    assert (best["AVE Acc"], best["AVQA Acc"]) == pytest.approx((33.75, 45.0))
    assert math.isnan(row(frame, "VALOR")["AVE Acc"])


def test_table1_with_one_task_leaves_the_other_column_empty():
    frame = table1({"ave": ave_metrics(dataset="real")})
    ours = row(frame, "Crab (ours)")
    assert ours["Evaluated on"] == "AVE test (real)" and math.isnan(ours["AVQA Acc"])


def test_ave_table_rows_and_labels():
    frame = ave_table(ave_metrics())
    assert list(frame.columns) == ["Method", "Kind", "Evaluated on", "Source", "AVE Acc"]
    assert list(frame["Method"][-5:]) == ["Crab (ours)", "all_background", "chance", "majority", "segment_majority"]
    assert row(frame, "segment_majority")["AVE Acc"] == pytest.approx(33.75)
    assert row(frame, "DG-SCT")["Evaluated on"] == "AVE test (real)"
    assert set(frame["Evaluated on"][frame["Kind"] != "published"]) == {"AV-Synth AVE test (synthetic)"}


def test_avqa_table_groups_and_missing_group():
    frame = avqa_table(avqa_metrics())
    assert list(frame.columns) == ["Method", "Kind", "Evaluated on", "Source", "Audio", "Visual", "Audio-Visual", "Avg"]
    ours = row(frame, "Crab (ours)")
    assert (ours["Audio"], ours["Visual"], ours["Avg"]) == pytest.approx((60.0, 40.0, 50.0))
    assert math.isnan(ours["Audio-Visual"])
    assert row(frame, "Crab")["Visual"] == 90.73
    assert list(frame["Method"][-3:]) == ["Crab (ours)", "chance", "type_majority"]


def test_avqa_type_table():
    frame = avqa_type_table(avqa_metrics())
    assert list(frame.columns) == ["Question type", "Questions", "Crab (ours)", "chance", "type_majority"]
    assert list(frame["Question type"]) == ["Audio/Counting", "Visual/Location"]
    assert list(frame["Questions"]) == [10, 20]
    assert list(frame["type_majority"]) == pytest.approx([50.0, 30.0])
    assert frame["chance"][0] == pytest.approx(20.0) and math.isnan(frame["chance"][1])


def test_parse_failure_table():
    frame = parse_failure_table({"avqa": avqa_metrics(), "ave": ave_metrics()})
    assert list(frame["Task"]) == ["ave", "avqa"]
    ave = frame[frame["Task"] == "ave"].iloc[0]
    assert (ave["Samples"], ave["Parse failures (%)"], ave["Tokens/s"]) == (80, pytest.approx(5.0), 250.0)
    assert math.isnan(frame[frame["Task"] == "avqa"].iloc[0]["Tokens/s"])


def test_best_baseline_breaks_ties_by_name():
    metrics = {"task": "ave", "baselines": {"b": {"accuracy": 0.3}, "a": {"accuracy": 0.3}, "c": {"accuracy": 0.1}}}
    assert best_baseline(metrics)[0] == "a"


def test_dataset_labels_and_comparability_note():
    assert dataset_label(avqa_metrics()) == "AV-Synth AVQA test (synthetic)"
    assert dataset_label({**avqa_metrics("real"), "split": "val"}) == "MUSIC-AVQA val (real)"
    note = comparability_note({"ave": ave_metrics(), "avqa": avqa_metrics("real")})
    assert "ave numbers are measured on AV-Synth" in note and "NOT comparable" in note
    assert "avqa numbers are measured on the real benchmarks' test split" in note


def test_read_metrics_checks_required_keys(tmp_path):
    path = tmp_path / "avqa.json"
    metrics = avqa_metrics()
    del metrics["accuracy_per_group"]
    path.write_text(json.dumps(metrics))
    with pytest.raises(DataError, match="avqa.json: missing key 'accuracy_per_group'"):
        read_metrics(path)
    with pytest.raises(DataError, match="file not found"):
        read_metrics(tmp_path / "ave.json")


def test_read_predictions_names_the_bad_line(tmp_path):
    path = tmp_path / "ave.jsonl"
    path.write_text('{"id": "a"}\n\n{broken\n')
    with pytest.raises(DataError, match=r"ave.jsonl:3: not valid JSON"):
        read_predictions(path)


def test_load_training_curves_reads_dvclive_tsvs(tmp_path):
    metrics = tmp_path / "pretrain" / "dvclive" / "plots" / "metrics"
    (metrics / "train").mkdir(parents=True)
    (metrics / "train" / "loss.tsv").write_text("step\tloss\n0\t2.5\n10\t1.5\n")
    (metrics / "lr.tsv").write_text("timestamp\tstep\tlr\n1\t0\t0.001\n")
    (tmp_path / "pretrain" / "other.tsv").write_text("a\tb\n1\t2\n")  # not a dvclive metric: ignored
    curves = load_training_curves({"pretrain": tmp_path / "pretrain", "finetune": tmp_path / "missing"})
    assert list(curves.columns) == ["stage", "metric", "step", "value"]
    assert curves.values.tolist() == [["pretrain", "lr", 0, 0.001], ["pretrain", "train/loss", 0, 2.5],
                                      ["pretrain", "train/loss", 10, 1.5]]  # fmt: skip
    empty = load_training_curves({"finetune": tmp_path / "missing"})
    assert empty.empty
    assert empty[empty["metric"].str.endswith("loss")].empty  # the report's filter works on an empty table
    # The train stages' layout: the run's dvclive folder itself (models/<stage>_log, crab.train.loop).
    log_dir = tmp_path / "finetune_log" / "plots" / "metrics" / "train"
    log_dir.mkdir(parents=True)
    (log_dir / "grad_norm.tsv").write_text("step\tgrad_norm\n1\t0.5\n")
    curves = load_training_curves({"finetune": tmp_path / "finetune_log"})
    assert curves.values.tolist() == [["finetune", "train/grad_norm", 1, 0.5]]


def test_example_predictions_alternate_and_mark_results():
    def rec(i, correct, parsed=True):
        return {"id": f"x/{i}", "instruction": PREFIX + f"Question {i}?", "target": "t", "prediction": f"p{i}",
                "parsed": {"answer": "a"} if parsed else None, "correct": correct}  # fmt: skip

    records = [rec(4, 0.7), rec(1, True), rec(2, 1.0), rec(3, False), rec(5, False, parsed=False)]
    frame = example_predictions(records, 4)
    assert list(frame.columns) == ["id", "Instruction", "Target", "Prediction", "Result"]
    assert list(frame["id"]) == ["x/1", "x/3", "x/2", "x/4"]
    assert list(frame["Result"]) == ["✓ correct", "✗ incorrect", "✓ correct", "◐ partly correct (70%)"]
    assert frame["Instruction"][0] == "Question 1?"
    assert example_predictions(records, 10)["Result"].tolist()[-1] == "✗ parse failure"


def test_to_html_escapes_tags_and_formats_numbers():
    frame = pd.DataFrame({"Prediction": ["So <answer> yes </answer>"], "Acc": [61.254], "Other": [float("nan")]})
    html = to_html(frame)
    assert "&lt;answer&gt; yes &lt;/answer&gt;" in html and "<answer>" not in html
    assert "61.25" in html and "61.254" not in html and "–" in html
