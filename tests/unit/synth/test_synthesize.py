"""Tests for ``crab.synth.synthesize``: refusal to overwrite, atomic swap, whole-run determinism."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from crab.config import load_params
from crab.errors import CrabError
from crab.synth import SynthResult, synthesize
from crab.synth import run as run_module

PARAMS = load_params(Path(__file__).parents[3] / "params.yaml")


def _tiny_params(seed: int | None = None):
    synth = PARAMS.synth
    synth = dataclasses.replace(
        synth,
        seed=synth.seed if seed is None else seed,
        video=dataclasses.replace(synth.video, size=32, fps=2),
        ave=dataclasses.replace(synth.ave, num_train=2, num_val=1, num_test=1, duration_s=3, min_event_s=1),
        llp=dataclasses.replace(synth.llp, num_train=1, num_val=1, num_test=1),
        s4=dataclasses.replace(synth.s4, num_train=1, num_val=1, num_test=1),
        ms3=dataclasses.replace(synth.ms3, num_train=1, num_val=1, num_test=1),
        music_avqa=dataclasses.replace(
            synth.music_avqa, num_train_videos=1, num_val_videos=1, num_test_videos=1, duration_s=2
        ),
        valor=dataclasses.replace(synth.valor, num_train=1, num_val=1, duration_s=2),
        ref_avs=dataclasses.replace(
            synth.ref_avs, num_train_videos=1, num_val_videos=1, num_test_s_videos=1, num_test_u_videos=1
        ),
        avss=dataclasses.replace(synth.avss, num_train=1, num_val=1, num_test=1),
        lvis=dataclasses.replace(synth.lvis, num_train_images=2, num_val_images=1),
    )
    return dataclasses.replace(PARAMS, synth=synth)  # datasets stay relative: data/raw/<name>


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_two_runs_write_identical_bytes(tmp_path, monkeypatch):
    digests = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        monkeypatch.chdir(tmp_path / run)  # params.datasets paths are relative to the working directory
        result = synthesize(_tiny_params())
        assert isinstance(result, SynthResult) and result.seconds > 0
        assert result.num_clips == {
            "ave": 4,
            "llp": 3,
            "avsbench": 6,
            "music_avqa": 3,
            "valor": 2,
            "ref_avs": 4,
            "avss": 3,
            "lvis": 3,
        }
        digests.append(_digest(tmp_path / run))
    assert digests[0] == digests[1]
    names = set(digests[0])
    assert {"data/raw/ave/Annotations.txt", "data/raw/valor/train_samples.json"} <= names
    assert (
        sum(n.endswith(".mp4") for n in names)
        == sum(result.num_clips.values())
        - result.num_clips["ref_avs"]
        - result.num_clips["avss"]
        - result.num_clips["lvis"]
    )  # no mp4s (Ref-AVS, AVSS, LVIS stills)
    assert not any("synth-tmp" in n or "synth-old" in n for n in names)  # temp folders are gone
    (tmp_path / "c").mkdir()
    monkeypatch.chdir(tmp_path / "c")
    synthesize(_tiny_params(seed=1))
    other = _digest(tmp_path / "c")
    assert other["data/raw/ave/Annotations.txt"] != digests[0]["data/raw/ave/Annotations.txt"]


def test_refuses_to_overwrite_without_force(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    valor = tmp_path / "data/raw/valor"
    valor.mkdir(parents=True)
    (valor / "mine.txt").write_text("real data", encoding="utf-8")
    (tmp_path / "data/raw/ave").mkdir()  # an empty folder is not data
    with pytest.raises(CrabError, match=r"refusing to overwrite .*data/raw/valor"):
        synthesize(_tiny_params())
    assert (valor / "mine.txt").read_text(encoding="utf-8") == "real data"
    assert sorted(p.name for p in (tmp_path / "data/raw").iterdir()) == ["ave", "valor"]  # nothing written
    assert not any((tmp_path / "data/raw/ave").iterdir())

    synthesize(_tiny_params(), force=True)
    assert not (valor / "mine.txt").exists() and (valor / "train_samples.json").exists()
    assert sorted(p.name for p in (tmp_path / "data/raw").iterdir()) == [
        "ave",
        "avsbench",
        "avss",
        "llp",
        "lvis",
        "music_avqa",
        "ref_avs",
        "valor",
    ]


def test_a_failing_writer_leaves_the_old_data_in_place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ave = tmp_path / "data/raw/ave"
    ave.mkdir(parents=True)
    (ave / "old.txt").write_text("old", encoding="utf-8")

    def broken(params, root):
        (root / "half.txt").write_text("half", encoding="utf-8")
        raise RuntimeError("disk full")

    monkeypatch.setattr(run_module, "write_ave", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        synthesize(_tiny_params(), force=True)
    assert sorted(p.name for p in ave.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in (tmp_path / "data/raw").iterdir()) == ["ave"]  # no temp folder left
