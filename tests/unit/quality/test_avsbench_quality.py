"""``validate_raw`` over AVSBench-object v1 (S4 and MS3): AV-Synth output passes, planted bad items are quarantined.

Runs of the whole stage (reader -> frame -> wav decode and PNG decode -> Great Expectations -> report):

- the output of :func:`crab.synth.avsbench.write_s4` / :func:`~crab.synth.avsbench.write_ms3` (4 clips per
  split, 32 px) as written: nothing may be quarantined;
- a copy with bad items planted in the files (a mask of the wrong size, a mask holding 128, a 0/1 mask, an
  RGB mask, an extra mask in S4 train, a missing frame and mask, a frame that is no image, a truncated,
  a 3-s and an 8 kHz wav, an unknown category, a duplicate name, a row of unknown split): exactly those
  are quarantined, each with its reason word for word, and the rest pass;
- hand-made records fed to the stage in place of the reader, for the suite's checks that the reader
  never lets through (unknown category, a name twice, masks on disk that break the S4 train rule);
- an absent ``avsbench`` folder (or sub-folder) is skipped with a warning; one that a task needs is an error.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from crab.config import Params, load_params
from crab.datasets.avsbench import AvsObjectRecord, read_ms3, read_s4
from crab.datasets.records import ReadResult
from crab.errors import CrabError
from crab.quality import raw
from crab.quality.quarantine import GroupReport, load_quarantined
from crab.quality.raw import validate_raw
from crab.synth.avsbench import write_ms3, write_s4
from crab.tasks import TASKS, Task

PARAMS = load_params(REPO / "params.yaml")
NUM_PER_SPLIT = 4
SIZE = 32  # frame side in pixels
RATE = PARAMS.synth.audio.sample_rate  # 16 kHz: 80,000 samples in a 5-s wav
ALL_RATES = sorted(PARAMS.validation.allowed_sample_rates)


def _params(avsbench: Path, tasks: list[str], max_failure_rate: float = 1.0) -> Params:
    """The real params.yaml with only ``avsbench`` pointed somewhere (the other roots do not exist)."""
    absent = str(avsbench.parent / "absent")
    datasets = dataclasses.replace(
        PARAMS.datasets, ave=absent, llp=absent, music_avqa=absent, valor=absent, avsbench=str(avsbench)
    )
    return dataclasses.replace(
        PARAMS,
        datasets=datasets,
        validation=dataclasses.replace(PARAMS.validation, max_failure_rate=max_failure_rate),
        avuie=dataclasses.replace(PARAMS.avuie, tasks=tasks),
    )


def _run(avsbench: Path, workdir: Path, max_failure_rate: float = 1.0) -> dict[str, GroupReport]:
    """Run the stage in ``workdir`` over ``avsbench``; return the present groups by name."""
    workdir.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        result = validate_raw(_params(avsbench, [], max_failure_rate))
    return {name: group for name, group in result.groups.items() if group.present}


def _png(path: Path, array: np.ndarray) -> None:
    """Write (H, W) or (H, W, 3) uint8 as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def _wav(path: Path, seconds: float, rate: int = RATE) -> None:
    """A 16-bit mono wav of a 440 Hz tone (a 44-byte header, then 2 bytes per sample)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(seconds * rate)
    pcm = (8000 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype("<i2")  # (n,)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())


def _mask(values: tuple[int, int] = (0, 255), size: int = SIZE) -> np.ndarray:
    """(size, size) uint8: a square of ``values[1]`` on ``values[0]``."""
    mask = np.full((size, size), values[0], dtype=np.uint8)
    mask[size // 4 : size // 2, size // 4 : size // 2] = values[1]
    return mask


@pytest.fixture(scope="module")
def synth_avsbench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real AV-Synth ``avsbench_data`` folder: S4 and MS3, 4 clips per split, 32 px, 4 fps."""
    root = tmp_path_factory.mktemp("synth") / "avsbench"
    video = dataclasses.replace(PARAMS.synth.video, size=SIZE, fps=4)
    for write, cfg in ((write_s4, PARAMS.synth.s4), (write_ms3, PARAMS.synth.ms3)):
        sizes = dataclasses.replace(cfg, num_train=NUM_PER_SPLIT, num_val=NUM_PER_SPLIT, num_test=NUM_PER_SPLIT)
        assert write(root, sizes, video, PARAMS.synth.audio, PARAMS.synth.difficulty, seed=11) == 3 * NUM_PER_SPLIT
    return root


