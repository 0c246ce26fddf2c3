"""replace_dir: the target is either the old or the complete new folder, never half written."""

from __future__ import annotations

from pathlib import Path

import pytest

from crab.atomic import replace_dir


def test_success_replaces_the_folder_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with replace_dir(target) as tmp:
        assert not (tmp / "old.txt").exists()
        (tmp / "new.txt").write_text("new")
        assert (target / "old.txt").exists()  # still the old version while writing
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failure_keeps_the_old_folder(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), replace_dir(target) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("killed")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_creates_a_missing_target_and_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    with replace_dir(target) as tmp:
        (tmp / "x").write_text("x")
    assert (target / "x").read_text() == "x"
