"""Tests for the ``avuie_build`` stage on small hand-written native layouts (no media: the builder decodes none)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from crab.avuie.build import avuie_build
from crab.avuie.schema import read_jsonl
from crab.config import load_params
from crab.errors import DataError
from crab.synth.scene import SCENES_FILENAME, Scene, SceneObject, scene_lines
from crab.tasks import TASKS, Task

REPO = Path(__file__).resolve().parents[3]

AVE_ROWS = {
    "train": ["Bark&vA000000001&good&2&6", "Cat&vA000000002&good&0&10", "Clock&vA000000003&good&3&7",
              "Goat&vA000000004&good&1&5"],
    "val": ["Horse&vA000000005&good&0&4"],
    "test": ["Bus&vA000000006&good&5&10", "Bus&vA000000007&good&0&3"],
}  # fmt: skip
AVE_SCENES = {  # vid -> (category, visible, audible): the seen-and-heard overlap is the annotated range
    "vA000000001": ("Bark", (0, 6), (2, 8)),
    "vA000000002": ("Cat", (0, 10), (0, 10)),
    "vA000000003": ("Clock", (3, 9), (0, 7)),
    "vA000000004": ("Goat", (1, 5), (1, 5)),
    "vA000000005": ("Horse", (0, 4), (0, 6)),
    "vA000000006": ("Bus", (5, 10), (2, 10)),
    "vA000000007": ("Bus", (0, 3), (0, 3)),
}
HEARD = "How many musical instruments were heard throughout the video?"
COMES_IN = "What is the <TH> instrument that comes in?"
LOUDER = "Is the <Object> louder than the <Object>?"
# (question_id, video_id, type, template, values, answer) per split
AVQA_QUESTIONS = {
    "train": [
        (1, "00000001", ["Audio", "Counting"], HEARD, [], "two"),
        (2, "00000001", ["Audio-Visual", "Temporal"], COMES_IN, ["first"], "violin"),
        (3, "00000002", ["Audio", "Counting"], HEARD, [], "two"),
        (4, "00000002", ["Audio", "Counting"], "Is there a <Object> sound?", ["piano"], "yes"),
        (5, "00000002", ["Visual", "Location"], "Where is the performance?", [], "indoor"),
    ],
    "val": [(6, "00000003", ["Audio", "Comparative"], LOUDER, ["violin", "piano"], "yes")],
    "test": [(7, "00000003", ["Visual", "Counting"], "Is there a <Object> in the entire video?", ["drum"], "yes")],
}
VALOR = {"train": [("va1", "A man plays a violin."), ("va2", "A dog barks twice.")], "val": [("va3", "Rain falls.")]}


def _avqa_scene(vid: str) -> Scene:
    objects = (
        SceneObject("violin", "left", ((0, 10),), ((0, 6),), 1.2, 0.0),
        SceneObject("piano", "right", ((0, 10),), ((3, 10),), 0.7, 2.0),
    )
    return Scene(vid, "music_avqa", "train", 10, "indoor", objects, render_seed=0)


def _write_raw(quarantine: dict[str, list[str]] | None = None) -> None:
    """The three datasets in their native layouts under data/raw, scenes beside them, and a raw.json."""
    ave = Path("data/raw/ave")
    ave.mkdir(parents=True)
    for split, name in (("train", "trainSet.txt"), ("val", "valSet.txt"), ("test", "testSet.txt")):
        (ave / name).write_text("Category&VideoID&Quality&StartTime&EndTime\n" + "\n".join(AVE_ROWS[split]) + "\n")
    scenes = [
        Scene(v, "ave", "train", 10, "outdoor", (SceneObject(c, "middle", (vis,), (aud,), 1.0, 0.0),), 0)
        for v, (c, vis, aud) in AVE_SCENES.items()
    ]
    (ave / SCENES_FILENAME).write_text(scene_lines(scenes))
    avqa = Path("data/raw/music_avqa/json_update")
    avqa.mkdir(parents=True)
    for split, questions in AVQA_QUESTIONS.items():
        entries = [
            {"video_id": v, "question_id": q, "type": json.dumps(t), "question_content": c,
             "templ_values": json.dumps(vals), "question_deleted": 0, "anser": a}
            for q, v, t, c, vals, a in questions
        ]  # fmt: skip
        (avqa / f"avqa-{split}.json").write_text(json.dumps(entries, indent=2))
    (avqa.parent / SCENES_FILENAME).write_text(scene_lines([_avqa_scene(f"0000000{i}") for i in (1, 2, 3)]))
    valor = Path("data/raw/valor")
    valor.mkdir(parents=True)
    for split, items in VALOR.items():
        (valor / f"{split}_samples.json").write_text(json.dumps([{"video_id": v, "desc": d} for v, d in items]))
    quarantine = quarantine or {}
    report = {
        "stage": "validate_raw",
        "max_failure_rate": 0.05,
        "datasets": {
            name: {
                "num_items": 10, "num_passed": 10, "num_quarantined": len(quarantine.get(name, [])),
                "failure_rate": 0.0,
                "quarantined": [
                    {"item_id": "", "split": "", "source": s, "reasons": ["bad"]} for s in quarantine.get(name, [])
                ],
                "expectations": [],
            }  # fmt: skip
            for name in ("ave", "music_avqa", "valor")
        },
    }
    Path("reports/validation").mkdir(parents=True)
    Path("reports/validation/raw.json").write_text(json.dumps(report, indent=2, sort_keys=True))


def _params(use_reasoning: bool = True, tasks=("ave", "avqa", "avcap")):
    params = load_params(REPO / "params.yaml")
    avuie = dataclasses.replace(params.avuie, use_reasoning=use_reasoning, tasks=list(tasks))
    return dataclasses.replace(params, avuie=avuie)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def raw(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_raw()
    return tmp_path


def test_writes_every_split_sorted_with_round_tripping_targets(raw):
    for use_reasoning in (True, False):
        result = avuie_build(_params(use_reasoning))
        assert result.num_records == {
            "ave": {"train": 4, "val": 1, "test": 2},
            "avqa": {"train": 5, "val": 1, "test": 1},
            "avcap": {"train": 2, "val": 1},
        }
        for task, splits in result.num_records.items():
            spec = TASKS[Task(task)]
            for split in splits:
                records = read_jsonl(Path("data/avuie") / task / f"{split}.jsonl")
                assert [r.id for r in records] == sorted(r.id for r in records)
                for rec in records:
                    assert rec.task == task and rec.split == split and rec.id == f"{task}/{split}/{rec.item_id}"
                    parsed = spec.parse_answer(rec.target)
                    assert parsed == spec.parse_answer(spec.format_answer(parsed, None))
                    if task == "ave":
                        assert parsed.to_dict() == rec.label
                    elif task == "avqa":
                        assert parsed.answer == rec.label["answer"]
                    else:
                        assert parsed.caption == rec.label["caption"]
                    assert rec.reasoning is (use_reasoning and task != "avcap")
        stats = json.loads(Path("data/avuie/stats.json").read_text())
        assert stats["use_reasoning"] is use_reasoning


def test_reasoning_comes_from_the_scene(raw):
    avuie_build(_params())
    (dog,) = [r for r in read_jsonl(Path("data/avuie/ave/train.jsonl")) if r.video_id == "vA000000001"]
    assert "dog" in dog.target and "8" in dog.target and dog.target.endswith("<range> 2,6 </range>.")
    stats = json.loads(Path("data/avuie/stats.json").read_text())
    assert stats["tasks"]["ave"]["targets"] == {"scene": 7}
    assert stats["tasks"]["avqa"]["targets"] == {"scene": 7}


def test_two_builds_are_byte_identical(raw):
    avuie_build(_params())
    first = _snapshot(Path("data/avuie"))
    avuie_build(_params())
    assert _snapshot(Path("data/avuie")) == first
    assert set(first) == {
        "stats.json", "ave/train.jsonl", "ave/val.jsonl", "ave/test.jsonl",
        "avqa/train.jsonl", "avqa/val.jsonl", "avqa/test.jsonl", "avcap/train.jsonl", "avcap/val.jsonl",
    }  # fmt: skip
    assert sorted(p.name for p in Path("data").iterdir()) == ["avuie", "raw"]  # no temp folders left


def test_stats_counts_and_avqa_majority(raw):
    stats = avuie_build(_params()).stats
    train = stats["tasks"]["avqa"]["splits"]["train"]
    assert train["num_records"] == 5 and train["num_with_reasoning"] == 5 and train["num_excluded"] == 0
    assert train["majority_answer"] == {
        "Audio-Visual/Temporal": {"answer": "violin", "rate": 1.0, "num_questions": 1},
        "Audio/Counting": {"answer": "two", "rate": 0.666667, "num_questions": 3},
        "Visual/Location": {"answer": "indoor", "rate": 1.0, "num_questions": 1},
    }
    words = [len(r.target.split()) for r in read_jsonl(Path("data/avuie/avcap/train.jsonl"))]
    assert stats["tasks"]["avcap"]["splits"]["train"]["avg_target_words"] == round(sum(words) / len(words), 3) == 4.5


def test_quarantined_sources_are_excluded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad_ave = "data/raw/ave/trainSet.txt:3"  # line 1 is the header: Cat&vA000000002
    bad_avqa = "data/raw/music_avqa/json_update/avqa-train.json[1]"  # question 2
    _write_raw({"ave": [bad_ave], "music_avqa": [bad_avqa]})
    result = avuie_build(_params())
    assert result.num_excluded == {"ave": 1, "avqa": 1, "avcap": 0}
    ave_train = read_jsonl(Path("data/avuie/ave/train.jsonl"))
    assert len(ave_train) == 3 and all(r.source != bad_ave and r.video_id != "vA000000002" for r in ave_train)
    assert [r.item_id for r in read_jsonl(Path("data/avuie/avqa/train.jsonl"))] == ["1", "3", "4", "5"]
    assert result.stats["tasks"]["ave"]["splits"]["train"]["num_excluded"] == 1


def test_released_converted_label_overrides_generation(raw):
    released = "Ein Hund bellt. Also: <event> Bark </event>, <range> 2,6 </range>."
    Path("data/raw/ave/converted_label").mkdir()
    Path("data/raw/ave/converted_label/vA000000001.txt").write_text(released + "\n", encoding="utf-8")
    Path("data/raw/music_avqa/converted_label").mkdir()
    Path("data/raw/music_avqa/converted_label/2.txt").write_text("So the answer is <answer> piano </answer>.")  # wrong
    result = avuie_build(_params())
    (dog,) = [r for r in read_jsonl(Path("data/avuie/ave/train.jsonl")) if r.video_id == "vA000000001"]
    assert dog.target == released and dog.reasoning
    (q2,) = [r for r in read_jsonl(Path("data/avuie/avqa/train.jsonl")) if r.item_id == "2"]
    assert q2.target.endswith("<answer> violin </answer>.")
    assert result.stats["tasks"]["ave"]["targets"] == {"released": 1, "scene": 6}
    assert result.stats["tasks"]["avqa"]["targets"] == {"released_mismatched": 1, "scene": 7}


def test_replaces_a_previous_build_and_only_writes_requested_tasks(raw):
    Path("data/avuie/old_task").mkdir(parents=True)
    Path("data/avuie/old_task/train.jsonl").write_text("stale\n")
    avuie_build(_params(tasks=["avcap"]))
    assert sorted(_snapshot(Path("data/avuie"))) == ["avcap/train.jsonl", "avcap/val.jsonl", "stats.json"]


def test_duplicate_rows_are_dropped_and_reported(raw):
    path = Path("data/raw/ave/valSet.txt")
    path.write_text(path.read_text() + "Horse&vA000000005&good&0&4\n")
    result = avuie_build(_params(tasks=["ave"]))
    assert result.num_records["ave"]["val"] == 1
    assert result.stats["tasks"]["ave"]["duplicates"] == ["data/raw/ave/valSet.txt:3"]


def test_missing_or_incomplete_quality_report_is_an_error(raw):
    report_path = Path("reports/validation/raw.json")
    report = json.loads(report_path.read_text())
    del report["datasets"]["valor"]
    report_path.write_text(json.dumps(report))
    with pytest.raises(DataError, match="valor"):
        avuie_build(_params())
    report_path.unlink()
    with pytest.raises(DataError, match="raw.json"):
        avuie_build(_params())
    assert not Path("data/avuie").exists()
