"""``crab profile --exp-args`` against real DVC: ``dvc exp run`` with those overrides yields the profile's params.

A toy git + DVC repository holds the real ``params.yaml`` and one stage that copies it; the experiment's copy
must load strictly and equal the file ``crab profile`` writes in place (Hydra's override grammar, which
``dvc exp run -S`` parses, is not JSON: mapping keys are bare, strings quoted).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crab.config import load_params
from crab.profiles import apply_profile, exp_args

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _run(repo: Path, *args: str) -> None:
    subprocess.run(list(args), cwd=repo, check=True, capture_output=True)


def test_dvc_exp_run_with_the_exp_args_gives_the_profiles_params(tmp_path: Path) -> None:
    repo = tmp_path / "toy"
    repo.mkdir()
    _run(repo, "git", "init", "-q", "-b", "main")
    _run(repo, "git", "config", "user.email", "ci@example.invalid")
    _run(repo, "git", "config", "user.name", "ci")
    dvc = (sys.executable, "-m", "dvc")
    _run(repo, *dvc, "init", "-q")
    _run(repo, *dvc, "config", "core.analytics", "false")
    shutil.copy(REPO / "params.yaml", repo / "params.yaml")
    (repo / "dvc.yaml").write_text(
        "stages:\n  show:\n"
        f"    cmd: {sys.executable} -c \"import shutil; shutil.copy('params.yaml', 'seen.yaml')\"\n"
        "    params: [profile, features, pretrain, finetune, evaluate]\n    outs: [seen.yaml]\n"
    )
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-q", "-m", "toy")

    for name in ("paper", "tiny"):
        _run(repo, *dvc, "exp", "run", *exp_args(name, REPO / "configs" / "profiles"))
        expected = tmp_path / f"{name}.yaml"
        shutil.copy(REPO / "params.yaml", expected)
        apply_profile(name, expected, REPO / "configs" / "profiles")
        assert load_params(repo / "seen.yaml") == load_params(expected), name
