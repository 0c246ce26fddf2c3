"""dvc.yaml, the stage table and the CLI agree (DESIGN.md section 3)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crab.cli import build_parser
from crab.config import Params, load_params
from crab.stages import STAGES, dvc_yaml, resolve

REPO = Path(__file__).resolve().parents[2]


def _dvc_stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def test_committed_dvc_yaml_is_generated_from_the_table() -> None:
    assert (REPO / "dvc.yaml").read_text(encoding="utf-8") == dvc_yaml(), "run `crab dvc-yaml`"


def test_stage_names_match() -> None:
    assert list(_dvc_stages()) == list(STAGES)


def _entry(name: str) -> dict:
    entry = _dvc_stages()[name]
    return entry["do"] if "foreach" in entry else entry


@pytest.mark.parametrize("name", list(STAGES))
def test_each_cmd_parses_with_the_cli(name: str) -> None:
    cmd = _entry(name)["cmd"].replace("${item}", "ave").split()
    assert cmd[0] == "crab"
    args = build_parser().parse_args(cmd[1:])
    assert args.command == name


def test_foreach_stages_iterate_over_a_params_list() -> None:
    params = load_params(REPO / "params.yaml")
    for name, stage in STAGES.items():
        if stage.foreach:
            assert _dvc_stages()[name]["foreach"] == f"${{{stage.foreach}}}"
            section, key = stage.foreach.split(".")
            assert isinstance(getattr(getattr(params, section), key), list)
            assert section in stage.params


@pytest.mark.parametrize("name", list(STAGES))
def test_params_sections_exist(name: str) -> None:
    """Each entry is a params section or a dotted key inside one (``finetune.tasks``)."""
    sections = {f.name for f in dataclasses.fields(Params)}
    params = load_params(REPO / "params.yaml")
    for entry in STAGES[name].params:
        section, *keys = entry.split(".")
        assert section in sections, entry
        node = getattr(params, section)
        for key in keys:
            assert hasattr(node, key), entry
            node = getattr(node, key)


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_function_resolves(name: str) -> None:
    assert callable(resolve(STAGES[name]))


def test_deps_are_code_raw_data_or_earlier_outputs() -> None:
    params = load_params(REPO / "params.yaml")
    produced: set[str] = set()
    for stage in STAGES.values():
        for dep in stage.deps:
            if dep.startswith(("src/", "notebooks")):
                assert (REPO / dep).exists(), f"{stage.name}: code dependency {dep} does not exist"
            else:
                # a dep is an earlier output, or a folder holding earlier outputs (e.g. metrics/)
                earlier = dep in produced or any(p.startswith(dep + "/") for p in produced)
                assert dep == params.datasets.raw_root or earlier, (
                    f"{stage.name}: {dep} is produced by no earlier stage"
                )
        produced.update(stage.outs + stage.metrics + stage.plots)


def test_cli_start_up_stays_light() -> None:
    code = (
        "import sys, crab.cli; heavy = {'torch', 'great_expectations', 'prefect', 'transformers', 'pandas', 'av'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_stage_has_help() -> None:
    for name in STAGES:
        out = subprocess.run([sys.executable, "-m", "crab.cli", name, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and STAGES[name].help.split(":")[0] in " ".join(out.stdout.split())


def test_bad_params_give_a_one_line_error(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["synth"]["ave"]["num_train"] = "many"
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "crab.cli", "--params", str(bad), "validate_raw"], capture_output=True, text=True
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "synth.ave.num_train: expected int" in lines[0]
