"""Tests for ``crab.avuie.released``: importing Crab's released AV-UIE sample lists (dataset-layouts.md section 7).

A synthetic release in Crab's exact formats (``released_kit``) is imported through the Great Expectations gate; the
records must equal, field for field except ``source``, what the builders make of the same labels, and every planted
bad row must be quarantined with its reason while every good row is kept.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path

import pytest

from crab.avuie.arig_build import build_arig
from crab.avuie.avcap import build_avcap
from crab.avuie.ave import build_ave
from crab.avuie.avqa import build_avqa
from crab.avuie.avs import parse_answer as parse_avs
from crab.avuie.avs_build import build_avs
from crab.avuie.avss_build import build_avss
from crab.avuie.avvp_build import build_avvp
from crab.avuie.build import avuie_build
from crab.avuie.released.files import as_int, as_point, as_str_pair, local_path, rebase
from crab.avuie.released.importer import import_released, write_released
from crab.avuie.released.rows import rename_tags
from crab.avuie.schema import AvuieRecord, read_jsonl
from crab.cli import main
from crab.config import load_params
from crab.datasets.avsbench import AvsObjectRecord
from crab.datasets.avss import AvssRecord
from crab.datasets.llp import LlpEvent, LlpRecord
from crab.datasets.records import AveRecord, AvqaRecord, ValorRecord
from crab.errors import CrabError
from crab.quality.avuie import validate_avuie
from crab.quality.released import released_suite
from tests.unit.avuie.released_kit import (
    AVE_ROOT,
    AVE_ROWS,
    AVQA_ROOT,
    AVQA_ROWS,
    AVS_ROOT,
    AVVP_LABEL,
    CRAB,
    LLP_ROOT,
    RELEASE,
    VALOR_ROOT,
    VALOR_ROWS,
    add_rows,
    arig_row,
    avqa_row,
    avs_row,
    write_release,
)

REPO = Path(__file__).resolve().parents[3]
ALL_TASKS = ["ave", "avqa", "avvp", "s4", "ms3", "avss", "arig", "avcap"]


@pytest.fixture
def params(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_release()
    return load_params(REPO / "params.yaml")


def _import(params, tasks=None, use_reasoning=True, max_failure_rate=1.0):
    validation = dataclasses.replace(params.validation, max_failure_rate=max_failure_rate)
    return import_released(RELEASE, params.datasets, validation, Path(".docs"), tasks, 0, use_reasoning)


def _flat(imported, task):
    return [r for records in imported.records[task].values() for r in records]


def _assert_same_form(imported: list[AvuieRecord], built: list[AvuieRecord]) -> None:
    """Every imported record equals the built one of its id, but for ``source`` (the release row vs the native one)."""
    by_id = {r.id: r for r in built}
    assert sorted(r.id for r in imported) == sorted(by_id)
    for record in imported:
        assert dataclasses.replace(by_id[record.id], source=record.source) == record


# --------------------------------------------------------------------------------------------------
# Files: rebasing and values
# --------------------------------------------------------------------------------------------------


def test_rebase_matches_from_the_dataset_root_on(tmp_path):
    root = tmp_path / "local_avqa"
    assert rebase(f"{CRAB}/music-avqa/video_data/1.mp4", "music_avqa", root) == (root / "video_data/1.mp4", None)
    assert rebase("/mnt/other/prefix/music-avqa/video_data/1.mp4", "music_avqa", root)[0] == root / "video_data/1.mp4"
    assert rebase("music-avqa\\video_data\\1.mp4", "music_avqa", root)[0] == root / "video_data/1.mp4"
    ave = tmp_path / "ave_root"
    assert rebase(f"{CRAB}/ave/AVE_Dataset/AVE/x.mp4", "ave", ave)[0] == ave / "AVE/x.mp4"
    assert "not under a ave/AVE_Dataset/ folder" in rebase(f"{CRAB}/ave/AVE/x.mp4", "ave", ave)[1]
    assert "not under a music-avqa/ folder" in rebase(f"{CRAB}/avqa/video/1.mp4", "music_avqa", root)[1]
    assert "does not name a file" in rebase(f"{CRAB}/music-avqa/../etc/passwd", "music_avqa", root)[1]
    assert "does not name a file" in rebase(f"{CRAB}/music-avqa", "music_avqa", root)[1]


def test_crab_folder_names_fall_back_to_the_native_ones(tmp_path):
    (tmp_path / "video").mkdir()
    assert local_path(tmp_path, ("video_data", "1.mp4")) == tmp_path / "video/1.mp4"
    (tmp_path / "video_data").mkdir()
    assert local_path(tmp_path, ("video_data", "1.mp4")) == tmp_path / "video_data/1.mp4"
    (tmp_path / "LLP_dataset" / "video").mkdir(parents=True)
    assert local_path(tmp_path, ("llp_videos", "a.mp4")) == tmp_path / "LLP_dataset/video/a.mp4"


def test_values_may_be_strings():
    assert as_int("3", "x") == (3, None) and as_int(3.0, "x") == (3, None) and as_int("3.0", "x") == (3, None)
    assert as_int("x", "s")[1] == "s: expected a whole number, got 'x'"
    assert as_int(True, "s")[0] is None and as_int(2.5, "s")[0] is None
    assert as_str_pair("['Audio', 'Counting']", "type") == (("Audio", "Counting"), None)
    assert as_str_pair('["Audio", "Counting"]', "type") == (("Audio", "Counting"), None)
    assert as_str_pair(["Audio"], "type")[1] == "type: expected a list of 2 strings, got ['Audio']"
    assert as_point("[5, 6]", "p") == ((5, 6), None) and as_point(["5", 6], "p") == ((5, 6), None)
    assert as_point([5], "p")[0] is None


def test_avvp_tags_are_renamed_as_crab_does():
    renamed = rename_tags(AVVP_LABEL)
    assert "<audio>" not in renamed and "</visual>" not in renamed
    assert renamed.endswith(
        "<visual_event>Dog,(0 10)</visual_event> and <audio_event>Speech,(0 4)(6 10); Dog,(2 6)</audio_event>"
    )


# --------------------------------------------------------------------------------------------------
# Records: the builders' form
# --------------------------------------------------------------------------------------------------


def test_imports_every_task_and_keeps_every_valid_row(params):
    imported = _import(params)
    counts = {task: {s: len(rs) for s, rs in splits.items()} for task, splits in imported.records.items()}
    assert counts == {
        "ave": {"train": 2, "val": 0, "test": 1},
        "avqa": {"train": 2, "val": 0, "test": 1},
        "avvp": {"train": 1, "val": 0, "test": 1},
        "s4": {"train": 1, "val": 0, "test": 5},  # S4 train: frame 0 only
        "ms3": {"train": 5, "val": 0, "test": 0},
        "avss": {"train": 4, "val": 0, "test": 10},  # AVSS train: 4 seeded frames
        "arig": {"train": 1, "val": 0, "test": 1},
        "avcap": {"train": 1, "val": 1},
    }
    assert all(group.num_quarantined == 0 for group in imported.groups.values())
    assert imported.stats["arig"]["num_skipped"] == {"no_sounding_object": 1}  # the x1 == 1000 sentinel
    assert imported.stats["avvp"]["num_skipped"] == {"no_label": 1}  # a train row without label, as Crab
    assert imported.stats["ave"]["targets"] == {"plain": 1, "released": 2}
    assert imported.stats["ave"]["source"] == "release"
    assert imported.stats["avqa"]["splits"]["train"]["num_with_reasoning"] == 2


def test_ave_and_avqa_records_equal_the_builders(params):
    imported = _import(params, ["ave", "avqa"])
    ave_raw = [
        AveRecord(f"{r['vid']}_{int(r['start_time'])}_{int(r['end_time'])}", r["vid"], r["event"], "good",
                  int(r["start_time"]), int(r["end_time"]), split, AVE_ROOT / "AVE" / f"{r['vid']}.mp4", "native")
        for split, rows in AVE_ROWS.items() for r in rows
    ]  # fmt: skip
    train = [r for r in _flat(imported, "ave") if r.split == "train"]
    _assert_same_form(train, build_ave(ave_raw[:2], {}, AVE_ROOT / "converted_label", True, random.Random(0)))
    assert train[0].target == _ave_text(train[0].video_id)  # verbatim, trailing newline removed
    plain = _import(params, ["ave"], use_reasoning=False)
    _assert_same_form(_flat(plain, "ave"), build_ave(ave_raw, {}, None, False, random.Random(0)))

    avqa_raw = [
        AvqaRecord(str(int(r["question_id"])), int(r["question_id"]), r["video_id"],
                   ("Audio", "Counting") if i == 0 else ("Audio-Visual", "Temporal"), r["question"], (), r["question"],
                   r["answer"], "train", AVQA_ROOT / "video_data" / f"{r['video_id']}.mp4", "native")
        for i, r in enumerate(AVQA_ROWS["train"])
    ]  # fmt: skip
    built = build_avqa(avqa_raw, {}, AVQA_ROOT / "converted_label", True, random.Random(0))
    _assert_same_form([r for r in _flat(imported, "avqa") if r.split == "train"], built)
    test = imported.records["avqa"]["test"][0]
    assert (test.target, test.reasoning) == ("<answer> indoor </answer>", False)  # no text: the reference answer
    assert test.label == {"answer": "indoor", "question": "Where is the performance?",
                          "question_type": ["Visual", "Location"], "question_id": 13}  # fmt: skip


def _ave_text(vid: str) -> str:
    return (AVE_ROOT / "converted_label" / f"{vid}.txt").read_text().rstrip()


def test_avvp_records_equal_the_builder_with_renamed_tags(params, tmp_path):
    imported = _import(params, ["avvp"])
    (train,) = imported.records["avvp"]["train"]
    assert "<audio>" not in train.target and "<audio_event>Speech,(0 4)(6 10); Dog,(2 6)</audio_event>" in train.target

    def event(name, start, end):
        return LlpEvent(name, start, end, "native")

    released = tmp_path / "avvp_released"
    released.mkdir()
    (released / "llpA0000001_30_40.txt").write_text(rename_tags(AVVP_LABEL))
    llp = LlpRecord("llpA0000001_30_40", "llpA0000001", ("Speech", "Dog"),
                    (event("Dog", 2, 6), event("Speech", 0, 4), event("Speech", 6, 10)), (event("Dog", 0, 10),),
                    "train", LLP_ROOT / "llp_videos" / "llpA0000001.mp4", "native")  # fmt: skip
    _assert_same_form([train], build_avvp([llp], {}, released, True, random.Random(0)))
    test_llp = LlpRecord("llpA0000002_0_10", "llpA0000002", ("Cat",), (event("Cat", 3, 8),), (event("Cat", 0, 5),),
                         "test", LLP_ROOT / "llp_videos" / "llpA0000002.mp4", "native")  # fmt: skip
    _assert_same_form(imported.records["avvp"]["test"], build_avvp([test_llp], {}, None, False, random.Random(0)))


def test_avsbench_records_equal_the_builders(params):
    imported = _import(params, ["s4", "avss", "arig"], use_reasoning=False)

    def clip(subset, uid, frames, masks):
        folder = AVS_ROOT / subset / uid
        return (
            folder,
            tuple(folder / "frames" / f"{i}.jpg" for i in range(frames)),
            tuple(folder / "labels_semantic" / f"{i}.png" for i in range(masks)),
        )

    s4 = []
    for uid, category, split, masks in (("s4vid000001_0_5000", "dog", "train", 1),
                                         ("s4vid000002_0_5000", "dog_barking", "test", 5)):  # fmt: skip
        folder, frames, mask_paths = clip("v1s", uid, 5, masks)
        s4.append(AvsObjectRecord(uid, uid, "s4", category, split, folder / "x.mp4", folder / "audio.wav", frames,
                                  mask_paths, "native"))  # fmt: skip
    _assert_same_form(_flat(imported, "s4"), build_avs(s4, {}, None, False, random.Random(0)))

    avss = []
    for uid, a_obj, split in (("avssvid0001_0_10000", "woman_piano", "train"), ("avssvid0002_0_10000", "dog", "test")):
        folder, frames, mask_paths = clip("v2", uid, 10, 10)
        avss.append(AvssRecord(uid, uid[:11], "v2", 0, 0, a_obj, split, folder / "audio.wav", frames, (), mask_paths,
                               "native"))  # fmt: skip
    _assert_same_form(_flat(imported, "avss"), build_avss(avss, {}, None, False, random.Random("0/avss")))

    folder, frames, mask_paths = clip("v1s", "s4vid000001_0_5000", 5, 1)
    arig = AvsObjectRecord("s4vid000001_0_5000", "s4vid000001_0_5000", "s4", "dog_barking", "train",
                           folder / "x.mp4", folder / "audio.wav", frames, mask_paths, "native")  # fmt: skip
    _assert_same_form(imported.records["arig"]["train"], build_arig([arig], {}, None, False, random.Random(0)))


def test_templated_targets_name_a_obj_and_ms3_objects_come_from_it(params):
    imported = _import(params, ["ms3", "arig"])
    for record in imported.records["ms3"]["train"]:
        assert record.label["objects"] == ["man", "guitar"]
        assert record.target.startswith("The object making the sound in the video is man_guitar. So the objects")
        assert parse_avs(record.target).objects == ("man", "guitar")
    (test,) = imported.records["arig"]["test"]
    assert test.label == {"x0": 5, "y0": 6, "x1": 100, "y1": 120, "object": "dog", "frame": 3,
                          "mask": (AVS_ROOT / "v1s/s4vid000002_0_5000/labels_semantic/3.png").as_posix()}  # fmt: skip
    assert test.target.startswith("The sounding object is dog. So the top left") and test.reasoning


def test_avcap_records_equal_the_builder(params):
    imported = _import(params, ["avcap"])
    raw = [ValorRecord(r["video_id"], r["video_id"], r["desc"], split, VALOR_ROOT / "video_data" / f"{r['video_id']}.mp4",
                       "native") for split, rows in VALOR_ROWS.items() for r in rows]  # fmt: skip
    _assert_same_form(_flat(imported, "avcap"), build_avcap(raw, {}, None, True, random.Random(0)))


# --------------------------------------------------------------------------------------------------
# Quarantine: one planted bad row per check
# --------------------------------------------------------------------------------------------------


def test_each_bad_row_is_quarantined_with_its_reason(params):
    ave, avqa = RELEASE / "ave_data/valid_train_samples.json", RELEASE / "music_avqa_data/valid_train_samples.json"
    avvp, s4 = RELEASE / "avvp_data/train_samples.json", RELEASE / "AVS/s4_samples.json"
    arig, avss = RELEASE / "AVS/v1s_grounding_samples.json", RELEASE / "AVS/avss_samples.json"
    valor = RELEASE / "valor/train_samples.json"
    (AVE_ROOT / "converted_label" / "aveBadRange.txt").write_text(
        "... <event> Bark </event> ... <range> 3,12 </range>."
    )
    (AVE_ROOT / "converted_label" / "aveMismatch.txt").write_text("... <event> Bark </event> ... <range> 0,4 </range>.")
    for vid in ("aveBadRange", "aveMismatch", "aveNoText00", "aveUnknown1"):
        (AVE_ROOT / "AVE" / f"{vid}.mp4").write_bytes(b"\0")
    (AVE_ROOT / "converted_label" / "aveUnknown1.txt").write_text("<event> Dog </event> <range> 0,4 </range>")
    (AVQA_ROOT / "converted_label" / "21.txt").write_text("So the answer is <answer> maybe </answer>.")
    (AVQA_ROOT / "converted_label" / "22.txt").write_text("So the answer is <answer> yes </answer>.")
    (AVQA_ROOT / "converted_label" / "23.txt").write_text("So the answer is <answer> yes </answer>.")
    (AVQA_ROOT / "converted_label" / "24.txt").write_text("So the answer is <answer> yes </answer>.")
    planted: dict[str, str] = {}

    def plant(path, rows_and_reasons):
        sources = add_rows(path, [row for row, _ in rows_and_reasons])
        planted.update(zip(sources, [reason for _, reason in rows_and_reasons], strict=True))

    plant(ave, [
        ({"event": "Bark", "vid": "aveMissing1", "start_time": 0}, "missing field(s) 'end_time'"),
        ({"event": "Bark", "vid": "aveMissing1", "start_time": "x", "end_time": 4}, "start_time: expected a whole"),
        ("Bark&aveMissing1&good&0&4", "row is a JSON str, not an object"),
        ({"event": "Bark", "vid": "aveGone0001", "start_time": 0, "end_time": 4}, "media file(s) not found: "),
        ({"event": "Bark", "vid": "aveBadRange", "start_time": 3, "end_time": 12}, "range 3-12 s is not 0 <= start"),
        ({"event": "Bark", "vid": "aveMismatch", "start_time": 2, "end_time": 6}, "tags say 'Bark' 0,4, the row 'Bark' 2,6"),
        ({"event": "Bark", "vid": "aveNoText00", "start_time": 2, "end_time": 6}, "no reasoning text converted_label/aveNoText00.txt"),
        ({"event": "Dog", "vid": "aveUnknown1", "start_time": 0, "end_time": 4}, "unknown event 'Dog'"),
    ])  # fmt: skip
    plant(avqa, [
        ({**avqa_row(20, "00000001", ["Audio", "Counting"], "Q?", "yes"), "video_path": "/elsewhere/1.mp4"},
         "video_path: path '/elsewhere/1.mp4' is not under a music-avqa/ folder"),
        (avqa_row(21, "00000001", ["Audio", "Counting"], "Q?", "maybe"), "answer 'maybe' is not in"),
        (avqa_row(22, "00000001", ["Audio", "Location"], "Q?", "yes"), "unknown question type [\"Audio\", \"Location\"]"),
        (avqa_row(23, "00000001", ["Audio", "Counting"], "Q?", "no"), "<answer> 'yes' differs from the row's 'no'"),
        (avqa_row(24, "00000009", ["Audio", "Counting"], "Q?", "yes"), "media file(s) not found: data/raw/music_avqa"),
    ])  # fmt: skip
    plant(avvp, [
        ({"filename": "llpA0000001_0_10", "vid": "llpA0000001", "label": "A dog barks."}, "label has no parsable <audio>"),
        ({"filename": "llpA0000001_1_11", "vid": "llpA0000001", "label": "<visual></visual> <audio>Dog_bark,(0 4)</audio>"},
         "audio event 'Dog_bark' is not one of LLP's 25"),
        ({"filename": "llpA0000001_2_12", "vid": "llpA0000001", "event": "<visual>Dog,(0 3)</visual> <audio></audio>",
          "label": "<visual>Dog,(0 4)</visual> <audio></audio>"}, "the label's tags and the event field mark different"),
    ])  # fmt: skip
    plant(s4, [
        (avs_row("s4vid000001_0_5000", "dog", "dev", "v1s"), "unknown split 'dev'"),
        (avs_row("s4vid000002_0_5000", "kazoo", "val", "v1s"), "a_obj 'kazoo' names ['kazoo']"),
        (avs_row("s4vid000002_0_5000", "dog", "train", "v1m"), "row of subset 'v1m' in the s4 list"),
        (avs_row("s4vid000009_0_5000", "dog", "test", "v1s"), "media file(s) not found"),
        ({**avs_row("s4vid000001_0_5000", "dog", "val", "v1s"), "s_min": "zero"}, "s_min: expected a whole number"),
    ])  # fmt: skip
    plant(arig, [
        (arig_row("s4vid000001_0_5000", 1, [60, 20], [50, 60], "dog"), "label: ARIG box (60,20)(50,60) must satisfy"),
        (arig_row("s4vid000001_0_5000", 2, [1, 2], [3, 4], "kazoo"), "a_obj 'kazoo' is neither one of S4's 23"),
        ({**arig_row("s4vid000001_0_5000", 3, [1, 2], [3, 4], "dog"), "frame_path": "/x/frames/3.jpg"},
         "frame_path: path '/x/frames/3.jpg' is not under a AVS/ folder"),
    ])  # fmt: skip
    plant(
        avss, [(avs_row("avssvid0001_0_10000", "woman_piano", "test", "v1m"), "row of subset 'v1m' in the avss list")]
    )
    plant(valor, [
        ({"video_id": "valor001", "desc": "A second caption."}, "'train/valor001' (split/id) occurs more than once"),
        ({"video_id": "valor001", "desc": " "}, "'train/valor001' (split/id) occurs more than once"),
        ({"video_id": "valor003", "desc": " \n"}, "label: empty caption"),
    ])  # fmt: skip
    (VALOR_ROOT / "video_data" / "valor003.mp4").write_bytes(b"\0")

    imported = _import(params)
    reasons = {q.source: q.reasons for group in imported.groups.values() for q in group.quarantined}
    for source, expected in planted.items():
        assert any(expected in reason for reason in reasons.get(source, ())), (source, expected, reasons.get(source))
    first_valor = f"{(RELEASE / 'valor/train_samples.json').as_posix()}[0]"
    assert set(reasons) == set(planted) | {first_valor}  # the good row of a duplicated id is quarantined with it
    kept = {task: sum(len(rs) for rs in splits.values()) for task, splits in imported.records.items()}
    assert kept == {"ave": 3, "avqa": 3, "avvp": 2, "s4": 6, "ms3": 5, "avss": 14, "arig": 2, "avcap": 1}
    assert imported.stats["avcap"]["num_duplicates"] == 3
    failed = {o.column for group in imported.groups.values() for o in group.expectations if not o.success}
    assert failed == {check.column_label for task in ALL_TASKS for check in released_suite(task)}  # every check bit
    assert imported.stats["ave"]["num_excluded"] == 8


def test_use_reasoning_false_needs_no_reasoning_text(params):
    shutil.rmtree(AVE_ROOT / "converted_label")
    imported = _import(params, ["ave"], use_reasoning=False)
    assert [r.reasoning for r in _flat(imported, "ave")] == [False, False, False]
    with_reasoning = _import(params, ["ave"])
    assert [q.reasons[0] for q in with_reasoning.groups["ave"].quarantined] == [
        "target: no reasoning text converted_label/aveA0000001.txt (every train row needs one)",
        "target: no reasoning text converted_label/aveA0000002.txt (every train row needs one)",
    ]


def test_finds_flat_hugging_face_names_and_lists_in_the_dataset_root(params):
    shutil.move(RELEASE / "ave_data/valid_train_samples.json", RELEASE / "ave-valid_train_samples.json")
    shutil.move(RELEASE / "AVS/s4_samples.json", AVS_ROOT / "s4_samples.json")
    imported = _import(params, ["ave", "s4"])
    assert imported.stats["ave"]["files"][0] == "release/ave-valid_train_samples.json"
    assert imported.stats["s4"]["files"] == ["data/raw/avss/s4_samples.json"]
    assert len(imported.records["ave"]["train"]) == 2


def test_missing_or_unknown_task_is_an_error(params):
    (RELEASE / "AVS/ms3_samples.json").unlink()
    with pytest.raises(CrabError, match="no sample list for task ms3 .*AVS/ms3_samples.json"):
        _import(params, ["ms3"])
    with pytest.raises(CrabError, match="tasks \\['ref_avs'\\] have no released sample lists"):
        _import(params, ["ref_avs"])
    assert "ms3" not in _import(params, ["s4"]).records


# --------------------------------------------------------------------------------------------------
# Writing: layout, round trip, the AV-UIE gate, the CLI and avuie_build
# --------------------------------------------------------------------------------------------------


def test_written_files_round_trip_and_pass_validate_avuie(params):
    imported = _import(params)
    write_released(Path("data/avuie"), imported, 0, True)
    for task, splits in imported.records.items():
        for split, records in splits.items():
            assert read_jsonl(Path("data/avuie") / task / f"{split}.jsonl") == records
    stats = json.loads(Path("data/avuie/stats.json").read_text())
    assert stats["release"] == "release" and stats["tasks"]["s4"]["dataset"] == "avsbench"
    report = json.loads(Path("data/avuie/released.json").read_text())
    assert report["stage"] == "import_avuie" and set(report["tasks"]) == set(ALL_TASKS)
    assert (Path("data/avuie/released_docs") / "index.html").is_file() and not Path(".docs").exists()

    avuie = dataclasses.replace(params.avuie, tasks=ALL_TASKS)
    result = validate_avuie(dataclasses.replace(params, avuie=avuie))
    assert {t: g.num_quarantined for t, g in result.groups.items()} == dict.fromkeys(ALL_TASKS, 0)


def test_cli_writes_the_import_and_fails_loudly_on_a_malformed_release(params, capsys):
    argv = ["--params", str(REPO / "params.yaml"), "import-avuie", "--release", "release", "--task", "ave,avcap"]
    assert main([*argv, "--out", "imported"]) == 0
    assert sorted(p.name for p in Path("imported").iterdir()) == [
        "avcap", "ave", "released.json", "released_docs", "stats.json"
    ]  # fmt: skip
    assert len(read_jsonl(Path("imported/ave/train.jsonl"))) == 2
    add_rows(RELEASE / "ave_data/test_samples.json", [{"event": "Bark"}])  # 1 of 4 rows: above 5 %
    assert main([*argv, "--out", "imported"]) == 1
    assert "ave quarantined 1 of 4 items (25.0%)" in capsys.readouterr().err
    report = json.loads(Path("imported/released.json").read_text())
    assert report["tasks"]["ave"]["quarantined"][0]["reasons"] == ["missing field(s) 'vid', 'start_time', 'end_time'"]


def test_avuie_build_imports_the_release_when_params_name_it(params):
    Path("reports/validation").mkdir(parents=True)
    Path("reports/validation/raw.json").write_text(json.dumps({"stage": "validate_raw", "datasets": {}}))
    avuie = dataclasses.replace(params.avuie, tasks=["ave", "s4"], release="release")
    result = avuie_build(dataclasses.replace(params, avuie=avuie))
    assert result.num_records == {"ave": {"train": 2, "val": 0, "test": 1}, "s4": {"train": 1, "val": 0, "test": 5}}
    assert result.stats["release"] == "release" and result.stats["tasks"]["ave"]["source"] == "release"
    assert read_jsonl(Path("data/avuie/ave/train.jsonl"))[0].target == _ave_text("aveA0000001")
    assert json.loads(Path("data/avuie/released.json").read_text())["tasks"]["s4"]["num_quarantined"] == 0
    with pytest.raises(CrabError, match="holds no sample list"):
        avuie_build(dataclasses.replace(params, avuie=dataclasses.replace(avuie, tasks=["ref_avs"])))
