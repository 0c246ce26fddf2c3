"""Tests of crab.datasets.ref_avs on hand-written Ref-AVS trees (format: dataset-layouts.md section 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crab.datasets.ref_avs import read_ref_avs
from crab.datasets.vocab_seg import REF_AVS_OBJECTS
from crab.errors import DataError

HEADER = "vid,uid,split,fid,exp"
VID = "--KCIeTv6PM_14000_24000"


def _media(root: Path, media_id: str) -> None:
    folder = root / "media" / media_id
    for path in (folder / "audio.wav", *(folder / "frames" / f"{i}.jpg" for i in range(10))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def _masks(root: Path, media_id: str, fid: int, count: int = 10) -> None:
    folder = root / "gt_mask" / media_id / f"fid_{fid}"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"0000{i}.png").write_bytes(b"")  # the official loader's "0000" + str(i)


def _metadata(root: Path, rows: list[str]) -> Path:
    """``metadata.csv`` as published: CRLF line endings."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "metadata.csv"
    path.write_bytes(("\r\n".join([HEADER, *rows]) + "\r\n").encode("utf-8"))
    return path


def test_vocabulary_has_51_objects_and_null() -> None:
    assert len(REF_AVS_OBJECTS) == 52 and len(set(REF_AVS_OBJECTS)) == 52 and "null" in REF_AVS_OBJECTS
    assert list(REF_AVS_OBJECTS) == sorted(REF_AVS_OBJECTS)


def test_reads_normal_and_null_rows_with_media_folders_from_uid(tmp_path: Path) -> None:
    quoted = '"The guitar, not the man, making a sound."'
    path = _metadata(
        tmp_path,
        [
            f"{VID},{VID}_guitar_1,test_s,1,The object making the loudest sound.",
            f"{VID},{VID}_guitar_2,test_s,1,{quoted}",
            f"{VID},null_c-{VID}_null_1,test_n,0,The first object to make a sound",
        ],
    )
    _media(tmp_path, VID)
    _media(tmp_path, f"null_c-{VID}")
    _masks(tmp_path, VID, fid=1)
    _masks(tmp_path, f"null_c-{VID}", fid=0)
    result = read_ref_avs(tmp_path)
    assert result.rejected == []
    guitar, quoted_row, null = result.records
    assert (guitar.item_id, guitar.video_id, guitar.media_id, guitar.object_name, guitar.fid) == (
        f"{VID}_guitar_1",
        VID,
        VID,
        "guitar",
        1,
    )
    assert guitar.expression == "The object making the loudest sound." and guitar.split == "test_s"
    assert guitar.audio_path == tmp_path / "media" / VID / "audio.wav"
    assert guitar.frame_paths == tuple(tmp_path / "media" / VID / "frames" / f"{i}.jpg" for i in range(10))
    assert guitar.mask_paths[0] == tmp_path / "gt_mask" / VID / "fid_1" / "00000.png"
    assert guitar.mask_paths[9] == tmp_path / "gt_mask" / VID / "fid_1" / "00009.png"
    assert guitar.source == f"{path}:2" and not guitar.is_null
    assert quoted_row.expression == "The guitar, not the man, making a sound." and quoted_row.source == f"{path}:3"
    assert null.is_null and null.media_id == f"null_c-{VID}" and null.split == "test_n"
    assert null.audio_path == tmp_path / "media" / f"null_c-{VID}" / "audio.wav"
    assert null.mask_paths[0] == tmp_path / "gt_mask" / f"null_c-{VID}" / "fid_0" / "00000.png"
    assert [r.item_id for r in read_ref_avs(tmp_path, "test_n").records] == [null.item_id]


def test_a_null_row_without_its_own_folders_uses_the_clip_and_no_masks(tmp_path: Path) -> None:
    _metadata(tmp_path, [f"{VID},null_m-{VID}_null_1,train,0,The sounding chair"])
    _media(tmp_path, VID)
    (record,) = read_ref_avs(tmp_path).records
    assert record.audio_path == tmp_path / "media" / VID / "audio.wav"
    assert record.mask_paths == () and record.media_id == f"null_m-{VID}"


