"""Tests of crab.datasets.avss and the AVSS vocabulary / palette (format: dataset-layouts.md section 5)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from crab.datasets.avss import read_avss, read_label2idx
from crab.datasets.vocab_seg import AVSS_CLASSES, AVSS_PALETTE, voc_color
from crab.errors import DataError

HEADER = "vid,uid,s_min,s_sec,a_obj,split,label"


def _clip(root: Path, subset: str, uid: str, num_frames: int, num_masks: int, kinds: tuple[str, ...] = ()) -> None:
    """Write a clip folder; ``kinds`` = mask folders to write (default both)."""
    folder = root / subset / uid
    paths = [folder / "audio.wav", *(folder / "frames" / f"{i}.jpg" for i in range(num_frames))]
    for kind in kinds or ("labels_rgb", "labels_semantic"):
        paths += [folder / kind / f"{i}.png" for i in range(num_masks)]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def _metadata(root: Path, rows: list[str], label2idx_base: int | None = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if label2idx_base is not None:
        mapping = {name: k + label2idx_base for k, name in enumerate(AVSS_CLASSES)}
        (root / "label2idx.json").write_text(json.dumps(mapping), encoding="utf-8")
    path = root / "metadata.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def test_the_71_classes_are_background_then_alphabetical() -> None:
    assert len(AVSS_CLASSES) == 71 and len(set(AVSS_CLASSES)) == 71
    assert AVSS_CLASSES[0] == "background" and list(AVSS_CLASSES[1:]) == sorted(AVSS_CLASSES[1:])
    # pixel values decoded from Crab's samples (dataset-layouts 5.3): 45 = mower, 41 = man, 14 = clarinet
    assert (AVSS_CLASSES[45], AVSS_CLASSES[41], AVSS_CLASSES[14]) == ("mower", "man", "clarinet")


@pytest.mark.parametrize(
    ("index", "name", "rgb"),
    [
        (0, "background", (0, 0, 0)),
        (1, "accordion", (128, 0, 0)),
        (7, "bird", (128, 128, 128)),
        (8, "boat", (64, 0, 0)),
        (14, "clarinet", (64, 128, 128)),
        (32, "handpan", (0, 0, 64)),
        (47, "piano", (192, 128, 192)),
        (63, "trumpet", (192, 192, 192)),
        (64, "tuba", (32, 0, 0)),
        (69, "wolf", (160, 0, 128)),
        (70, "woman", (32, 128, 128)),
    ],
)
def test_palette_matches_the_published_table(index: int, name: str, rgb: tuple[int, int, int]) -> None:
    assert AVSS_CLASSES[index] == name and AVSS_PALETTE[index] == rgb == voc_color(index)


def test_palette_has_71_distinct_colours_and_rejects_bad_indices() -> None:
    assert len(AVSS_PALETTE) == 71 and len(set(AVSS_PALETTE)) == 71
    assert voc_color(255) == (224, 224, 192)  # bits 11111111 dealt R,G,B,R,G,B,R,G
    with pytest.raises(ValueError, match="outside 0..255"):
        voc_color(256)


def test_reads_each_subset_with_its_frame_and_mask_counts(tmp_path: Path) -> None:
    path = _metadata(
        tmp_path,
        [
            "HxMoMMrA6Eo,HxMoMMrA6Eo_0_5000,0,0,mower,train,v1s",
            "HxMoMMrA6Eo,HxMoMMrA6Eo_5000_10000,0,5,mower,test,v1s",
            "3vheOi4y540,3vheOi4y540_1,0,0,man_guitar,train,v1m",
            "_-apT0tfo6U,_-apT0tfo6U_140000_150000,2,20,girl_guitar,val,v2",
        ],
    )
    _clip(tmp_path, "v1s", "HxMoMMrA6Eo_0_5000", num_frames=5, num_masks=1)
    _clip(tmp_path, "v1s", "HxMoMMrA6Eo_5000_10000", num_frames=5, num_masks=5)
    _clip(tmp_path, "v1m", "3vheOi4y540_1", num_frames=5, num_masks=5)
    _clip(tmp_path, "v2", "_-apT0tfo6U_140000_150000", num_frames=10, num_masks=10)
    result = read_avss(tmp_path)
    assert result.rejected == []
    s4_train, s4_test, ms3, avss = result.records
    clip = tmp_path / "v1s" / "HxMoMMrA6Eo_0_5000"
    assert (s4_train.item_id, s4_train.video_id, s4_train.subset, s4_train.task) == (
        "HxMoMMrA6Eo_0_5000",
        "HxMoMMrA6Eo",
        "v1s",
        "s4",
    )
    assert s4_train.audio_path == clip / "audio.wav" and s4_train.source == f"{path}:2"
    assert s4_train.frame_paths == tuple(clip / "frames" / f"{i}.jpg" for i in range(5))
    assert s4_train.rgb_mask_paths == (clip / "labels_rgb" / "0.png",)
    assert s4_train.semantic_mask_paths == (clip / "labels_semantic" / "0.png",)
    assert len(s4_test.rgb_mask_paths) == 5 and ms3.task == "ms3" and len(ms3.semantic_mask_paths) == 5
    assert ms3.sounding_object == "man_guitar"
    assert avss.task == "avss" and (avss.s_min, avss.s_sec, avss.split) == (2, 20, "val")
    assert len(avss.frame_paths) == 10 and avss.frame_paths[-1].name == "9.jpg"
    assert avss.rgb_mask_paths[-1] == tmp_path / "v2" / "_-apT0tfo6U_140000_150000" / "labels_rgb" / "9.png"

    assert [r.item_id for r in read_avss(tmp_path, subset="v1s").records] == [s4_train.item_id, s4_test.item_id]
    assert [r.item_id for r in read_avss(tmp_path, split="test", subset="v1s").records] == [s4_test.item_id]
    assert read_avss(tmp_path, split="test", subset="v2").records == []


def test_bad_rows_are_rejected_with_line_and_reason(tmp_path: Path) -> None:
    rows = [
        "aaaaaaaaaaa,aaaaaaaaaaa_1,0,0,man,train,v1m",  # 2: fine
        "bbbbbbbbbbb,bbbbbbbbbbb_1,0,0,man,dev,v1m",  # 3: unknown split
        "ccccccccccc,ccccccccccc_1,0,0,man,train,v3",  # 4: unknown subset
        "ddddddddddd,ddddddddddd_1,zero,0,man,train,v1m",  # 5: s_min not a number
        "aaaaaaaaaaa,aaaaaaaaaaa_1,0,0,man,train,v1m",  # 6: duplicate uid
        "eeeeeeeeeee,eeeeeeeeeee_1,0,0,man,train",  # 7: 6 fields
        "fffffffffff,fffffffffff_1,0,0,man,train,v1m",  # 8: no labels_rgb masks
        "ggggggggggg,../ggg,0,0,man,train,v1m",  # 9: uid not a folder name
        "hhhhhhhhhhh,hhhhhhhhhhh_1,0,-3,man,train,v1m",  # 10: negative s_sec
    ]
    path = _metadata(tmp_path, rows)
    _clip(tmp_path, "v1m", "aaaaaaaaaaa_1", num_frames=5, num_masks=5)
    _clip(tmp_path, "v1m", "fffffffffff_1", num_frames=5, num_masks=5, kinds=("labels_semantic",))
    result = read_avss(tmp_path)
    assert [r.item_id for r in result.records] == ["aaaaaaaaaaa_1"]
    reasons = {int(r.source.rsplit(":", 1)[1]): r.reason for r in result.rejected}
    assert all(r.source.startswith(str(path)) and r.dataset == "avss" for r in result.rejected)
    assert reasons == {
        3: "unknown split 'dev' (expected one of ['train', 'val', 'test'])",
        4: "unknown subset label 'v3' (expected one of ['v1s', 'v1m', 'v2'])",
        5: "s_min 'zero' is not a whole number",
        6: "duplicate uid (first at line 2)",
        7: "expected 7 comma-separated fields (vid, uid, s_min, s_sec, a_obj, split, label), got 6",
        8: f"missing media file {tmp_path / 'v1m' / 'fffffffffff_1' / 'labels_rgb' / '0.png'} (and 4 more)",
        9: "uid '../ggg' is not a file name",
        10: "s_sec -3 is negative",
    }
    per_split = read_avss(tmp_path, split="train")  # unknown split / subset rows are reported only in a full read
    assert sorted(int(r.source.rsplit(":", 1)[1]) for r in per_split.rejected) == [5, 6, 8, 9, 10]


def test_label2idx_may_be_0_or_1_based_but_must_list_the_classes_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _metadata(tmp_path, [], label2idx_base=1)
    assert read_label2idx(tmp_path)["woman"] == 70 and read_avss(tmp_path).records == []
    _metadata(tmp_path, [], label2idx_base=0)
    assert read_label2idx(tmp_path)["background"] == 0

    swapped = list(AVSS_CLASSES)
    swapped[1], swapped[2] = swapped[2], swapped[1]
    (tmp_path / "label2idx.json").write_text(json.dumps({n: k for k, n in enumerate(swapped)}), encoding="utf-8")
    with pytest.raises(DataError, match="entry 1 is 'airplane' where 'accordion' belongs"):
        read_avss(tmp_path)
    (tmp_path / "label2idx.json").write_text(json.dumps({n: 2 * k for k, n in enumerate(AVSS_CLASSES)}))
    with pytest.raises(DataError, match=r"values must be 0..70 \(official\) or 1..71"):
        read_label2idx(tmp_path)
    (tmp_path / "label2idx.json").write_text(json.dumps({n: k for k, n in enumerate(AVSS_CLASSES[:70])}))
    with pytest.raises(DataError, match="has 70 classes, entry 70 is nothing where 'woman' belongs"):
        read_label2idx(tmp_path)

    (tmp_path / "label2idx.json").unlink()
    with caplog.at_level(logging.WARNING, logger="crab.datasets.avss"):
        read_avss(tmp_path)
    assert "no label2idx.json" in caplog.text


def test_metadata_without_header_or_file_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="metadata.csv: file not found"):
        read_avss(tmp_path, check_media=False)
    (tmp_path / "metadata.csv").write_text("aaaaaaaaaaa,aaaaaaaaaaa_1,0,0,man,train,v1m\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 1 must be the header"):
        read_avss(tmp_path)
    with pytest.raises(ValueError, match="unknown AVSS subset"):
        read_avss(tmp_path, subset="v3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown AVSS split"):
        read_avss(tmp_path, split="dev")  # type: ignore[arg-type]
