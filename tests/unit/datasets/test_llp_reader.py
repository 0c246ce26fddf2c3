"""Tests of crab.datasets.llp on hand-written LLP trees (format: dataset-layouts.md sections 2.1-2.4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crab.datasets.llp import LlpEvent, event_grid, read_llp
from crab.datasets.vocab_seg import LLP_CLASSES
from crab.errors import DataError

WEAK = ("filename", "event_labels")
DENSE = ("filename", "onset", "offset", "event_labels")


def _tsv(path: Path, header: tuple[str, ...], rows: list[str]) -> Path:
    """A TAB-separated file as published: header, LF endings, trailing newline (rows use ``|`` for TAB)."""
    lines = ["\t".join(header), *(row.replace("|", "\t") for row in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _videos(root: Path, *video_ids: str, folder: str = "LLP_dataset/video") -> None:
    (root / folder).mkdir(parents=True, exist_ok=True)
    for video_id in video_ids:
        (root / folder / f"{video_id}.mp4").write_bytes(b"")


def _eval_tree(root: Path, audio: list[str], visual: list[str]) -> tuple[Path, Path, Path, Path]:
    """val = 2 videos, test = 1 video, dense files holding the given rows."""
    val = _tsv(root / "AVVP_val_pd.csv", WEAK, ["aB3dE_f9Gh1_30_40|Speech,Dog", "-x7QpLm2ZrT_120_130|Violin_fiddle"])
    test = _tsv(root / "AVVP_test_pd.csv", WEAK, ["_-apT0tfo6U_0_10|Cat"])
    _videos(root, "aB3dE_f9Gh1", "-x7QpLm2ZrT", "_-apT0tfo6U")
    return (
        val,
        test,
        _tsv(root / "AVVP_eval_audio.csv", DENSE, audio),
        _tsv(root / "AVVP_eval_visual.csv", DENSE, visual),
    )


def test_vocabulary_has_the_25_classes_in_official_order() -> None:
    assert len(LLP_CLASSES) == 25 and len(set(LLP_CLASSES)) == 25
    assert (LLP_CLASSES[0], LLP_CLASSES[5], LLP_CLASSES[13], LLP_CLASSES[24]) == (
        "Speech",
        "Frying_(food)",
        "Violin_fiddle",
        "Clapping",
    )


def test_train_rows_become_videos_with_weak_labels_only(tmp_path: Path) -> None:
    path = _tsv(
        tmp_path / "AVVP_train.csv", WEAK, ["aB3dE_f9Gh1_30_40|Speech,Dog", "-x_QpLm2ZrT_120_130|Violin_fiddle"]
    )
    _videos(tmp_path, "aB3dE_f9Gh1", "-x_QpLm2ZrT")
    result = read_llp(tmp_path, "train")
    assert result.rejected == []
    first, second = result.records
    assert (first.item_id, first.video_id, first.labels) == ("aB3dE_f9Gh1_30_40", "aB3dE_f9Gh1", ("Speech", "Dog"))
    assert first.audio_events is None and first.visual_events is None and first.split == "train"
    assert first.video_path == tmp_path / "LLP_dataset" / "video" / "aB3dE_f9Gh1.mp4"
    assert first.source == f"{path}:2"
    assert second.video_id == "-x_QpLm2ZrT" and second.source == f"{path}:3"  # id with '-' and '_' kept whole


def test_eval_videos_get_their_dense_events_and_the_official_grids(tmp_path: Path) -> None:
    _, _, audio, visual = _eval_tree(
        tmp_path,
        audio=[
            "aB3dE_f9Gh1_30_40|0|4|Speech",
            "aB3dE_f9Gh1_30_40|2|10|Dog",
            "_-apT0tfo6U_0_10|0|10|Cat",  # a test video: not part of the val read
            "-x7QpLm2ZrT_120_130|3|5|Violin_fiddle",
        ],
        visual=["aB3dE_f9Gh1_30_40|5|10|Dog"],
    )
    result = read_llp(tmp_path, "val")
    assert result.rejected == []
    video, violin = result.records
    assert video.audio_events == (
        LlpEvent("Speech", 0, 4, f"{audio}:2"),
        LlpEvent("Dog", 2, 10, f"{audio}:3"),
    )
    assert video.visual_events == (LlpEvent("Dog", 5, 10, f"{visual}:2"),)
    assert violin.visual_events == ()  # no visual rows: an empty tuple, not None

    audio_grid, visual_grid = event_grid(video.audio_events), event_grid(video.visual_events)
    assert audio_grid.shape == (25, 10) and audio_grid.dtype == np.uint8
    assert audio_grid[0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]  # Speech [0, 4)
    assert audio_grid[3].tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]  # Dog [2, 10)
    assert int(audio_grid.sum()) == 12
    audio_visual = audio_grid & visual_grid
    assert audio_visual[3].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1] and int(audio_visual.sum()) == 5


def test_bad_weak_rows_are_rejected_with_line_and_reason(tmp_path: Path) -> None:
    rows = [
        "aaaaaaaaaaa_0_10|Speech",  # 2: fine
        "bbbbbbbbbbb_0_10|Dogg",  # 3: unknown class
        "ccccccccccc_0_10|",  # 4: empty labels
        "ddddddddddd_0_10|Speech|extra",  # 5: 3 fields
        "eeeeeeeeeee|Speech",  # 6: no _start_end
        "aaaaaaaaaaa_0_10|Dog",  # 7: duplicate filename
        "fffffffffff_0_10|Dog,Cat,Dog",  # 8: repeated class
        "ggggggggggg_0_10|Speech, Dog",  # 9: a space after the comma is tolerated
        "hhhhhhhhhhh_0_10|Cat",  # 10: clip missing
    ]
    path = _tsv(tmp_path / "AVVP_train.csv", WEAK, rows)
    _videos(tmp_path, "aaaaaaaaaaa", "ggggggggggg")
    result = read_llp(tmp_path, "train")
    assert [(r.item_id, r.labels) for r in result.records] == [
        ("aaaaaaaaaaa_0_10", ("Speech",)),
        ("ggggggggggg_0_10", ("Speech", "Dog")),
    ]
    reasons = {int(r.source.rsplit(":", 1)[1]): r.reason for r in result.rejected}
    assert all(r.source.startswith(str(path)) and r.dataset == "llp" for r in result.rejected)
    assert reasons == {
        3: "unknown class 'Dogg' (not one of LLP's 25)",
        4: "empty event_labels",
        5: "expected 2 TAB-separated fields (filename, event_labels), got 3",
        6: "filename 'eeeeeeeeeee' is not {ytid}_{start}_{end}",
        7: "duplicate filename (first at line 2)",
        8: "class 'Dog' listed twice",
        10: f"missing media file {tmp_path / 'LLP_dataset' / 'video' / 'hhhhhhhhhhh.mp4'}",
    }
    unchecked = read_llp(tmp_path, "train", check_media=False)
    assert [r.item_id for r in unchecked.records][-1] == "hhhhhhhhhhh_0_10"


def test_empty_spans_are_dropped_alone_but_other_bad_dense_rows_reject_the_video(tmp_path: Path) -> None:
    val, _, audio, visual = _eval_tree(
        tmp_path,
        audio=[
            "aB3dE_f9Gh1_30_40|0|4|Speech",  # 2
            "aB3dE_f9Gh1_30_40|10|10|Dog",  # 3: empty span (the release's onset = 10 quirk)
            "aB3dE_f9Gh1_30_40|3|0|Dog",  # 4: empty span (offset = 0 quirk)
            "-x7QpLm2ZrT_120_130|0|10|Violin",  # 5: unknown class -> the video goes
        ],
        visual=[
            "-x7QpLm2ZrT_120_130|2|11|Violin_fiddle",  # 2: off the grid -> the same video
            "aB3dE_f9Gh1_30_40|two|5|Dog",  # 3: not a number -> the video goes
        ],
    )
    result = read_llp(tmp_path, "val")
    assert result.records == []
    by_source = {r.source: r for r in result.rejected}
    assert by_source[f"{audio}:3"].reason == "empty span: onset 10 >= offset 10 (adds nothing; row ignored)"
    assert by_source[f"{audio}:4"].reason == "empty span: onset 3 >= offset 0 (adds nothing; row ignored)"
    assert by_source[f"{val}:2"].reason == f"{visual}:3: onset 'two' is not a whole number of seconds"
    assert by_source[f"{val}:3"].reason == (
        f"{audio}:5: unknown class 'Violin' (not one of LLP's 25); {visual}:2: offset 11 is off the 0..10 s grid"
    )
    assert by_source[f"{val}:3"].item_id == "-x7QpLm2ZrT_120_130"
    assert len(result.rejected) == 4


def test_an_empty_span_leaves_the_rest_of_its_video(tmp_path: Path) -> None:
    _eval_tree(tmp_path, audio=["aB3dE_f9Gh1_30_40|0|4|Speech", "aB3dE_f9Gh1_30_40|0|0|Dog"], visual=[])
    result = read_llp(tmp_path, "val")
    video = next(r for r in result.records if r.video_id == "aB3dE_f9Gh1")
    assert [(e.label, e.onset_s, e.offset_s) for e in video.audio_events or ()] == [("Speech", 0, 4)]
    assert [r.reason.split(":")[0] for r in result.rejected] == ["empty span"]


def test_dense_rows_of_no_eval_video_are_reported_once_with_the_test_split(tmp_path: Path) -> None:
    _, _, audio, _ = _eval_tree(
        tmp_path,
        audio=["zzzzzzzzzzz_0_10|0|4|Speech", "_-apT0tfo6U_0_10|0|10|Cat"],
        visual=["aB3dE_f9Gh1_30_40|0|1|Dog"],
    )
    assert read_llp(tmp_path, "val").rejected == []
    test = read_llp(tmp_path, "test")
    assert [r.item_id for r in test.records] == ["_-apT0tfo6U_0_10"]
    assert [(r.source, r.reason) for r in test.rejected] == [
        (f"{audio}:2", "video 'zzzzzzzzzzz_0_10' is in neither AVVP_val_pd.csv nor AVVP_test_pd.csv")
    ]


def test_crabs_llp_videos_folder_is_used_when_the_release_folder_is_absent(tmp_path: Path) -> None:
    _tsv(tmp_path / "AVVP_train.csv", WEAK, ["aB3dE_f9Gh1_30_40|Speech"])
    _videos(tmp_path, "aB3dE_f9Gh1", folder="llp_videos")
    (record,) = read_llp(tmp_path, "train").records
    assert record.video_path == tmp_path / "llp_videos" / "aB3dE_f9Gh1.mp4"


def test_unusable_files_raise_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="AVVP_train.csv: file not found"):
        read_llp(tmp_path, "train")
    path = tmp_path / "AVVP_train.csv"
    path.write_text("filename,event_labels\naB3dE_f9Gh1_30_40,Speech\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"expected the header .* \(the LLP files are TAB-separated\)") as caught:
        read_llp(tmp_path, "train")
    assert caught.value.path == str(path)
    _tsv(tmp_path / "AVVP_val_pd.csv", WEAK, ["aB3dE_f9Gh1_30_40|Speech"])
    with pytest.raises(DataError, match="AVVP_eval_audio.csv: file not found"):
        read_llp(tmp_path, "val")
    with pytest.raises(ValueError, match="unknown LLP split"):
        read_llp(tmp_path, "dev")  # type: ignore[arg-type]
