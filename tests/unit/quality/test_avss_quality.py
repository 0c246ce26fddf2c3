"""``validate_raw`` over AVSS (AVSBench-semantic v2): AV-Synth output passes, planted bad clips are quarantined.

Runs of the whole stage (reader -> frame -> wav decode and image decode -> Great Expectations -> report) over
the output of :func:`crab.synth.avss.write_avss` (32 px) as written, then over a copy with one bad thing
planted per clip: each bad clip is quarantined with exactly its reason, the others pass. Rows of the v1
subsets (S4 / MS3, validated from their own layout) are not part of the group.
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
from crab.datasets.avss import AvssRecord, read_avss
from crab.datasets.vocab_seg import AVSS_PALETTE
from crab.quality.quarantine import GroupReport
from crab.quality.raw import validate_raw
from crab.synth.avss import write_avss

PARAMS = load_params(REPO / "params.yaml")
SIZE = 32
RATE = PARAMS.synth.audio.sample_rate
ALL_RATES = sorted(PARAMS.validation.allowed_sample_rates)
CFG = dataclasses.replace(PARAMS.synth.avss, num_train=8, num_val=4, num_test=4, partly_visible_prob=0.2)
PALETTE = np.array(AVSS_PALETTE, dtype=np.uint8)  # (71, 3)


def _params(avss: Path) -> Params:
    """The real params.yaml with only ``avss`` pointed somewhere (the other roots do not exist)."""
    absent = str(avss.parent / "absent")
    datasets = dataclasses.replace(
        PARAMS.datasets,
        ave=absent,
        llp=absent,
        avsbench=absent,
        music_avqa=absent,
        valor=absent,
        ref_avs=absent,
        avss=str(avss),
    )
    return dataclasses.replace(
        PARAMS,
        datasets=datasets,
        validation=dataclasses.replace(PARAMS.validation, max_failure_rate=1.0),
        avuie=dataclasses.replace(PARAMS.avuie, tasks=[]),
    )


def _run(avss: Path, workdir: Path) -> GroupReport:
    workdir.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        result = validate_raw(_params(avss))
    assert [name for name, group in result.groups.items() if group.present] == ["avss"]
    return result.groups["avss"]


def _png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, format="PNG")


def _semantic(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


@pytest.fixture(scope="module")
def synth_avss(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "avss"
    video = dataclasses.replace(PARAMS.synth.video, size=SIZE, fps=4)
    assert write_avss(root, CFG, video, PARAMS.synth.audio, PARAMS.synth.difficulty, seed=5) == 16
    return root


def test_synth_output_passes_with_nothing_quarantined(synth_avss: Path, tmp_path: Path) -> None:
    group = _run(synth_avss, tmp_path)
    assert group.num_items == 16 and group.quarantined == ()
    assert all(e.success for e in group.expectations), [e for e in group.expectations if not e.success]
    assert len(group.expectations) == 15  # 4 media checks + frames, 10 frames + 2 mask files + 7 mask / a_obj rules
    assert group.root == str(synth_avss)


def test_planted_bad_items_are_quarantined_with_their_reasons(synth_avss: Path, tmp_path: Path) -> None:
    root = tmp_path / "avss"
    shutil.copytree(synth_avss, root)
    records = read_avss(root, subset="v2").records
    clips = iter(records)
    bad: dict[str, str] = {}  # source -> its one reason (prefix of it where the reason quotes PIL's error)

    def plant(reason: str) -> AvssRecord:
        record = next(clips)
        bad[record.source] = reason
        return record

    # semantic masks: 16 x 16; a value that is no class; an RGB image
    r = plant("mask size differs from its frame's: labels_semantic/0.png is 16x16 px, its frame 32x32 px")
    _png(r.semantic_mask_paths[0], np.zeros((16, 16), np.uint8))
    r = plant("labels_semantic values that are no AVSS class index (0..70): labels_semantic/2.png holds 71, 200")
    semantic = _semantic(r.semantic_mask_paths[2]).copy()
    semantic[:2, :2], semantic[-1, -1] = 200, 71
    _png(r.semantic_mask_paths[2], semantic)
    r = plant("labels_semantic mask not 8-bit grey (L): labels_semantic/5.png is mode RGB")
    _png(r.semantic_mask_paths[5], np.zeros((SIZE, SIZE, 3), np.uint8))
    # colour masks: grey; a colour outside the palette; the colours of another map
    r = plant("labels_rgb mask not 8-bit RGB: labels_rgb/1.png is mode L")
    _png(r.rgb_mask_paths[1], np.zeros((SIZE, SIZE), np.uint8))
    r = plant("labels_rgb colours outside the 71-colour AVSS palette: labels_rgb/9.png holds (1,2,3)")
    rgb = PALETTE[_semantic(r.semantic_mask_paths[9])]
    rgb[3, 4] = (1, 2, 3)
    _png(r.rgb_mask_paths[9], rgb)
    r = plant("")
    wrong = int((_semantic(r.semantic_mask_paths[4]) != 1).sum())  # class 1 (accordion) is never rendered
    bad[r.source] = (
        f"labels_rgb is not the palette colouring of labels_semantic: 4.png: {wrong} pixels of labels_rgb "
        "are not the colour of labels_semantic"
    )
    _png(r.rgb_mask_paths[4], np.broadcast_to(PALETTE[1], (SIZE, SIZE, 3)).copy())
    # a class a_obj does not name (both masks agree); an a_obj name that is no AVSS class
    r = plant("")
    bad[r.source] = (
        f"classes 'accordion' are marked in labels_semantic but a_obj {r.sounding_object!r} does not name them"
    )
    semantic = _semantic(r.semantic_mask_paths[6]).copy()
    semantic[:3, :3] = 1
    _png(r.semantic_mask_paths[6], semantic)
    _png(r.rgb_mask_paths[6], PALETTE[semantic])
    r = plant("")
    a_obj = f"{r.sounding_object}_kazoo"
    bad[r.source] = f"a_obj {a_obj!r} names 'kazoo', not among the 70 AVSS object classes"
    csv_path = root / "metadata.csv"
    lines = csv_path.read_text(encoding="utf-8").split("\n")
    lineno = int(r.source.rsplit(":", 1)[1])
    lines[lineno - 1] = lines[lineno - 1].replace(f",{r.sounding_object},", f",{a_obj},")
    csv_path.write_text("\n".join(lines), encoding="utf-8")
    # files: a frame that is no image; an 11th frame file; a truncated colour mask; a 5-s wav; an 8 kHz wav
    r = plant("frame not decodable: 3.jpg: not an image")
    r.frame_paths[3].write_bytes(b"not a jpeg")
    r = plant("")
    bad[r.source] = f"11 frame files in {r.audio_path.parent}/frames, expected 10"
    shutil.copyfile(r.frame_paths[0], r.frame_paths[0].with_name("10.jpg"))
    r = plant("mask not decodable: labels_rgb 7.png: truncated or corrupt")
    data = r.rgb_mask_paths[7].read_bytes()
    r.rgb_mask_paths[7].write_bytes(data[: len(data) // 2])
    r = plant("clip lasts 5.00 s, expected 10 +- 0.5 s")
    with wave.open(str(r.audio_path), "rb") as wav:
        pcm = wav.readframes(5 * RATE)
    with wave.open(str(r.audio_path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm)
    r = plant(f"audio sample rate 8000 Hz is not one of {ALL_RATES}")
    with wave.open(str(r.audio_path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(np.zeros(10 * 8000, "<i2").tobytes())
    # rows the reader rejects: a missing mask, an unknown split; a v1s row (not AVSS's) is left out
    r = plant("")
    bad[r.source] = f"missing media file {r.semantic_mask_paths[8]}"
    r.semantic_mask_paths[8].unlink()
    with csv_path.open("a", encoding="utf-8", newline="") as f:
        f.write(f"{r.video_id},{r.video_id}_0_10000,0,0,dog,TODO,v2\n")
        f.write(f"{r.video_id},{r.video_id}_0_5000,0,0,dog,train,v1s\n")  # no v1s folder: missing media
    todo = f"{csv_path}:{len(csv_path.read_text(encoding='utf-8').splitlines()) - 1}"
    bad[todo] = "unknown split 'TODO' (expected one of ['train', 'val', 'test'])"
    good = [next(clips) for _ in range(2)]

    group = _run(root, tmp_path / "work")

    got = {q.source: q.reasons for q in group.quarantined}
    assert set(got) == set(bad)
    for source, reasons in got.items():
        assert len(reasons) == 1 and reasons[0].startswith(bad[source]), (source, reasons, bad[source])
    assert not {r.source for r in good} & set(got)
    assert group.num_items == len(records) + 1  # the TODO row counts, the v1s row is not AVSS's
    assert group.num_passed == len(records) + 1 - len(bad) == 2
