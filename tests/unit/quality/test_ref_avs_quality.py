"""``validate_raw`` over Ref-AVS: AV-Synth output passes, planted bad items are quarantined with their reasons.

Runs of the whole stage (reader -> frame -> wav decode and image decode -> Great Expectations -> report) over
the output of :func:`crab.synth.ref_avs.write_ref_avs` (32 px) as written, then over a copy with one bad
file planted per clip: every row that uses the bad file is quarantined with the reason, the others pass.
The suite's checks that the reader never lets through (empty expression, unknown split or object) are
fed hand-made records in place of the reader.
"""

from __future__ import annotations

import dataclasses
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from crab.config import Params, load_params
from crab.datasets.records import ReadResult
from crab.datasets.ref_avs import RefAvsRecord, read_ref_avs
from crab.quality import raw
from crab.quality.quarantine import GroupReport
from crab.quality.raw import validate_raw
from crab.synth.ref_avs import write_ref_avs

PARAMS = load_params(REPO / "params.yaml")
SIZE = 32
RATE = PARAMS.synth.audio.sample_rate
ALL_RATES = sorted(PARAMS.validation.allowed_sample_rates)
CFG = dataclasses.replace(
    PARAMS.synth.ref_avs, num_train_videos=6, num_val_videos=3, num_test_s_videos=2, num_test_u_videos=2, null_prob=1.0
)


def _params(ref_avs: Path) -> Params:
    """The real params.yaml with only ``ref_avs`` pointed somewhere (the other roots do not exist)."""
    absent = str(ref_avs.parent / "absent")
    datasets = dataclasses.replace(
        PARAMS.datasets,
        ave=absent,
        llp=absent,
        avsbench=absent,
        music_avqa=absent,
        valor=absent,
        avss=absent,
        ref_avs=str(ref_avs),
    )
    return dataclasses.replace(
        PARAMS,
        datasets=datasets,
        validation=dataclasses.replace(PARAMS.validation, max_failure_rate=1.0),
        avuie=dataclasses.replace(PARAMS.avuie, tasks=[]),
    )


def _run(ref_avs: Path, workdir: Path) -> GroupReport:
    workdir.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        result = validate_raw(_params(ref_avs))
    assert [name for name, group in result.groups.items() if group.present] == ["ref_avs"]
    return result.groups["ref_avs"]


def _png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, format="PNG")


def _wav(path: Path, seconds: float, rate: int) -> None:
    pcm = (8000 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())


@pytest.fixture(scope="module")
def synth_ref_avs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "ref_avs"
    video = dataclasses.replace(PARAMS.synth.video, size=SIZE, fps=4)
    assert write_ref_avs(root, CFG, video, PARAMS.synth.audio, PARAMS.synth.difficulty, seed=5) == 13
    return root


def test_synth_output_passes_with_nothing_quarantined(synth_ref_avs: Path, tmp_path: Path) -> None:
    group = _run(synth_ref_avs, tmp_path)
    assert group.num_items == len(read_ref_avs(synth_ref_avs).records) > 13
    assert group.quarantined == ()
    assert all(e.success for e in group.expectations), [e for e in group.expectations if not e.success]
    assert len(group.expectations) == 15  # 4 media checks + 8 image checks + 3 field checks
    assert group.root == str(synth_ref_avs)


