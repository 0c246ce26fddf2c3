"""``validate_raw`` over LLP (AVVP): real AV-Synth output passes clean, planted bad items are quarantined.

Three runs of the whole stage (reader -> frame -> media decode -> Great Expectations -> report):

- the output of :func:`crab.synth.llp.write_llp` (9 tiny clips, dense events in every split) as written:
  nothing may be quarantined or even warned about;
- a copy of it with bad items planted in the files (an unknown weak class, an unknown dense class, an
  empty dense span, a missing, a truncated, a 5-s and a silent clip, a dense class the weak labels lack):
  exactly those are quarantined, with their reasons, and the rest pass;
- hand-made records fed to the stage in place of the reader, for the suite's own checks that the reader
  never lets through (off-grid and fractional times, unknown classes, a val video without dense events,
  a filename twice in a split): the reasons are pinned word for word.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from conftest import REPO, MediaKit

from crab.config import Params, load_params
from crab.datasets.llp import LLP_EVAL_FILES, LLP_SPLIT_FILES, LLP_TRAIN_DENSE_FILES, LlpEvent, LlpRecord
from crab.datasets.records import ReadResult
from crab.datasets.vocab_seg import LLP_CLASSES
from crab.errors import CrabError
from crab.quality import raw
from crab.quality.quarantine import ExpectationOutcome, GroupReport, load_quarantined
from crab.quality.raw import validate_raw
from crab.synth.llp import write_llp

PARAMS = load_params(REPO / "params.yaml")
NUM_PER_SPLIT = 3


def _params(llp_root: Path, tasks: list[str], max_failure_rate: float) -> Params:
    """The real params.yaml with only LLP present (the other roots point at a folder that does not exist)."""
    absent = str(llp_root.parent / "absent")
    datasets = dataclasses.replace(PARAMS.datasets, ave=absent, music_avqa=absent, valor=absent, llp=str(llp_root))
    return dataclasses.replace(
        PARAMS,
        datasets=datasets,
        validation=dataclasses.replace(PARAMS.validation, max_failure_rate=max_failure_rate),
        avuie=dataclasses.replace(PARAMS.avuie, tasks=tasks),
    )


def _run(llp_root: Path, workdir: Path, max_failure_rate: float = 1.0) -> GroupReport:
    """Run the stage in ``workdir`` over ``llp_root`` and return the LLP group."""
    workdir.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        result = validate_raw(_params(llp_root, ["avvp"], max_failure_rate))
    assert {name for name, group in result.groups.items() if group.present} == {"llp"}
    return result.groups["llp"]


def _weak_rows(path: Path) -> list[tuple[str, list[str]]]:
    """``(filename, weak labels)`` of each body row of a weak-label file, in file order (row i is line i + 2)."""
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return [(name, labels.split(",")) for name, labels in (line.split("\t") for line in lines)]


def _append(path: Path, row: str) -> str:
    """Append one TAB-separated row to an LLP file; return its source (``"<file>:<line>"``)."""
    with path.open("a", encoding="utf-8", newline="\n") as f:
        f.write(row + "\n")
    return f"{path}:{len(path.read_text(encoding='utf-8').splitlines())}"


def _warning(group: GroupReport) -> ExpectationOutcome:
    """The outcome of the (warning-only) check that dense classes are weak labels."""
    (outcome,) = [e for e in group.expectations if e.column == "events_not_in_weak"]
    return outcome


@pytest.fixture(scope="module")
def synth_llp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real AV-Synth LLP folder: 3 clips per split (32 px, 4 fps), dense events in every split."""
    root = tmp_path_factory.mktemp("synth") / "llp"
    cfg = dataclasses.replace(PARAMS.synth.llp, num_train=NUM_PER_SPLIT, num_val=NUM_PER_SPLIT, num_test=NUM_PER_SPLIT)
    video = dataclasses.replace(PARAMS.synth.video, size=32, fps=4)
    assert write_llp(root, cfg, video, PARAMS.synth.audio, PARAMS.synth.difficulty, seed=7) == 3 * NUM_PER_SPLIT
    return root


