"""Acceptance test of ``validate_avuie``: AV-UIE JSONL with planted bad lines (malformed JSON, schema breaks,
duplicate ids, wrong placeholders, labels out of vocabulary or range, targets that contradict their label,
missing media) is quarantined line by line with the expected reason; every good record passes.

Good records are made with the task table's instruction and the tasks' own answer formatters, exactly as
``avuie_build`` makes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import MediaKit, make_params
from PIL import Image

from crab.avuie.arig import ArigLabel
from crab.avuie.arig import format_answer as arig_answer
from crab.avuie.avcap import AvcapLabel
from crab.avuie.avcap import format_answer as avcap_answer
from crab.avuie.ave import AveLabel
from crab.avuie.ave import format_answer as ave_answer
from crab.avuie.avqa import AvqaLabel
from crab.avuie.avqa import format_answer as avqa_answer
from crab.avuie.avs import MASK_BLOCK, AvsLabel
from crab.avuie.avs import format_answer as avs_answer
from crab.avuie.avvp import AvvpLabel
from crab.avuie.avvp import format_answer as avvp_answer
from crab.avuie.ref_avs import RefAvsLabel
from crab.avuie.ref_avs import format_answer as ref_avs_answer
from crab.avuie.seg import SegLabel
from crab.avuie.seg import format_answer as seg_answer
from crab.errors import CrabError
from crab.quality.avuie import validate_avuie
from crab.quality.quarantine import ValidationResult, load_quarantined_avuie
from crab.tasks import TASKS, Task

AVQA_QUESTION = "Is there a cello sound?"


def record(task: str, split: str, item_id: str, media_path: str, /, **changes: Any) -> dict[str, Any]:
    """A valid AV-UIE record as a dict; ``changes`` override fields.

    ``label`` is merged into the default label before the target is formatted from it; ``raw_label`` is
    merged after (to break the label's schema without breaking the formatter). For S4 / MS3, ``media_path``
    is a folder holding ``frames/`` (PNG frames), ``mask.png`` and ``audio.wav``.
    """
    spec = TASKS[Task(task)]
    avs_root = Path(media_path)
    label = {
        "ave": {"event": "Church bell", "start": 1, "end": 5},
        "avqa": {"answer": "yes", "question": AVQA_QUESTION, "question_type": ["Audio", "Counting"], "question_id": 7},
        "avvp": {
            "audio": [{"event": "Dog", "start": 0, "end": 4}],
            "visual": [{"event": "Cat", "start": 2, "end": 10}],
        },
        "avcap": {"caption": "A bell rings in a church."},
        "s4": {"frame": 2, "mask": (avs_root / "mask.png").as_posix(), "objects": ["dog_barking"]},
        "ms3": {"frame": 0, "mask": (avs_root / "mask.png").as_posix(), "objects": ["dog_barking", "playing_piano"]},
        "avss": {"frame": 4, "mask": (avs_root / "mask.png").as_posix(), "objects": ["guitar", "man"]},
        "ref_avs": {
            "frame": 3,
            "mask": (avs_root / "mask.png").as_posix(),
            "objects": ["guitar"],
            "expression": "The object on the left.",
            "subset": "seen",
        },
        "arig": {
            "x0": 10,
            "y0": 20,
            "x1": 60,
            "y1": 90,
            "object": "dog_barking",
            "frame": 1,
            "mask": (avs_root / "mask.png").as_posix(),
        },
        "seg": {"frame": 0, "mask": (avs_root / "mask.png").as_posix(), "name": "dog", "definition": "a pet"},
    }.get(task, {})
    label.update(changes.pop("label", {}))
    if task == "ave":
        target = ave_answer(AveLabel(**label), "A church bell is seen and heard.")
    elif task == "avvp":
        target = avvp_answer(AvvpLabel.from_dict(label), "A dog barks, a cat is seen.")
    elif task == "avqa":
        target = avqa_answer(AvqaLabel(answer=label["answer"]), "A cello is heard.")
    elif task in ("s4", "ms3", "avss"):
        target = avs_answer(AvsLabel.from_dict(label), "A dog barks on the left.")
    elif task == "ref_avs":
        target = ref_avs_answer(RefAvsLabel.from_dict(label), "A guitar is on the left.")
    elif task == "arig":
        target = arig_answer(ArigLabel(*(label[k] for k in ("x0", "y0", "x1", "y1"))), "A dog barks on the left.")
    elif task == "seg":
        target = seg_answer(SegLabel.from_dict(label), None)
    else:
        target = avcap_answer(AvcapLabel(caption=label["caption"]), None) if label["caption"] else ""
    label.update(changes.pop("raw_label", {}))
    media = {"video": media_path, "audio": media_path}
    if task in ("s4", "ms3", "avss", "ref_avs"):
        media = {"video": (avs_root / "frames").as_posix(), "audio": (avs_root / "audio.wav").as_posix()}
    if task == "arig":
        media = {"image": (avs_root / "frames" / "v_1.png").as_posix(), "audio": (avs_root / "audio.wav").as_posix()}
    if task == "seg":
        media = {"image": (avs_root / "frames" / "v_1.png").as_posix()}
    instruction = {"seg": {"name": "dog", "definition": "a pet"}, "avqa": {"question": AVQA_QUESTION}, "s4": {"nth": "third"}, "ms3": {"nth": "first"}, "avss": {"nth": "fifth"},
                   "ref_avs": {"expression": "the object on the left", "nth": "fourth"}}  # fmt: skip
    fields = {
        "id": f"{task}/{split}/{item_id}",
        "task": task,
        "split": split,
        "dataset": spec.dataset,
        "item_id": item_id,
        "source": f"raw/{task}.txt:{item_id}",
        "video_id": item_id,
        "media": media,
        "instruction": spec.instruction(**instruction.get(task, {})),
        "target": target,
        "reasoning": task not in ("avcap", "seg"),
        "label": label,
    }
    fields.update(changes)
    return fields


def planted_lines(media: str, avs_media: str) -> dict[tuple[str, str], list[tuple[str, str | None]]]:
    """(task, split) -> lines as (JSON text, expected reason piece or None for a good line)."""

    def line(
        task: str, split: str, item_id: str, reason: str | None = None, /, **changes: Any
    ) -> tuple[str, str | None]:
        path = avs_media if task in ("s4", "ms3", "arig", "avss", "ref_avs", "seg") else media
        return json.dumps(record(task, split, item_id, path, **changes), sort_keys=True, ensure_ascii=False), reason

    def drop_label_key(task: str, item_id: str, key: str, reason: str) -> tuple[str, str]:
        rec = record(task, "test", item_id, avs_media)
        del rec["label"][key]
        return json.dumps(rec), reason

    def drop(key: str, reason: str) -> tuple[str, str]:
        rec = record("ave", "train", "noreason", media)
        del rec[key]
        return json.dumps(rec), reason

    video_twice = TASKS[Task.AVE].instruction() + " <video>"
    bare_audio = TASKS[Task.AVE].instruction().replace("<audio_start><audio><audio_end>", "<audio>")
    bad_range_target = ave_answer(AveLabel("Church bell", 2, 5), "Reasoning.")
    return {
        ("ave", "train"): [
            line("ave", "train", "good1"),
            line("ave", "train", "good2", label={"event": "Race car, auto racing", "start": 0, "end": 10}),
            ('{"id": "ave/train/broken", "task": "ave"', "malformed JSON line"),
            line("ave", "train", "dog", "unknown event 'Dog'", label={"event": "Dog"}),
            line("ave", "train", "reversed", "reversed or empty range: start 7, end 3", label={"start": 7, "end": 3}),
            line("ave", "train", "pastend", "range ends at 12 s, past the clip's end (10 s)", label={"start": 5, "end": 12}),
            line("ave", "train", "badtarget", "<range> 2,5 differs from the label 1,5", target=bad_range_target),
            line("ave", "train", "notags", "no parsable <event>", target="A church bell rings."),
            line("ave", "train", "dupid", "duplicate id 'ave/train/dupid'"),
            line("ave", "train", "dupid", "duplicate id 'ave/train/dupid'", label={"start": 2}),
            line("ave", "train", "twovideo", "exactly one <video>", instruction=video_twice),
            line("ave", "train", "bareaudio", "exactly one <audio>", instruction=bare_audio),
            line("ave", "train", "nomedia", "media file not found", media={"video": "gone.mp4", "audio": "gone.mp4"}),
            drop("reasoning", "schema: missing key 'reasoning'"),
            line("ave", "train", "strstart", "schema: label.start: expected int, got str", raw_label={"start": "1"}),
            line("ave", "train", "valsplit", "split 'val' in the file train.jsonl", id="ave/val/valsplit", split="val"),
            line("ave", "train", "oddid", "is not <task>/<split>/<item_id>", id="ave/train/other"),
            line("ave", "train", "wrongset", "dataset 'valor' for task 'ave'", dataset="valor"),
        ],
        ("ave", "val"): [line("ave", "val", "good3")],
        ("ave", "test"): [line("ave", "test", "good4", label={"event": "Bark", "start": 0, "end": 1})],
        ("avqa", "train"): [
            line("avqa", "train", "q1"),
            line("avqa", "train", "q2", label={"answer": "more than ten", "question_type": ["Audio-Visual", "Counting"]}),
            line("avqa", "train", "q3", "answer 'maybe' is not in the answer vocabulary", label={"answer": "maybe"}),
            line("avqa", "train", "q4", "<answer> 'yes' differs from the label 'no'", target="So the answer is <answer> yes </answer>.", label={"answer": "no"}),
            line("avqa", "train", "q5", "unknown question type [\"Audio\", \"Location\"]", label={"question_type": ["Audio", "Location"]}),
            ("[1, 2", "malformed JSON line"),
        ],
        ("avqa", "test"): [line("avqa", "test", "q6", label={"answer": "two"})],
        ("avcap", "train"): [
            line("avcap", "train", "c1"),
            line("avcap", "train", "c2", "empty caption", label={"caption": ""}),
            line("avcap", "train", "c3", "target is not the label's caption", target="Something else entirely."),
            line("avcap", "train", "c4", "task 'ave' in the avcap/ folder", task="ave"),
        ],
        ("avcap", "val"): [line("avcap", "val", "c5")],
        ("avvp", "test"): [
            line("avvp", "test", "p1"),
            line("avvp", "test", "p2", label={"audio": [], "visual": []}),
            line("avvp", "test", "p3", "audio event 'Church bell' is not one of LLP's 25 classes",
                 label={"audio": [{"event": "Church bell", "start": 0, "end": 2}]}),
            line("avvp", "test", "p4", "visual event 'Cat' spans (8 12), not inside the 0..10 s grid",
                 raw_label={"visual": [{"event": "Cat", "start": 8, "end": 12}]},
                 target=avvp_answer(AvvpLabel.from_spans([("Dog", 0, 4)], [("Cat", 8, 12)]), None)),
            line("avvp", "test", "p5", "the tagged events mark other seconds than the label",
                 target=avvp_answer(AvvpLabel.from_spans([("Dog", 0, 5)], [("Cat", 2, 10)]), None)),
            line("avvp", "test", "p6", "no parsable <audio_event>", target="A dog barks."),
            line("avvp", "test", "p7", "schema: label.audio[0]: expected {event, start, end}",
                 raw_label={"audio": [{"event": "Dog", "start": 0}]}),
        ],
        ("s4", "test"): [
            line("s4", "test", "v_3"),
            line("s4", "test", "v_4", label={"frame": 3, "objects": []}),
            line("s4", "test", "v_5", label={"frame": 4, "objects": None}),
            line("s4", "test", "v_6", "object 'kazoo' is neither one of S4's 23", label={"objects": ["kazoo"]}),
            line("s4", "test", "v_7", "frame 5 is not one of the clip's 5", raw_label={"frame": 5}),
            line("s4", "test", "v_8", "<object> ('dog_barking',) differs from the label ('playing_piano',)",
                 raw_label={"objects": ["playing_piano"]}),
            line("s4", "test", "v_9", "no <mask_start><mask_0>...<mask_5><mask_end> block",
                 target="So the object is <object> dog_barking </object>."),
            line("s4", "test", "v_10", "no <mask_start>", target=f"<object> dog_barking </object> {MASK_BLOCK} {MASK_BLOCK}"),
            line("s4", "test", "v_11", "media file not found: gone.png", raw_label={"mask": "gone.png"}),
            line("s4", "test", "v_12", "media file not found: empty_folder",
                 media={"video": "empty_folder", "audio": f"{avs_media}/audio.wav"}),
            line("s4", "test", "v_13", "schema: label.objects: expected a list of strings or null",
                 raw_label={"objects": "dog_barking"}),
            drop_label_key("s4", "v_14", "objects", "schema: label: missing key 'objects'"),
        ],
        ("ms3", "train"): [line("ms3", "train", "m_1")],
        ("avss", "val"): [
            line("avss", "val", "a_1"),
            line("avss", "val", "a_2", label={"objects": []}),
            line("avss", "val", "a_3", "object 'dog_barking' is not one of AVSS's 70 object classes",
                 label={"objects": ["dog_barking"]}),
            line("avss", "val", "a_4", "object 'background' is not one of AVSS's 70", label={"objects": ["background"]}),
            line("avss", "val", "a_5", "frame 10 is not one of the clip's 10", raw_label={"frame": 10}),
        ],
        ("ref_avs", "test"): [
            line("ref_avs", "test", "r_1"),
            line("ref_avs", "test", "r_2", label={"objects": [], "subset": "null"}),
            line("ref_avs", "test", "r_3", "object 'dog_barking' is not one of Ref-AVS's 51 categories",
                 label={"objects": ["dog_barking"]}),
            line("ref_avs", "test", "r_4", "a null-subset row names the object 'guitar'", raw_label={"subset": "null"}),
            line("ref_avs", "test", "r_5", "frame 10 is not one of the clip's 10", raw_label={"frame": 10}),
            line("ref_avs", "test", "r_6", "subset 'test_s' is not one of", raw_label={"subset": "test_s"}),
            line("ref_avs", "test", "r_7", "<object> ('guitar',) differs from the label ('dog',)",
                 raw_label={"objects": ["dog"]}),
            drop_label_key("ref_avs", "r_8", "expression", "schema: label: missing key 'expression'"),
            line("ref_avs", "test", "r_9", "empty referring expression", raw_label={"expression": " "}),
            line("ref_avs", "test", "r_10", "media file not found: gone.png", raw_label={"mask": "gone.png"}),
        ],
        ("seg", "train"): [
            line("seg", "train", "g_1"),
            line("seg", "train", "g_2", "no <mask_start>", target="It is."),
            line("seg", "train", "g_3", "empty name or definition", raw_label={"definition": " "}),
            line("seg", "train", "g_4", "media file not found: gone.png", raw_label={"mask": "gone.png"}),
            drop_label_key("seg", "g_5", "name", "schema: label: missing key 'name'"),
            line("seg", "train", "g_6", "instruction needs exactly one <image>",
                 instruction=TASKS[Task.S4].instruction(nth="first")),
        ],
        ("arig", "test"): [
            line("arig", "test", "v_2"),
            line("arig", "test", "v_3", "x0 < x1", raw_label={"x1": 5}),
            line("arig", "test", "v_4", "<obj> (10, 20, 60, 90) differs from the label (10, 20, 60, 91)",
                 raw_label={"y1": 91}),
            line("arig", "test", "v_5", "object 'kazoo' is neither one of S4's 23", raw_label={"object": "kazoo"}),
            line("arig", "test", "v_6", "frame 7 is not one of the clip's 5", raw_label={"frame": 7}),
            line("arig", "test", "v_7", "no parsable <obj>(x0,y0)(x1,y1)</obj> tag", target="The box is (1,2)(3,4)."),
            line("arig", "test", "v_8", "media file not found: gone.png", raw_label={"mask": "gone.png"}),
            line("arig", "test", "v_9", "schema: label.x0: expected int, got str", raw_label={"x0": "10"}),
            line("arig", "test", "v_10", "instruction needs exactly one <image>",
                 instruction=TASKS[Task.S4].instruction(nth="first")),
        ],
    }  # fmt: skip


def write_avuie(
    workdir: Path, lines: dict[tuple[str, str], list[tuple[str, str | None]]]
) -> tuple[list[str], dict[str, str]]:
    """Write the JSONL files under ``workdir/data/avuie``; return (good locations, bad location -> reason)."""
    good, bad = [], {}
    for (task, split), entries in lines.items():
        path = Path("data/avuie") / task / f"{split}.jsonl"
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        (workdir / path).write_text("".join(text + "\n" for text, _ in entries), encoding="utf-8")
        for number, (_, reason) in enumerate(entries, start=1):
            location = f"{path.as_posix()}:{number}"
            (good.append(location) if reason is None else bad.__setitem__(location, reason))
    return good, bad


@pytest.fixture(scope="module")
def avuie_run(
    media_kit: MediaKit, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, ValidationResult, list[str], dict[str, str]]:
    workdir = tmp_path_factory.mktemp("avuie_run")
    avs = workdir / "avs"
    (avs / "frames").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(avs / "frames" / "v_1.png")
    Image.new("L", (8, 8)).save(avs / "mask.png")
    (avs / "audio.wav").write_bytes(
        (media_kit.files["good"]).read_bytes()
    )  # any existing file: the gate checks presence
    (workdir / "empty_folder").mkdir()
    good, bad = write_avuie(workdir, planted_lines(str(media_kit.files["good"]), avs.as_posix()))
    tasks = ["ave", "avvp", "avqa", "avcap", "s4", "ms3", "arig", "avss", "ref_avs", "seg"]
    params = make_params(workdir / "raw", tasks, max_failure_rate=1.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        result = validate_avuie(params)
    return workdir, result, good, bad


def test_bad_lines_quarantined_with_reason_and_good_records_pass(avuie_run) -> None:
    _, result, good, bad = avuie_run
    quarantined = {q.source: q for g in result.groups.values() for q in g.quarantined}
    assert set(quarantined) == set(bad)
    for location, expected in bad.items():
        assert any(expected in reason for reason in quarantined[location].reasons), (
            location,
            quarantined[location].reasons,
        )
    assert sum(g.num_passed for g in result.groups.values()) == len(good)
    assert {name: g.num_items for name, g in result.groups.items()} == {
        "ave": 20, "avvp": 7, "avqa": 7, "avcap": 5, "s4": 12, "ms3": 1, "arig": 9, "avss": 5, "ref_avs": 10,
        "seg": 6,
    }  # fmt: skip


def test_report_and_quarantined_ids(avuie_run) -> None:
    workdir, _, _, _ = avuie_run
    path = workdir / "reports/validation/avuie.json"
    report = json.loads(path.read_text(encoding="utf-8"))
    assert report["stage"] == "validate_avuie" and set(report["tasks"]) == {
        "ave",
        "avvp",
        "avqa",
        "avcap",
        "s4",
        "ms3",
        "arig",
        "avss",
        "ref_avs",
        "seg",
    }
    ids = load_quarantined_avuie(path)
    assert {"ave/train/dog", "ave/train/dupid", "avqa/train/q3", "avcap/train/c2", "avvp/test/p3"} <= ids
    assert not {"ave/train/good1", "avqa/train/q1", "avcap/val/c5", "avvp/test/p1", "avvp/test/p2"} & ids
    assert "" not in ids  # malformed lines carry no id
    assert (workdir / "reports/validation/avuie_docs/index.html").is_file()


def test_failure_rate_above_threshold_names_task(media_kit: MediaKit, tmp_path: Path, monkeypatch) -> None:
    write_avuie(tmp_path, planted_lines(str(media_kit.files["good"]), str(tmp_path / "avs")))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CrabError, match=r"^validate_avuie: ave quarantined 16 of 20 items \(80\.0%\), above"):
        validate_avuie(make_params(tmp_path, ["ave"], max_failure_rate=0.05))


def test_missing_task_folder_is_an_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CrabError, match=r"data/avuie/avqa: folder not found \(run `crab avuie_build` first\)"):
        validate_avuie(make_params(tmp_path, ["avqa"], max_failure_rate=1.0))