def test_synth_output_passes_with_nothing_quarantined(synth_avsbench: Path, tmp_path: Path) -> None:
    groups = _run(synth_avsbench, tmp_path, max_failure_rate=0.0)  # any quarantined item would fail the stage
    assert set(groups) == {"s4", "ms3"}
    for name, num_checks in (("s4", 12), ("ms3", 11)):  # 4 media checks + 7 image / name checks (+ S4 category)
        group = groups[name]
        assert group.num_items == 3 * NUM_PER_SPLIT
        assert group.quarantined == ()
        assert all(e.success for e in group.expectations), [e for e in group.expectations if not e.success]
        assert len(group.expectations) == num_checks
    assert groups["s4"].root == str(synth_avsbench / "Single-source")
    quarantined = load_quarantined(tmp_path / "reports/validation/raw.json")
    assert (quarantined["s4"], quarantined["ms3"]) == (set(), set())


def test_planted_bad_items_are_quarantined_with_their_reasons(synth_avsbench: Path, tmp_path: Path) -> None:
    root = tmp_path / "avsbench"
    shutil.copytree(synth_avsbench, root)
    s4 = {split: [r for r in read_s4(root).records if r.split == split] for split in ("train", "val", "test")}
    ms3 = {split: [r for r in read_ms3(root).records if r.split == split] for split in ("train", "val", "test")}
    s4_csv, ms3_csv = root / "Single-source/s4_meta_data.csv", root / "Multi-sources/ms3_meta_data.csv"
    bad: dict[str, dict[str, tuple[str, ...]]] = {"s4": {}, "ms3": {}}

    # S4 train 0: its mask is 16 x 16 px, its frame 32 x 32.
    r = s4["train"][0]
    _png(r.mask_paths[0], _mask(size=16))
    bad["s4"][r.source] = (
        f"mask size differs from its frame's: {r.item_id}_1.png is 16x16 px, frame {r.item_id}_1.png 32x32 px",
    )
    # S4 train 1: a mask for frame 2 as well (S4 train annotates frame 1 only).
    r = s4["train"][1]
    _png(r.mask_paths[0].with_name(f"{r.item_id}_2.png"), _mask())
    bad["s4"][r.source] = (
        "train video has masks for frames [1,2]; S4 annotates frame 1 of a train video, all 5 of a val / test one",
    )
    # S4 train 2: the wav cut after 40,000 of its 80,000 samples.
    r = s4["train"][2]
    r.audio_path.write_bytes(r.audio_path.read_bytes()[: 44 + 2 * 40_000])
    bad["s4"][r.source] = (f"media {r.audio_path}: truncated or corrupt (decoded 40000 of 80000 audio samples)",)
    # S4 val 0: mask 3 holds the value 128.
    r = s4["val"][0]
    _png(r.mask_paths[2], _mask((0, 128)))
    bad["s4"][r.source] = (
        f"mask values other than 0 (background) and 255 (sounding object): {r.item_id}_3.png holds 128",
    )
    # S4 val 1: frame 4 is missing (the reader rejects the row).
    r = s4["val"][1]
    r.frame_paths[3].unlink()
    bad["s4"][r.source] = (f"missing media file {r.frame_paths[3]}",)
    # S4 val 2: a category outside the 23 (the reader rejects the row).
    r = s4["val"][2]
    lines = s4_csv.read_text(encoding="utf-8").splitlines(keepends=True)
    index = int(r.source.rsplit(":", 1)[1]) - 1
    lines[index] = lines[index].replace(f",{r.category},val", ",kazoo_playing,val")
    s4_csv.write_text("".join(lines), encoding="utf-8")
    bad["s4"][r.source] = ("unknown category 'kazoo_playing' (not one of S4's 23)",)
    # S4 test 0: its row once more at the end (the reader keeps the first and rejects the copy).
    r = s4["test"][0]
    line = r.source.rsplit(":", 1)[1]
    with s4_csv.open("a", encoding="utf-8") as f:
        f.write(f"{r.item_id},0,{r.category},test\n")
    bad["s4"][f"{s4_csv}:{len(s4_csv.read_text().splitlines())}"] = (f"duplicate name (first at line {line})",)
    # S4 test 1: mask 2 is RGB; S4 test 2: frame 5 is no image at all.
    r = s4["test"][1]
    _png(r.mask_paths[1], np.stack([_mask()] * 3, axis=-1))  # (H, W, 3)
    bad["s4"][r.source] = (f"mask not single-channel 8-bit (L) or 1-bit (1): {r.item_id}_2.png is mode RGB",)
    r = s4["test"][2]
    r.frame_paths[4].write_bytes(b"not a png")
    bad["s4"][r.source] = (f"frame not decodable: {r.item_id}_5.png: not an image",)

    # MS3 train 0: a 0/1 mask; MS3 train 1: an 8 kHz wav.
    r = ms3["train"][0]
    _png(r.mask_paths[0], _mask((0, 1)))
    bad["ms3"][r.source] = (
        f"mask values other than 0 (background) and 255 (sounding object): {r.item_id}_1.png holds 1",
    )
    r = ms3["train"][1]
    _wav(r.audio_path, 5, rate=8000)
    bad["ms3"][r.source] = (f"audio sample rate 8000 Hz is not one of {ALL_RATES}",)
    # MS3 val 0: mask 5 is missing (the reader rejects the row); MS3 val 1: mask 3 is 64 x 64 px.
    r = ms3["val"][0]
    r.mask_paths[4].unlink()
    bad["ms3"][r.source] = (f"missing media file {r.mask_paths[4]}",)
    r = ms3["val"][1]
    _png(r.mask_paths[2], _mask(size=64))
    bad["ms3"][r.source] = (
        f"mask size differs from its frame's: {r.item_id}_3.png is 64x64 px, frame {r.item_id}.mp4_3.png 32x32 px",
    )
    # MS3 test 0: a 3-s wav.
    r = ms3["test"][0]
    _wav(r.audio_path, 3)
    bad["ms3"][r.source] = ("clip lasts 3.00 s, expected 5 +- 0.5 s",)
    # A row whose split is unknown: only the read of every split reports it.
    with ms3_csv.open("a", encoding="utf-8") as f:
        f.write("ghostVideo1_2,dev\n")
    unknown_split = f"{ms3_csv}:{len(ms3_csv.read_text().splitlines())}"
    bad["ms3"][unknown_split] = ("unknown split 'dev' (expected one of ['train', 'val', 'test'])",)

    groups = _run(root, tmp_path / "work")

    for name in ("s4", "ms3"):
        group = groups[name]
        assert {q.source: q.reasons for q in group.quarantined} == bad[name]
        assert group.num_items == 3 * NUM_PER_SPLIT + 1  # the appended row is an item of its own
    # kept: S4 train 3, val 3, test 0 (the first of the two rows) and test 3; MS3 train 2-3, val 2-3, test 1-3
    assert (groups["s4"].num_passed, groups["ms3"].num_passed) == (4, 7)
    by_source = {q.source: q for q in groups["ms3"].quarantined}
    assert by_source[unknown_split].split == ""  # no known split
    assert by_source[ms3["val"][0].source].split == "val"  # a reader rejection keeps its split
    assert {q.source: q.split for q in groups["s4"].quarantined}[s4["train"][0].source] == "train"


