"""``crab ablate`` against real DVC and papermill: a toy git + DVC repository whose ``evaluate`` stage writes
``metrics/ave.json`` and ``metrics/avqa.json`` from its params, so the experiments run in seconds while
queueing, ``dvc exp run --run-all``, ``dvc exp show --json`` and the Table 4 notebook are all real. Its
``finetune_avs`` stage fails if run: the experiments reproduce ``evaluate`` only."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crab.ablate import ABLATION_NOTEBOOK, RESULTS_PATH, run_ablation
from crab.config import AblateConfig, AblationRow

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

_STAGE = """import json, os, sys
from ruamel.yaml import YAML
p = YAML(typ="safe", pure=True).load(open("params.yaml"))
ft, reasoning = p["finetune"], p["avuie"]["use_reasoning"]
ave = 0.50 + 0.01 * ft["seed"] + (0.20 if ft["adapter"] == "ia_lora" else 0.0) + (0.05 if reasoning else 0.0)
os.makedirs("metrics", exist_ok=True)
json.dump({"accuracy": ave}, open("metrics/ave.json", "w"))
json.dump({"accuracy": 0.40 + 0.02 * ft["seed"]}, open("metrics/avqa.json", "w"))
"""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def toy_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = tmp_path / "toy"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "ci@example.invalid")
    _git(repo, "config", "user.name", "ci")
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*dvc, "config", "core.analytics", "false"], cwd=repo, check=True)
    (repo / "params.yaml").write_text("finetune:\n  adapter: ia_lora\n  seed: 0\navuie:\n  use_reasoning: true\n")
    (repo / "stage.py").write_text(_STAGE)
    (repo / "dvc.yaml").write_text(
        "stages:\n  evaluate:\n"
        f"    cmd: {sys.executable} stage.py\n"
        "    params: [finetune, avuie]\n    deps: [stage.py]\n"
        "    metrics:\n    - metrics/ave.json:\n        cache: false\n    - metrics/avqa.json:\n        cache: false\n"
        "  finetune_avs:\n"
        f"    cmd: {sys.executable} -c \"raise SystemExit('not a Table 4 stage')\"\n"
        "    params: [finetune]\n"
    )
    (repo / ABLATION_NOTEBOOK).parent.mkdir(parents=True)
    shutil.copy(REPO / ABLATION_NOTEBOOK, repo / ABLATION_NOTEBOOK)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "toy")
    monkeypatch.chdir(repo)
    return repo


def test_ablate_runs_every_row_and_seed_as_experiments_and_renders_table4(toy_repo: Path) -> None:
    rows = [
        AblationRow("wo_erp", "w/o. ERP", {"finetune.adapter": "ia_lora", "avuie.use_reasoning": False}),
        AblationRow("crab", "Crab(Ours)", {"finetune.adapter": "ia_lora"}),
    ]
    cfg = AblateConfig(seeds=[0, 1], jobs=1, rows=rows)
    results = run_ablation(cfg, repo=toy_repo)
    by_name = {r["name"]: r for r in results["runs"]}
    assert [r["state"] for r in results["runs"]] == ["success"] * 4
    assert by_name["crab-seed1"]["metrics"]["metrics/ave.json"]["accuracy"] == pytest.approx(0.76)
    assert by_name["wo_erp-seed0"]["metrics"]["metrics/ave.json"]["accuracy"] == pytest.approx(0.70)
    assert json.loads((toy_repo / RESULTS_PATH).read_text()) == results
    html = (toy_repo / "reports/table4.html").read_text()
    assert "Crab(Ours)" in html and "75.50 ± 0.71" in html  # Crab's AVE: seeds 75 and 76
    assert "holds" in html  # Crab > w/o ERP on AVE by 5 points, noise 1.4

    again = run_ablation(cfg, rows=["crab"], repo=toy_repo, render=False)  # replaces, no name clash
    assert [r["state"] for r in again["runs"]] == ["success"] * 2
