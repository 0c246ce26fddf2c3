"""The profile switch: ``crab profile paper`` puts every value of the paper profile into ``params.yaml``.

DESIGN.md section 2: one code path, two profiles. The values that differ between them (training schedule,
feature dtype, decoding budget, the tiny LLM's language phase) live in ``configs/profiles/<name>.yaml`` as
dotted ``params.yaml`` keys; both files hold the same keys, so switching back and forth restores every
value. Sizes of the paper model are not there: they come from the released weights (``base_models.pretrained``).

Two ways to switch, both ending in a ``params.yaml`` that DVC tracks as usual:

* ``crab profile paper`` rewrites ``params.yaml`` in place (comments kept; the result is loaded strictly
  before it is written, so a profile never leaves a broken file), then ``dvc repro``;
* ``dvc exp run $(crab profile paper --exp-args)``: the same values as ``-S key=value`` overrides of one
  experiment (values in JSON, which DVC reads as YAML), leaving the committed ``params.yaml`` alone.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, YAMLError

from crab.config import ConfigError, Params, parse_section
from crab.errors import CrabError

__all__ = ["PROFILES_DIR", "apply_profile", "exp_args", "load_profile", "profile_names"]

#: Where the profiles live, relative to the repository root (the working directory of every stage).
PROFILES_DIR = Path("configs/profiles")


def profile_names(profiles_dir: Path = PROFILES_DIR) -> list[str]:
    """The profiles there are (file stems)."""
    return sorted(p.stem for p in Path(profiles_dir).glob("*.yaml"))


def load_profile(name: str, profiles_dir: Path = PROFILES_DIR) -> dict[str, Any]:
    """Dotted key -> value of profile ``name``.

    Raises:
        CrabError: no such profile (the known ones are named), or the file is not a YAML mapping.
    """
    path = Path(profiles_dir) / f"{name}.yaml"
    if not path.is_file():
        raise CrabError(f"{path}: no profile {name!r}; known: {', '.join(profile_names(profiles_dir)) or 'none'}")
    yaml = YAML()  # round trip: values keep the file's style (flow lists, quotes, 1.0e-4) when written to params
    yaml.preserve_quotes = True
    try:
        values = yaml.load(path.read_text(encoding="utf-8"))
    except YAMLError as err:
        raise CrabError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(values, dict) or not values:
        raise CrabError(f"{path}: expected a mapping of dotted params keys to values")
    return values


def apply_profile(name: str, params_path: str | Path = "params.yaml", profiles_dir: Path = PROFILES_DIR) -> list[str]:
    """Rewrite ``params_path`` with profile ``name``'s values; returns the keys whose value changed.

    Raises:
        CrabError: the profile is unknown or names a key ``params.yaml`` does not have.
        ConfigError: the result would not load (nothing is written then).
    """
    params_path = Path(params_path)
    values = load_profile(name, profiles_dir)
    yaml = YAML()  # round trip: comments and layout of params.yaml survive
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)  # params.yaml's own indentation
    document = yaml.load(params_path.read_text(encoding="utf-8"))
    changed = []
    for key, value in values.items():
        *parents, leaf = key.split(".")
        section = document
        for part in parents:
            section = section.get(part) if isinstance(section, dict) else None
        if not isinstance(section, dict) or leaf not in section:
            raise CrabError(f"{profiles_dir}/{name}.yaml: {key}: no such key in {params_path}")
        if section[leaf] != value:
            section[leaf] = value
            changed.append(key)
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    text = buffer.getvalue()
    try:
        parse_section(Params, YAML(typ="safe", pure=True).load(text), "")
    except ConfigError as err:
        raise ConfigError(f"{params_path} with profile {name!r}: {err}") from None
    tmp = params_path.with_name(f".{params_path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, params_path)
    return changed


def exp_args(name: str, profiles_dir: Path = PROFILES_DIR) -> list[str]:
    """``dvc exp run`` arguments that set profile ``name``: ``["-S", "key=value", ...]``."""
    return [
        arg for key, value in load_profile(name, profiles_dir).items() for arg in ("-S", f"{key}={_override(value)}")
    ]


def _override(value: Any) -> str:
    """A value in the override grammar ``dvc exp run -S`` parses (Hydra's): quoted strings, bare mapping keys."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{_override(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_override(item) for item in value) + "]"
    return json.dumps(value)  # null, true / false, numbers, "strings"
