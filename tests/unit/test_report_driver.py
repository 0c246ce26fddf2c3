"""The report driver without a kernel: notebook hygiene, the parameters contract, required metrics."""

import ast
import dataclasses
import json
from pathlib import Path

import nbformat
import papermill
import pytest

from crab.config import load_params
from crab.errors import DataError
from crab.report import notebook_parameters, report
from crab.train.stage import StagePaths

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_the_report_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["data.ipynb", "results.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_clean(path):
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "strip outputs before committing"
    assert [c.metadata.get("tags") for c in code].count(["parameters"]) == 1
    assert "papermill" not in nb.metadata


def test_every_derived_parameter_is_declared_by_a_notebook_with_the_same_type():
    values = notebook_parameters(load_params(REPO / "params.yaml"))
    declared = {}
    for path in NOTEBOOKS:
        declared.update(papermill.inspect_notebook(str(path)))
    assert set(values) <= set(declared)
    for name, value in values.items():
        assert type(ast.literal_eval(declared[name]["default"])) is type(value), name


def test_notebook_parameters_follow_params():
    params = load_params(REPO / "params.yaml")
    values = notebook_parameters(params)
    assert (
        values["tasks"]
        == [*params.evaluate.tasks, *params.finetune_avs.tasks, *params.finetune_avss.tasks]
        == ["ave", "avvp", "avqa", "arig", "s4", "ms3", "ref_avs", "avss"]
    )
    assert values["training_logs"] == {
        "pretrain": str(StagePaths.of(params.pretrain.out_dir).log_dir),
        "finetune": str(StagePaths.of(params.finetune.out_dir).log_dir),
        "finetune_avs": str(StagePaths.of(params.finetune_avs.out_dir).log_dir),
        "finetune_avss": str(StagePaths.of(params.finetune_avss.out_dir).log_dir),
    }
    assert values["num_examples"] == params.evaluate.num_examples


def test_report_requires_metrics_of_every_evaluated_task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = load_params(REPO / "params.yaml")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "ave.json").write_text(json.dumps({"task": "ave", "dataset": "AV-Synth"}))
    with pytest.raises(DataError, match=r"metrics/ave.json: missing key 'split'"):
        report(params)
    (tmp_path / "metrics" / "ave.json").unlink()
    with pytest.raises(DataError, match=r"metrics/ave.json: no metrics for evaluated task 'ave'; run `crab evaluate "):
        report(params)
    only_ave = dataclasses.replace(params, evaluate=dataclasses.replace(params.evaluate, tasks=["ave"]))
    (tmp_path / "metrics" / "ave.json").write_text(
        json.dumps(
            {
                "task": "ave",
                "dataset": "AV-Synth",
                "split": "test",
                "num_samples": 1,
                "accuracy": 0.5,
                "parse_failure_rate": 0.0,
                "baselines": {},
            }
        )  # fmt: skip
    )
    with pytest.raises(
        DataError, match=r"metrics/s4.json: no metrics for evaluated task 's4'; run `crab evaluate_avs "
    ):
        report(only_ave)  # the mask tasks' own stage is named
