"""Strict params loading: unknown keys, wrong types and bad values fail with the key's full name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from crab.config import ConfigError, Params, load_params, parse_section

REPO = Path(__file__).resolve().parents[2]


def _raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def _load(raw: dict) -> Params:
    return parse_section(Params, raw, "")


def test_unknown_key_is_named() -> None:
    raw = _raw()
    raw["synth"]["ave"]["num_trian"] = 3
    with pytest.raises(ConfigError, match=r"^synth\.ave\.num_trian: unknown key$"):
        _load(raw)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("synth.ave.num_train", "ten", r"synth\.ave\.num_train: expected int, got str 'ten'"),
        ("synth.ave.num_train", 2.5, r"synth\.ave\.num_train: expected int, got float"),
        ("synth.ave.num_train", True, r"synth\.ave\.num_train: expected int, got bool"),
        ("synth.difficulty.motion", "yes", r"synth\.difficulty\.motion: expected true/false"),
        ("avuie.tasks", ["ave", "bogus"], r"avuie\.tasks\[1\]: expected one of"),
        ("profile", "huge", r"profile: expected one of \['tiny', 'paper'\]"),
        ("media", [1, 2], r"media: expected a mapping, got list"),
        ("synth.ave.num_test", 0, r"synth\.ave\.num_test: must be > 0, got 0"),
        ("synth.difficulty.offscreen_prob", 1.5, r"synth\.difficulty\.offscreen_prob: must be in \[0, 1\]"),
        ("synth.video.crf", 70, r"synth\.video\.crf: must be in \[0, 51\]"),
        ("pretrain.grounding.repeat", {"ave": 0}, r"pretrain\.grounding\.repeat\.ave: must be >= 1, got 0"),
        ("pretrain.grounding.repeat", {"s4": 2}, r"pretrain\.grounding\.repeat\.s4: not one of tasks \['ave'"),
        ("pretrain.grounding.repeat", {"bogus": 2}, r"pretrain\.grounding\.repeat: expected one of \['ave'"),
        ("pretrain.grounding.repeat", {"ave": 1.5}, r"pretrain\.grounding\.repeat\.ave: expected int"),
    ],
)
def test_bad_values_are_named(path: str, value: object, message: str) -> None:
    raw = _raw()
    *parents, leaf = path.split(".")
    node = raw
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(ConfigError, match=message):
        _load(raw)


def test_float_field_accepts_an_int() -> None:
    raw = _raw()
    raw["media"]["avqa_window_s"] = 2
    assert _load(raw).media.avqa_window_s == 2.0


def test_config_is_frozen() -> None:
    params = load_params(REPO / "params.yaml")
    with pytest.raises(AttributeError):
        params.synth.seed = 1  # type: ignore[misc]


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml: file not found"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("synth: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_params(bad)
    broken = tmp_path / "broken.yaml"
    raw = _raw()
    raw["validation"]["max_failure_rate"] = "lots"
    broken.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^.*broken\.yaml: validation\.max_failure_rate: expected float"):
        load_params(broken)


def test_params_rewritten_by_dvc_exp_run_set_param_still_load(tmp_path: Path) -> None:
    # `dvc exp run -S finetune.adapter=lora` rewrites params.yaml with DVC's own YAML writer, which drops
    # the quotes around "no" (mixed_precision); a YAML 1.1 reader would then see False.
    from dvc.utils.serialize import modify_yaml

    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    with modify_yaml(path) as data:
        data["finetune"]["adapter"] = "lora"
    assert "mixed_precision: no\n" in path.read_text(encoding="utf-8")  # what DVC writes
    rewritten, original = load_params(path), load_params(REPO / "params.yaml")
    assert rewritten.finetune.adapter == "lora"
    assert rewritten.finetune.optim.mixed_precision == original.finetune.optim.mixed_precision == "no"
    assert dataclasses.replace(rewritten, finetune=original.finetune) == original


def test_a_segmentation_stage_trains_one_decoder_head(tmp_path: Path) -> None:
    raw = _raw()
    raw["finetune"]["tasks"] = ["ave", "s4", "avss"]
    raw["evaluate"]["tasks"] = ["ave"]
    raw["finetune_avs"]["tasks"], raw["finetune_avss"]["tasks"] = ["s4"], ["avss"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert load_params(path).finetune_avss.tasks == ["avss"]
    raw["finetune_avs"]["tasks"] = ["s4", "avss"]  # a binary and a 71-class task in one decoder
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"finetune_avs\.tasks: \['avss'\] need another decoder head; .*finetune_avss"
    ):
        load_params(path)
    raw["finetune_avs"]["tasks"], raw["finetune_avss"]["tasks"] = ["s4"], ["s4", "avss"]
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"finetune_avss\.tasks: \['s4'\] need another decoder head; .*class head"):
        load_params(path)


@pytest.mark.parametrize(
    ("key", "tasks", "message"),
    [
        ("evaluate", ["ave", "avvp"], r"evaluate\.tasks: \['avvp'\] not in finetune\.tasks \['ave', 'ms3', 's4'\]"),
        ("finetune_avs", ["s4", "ms3"], None),
        ("evaluate", ["ave", "s4"], r"evaluate\.tasks\[1\]: expected one of \['ave', 'avvp', 'avqa', 'arig'\]"),
    ],
)
def test_task_lists_must_agree_with_finetune_tasks(tmp_path: Path, key: str, tasks: list, message: str | None) -> None:
    raw = _raw()
    raw["finetune"]["tasks"] = ["ave", "s4", "ms3"]
    raw["evaluate"]["tasks"] = ["ave"]
    raw["finetune_avss"]["tasks"] = []
    raw[key]["tasks"] = tasks
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    if message is None:
        assert load_params(path).finetune_avs.tasks == ["s4", "ms3"]
        raw["finetune"]["tasks"] = ["ave", "s4"]  # ms3 segmentation-tuned without F1 on it
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        message = r"finetune_avs\.tasks: \['ms3'\] not in finetune\.tasks \['ave', 's4'\]"
    with pytest.raises(ConfigError, match=rf"params\.yaml: {message}"):
        load_params(path)
