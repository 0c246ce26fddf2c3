"""params.yaml loads strictly into crab.config.Params: every field present, no extra keys, types right."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path

import pytest
import yaml

from crab.config import ConfigError, Params, load_params, parse_section

REPO = Path(__file__).resolve().parents[2]


def _raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def test_params_yaml_loads_into_typed_config() -> None:
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.media.num_frames == 10  # Crab samples 10 frames per clip


def _leaf_paths(value: object, prefix: str = "") -> list[str]:
    if isinstance(value, dict) and prefix not in _MAPPING_FIELDS:  # a section, not a mapping-valued key
        return [p for k, v in value.items() for p in _leaf_paths(v, f"{prefix}.{k}" if prefix else k)]
    return [prefix]


def _mapping_fields(cls: type, prefix: str = "") -> set[str]:
    """Dotted paths of the fields whose value is a mapping (``dict[...]``), e.g. ``pretrain.grounding.repeat``."""
    paths = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        if typing.get_origin(tp) is dict:
            paths.add(key)
        for section in (tp, *typing.get_args(tp)):
            if dataclasses.is_dataclass(section):
                paths |= _mapping_fields(section, key)
    return paths


_MAPPING_FIELDS = _mapping_fields(Params)


def _field_paths(cls: type, prefix: str = "") -> list[str]:
    paths = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        # an optional section (``OptimConfig | None``) is written out in params.yaml like a required one
        optional = typing.get_origin(tp) in (typing.Union, types.UnionType)
        inner = [a for a in typing.get_args(tp) if a is not type(None)] if optional else []
        section = tp if dataclasses.is_dataclass(tp) else next((a for a in inner if dataclasses.is_dataclass(a)), None)
        paths.extend(_field_paths(section, key) if section is not None else [key])
    return paths


def test_every_dataclass_field_is_in_params_yaml_and_nothing_else() -> None:
    assert sorted(_leaf_paths(_raw())) == sorted(_field_paths(Params))


@pytest.mark.parametrize("path", _field_paths(Params))
def test_removing_any_key_is_an_error_naming_it(path: str) -> None:
    raw = _raw()
    *parents, leaf = path.split(".")
    node = raw
    for p in parents:
        node = node[p]
    del node[leaf]
    with pytest.raises(ConfigError, match="^" + re.escape(f"{path}: missing key") + "$"):
        parse_section(Params, raw, "")