def test_bad_rows_are_rejected_with_line_and_reason(tmp_path: Path) -> None:
    rows = [
        f"{VID},{VID}_man_1,train,0,The man.",  # 2: fine
        f"{VID},{VID}_man_2,TODO,0,The man.",  # 3: the release's TODO split
        f"{VID},{VID}_dragon_1,train,0,The dragon.",  # 4: unknown object
        f"{VID},{VID}_man,train,0,The man.",  # 5: no counter in uid
        f"{VID},otherclip_man_1,train,0,The man.",  # 6: media folder is not vid's
        f"{VID},{VID}_man_3,train,x,The man.",  # 7: fid not a number
        f"{VID},{VID}_man_4,train,0,",  # 8: empty exp
        f"{VID},{VID}_man_5,train,2,The man.",  # 9: fid_2 has only 9 masks
        f"{VID},{VID}_man_6,train,0",  # 10: 4 fields
        f"{VID},{VID}_man_1,train,0,The man again.",  # 11: repeated uid: kept, as in the release
    ]
    path = _metadata(tmp_path, rows)
    _media(tmp_path, VID)
    _masks(tmp_path, VID, fid=0)
    _masks(tmp_path, VID, fid=2, count=9)
    result = read_ref_avs(tmp_path)
    assert [(r.item_id, r.source) for r in result.records] == [
        (f"{VID}_man_1", f"{path}:2"),
        (f"{VID}_man_1", f"{path}:11"),
    ]
    reasons = {int(r.source.rsplit(":", 1)[1]): r.reason for r in result.rejected}
    assert all(r.source.startswith(str(path)) and r.dataset == "ref_avs" for r in result.rejected)
    assert reasons == {
        3: "unknown split 'TODO' (expected one of ['train', 'val', 'test_s', 'test_u', 'test_n'])",
        4: "unknown object 'dragon' in uid (not one of Ref-AVS's 52 categories)",
        5: f"uid '{VID}_man' is not {{media}}_{{object}}_{{k}}",
        6: f"uid's media folder 'otherclip' does not belong to vid '{VID}'",
        7: "fid 'x' is not a whole number",
        8: "empty exp",
        9: f"missing media file {tmp_path / 'gt_mask' / VID / 'fid_2' / '00009.png'}",
        10: "expected 5 comma-separated fields (vid, uid, split, fid, exp), got 4",
    }
    train = read_ref_avs(tmp_path, "train")
    assert len(train.records) == 2 and sorted(int(r.source.rsplit(":", 1)[1]) for r in train.rejected) == [
        4,
        5,
        6,
        7,
        8,
        9,
    ]
    assert len(read_ref_avs(tmp_path, check_media=False).records) == 3


def test_metadata_problems_raise_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="metadata.csv: file not found"):
        read_ref_avs(tmp_path)
    path = tmp_path / "metadata.csv"
    path.write_text("vid\tuid\tsplit\tfid\texp\n", encoding="utf-8")
    with pytest.raises(DataError, match="expected the header 'vid,uid,split,fid,exp'") as caught:
        read_ref_avs(tmp_path)
    assert caught.value.path == str(path)
    path.write_text(f'{HEADER}\n{VID},{VID}_man_1,train,0,"The man" said\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2: not parsable as CSV"):
        read_ref_avs(tmp_path)
    path.write_text(f'{HEADER}\n{VID},{VID}_man_1,train,0,"The man.\n{VID},{VID}_man_2,train,0,x\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 3: not parsable as CSV .*unexpected end of data"):
        read_ref_avs(tmp_path)  # an unterminated quote would otherwise swallow the rows after it
    with pytest.raises(ValueError, match="unknown Ref-AVS split"):
        read_ref_avs(tmp_path, "test")  # type: ignore[arg-type]