def test_planted_bad_items_are_quarantined_with_their_reasons(synth_ref_avs: Path, tmp_path: Path) -> None:
    root = tmp_path / "ref_avs"
    shutil.copytree(synth_ref_avs, root)
    records = read_ref_avs(root).records
    clips = list(dict.fromkeys(r.video_id for r in records if r.split in ("train", "val")))  # 9 clips
    bad: dict[str, tuple[str, ...]] = {}

    def using(path: Path, reason) -> None:
        """Every row that uses ``path`` gets ``reason(row)``."""
        rows = [r for r in records if path in (r.audio_path, *r.frame_paths, *r.mask_paths)]
        assert rows, path
        for r in rows:
            bad[r.source] = (reason(r),)

    def referring(vid: str) -> RefAvsRecord:
        return next(r for r in records if r.video_id == vid and not r.is_null)

    # 0: a 16 x 16 mask; 1: a mask holding 128; 2: an RGB mask.
    r = referring(clips[0])
    _png(r.mask_paths[0], np.zeros((16, 16), np.uint8))
    using(r.mask_paths[0], lambda _: "mask size differs from its frame's: 00000.png is 16x16 px, frame 0.jpg 32x32 px")
    r = referring(clips[1])
    _png(r.mask_paths[2], np.full((SIZE, SIZE), 128, np.uint8))
    using(
        r.mask_paths[2],
        lambda _: "mask values other than 0 (background) and 255 (referred object): 00002.png holds 128",
    )
    r = referring(clips[2])
    _png(r.mask_paths[1], np.zeros((SIZE, SIZE, 3), np.uint8))
    using(r.mask_paths[1], lambda _: "mask not single-channel 8-bit (L) or 1-bit (1): 00001.png is mode RGB")
    # 3: a frame that is no image; 4: an 11th frame file.
    r = referring(clips[3])
    r.frame_paths[4].write_bytes(b"not a jpeg")
    using(r.frame_paths[4], lambda _: "frame not decodable: 4.jpg: not an image")
    r = referring(clips[4])
    shutil.copyfile(r.frame_paths[0], r.frame_paths[0].with_name("10.jpg"))
    media = r.audio_path.parent
    using(r.frame_paths[0], lambda _: f"11 frame files in {media}/frames, expected 10")
    # 5: a null row's mask marks pixels; 6: a referred object's masks are all empty.
    r = next(r for r in records if r.video_id == clips[5] and r.is_null)
    _png(r.mask_paths[3], np.full((SIZE, SIZE), 255, np.uint8))
    using(r.mask_paths[3], lambda _: "null row (no object matches) has non-empty masks: 00003.png")
    r = referring(clips[6])
    for path in r.mask_paths:
        _png(path, np.zeros((SIZE, SIZE), np.uint8))
    folder = r.mask_paths[0].parent
    using(
        r.mask_paths[0],
        lambda row: f"the referred object {row.object_name!r} is never marked: all 10 masks of {folder} are empty",
    )
    # 7: a truncated wav; 8: an 8 kHz wav.
    r = referring(clips[7])
    r.audio_path.write_bytes(r.audio_path.read_bytes()[: 44 + 2 * 80_000])
    audio = r.audio_path
    using(
        audio,
        lambda _: f"media {audio}: truncated or corrupt (decoded 80000 of {10 * RATE} audio samples)",
    )
    r = referring(clips[8])
    _wav(r.audio_path, 10, 8000)
    using(r.audio_path, lambda _: f"audio sample rate 8000 Hz is not one of {ALL_RATES}")
    # A test_u clip's frame is missing (the reader rejects its rows); a row of split TODO.
    r = next(r for r in records if r.split == "test_u")
    r.frame_paths[9].unlink()
    using(r.frame_paths[9], lambda _: f"missing media file {r.frame_paths[9]}")
    csv_path = root / "metadata.csv"
    with csv_path.open("a", encoding="utf-8", newline="") as f:
        f.write(f"{r.video_id},{r.video_id}_saw_9,TODO,0,The saw.\r\n")
    todo = f"{csv_path}:{len(csv_path.read_text(encoding='utf-8').splitlines())}"
    bad[todo] = ("unknown split 'TODO' (expected one of ['train', 'val', 'test_s', 'test_u', 'test_n'])",)

    group = _run(root, tmp_path / "work")

    assert {q.source: q.reasons for q in group.quarantined} == bad
    assert group.num_items == len(records) + 1
    assert group.num_passed == len(records) + 1 - len(bad) > 0


def test_suite_checks_quarantine_rows_the_reader_would_reject(synth_ref_avs: Path, tmp_path: Path, monkeypatch) -> None:
    good = read_ref_avs(synth_ref_avs, "val").records[0]
    records = [
        dataclasses.replace(good, source="/fake.csv:2"),
        dataclasses.replace(good, source="/fake.csv:3", expression=""),
        dataclasses.replace(good, source="/fake.csv:4", split="dev"),  # type: ignore[arg-type]
        dataclasses.replace(good, source="/fake.csv:5", object_name="kazoo"),
    ]

    def read(root: Path, split: str | None) -> ReadResult[RefAvsRecord]:
        return ReadResult(records=[r for r in records if split is None or r.split == split or split == "val"])

    monkeypatch.setitem(raw._SPECS, "ref_avs", dataclasses.replace(raw._SPECS["ref_avs"], splits=("val",), read=read))
    group = _run(synth_ref_avs, tmp_path / "work")
    assert {q.source: q.reasons for q in group.quarantined} == {
        "/fake.csv:3": ("empty expression",),
        "/fake.csv:4": ("unknown split 'dev' (expected one of ['train', 'val', 'test_s', 'test_u', 'test_n'])",),
        "/fake.csv:5": ("unknown object 'kazoo' (not one of Ref-AVS's 52 categories)",),
    }
    assert (group.num_items, group.num_passed) == (4, 1)