# --------------------------------------------------------------------------------------------------
# The suite's own checks, on records the reader would never produce
# --------------------------------------------------------------------------------------------------


def _video(line: int, name: str, split: str, category: str, num_masks: int, num_listed: int, base: Path):
    """Row ``line`` of a fake S4 file: 5 frames, a 5-s wav and ``num_masks`` masks on disk, ``num_listed`` listed."""
    folder = base / split / name
    frames = tuple(folder / "frames" / f"{name}_{i}.png" for i in range(1, 6))
    masks = tuple(folder / "masks" / f"{name}_{i}.png" for i in range(1, 6))
    for path in frames:
        _png(path, np.full((SIZE, SIZE, 3), 90, dtype=np.uint8))
    for path in masks[:num_masks]:
        _png(path, _mask())
    _wav(folder / f"{name}.wav", 5)
    return AvsObjectRecord(
        item_id=name,
        video_id=name,
        task="s4",
        category=category,
        split=split,  # type: ignore[arg-type]
        video_path=folder / f"{name}.mp4",
        audio_path=folder / f"{name}.wav",
        frame_paths=frames,
        mask_paths=masks[:num_listed],
        source=f"/s4/meta.csv:{line}",
    )


def test_suite_checks_quarantine_with_pinned_reasons(tmp_path: Path, monkeypatch) -> None:
    base = tmp_path / "videos"
    records = [
        _video(2, "goodTrain01", "train", "dog_barking", 1, 1, base),
        _video(3, "badCategory", "train", "kazoo_playing", 1, 1, base),
        _video(4, "fiveMasks01", "train", "helicopter", 5, 1, base),  # masks 2-5 on disk too
        _video(5, "dupName0001", "train", "race_car", 1, 1, base),
        _video(6, "goodVal0001", "val", "race_car", 5, 5, base),
        _video(7, "oneMaskVal1", "val", "race_car", 1, 1, base),  # a val video with frame 1 masked only
        _video(8, "dupName0001", "test", "race_car", 5, 5, base),  # the same name in another split
    ]

    def read(root: Path, split: str | None) -> ReadResult[AvsObjectRecord]:
        return ReadResult(records=[r for r in records if split is None or r.split == split])

    monkeypatch.setitem(raw._SPECS, "s4", dataclasses.replace(raw._SPECS["s4"], read=read))
    (tmp_path / "avsbench" / "Single-source").mkdir(parents=True)  # present; the fake reader ignores it
    group = _run(tmp_path / "avsbench", tmp_path / "work")["s4"]

    rule = "S4 annotates frame 1 of a train video, all 5 of a val / test one"
    duplicate = "name 'dupName0001' occurs more than once (every copy quarantined)"
    assert {q.source: q.reasons for q in group.quarantined} == {
        "/s4/meta.csv:3": ("unknown category 'kazoo_playing' (not one of S4's 23)",),
        "/s4/meta.csv:4": (f"train video has masks for frames [1,2,3,4,5]; {rule}",),
        "/s4/meta.csv:5": (duplicate,),
        "/s4/meta.csv:7": (f"val video has masks for frames [1]; {rule}",),
        "/s4/meta.csv:8": (duplicate,),
    }
    assert (group.num_items, group.num_passed) == (7, 2)


