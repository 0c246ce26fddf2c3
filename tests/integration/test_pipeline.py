"""End to end on a shrunk config: AV-Synth, then every stage of the table in order, and dvc repro.

Also checks the stage-table contract that cannot be checked statically: each stage reads only the
params sections it declares (so dvc.yaml's ``params:`` lists are exact). AV-Synth's byte determinism is
tested once, on a smaller config with every dataset: ``tests/unit/synth/test_synthesize.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crab.config import Params
from crab.stages import STAGES, dvc_yaml, foreach_tasks, resolve
from crab.synth import synthesize

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


class RecordingParams:
    """Wraps Params and records which top-level sections a stage reads."""

    def __init__(self, params: Params) -> None:
        self._params = params
        self.sections: set[str] = set()

    def __getattr__(self, name: str) -> object:
        self.sections.add(name)
        return getattr(self._params, name)


def test_all_stages_end_to_end(tiny_params: Params, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    os.symlink(REPO / "notebooks", tmp_path / "notebooks")  # the report stage executes them from the cwd
    synthesize(tiny_params)
    for name, stage in STAGES.items():
        tasks = foreach_tasks(stage, tiny_params) if stage.foreach else [None]
        for task in tasks:
            recorder = RecordingParams(tiny_params)
            fn = resolve(stage)
            fn(recorder, task) if task else fn(recorder)  # the same call the CLI makes
            declared = {entry.split(".")[0] for entry in stage.params}  # "finetune.tasks" declares a key of finetune
            assert recorder.sections <= declared, f"{name} reads undeclared sections"
            for out in stage.outs + stage.metrics:
                out = out.replace("{task}", task or "")
                assert Path(out).exists(), f"{name} did not write {out}"

    raw = json.loads(Path("reports/validation/raw.json").read_text())
    for dataset, report in raw["datasets"].items():
        assert report["num_quarantined"] == 0, (dataset, report["quarantined"][:3])
        assert report["num_items"] > 0
    avuie = json.loads(Path("reports/validation/avuie.json").read_text())
    for task, report in avuie["tasks"].items():
        assert report["num_quarantined"] == 0, (task, report["quarantined"][:3])

    ave = tiny_params.synth.ave
    lines = Path("data/avuie/ave/test.jsonl").read_text().splitlines()
    assert len(lines) == ave.num_test
    record = json.loads(lines[0])
    assert "<video>" in record["instruction"] and "<event>" in record["target"]


def test_dvc_repro_runs_then_is_a_no_op(tiny_params: Params, tmp_path: Path) -> None:
    """The real dvc.yaml in a scratch DVC repo: the first repro runs every stage, the second none."""
    (tmp_path / "dvc.yaml").write_text(dvc_yaml(), encoding="utf-8")
    raw_params = dataclasses.asdict(tiny_params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params, sort_keys=False), encoding="utf-8")
    os.symlink(REPO / "src", tmp_path / "src")
    os.symlink(REPO / "notebooks", tmp_path / "notebooks")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    def run(*cmd: str) -> str:
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    run(str(bin_dir / "dvc"), "init", "--no-scm", "-q")
    run(str(bin_dir / "crab"), "synth")
    first = run(str(bin_dir / "dvc"), "repro")
    for name, stage in STAGES.items():
        assert f"Running stage '{name}" in first, name  # foreach stages run as '<name>@<task>'
    assert (tmp_path / "reports" / "results.html").exists()
    second = run(str(bin_dir / "dvc"), "repro")
    assert "Running stage" not in second
