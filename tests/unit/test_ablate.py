"""``crab ablate``: the experiment commands, the config checks, collecting ``dvc exp show --json`` and the
Table 4 tables (mean / spread over seeds, the paper's orderings)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from crab.ablate import AblationRun, collect_results, format_override, queue_commands, select_rows
from crab.config import AblateConfig, AblationRow, ConfigError, load_params
from crab.errors import CrabError
from crab.report_ablation import PAPER_TABLE4, TABLE4_COLUMNS, column_value, orderings, row_summary, table4

ROWS = [
    AblationRow("lora_baseline", "LoRA baseline", {"finetune.adapter": "lora", "avuie.use_reasoning": False}),
    AblationRow("crab", "Crab(Ours)", {"finetune.adapter": "ia_lora"}),
]
CFG = AblateConfig(seeds=[0, 1], jobs=1, rows=ROWS)


def test_queue_commands_name_each_row_and_seed_with_yaml_values() -> None:
    runs = [AblationRun(row, seed) for row in ROWS for seed in CFG.seeds]
    commands = queue_commands(runs)
    assert [c[c.index("--name") + 1] for c in commands] == [
        "lora_baseline-seed0", "lora_baseline-seed1", "crab-seed0", "crab-seed1",
    ]  # fmt: skip
    assert commands[1] == [
        "dvc", "exp", "run", "--queue", "--name", "lora_baseline-seed1",
        "--set-param", "finetune.adapter=lora", "--set-param", "avuie.use_reasoning=false",
        "--set-param", "finetune.seed=1", "evaluate",
    ]  # fmt: skip
    with pytest.raises(CrabError, match="seeds come from ablate.seeds"):
        queue_commands([AblationRun(AblationRow("x", "X", {"finetune.seed": 3}), 0)])
    with pytest.raises(CrabError, match="must be a scalar"):
        format_override("finetune.tasks", ["ave"])


def test_select_rows_keeps_the_params_order_and_names_unknown_rows() -> None:
    assert [r.name for r in select_rows(CFG, ["crab", "lora_baseline"])] == ["lora_baseline", "crab"]
    assert select_rows(CFG, None) == ROWS
    with pytest.raises(CrabError, match="unknown row.*nope; known: lora_baseline, crab"):
        select_rows(CFG, ["nope"])


def test_config_rejects_duplicate_seeds_rows_and_bad_names() -> None:
    with pytest.raises(ConfigError, match="distinct seeds"):
        AblateConfig(seeds=[0, 0], jobs=1, rows=ROWS)
    with pytest.raises(ConfigError, match="distinct names"):
        AblateConfig(seeds=[0], jobs=1, rows=[ROWS[0], ROWS[0]])
    with pytest.raises(ConfigError, match="experiment name"):
        AblationRow("w/o erp", "w/o ERP", {})


def test_params_yaml_has_the_six_table4_rows_with_the_papers_labels() -> None:
    params = load_params("params.yaml")
    labels = [row.label for row in params.ablate.rows]
    assert labels == list(PAPER_TABLE4)
    assert len(params.ablate.seeds) >= 2  # a difference must be told from noise
    overrides = {row.name: row.set for row in params.ablate.rows}
    assert overrides["wo_ia_lora"] == {"finetune.adapter": "lora"}  # = LoRA with ERP
    assert overrides["wo_erp"]["avuie.use_reasoning"] is False


def _show(experiments: list[tuple[str, dict[str, Any], str]]) -> list[dict[str, Any]]:
    """A ``dvc exp show --json`` answer (DVC 3.67 layout) with ``(name, metrics, state)`` experiments."""
    return [
        {"rev": "workspace", "name": None, "data": {"metrics": {}}, "experiments": None},
        {
            "rev": "abc123",
            "name": "main",
            "data": {"metrics": {}},
            "experiments": [
                {
                    "revs": [
                        {
                            "rev": f"r{i}",
                            "name": name,
                            "error": None,
                            "data": {"metrics": {path: {"data": data} for path, data in metrics.items()}},
                        }
                    ],
                    "executor": {"state": state},
                    "name": name,
                }  # fmt: skip
                for i, (name, metrics, state) in enumerate(experiments)
            ],
        },
    ]


def _metrics(ave: float, avqa: float) -> dict[str, Any]:
    return {"metrics/ave.json": {"accuracy": ave}, "metrics/avqa.json": {"accuracy": avqa}}


def test_collect_results_reads_each_runs_metrics_and_marks_missing_ones() -> None:
    runs = [AblationRun(row, seed) for row in ROWS for seed in CFG.seeds]
    show = _show([
        ("lora_baseline-seed0", _metrics(0.5, 0.4), "success"),
        ("crab-seed0", _metrics(0.7, 0.6), "success"),
        ("crab-seed1", {"metrics/ave.json": {"error": "x"}}, "failed"),
        ("other-seed0", _metrics(0.1, 0.1), "success"),
    ])  # fmt: skip
    results = collect_results(show, runs)
    assert results["baseline"] == "abc123"
    by_name = {r["name"]: r for r in results["runs"]}
    assert list(by_name) == ["lora_baseline-seed0", "lora_baseline-seed1", "crab-seed0", "crab-seed1"]
    assert by_name["lora_baseline-seed1"]["state"] == "missing" and by_name["lora_baseline-seed1"]["metrics"] == {}
    assert by_name["crab-seed0"]["metrics"]["metrics/ave.json"] == {"accuracy": 0.7}
    assert by_name["crab-seed1"]["state"] == "failed"
    assert by_name["crab-seed0"]["label"] == "Crab(Ours)"


def _results(values: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    labels = {"lora_baseline": "LoRA baseline", "crab": "Crab(Ours)", "wo_erp": "w/o. ERP"}
    runs = []
    for row, seeds in values.items():
        for seed, (ave, avqa) in enumerate(seeds):
            runs.append({"row": row, "label": labels[row], "seed": seed, "name": f"{row}-seed{seed}",
                         "state": "success", "metrics": _metrics(ave, avqa)})  # fmt: skip
    return {"baseline": "abc", "runs": runs}


def test_row_summary_and_table4_give_mean_and_sample_std_in_percent() -> None:
    results = _results({"lora_baseline": [(0.50, 0.40), (0.60, 0.40)], "crab": [(0.70, 0.30)]})
    summary = row_summary(results).set_index(["row", "column"])
    assert summary.loc[("lora_baseline", "AVE Acc"), "mean"] == pytest.approx(55.0)
    assert summary.loc[("lora_baseline", "AVE Acc"), "std"] == pytest.approx(math.sqrt(50.0))  # sample std
    assert math.isnan(summary.loc[("crab", "AVE Acc"), "std"])  # one seed: no spread
    assert summary.loc[("crab", "ARIG cIoU"), "n"] == 0  # not evaluated: empty, not invented
    assert summary.loc[("crab", "AVQA Avg"), "paper"] == 78.94
    table = table4(results).set_index("Method")
    assert table.loc["LoRA baseline", "AVE Acc (ours, AV-Synth)"] == "55.00 ± 7.07"
    assert table.loc["Crab(Ours)", "AVE Acc (ours, AV-Synth)"] == "70.00"
    assert table.loc["Crab(Ours)", "ARIG cIoU (ours, AV-Synth)"] == "n/a"
    assert table.loc["LoRA baseline", "AVE Acc (paper, real)"] == 79.55
    assert list(TABLE4_COLUMNS) == ["AVQA Avg", "AVE Acc", "AVVP Segment", "AVVP Event", "ARIG cIoU", "ARIG AUC"]


def test_orderings_hold_reverse_or_sit_within_noise() -> None:
    # AVE: Crab 70/72 vs LoRA 50/52 -> +20 >> noise 2.8 (holds). AVQA: Crab 30/32 vs LoRA 40/42 -> reversed.
    # w/o ERP: AVE 69/73 vs Crab 70/72: paper Crab 80.15 > w/o ERP 78.62, ours diff 0, noise > 0 -> within noise.
    results = _results({
        "lora_baseline": [(0.50, 0.40), (0.52, 0.42)],
        "crab": [(0.70, 0.30), (0.72, 0.32)],
        "wo_erp": [(0.69, 0.35), (0.73, 0.35)],
    })  # fmt: skip
    order = orderings(results).set_index(["column", "better", "worse"])
    assert order.loc[("AVE Acc", "Crab(Ours)", "LoRA baseline"), "verdict"] == "holds"
    assert order.loc[("AVQA Avg", "Crab(Ours)", "LoRA baseline"), "verdict"] == "reversed"
    assert order.loc[("AVE Acc", "Crab(Ours)", "w/o. ERP"), "verdict"] == "within noise"
    assert order.loc[("AVE Acc", "Crab(Ours)", "LoRA baseline"), "our_diff"] == pytest.approx(20.0)
    assert set(order.index.get_level_values("column")) == {"AVE Acc", "AVQA Avg"}


def test_collect_results_across_commits_keeps_each_names_newest_run() -> None:
    """After a new commit, ``--collect-only`` still finds the runs made from the previous one."""
    old = _show([("crab-seed0", _metrics(0.5, 0.4), "success")])[1]
    new = _show([("crab-seed0", _metrics(0.7, 0.6), "success"), ("crab-seed1", _metrics(0.6, 0.5), "success")])[1]
    old["rev"], new["rev"] = "old111", "new222"
    old["experiments"][0]["revs"][0]["data"]["timestamp"] = "2026-11-26T13:00:00"
    new["experiments"][0]["revs"][0]["data"]["timestamp"] = "2026-11-26T14:00:00"
    workspace = {"rev": "workspace", "name": None, "data": {"metrics": {}}, "experiments": None}
    runs = [AblationRun(ROWS[1], 0), AblationRun(ROWS[1], 1)]
    for show in ([workspace, old, new], [workspace, new, old]):  # order of commits does not matter
        by_name = {r["name"]: r for r in collect_results(show, runs)["runs"]}
        assert by_name["crab-seed0"]["metrics"]["metrics/ave.json"] == {"accuracy": 0.7}
        assert by_name["crab-seed0"]["baseline"] == "new222"
        assert by_name["crab-seed1"]["baseline"] == "new222"


def test_avvp_columns_read_the_evaluate_stages_flat_keys():
    # metrics/avvp.json as crab.eval.run writes it: flat "<level>_<score>" keys (Event@AV is the paper's column)
    metrics = {"metrics/avvp.json": {"segment_event_av": 0.25, "event_event_av": 0.125, "segment_audio": 0.9}}
    assert column_value(metrics, TABLE4_COLUMNS["AVVP Segment"]) == 25.0
    assert column_value(metrics, TABLE4_COLUMNS["AVVP Event"]) == 12.5
    assert column_value({"metrics/avvp.json": {"segment": {"event_av": 0.25}}}, TABLE4_COLUMNS["AVVP Segment"]) is None