# --------------------------------------------------------------------------------------------------
# Absent folders
# --------------------------------------------------------------------------------------------------


def test_absent_avsbench_folder_is_skipped_with_a_warning(
    synth_avsbench: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="crab.quality.raw"):
        assert _run(tmp_path / "no_avsbench", tmp_path / "work") == {}
    skipped = [r.getMessage() for r in caplog.records if "is absent; skipped" in r.getMessage()]
    assert f"validate_raw: dataset folder {tmp_path}/no_avsbench/Single-source (s4) is absent; skipped" in " ".join(
        skipped
    )
    assert any("no_avsbench/Multi-sources (ms3) is absent" in message for message in skipped)

    # Only S4 downloaded: S4 is validated, MS3 skipped.
    only_s4 = tmp_path / "only_s4"
    shutil.copytree(synth_avsbench / "Single-source", only_s4 / "Single-source")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="crab.quality.raw"):
        groups = _run(only_s4, tmp_path / "work2")
    assert set(groups) == {"s4"} and groups["s4"].quarantined == ()
    assert any("only_s4/Multi-sources (ms3) is absent" in r.getMessage() for r in caplog.records)


def test_absent_avsbench_folder_is_an_error_when_a_task_needs_it(tmp_path: Path, monkeypatch) -> None:
    # No task reads AVSBench-object yet: give S4 a spec whose dataset is the shared root.
    monkeypatch.setitem(raw.TASKS, Task.S4, dataclasses.replace(TASKS[Task.AVE], task=Task.S4, dataset="avsbench"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CrabError, match=r"no_avsbench/Single-source \(s4\) not found; avuie.tasks \['s4'\] need it"):
        validate_raw(_params(tmp_path / "no_avsbench", ["s4"]))
    assert not (tmp_path / "reports").exists()
