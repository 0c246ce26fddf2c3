"""Report tables from hand-made metrics dicts: layout, values, published numbers and dataset labels."""

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from crab.errors import DataError
from crab.eval.run import _RESULT_KEYS, EVALUATED_TASKS, HEADLINE_SCORES
from crab.eval.run_avs import _RESULT_KEYS as _MASK_RESULT_KEYS
from crab.tasks import TASKS, Task
from crab.report_tables import (
    _BASELINE_KEYS,
    _REQUIRED_KEYS,
    AVVP_KEYS,
    PAPER_TABLE1,
    PAPER_TABLE2,
    PAPER_TABLE3_AVQA,
    avqa_table,
    avqa_type_table,
    avvp_table,
    best_baseline,
    comparability_note,
    dataset_label,
    example_predictions,
    load_training_curves,
    parse_failure_table,
    read_metrics,
    read_predictions,
    table1,
    temporal_table,
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


SEGMENT = ("segment_audio", "segment_visual", "segment_audio_visual", "segment_type_av", "segment_event_av")
EVENT = ("event_audio", "event_visual", "event_audio_visual", "event_type_av", "event_event_av")


def avvp_result(segment, event):
    """The ten F values: (audio, visual, audio-visual, Type@AV, Event@AV) per level."""
    return {**dict(zip(SEGMENT, segment, strict=True)), **dict(zip(EVENT, event, strict=True))}


def avvp_metrics(dataset="AV-Synth"):
    # segment_prior leads at event level (0.15 > 0.125), prior_classes on the headline segment Event@AV.
    return {
        "task": "avvp", "split": "test", "dataset": dataset, "num_samples": 40, "parse_failure_rate": 0.025,
        **avvp_result((0.61, 0.52, 0.43, 0.52, 0.5625), (0.41, 0.32, 0.23, 0.32, 0.375)),
        "generation": {"max_new_tokens": 256, "seconds": 8.0, "tokens_per_s": 125.0},
        "baselines": {"segment_prior": avvp_result((0.3, 0.2, 0.1, 0.2, 0.2), (0.25, 0.15, 0.05, 0.15, 0.15)),
                      "empty": avvp_result((0.0, 0.5, 0.5, 1 / 3, 0.0), (0.0, 0.5, 0.5, 1 / 3, 0.0)),
                      "prior_classes": avvp_result((0.35, 0.25, 0.0, 0.2, 0.25), (0.2, 0.1, 0.0, 0.1, 0.125))},
    }  # fmt: skip


def row(frame, method):
    (index,) = frame.index[frame["Method"] == method]
    return frame.loc[index]


def test_published_numbers_match_the_paper_tables():
    t1 = {r.method: r.values for r in PAPER_TABLE1}
    assert list(t1) == ["TimeChat", "MEERKAT", "GroundingGPT", "X-InstructBLIP (zero-shot)", "VALOR", "AnyRef", "Crab"]
    assert all(list(values) == TABLE1_VALUES for values in t1.values())
    assert list(t1["Crab"].values()) == [
        80.15,
        59.00,
        54.44,
        41.78,
        0.42,
        78.94,
        58.21,
        66.24,
        26.52,
        32.10,
        40.54,
        0.58,
    ]
    assert {c: v for c, v in t1["VALOR"].items() if v is not None} == {"AVQA Acc": 78.90}
    assert {c: v for c, v in t1["TimeChat"].items() if v is not None} == {"AVVP Segment-level": 51.28}
    assert {c: v for c, v in t1["GroundingGPT"].items() if v is not None} == {"ARIG cIoU": 44.02, "ARIG AUC": 0.45}
    assert {c: v for c, v in t1["AnyRef"].items() if v is not None} == {"MS3 mIoU": 55.6, "MS3 F-score": 66.30}
    assert t1["MEERKAT"]["AVVP Segment-level"] == 54.96 and t1["MEERKAT"]["AVVP Event-level"] is None
    t2 = {r.method: tuple(r.values.values()) for r in PAPER_TABLE2}
    assert t2 == {
        "AVT": (75.80, None, None), "PSP": (77.80, None, None), "MM-Pyramid": (77.80, 59.20, 53.04),
        "CMBS": (None, 55.00, 48.48), "MPN": (77.60, None, None), "DHHN": (None, 60.32, 55.06),
        "Crab": (80.15, 59.00, 54.44), "DG-SCT": (82.18, None, None),
    }  # fmt: skip
    assert list(PAPER_TABLE2[0].values) == ["AVE Acc", "AVVP Segment-level", "AVVP Event-level"]
    assert {r.method: r.evaluated_on for r in PAPER_TABLE2 if r.method in ("AVT", "CMBS", "MM-Pyramid")} == {
        "AVT": "AVE test (real)", "CMBS": "LLP test (real)", "MM-Pyramid": "AVE test (real); LLP test (real)"
    }  # fmt: skip
    assert all("Table 2" in r.source for r in PAPER_TABLE2 if r.method != "DG-SCT")
    t3 = {r.method: r.values for r in PAPER_TABLE3_AVQA}
    assert list(t3) == ["ST-AVQA", "COCA", "PSTP-Net", "LAVISH", "TSPM", "Crab"]
    assert t3["Crab"] == {"Audio": 76.58, "Visual": 90.73, "Audio-Visual": 74.13, "Avg": 78.94}
    assert t3["TSPM"] == {"Audio": 76.91, "Visual": 83.61, "Audio-Visual": 73.51, "Avg": 76.79}
    assert all("Table 1" in r.source for r in PAPER_TABLE1)
    assert all("Table 3" in r.source and r.evaluated_on == "MUSIC-AVQA test (real)" for r in PAPER_TABLE3_AVQA)
    assert [r.source for r in PAPER_TABLE2 if r.method == "DG-SCT"] == ["DG-SCT (Duan et al., NeurIPS 2023)"]


TABLE1_VALUES = [
    "AVE Acc", "AVVP Segment-level", "AVVP Event-level", "ARIG cIoU", "ARIG AUC", "AVQA Acc", "MS3 mIoU",
    "MS3 F-score", "AVSS mIoU", "AVSS F-score", "Ref-AVS Seen mIoU", "Ref-AVS Seen F-score",
]  # fmt: skip
OURS_TABLE1 = ["AVE Acc", "AVVP Segment-level", "AVVP Event-level", "AVQA Acc", "MS3 mIoU", "MS3 F-score"]
ARIG_COLUMNS = ["ARIG cIoU", "ARIG AUC"]
NOT_EVALUATED = [c for c in TABLE1_VALUES if c not in OURS_TABLE1 + ARIG_COLUMNS]


def arig_metrics(dataset="AV-Synth"):
    return {
        "task": "arig", "split": "test", "dataset": dataset, "num_samples": 50, "ciou": 0.12, "auc": 0.2345,
        "mean_ciou": 0.2, "parse_failure_rate": 0.02,
        "baselines": {"centre_box": {"ciou": 0.08, "auc": 0.15, "mean_ciou": 0.12},
                      "full_frame": {"ciou": 0.0, "auc": 0.05, "mean_ciou": 0.06},
                      "prior_box": {"ciou": 0.1, "auc": 0.18, "mean_ciou": 0.14}},
    }  # fmt: skip


def ms3_metrics(dataset="AV-Synth"):
    return {
        "task": "ms3", "split": "test", "dataset": dataset, "num_samples": 100, "num_videos": 20, "miou": 0.421,
        "f_score": 0.548, "object_accuracy": 0.1, "parse_failure_rate": 0.02,
        "baselines": {"empty_mask": {"miou": 0.064, "f_score": 0.083}, "full_frame_mask": {"miou": 0.2, "f_score": 0.3}},
    }  # fmt: skip


TABLE2_VALUES = ["AVE Acc", "AVVP Segment-level", "AVVP Event-level"]


def test_table1_puts_ours_and_best_baseline_beside_the_paper():
    frame = table1(
        {
            "avqa": avqa_metrics(),
            "avvp": avvp_metrics(),
            "ave": ave_metrics(),
            "ms3": ms3_metrics(),
            "arig": arig_metrics(),
        }
    )
    assert list(frame.columns) == ["Method", "Kind", "Evaluated on", "Source", *TABLE1_VALUES]
    assert list(frame["Kind"]) == ["published"] * 7 + ["ours", "trivial baseline"]
    crab = row(frame, "Crab")
    assert crab[OURS_TABLE1].tolist() == [80.15, 59.00, 54.44, 78.94, 58.21, 66.24]
    assert crab["Evaluated on"] == "real benchmarks" and crab["ARIG AUC"] == 0.42  # a fraction, as printed
    ours = row(frame, "Crab (ours)")
    assert ours[OURS_TABLE1].tolist() == pytest.approx([61.25, 56.25, 37.5, 50.0, 42.1, 54.8])
    assert all(math.isnan(ours[c]) for c in NOT_EVALUATED)  # AVSS, Ref-AVS: not evaluated, never filled in
    assert ours[ARIG_COLUMNS].tolist() == pytest.approx([12.0, 0.2345])  # cIoU in percent, AUC a fraction as printed
    assert ours["Evaluated on"] == (
        "AV-Synth AVE test (synthetic); AV-Synth AVVP test (synthetic); AV-Synth ARIG test (synthetic); "
        "AV-Synth AVQA test (synthetic); AV-Synth MS3 test (synthetic)"
    )
    best = frame.iloc[-1]
    # AVVP's best by the headline segment Event@AV (prior_classes 25.0), not by event level (segment_prior 15.0).
    assert best["Method"] == (
        "Best trivial baseline (ave: segment_majority, avvp: prior_classes, arig: prior_box, avqa: type_majority, "
        "ms3: full_frame_mask)"
    )
    assert best[OURS_TABLE1].tolist() == pytest.approx([33.75, 25.0, 12.5, 45.0, 20.0, 30.0])
    assert best[ARIG_COLUMNS].tolist() == pytest.approx([10.0, 0.18])
    assert math.isnan(row(frame, "VALOR")["AVE Acc"]) and math.isnan(row(frame, "VALOR")["AVVP Segment-level"])
    timechat = row(frame, "TimeChat")
    assert timechat["AVVP Segment-level"] == 51.28 and math.isnan(timechat["AVVP Event-level"])


def test_table1_with_one_task_leaves_the_other_columns_empty():
    frame = table1({"ave": ave_metrics(dataset="real")})
    assert list(frame.columns)[4:] == TABLE1_VALUES
    ours, best = row(frame, "Crab (ours)"), frame.iloc[-1]
    assert ours["Evaluated on"] == "AVE test (real)" and ours["AVE Acc"] == pytest.approx(61.25)
    assert best["Method"] == "Best trivial baseline (ave: segment_majority)"
    for r in (ours, best):
        assert all(math.isnan(r[c]) for c in TABLE1_VALUES[1:])
    assert table1({"ms3": ms3_metrics()}).iloc[-1]["Method"] == "Best trivial baseline (ms3: full_frame_mask)"
    only_avvp = row(table1({"avvp": avvp_metrics(dataset="real")}), "Crab (ours)")
    assert only_avvp["Evaluated on"] == "LLP test (real)" and math.isnan(only_avvp["AVE Acc"])
    assert only_avvp["AVVP Event-level"] == pytest.approx(37.5)


def test_table1_without_metrics_has_only_the_published_rows():
    frame = table1({"avcap": {"task": "avcap"}})
    assert list(frame["Kind"]) == ["published"] * 7 and list(frame.columns)[4:] == TABLE1_VALUES


def test_temporal_table_rows_and_labels():
    frame = temporal_table({"avvp": avvp_metrics(), "ave": ave_metrics(), "avqa": avqa_metrics()})
    assert list(frame.columns) == ["Method", "Kind", "Evaluated on", "Source", *TABLE2_VALUES]
    assert list(frame["Method"]) == [
        "AVT", "PSP", "MM-Pyramid", "CMBS", "MPN", "DHHN", "Crab", "DG-SCT", "Crab (ours)",
        "all_background", "chance", "majority", "segment_majority", "empty", "prior_classes", "segment_prior",
    ]  # fmt: skip
    assert list(frame["Kind"]) == ["published"] * 8 + ["ours"] + ["trivial baseline"] * 7
    ours = row(frame, "Crab (ours)")
    assert ours[TABLE2_VALUES].tolist() == pytest.approx([61.25, 56.25, 37.5])
    assert ours["Evaluated on"] == "AV-Synth AVE test (synthetic); AV-Synth AVVP test (synthetic)"
    assert ours["Source"] == "metrics/ave.json; metrics/avvp.json"
    segment_prior = row(frame, "segment_prior")
    assert math.isnan(segment_prior["AVE Acc"])
    assert segment_prior[TABLE2_VALUES[1:]].tolist() == pytest.approx([20.0, 15.0])
    assert segment_prior[["Evaluated on", "Source"]].tolist() == ["AV-Synth AVVP test (synthetic)", "metrics/avvp.json"]
    majority = row(frame, "segment_majority")
    assert majority["AVE Acc"] == pytest.approx(33.75) and math.isnan(majority["AVVP Segment-level"])
    assert majority["Evaluated on"] == "AV-Synth AVE test (synthetic)"
    cmbs = row(frame, "CMBS")
    assert math.isnan(cmbs["AVE Acc"]) and cmbs[TABLE2_VALUES[1:]].tolist() == [55.00, 48.48]
    assert cmbs["Evaluated on"] == "LLP test (real)" and row(frame, "DG-SCT")["Evaluated on"] == "AVE test (real)"


def test_temporal_table_with_one_task():
    frame = temporal_table({"ave": ave_metrics()})
    assert list(frame["Method"][-5:]) == ["Crab (ours)", "all_background", "chance", "majority", "segment_majority"]
    ours = row(frame, "Crab (ours)")
    assert ours["Source"] == "metrics/ave.json" and math.isnan(ours["AVVP Event-level"])
    frame = temporal_table({"avvp": avvp_metrics(dataset="real")})
    assert list(frame["Method"][-4:]) == ["Crab (ours)", "empty", "prior_classes", "segment_prior"]
    assert set(frame["Evaluated on"][frame["Kind"] != "published"]) == {"LLP test (real)"}
    assert math.isnan(row(frame, "Crab (ours)")["AVE Acc"])
    assert list(temporal_table({})["Kind"]) == ["published"] * 8


def test_avvp_table_shows_all_ten_f_values():
    frame = avvp_table(avvp_metrics())
    assert list(frame.columns) == ["Level", "Score", "Crab (ours)", "empty", "prior_classes", "segment_prior"]
    assert list(frame["Level"]) == ["Segment"] * 5 + ["Event"] * 5
    assert list(frame["Score"]) == ["Audio", "Visual", "Audio-Visual", "Type@AV", "Event@AV"] * 2
    assert list(frame["Crab (ours)"]) == pytest.approx([61.0, 52.0, 43.0, 52.0, 56.25, 41.0, 32.0, 23.0, 32.0, 37.5])
    assert list(frame["segment_prior"]) == pytest.approx([30.0, 20.0, 10.0, 20.0, 20.0, 25.0, 15.0, 5.0, 15.0, 15.0])
    assert frame["empty"][3] == pytest.approx(100 / 3)


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
    frame = parse_failure_table({"avqa": avqa_metrics(), "avvp": avvp_metrics(), "ave": ave_metrics()})
    assert list(frame["Task"]) == ["ave", "avqa", "avvp"]
    avvp = frame[frame["Task"] == "avvp"].iloc[0]
    assert avvp[["Evaluated on", "Samples", "Max new tokens", "Tokens/s"]].tolist() == [
        "AV-Synth AVVP test (synthetic)", 40, 256, 125.0
    ]  # fmt: skip
    assert avvp["Parse failures (%)"] == pytest.approx(2.5)
    ave = frame[frame["Task"] == "ave"].iloc[0]
    assert (ave["Samples"], ave["Parse failures (%)"], ave["Tokens/s"]) == (80, pytest.approx(5.0), 250.0)
    assert math.isnan(frame[frame["Task"] == "avqa"].iloc[0]["Tokens/s"])


def test_best_baseline_breaks_ties_by_name():
    metrics = {"task": "ave", "baselines": {"b": {"accuracy": 0.3}, "a": {"accuracy": 0.3}, "c": {"accuracy": 0.1}}}
    assert best_baseline(metrics)[0] == "a"


def test_best_baseline_ranks_by_the_tasks_headline_score():
    metrics = avvp_metrics()
    name, result = best_baseline(metrics)
    assert name == "prior_classes" and result["segment_event_av"] == 0.25  # segment_prior leads at event level
    tie = {"task": "avvp", "baselines": {"z": {"segment_event_av": 0.4}, "y": {"segment_event_av": 0.4}}}
    assert best_baseline(tie)[0] == "y"
    with pytest.raises(ValueError, match="'avcap' has no headline score"):
        best_baseline({"task": "avcap", "baselines": {"x": {"accuracy": 1.0}}})
    with pytest.raises(ValueError, match="avvp: the metrics hold no baselines"):
        best_baseline({"task": "avvp", "baselines": {}})


def test_required_keys_follow_the_evaluate_stage():
    assert AVVP_KEYS == SEGMENT + EVENT
    for task in EVALUATED_TASKS:
        assert set(_RESULT_KEYS[task]) <= set(_REQUIRED_KEYS[task]), task
        assert HEADLINE_SCORES[task] in _BASELINE_KEYS[task], task
    assert _BASELINE_KEYS["avvp"] == _RESULT_KEYS["avvp"]
    for task in ("s4", "ms3"):  # the mask tasks: evaluate_avs's result keys and headline score
        assert set(_MASK_RESULT_KEYS) <= set(_REQUIRED_KEYS[task]) and set(_BASELINE_KEYS[task]) == set(
            _MASK_RESULT_KEYS
        )
        assert HEADLINE_SCORES[task] in _BASELINE_KEYS[task]


def test_dataset_labels_and_comparability_note():
    assert dataset_label(avqa_metrics()) == "AV-Synth AVQA test (synthetic)"
    assert dataset_label({**avqa_metrics("real"), "split": "val"}) == "MUSIC-AVQA val (real)"
    assert dataset_label(avvp_metrics()) == "AV-Synth AVVP test (synthetic)"
    assert dataset_label({**avvp_metrics("real"), "split": "val"}) == "LLP val (real)"
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


def test_read_metrics_checks_avvp_and_baseline_keys(tmp_path):
    path = tmp_path / "avvp.json"
    path.write_text(json.dumps(avvp_metrics()))
    assert read_metrics(path) == avvp_metrics()
    metrics = avvp_metrics()
    del metrics["event_event_av"]
    path.write_text(json.dumps(metrics))
    with pytest.raises(DataError, match="avvp.json: missing key 'event_event_av'"):
        read_metrics(path)
    metrics = avvp_metrics()
    del metrics["baselines"]["segment_prior"]["event_audio"]
    path.write_text(json.dumps(metrics))
    with pytest.raises(DataError, match="avvp.json: baseline 'segment_prior' is missing key 'event_audio'"):
        read_metrics(path)
    path.write_text(json.dumps({**ave_metrics(), "baselines": {"chance": {"acc": 0.1}}}))
    with pytest.raises(DataError, match="baseline 'chance' is missing key 'accuracy'"):
        read_metrics(path)
    path.write_text(json.dumps({**ave_metrics(), "baselines": [0.1]}))
    with pytest.raises(DataError, match="'baselines' is not an object"):
        read_metrics(path)


def test_reading_metrics_and_building_tables_does_not_import_torch(tmp_path):
    # The report driver calls read_metrics before any notebook, and in the notebook kernel an import of
    # torch / transformers (crab.eval.run) costs seconds and prints a tqdm widget warning into the report.
    path = tmp_path / "avvp.json"
    path.write_text(json.dumps(avvp_metrics()))
    code = (
        f"import sys; import crab.report_tables as rt; m = rt.read_metrics({str(path)!r}); "
        "rt.table1({'avvp': m}); rt.temporal_table({'avvp': m}); rt.avvp_table(m); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


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
    # pretrain's phases log in sub-folders of the stage's dvclive folder: one curve per phase
    for phase in (".", "language", "grounding"):
        phase_dir = tmp_path / "pretrain_log" / phase / "plots" / "metrics" / "train"
        phase_dir.mkdir(parents=True)
        (phase_dir / "loss.tsv").write_text("step\tloss\n1\t2.0\n")
    curves = load_training_curves({"pretrain": tmp_path / "pretrain_log"})
    assert sorted(curves["metric"]) == ["grounding/train/loss", "language/train/loss", "train/loss"]


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
    arig = {**rec(6, 0.25), "instruction": TASKS[Task.ARIG].instruction()}  # the <image> block goes too
    assert example_predictions([arig], 1)["Instruction"][0] == (
        "Please recognize the category of object that makes the sound and then output its location coordinates."
    )


def test_example_predictions_with_avvp_records():
    label = {"audio": [{"event": "Speech", "start": 0, "end": 4}], "visual": []}

    def rec(i, correct, parsed):
        return {"id": f"avvp/test/v{i}", "task": "avvp", "instruction": PREFIX + "Parse the events.",
                "target": "<audio> Speech (0,4) </audio>", "prediction": f"answer {i}", "parsed": parsed,
                "label": label, "correct": correct}  # fmt: skip

    records = [rec(2, 0.5, label), rec(1, 1.0, label), rec(3, 0.0, None)]
    frame = example_predictions(records, 3)
    assert list(frame["id"]) == ["avvp/test/v1", "avvp/test/v2", "avvp/test/v3"]
    assert list(frame["Result"]) == ["✓ correct", "◐ partly correct (50%)", "✗ parse failure"]
    assert frame["Instruction"][0] == "Parse the events."


def test_to_html_escapes_tags_and_formats_numbers():
    frame = pd.DataFrame({"Prediction": ["So <answer> yes </answer>"], "Acc": [61.254], "Other": [float("nan")]})
    html = to_html(frame)
    assert "&lt;answer&gt; yes &lt;/answer&gt;" in html and "<answer>" not in html
    assert "61.25" in html and "61.254" not in html and "–" in html


def test_table1_ref_avs_columns_seen_miou_in_percent_f_as_a_fraction():
    scores = {"seen_miou": 0.3, "seen_f_score": 0.4, "unseen_miou": 0.2, "unseen_f_score": 0.25, "null_s": 0.3}
    metrics = {"task": "ref_avs", "split": "test", "dataset": "AV-Synth", "num_samples": 30, **scores,
               "baselines": {"empty_mask": {**scores, "seen_miou": 0.05, "seen_f_score": 0.1},
                             "full_frame_mask": {**scores, "seen_miou": 0.15, "seen_f_score": 0.2}}}  # fmt: skip
    frame = table1({"ref_avs": metrics})
    ours, best = row(frame, "Crab (ours)"), frame.iloc[-1]
    assert ours[["Ref-AVS Seen mIoU", "Ref-AVS Seen F-score"]].tolist() == pytest.approx([30.0, 0.4])
    assert best["Method"] == "Best trivial baseline (ref_avs: full_frame_mask)"  # ranked by seen mIoU
    assert best[["Ref-AVS Seen mIoU", "Ref-AVS Seen F-score"]].tolist() == pytest.approx([15.0, 0.2])
    assert ours["Evaluated on"] == "AV-Synth Ref-AVS test (synthetic)"


def test_table1_avss_columns_in_percent():
    scores = {"miou": 0.25, "f_score": 0.3, "miou_no_background": 0.1, "f_score_no_background": 0.12}
    metrics = {"task": "avss", "split": "test", "dataset": "AV-Synth", "num_samples": 20, "num_videos": 2, **scores,
               "object_accuracy": 0.5, "parse_failure_rate": 0.0,
               "baselines": {"all_background": {**scores, "miou": 0.45, "f_score": 0.46},
                             "frequent_class_full_frame": {**scores, "miou": 0.05, "f_score": 0.06}}}  # fmt: skip
    frame = table1({"avss": metrics})
    ours, best = row(frame, "Crab (ours)"), frame.iloc[-1]
    assert ours[["AVSS mIoU", "AVSS F-score"]].tolist() == pytest.approx([25.0, 30.0])
    assert best["Method"] == "Best trivial baseline (avss: all_background)"
    assert ours["Evaluated on"] == "AV-Synth AVSS test (synthetic)"