def test_synth_output_passes_with_nothing_quarantined(synth_llp: Path, tmp_path: Path) -> None:
    group = _run(synth_llp, tmp_path, max_failure_rate=0.0)  # any quarantined item would fail the stage
    assert group.num_items == 3 * NUM_PER_SPLIT
    assert group.quarantined == ()
    assert all(e.success for e in group.expectations), [e for e in group.expectations if not e.success]
    assert len(group.expectations) == 10  # 4 media checks + 6 LLP checks, all evaluated by GE
    assert load_quarantined(tmp_path / "reports/validation/raw.json")["llp"] == set()


def test_planted_bad_items_are_quarantined_with_their_reasons(
    synth_llp: Path, media_kit: MediaKit, tmp_path: Path
) -> None:
    root = tmp_path / "llp"
    shutil.copytree(synth_llp, root)
    videos = root / "LLP_dataset" / "video"
    weak = {split: root / name for split, name in LLP_SPLIT_FILES.items()}
    rows = {split: _weak_rows(path) for split, path in weak.items()}

    def source(split: str, index: int) -> str:
        return f"{weak[split]}:{index + 2}"

    def clip(split: str, index: int) -> Path:
        return videos / f"{rows[split][index][0].rsplit('_', 2)[0]}.mp4"

    bad: dict[str, str] = {}
    # train 0: a dense class its weak labels lack -> a warning only, the video passes.
    name, labels = rows["train"][0]
    extra = next(c for c in LLP_CLASSES if c not in labels)
    _append(root / LLP_TRAIN_DENSE_FILES["audio"], f"{name}\t1\t3\t{extra}")
    # train 2: a 5-s clip.
    media_kit.place("short", clip("train", 2))
    bad[source("train", 2)] = "clip lasts 5.00 s, expected 10 +- 0.5 s"
    # a weak row with a class outside the vocabulary (rejected by the reader).
    bad[_append(weak["train"], "unkWeak0001_0_10\tDog,Kazoo")] = "unknown class 'Kazoo' (not one of LLP's 25)"
    # val 0: its clip is missing (rejected by the reader).
    clip("val", 0).unlink()
    bad[source("val", 0)] = "missing media file"
    # val 1: an empty dense span -> that row alone is rejected, the video passes.
    name, labels = rows["val"][1]
    bad[_append(root / LLP_EVAL_FILES["audio"], f"{name}\t6\t6\t{labels[0]}")] = "empty span: onset 6 >= offset 6"
    # test 0: truncated clip; test 1: a dense class outside the vocabulary; test 2: no audio stream.
    media_kit.place("truncated", clip("test", 0))
    bad[source("test", 0)] = "truncated or corrupt"
    name, _ = rows["test"][1]
    dense_source = _append(root / LLP_EVAL_FILES["visual"], f"{name}\t2\t5\tKazoo")
    bad[source("test", 1)] = f"{dense_source}: unknown class 'Kazoo'"
    media_kit.place("noaudio", clip("test", 2))
    bad[source("test", 2)] = "no audio stream"
    good = [source("train", 0), source("train", 1), source("val", 1), source("val", 2)]

    group = _run(root, tmp_path / "work")

    by_source = {q.source: q for q in group.quarantined}
    assert set(by_source) == set(bad)  # no good item quarantined, no bad item missed
    for src, expected in bad.items():
        assert any(expected in reason for reason in by_source[src].reasons), (src, by_source[src].reasons)
    assert by_source[source("train", 2)].split == "train"
    assert group.num_items == len(good) + len(bad)  # the empty-span row counts as an item of its own
    assert group.num_passed == len(good)
    warning = _warning(group)
    assert (warning.success, warning.unexpected_count, warning.severity) == (False, 1, "warning")


# --------------------------------------------------------------------------------------------------
# The suite's own checks, on records the reader would never produce
# --------------------------------------------------------------------------------------------------


def _record(split: str, line: int, name: str, labels: tuple[str, ...], events: list[tuple] | None, clip: Path):
    """A record of video ``name`` whose dense events are ``(modality, label, onset, offset)`` tuples."""
    dense = None
    if events is not None:
        dense = {
            modality: tuple(
                LlpEvent(label, onset, offset, f"/llp/dense_{modality}.csv:{i + 2}")
                for i, (m, label, onset, offset) in enumerate(events)
                if m == modality
            )
            for modality in ("audio", "visual")
        }
    return LlpRecord(
        item_id=f"{name}_0_10",
        video_id=name,
        labels=labels,
        audio_events=None if dense is None else dense["audio"],
        visual_events=None if dense is None else dense["visual"],
        split=split,  # type: ignore[arg-type]
        video_path=clip,
        source=f"/llp/{split}.csv:{line}",
    )


def test_suite_checks_quarantine_with_pinned_reasons(media_kit: MediaKit, tmp_path: Path, monkeypatch) -> None:
    clip = media_kit.files["good"]
    records = [
        _record("train", 2, "goodTrain01", ("Dog",), None, clip),  # the real release's weak-only train
        _record("train", 3, "goodTrain02", ("Dog", "Cat"), [("audio", "Dog", 0, 10), ("visual", "Cat", 2, 4)], clip),
        _record("train", 4, "warnTrain01", ("Dog",), [("audio", "Dog", 0, 3), ("visual", "Banjo", 5, 9)], clip),
        _record("train", 5, "dupName0001", ("Cello",), None, clip),
        _record("train", 6, "dupName0001", ("Cello",), None, clip),
        _record("train", 7, "badWeak0001", ("Dog", "Kazoo"), None, clip),
        _record("val", 2, "goodVal0001", ("Speech",), [("audio", "Speech", 0, 10)], clip),
        _record("val", 3, "noDense0001", ("Speech",), None, clip),
        _record("val", 4, "emptySpan01", ("Dog",), [("audio", "Dog", 0, 2), ("audio", "Dog", 6, 6)], clip),
        _record("test", 2, "dupName0001", ("Cello",), [("visual", "Cello", 0, 10)], clip),  # other split: fine
        _record("test", 3, "pastEnd0001", ("Car",), [("visual", "Car", 3, 11)], clip),
        _record("test", 4, "fraction001", ("Car",), [("audio", "Car", 2.5, 4)], clip),
        _record("test", 5, "badEvent001", ("Car",), [("audio", "Car", 0, 1), ("visual", "Kazoo", 1, 2)], clip),
    ]

    def read(root: Path, split: str) -> ReadResult[LlpRecord]:
        return ReadResult(records=[r for r in records if r.split == split])

    monkeypatch.setitem(raw._SPECS, "llp", dataclasses.replace(raw._SPECS["llp"], read=read))
    (tmp_path / "llp").mkdir()  # the stage skips an absent folder; the fake reader ignores it
    group = _run(tmp_path / "llp", tmp_path / "work")

    grid = "dense event not a whole-second span with 0 <= onset < offset <= 10: "
    expected = {
        "/llp/train.csv:5": ("filename 'dupName0001_0_10' occurs more than once in train (every copy quarantined)",),
        "/llp/train.csv:6": ("filename 'dupName0001_0_10' occurs more than once in train (every copy quarantined)",),
        "/llp/train.csv:7": ('weak labels ["Dog", "Kazoo"]: \'Kazoo\' not among LLP\'s 25 classes',),
        "/llp/val.csv:3": ("val video without dense events (val and test are densely annotated)",),
        "/llp/val.csv:4": (grid + "audio 'Dog' 6-6 s (dense_audio.csv:3)",),
        "/llp/test.csv:3": (grid + "visual 'Car' 3-11 s (dense_visual.csv:2)",),
        "/llp/test.csv:4": (grid + "audio 'Car' 2.5-4 s (dense_audio.csv:2)",),
        "/llp/test.csv:5": ("dense event class not one of LLP's 25: visual 'Kazoo' 1-2 s (dense_visual.csv:3)",),
    }
    assert {q.source: q.reasons for q in group.quarantined} == expected
    assert group.num_items == len(records)
    assert group.num_passed == 5  # goodTrain01, goodTrain02, warnTrain01, goodVal0001, test's dupName0001
    warning = _warning(group)  # warnTrain01 (Banjo) and badEvent001 (Kazoo): reported, not quarantined for it
    assert (warning.success, warning.unexpected_count, warning.severity) == (False, 2, "warning")


def test_missing_llp_folder_is_an_error_when_avvp_needs_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CrabError, match=r"no_llp \(llp\) not found; avuie.tasks \['avvp'\] need it"):
        validate_raw(_params(tmp_path / "no_llp", ["avvp"], max_failure_rate=1.0))
    assert not (tmp_path / "reports").exists()
