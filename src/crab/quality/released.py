"""The quality gate over Crab's released AV-UIE sample lists, before their rows become AV-UIE records.

``crab import-avuie`` and ``avuie_build`` with ``avuie.release`` (:mod:`crab.avuie.released`) turn every row of a
task's sample lists into one row of a pandas frame (:mod:`crab.avuie.released.rows`: the problems found while
parsing are derived columns) and validate it with this suite through Great Expectations, as the raw suites do
(:mod:`crab.quality.suites`): a row failing a check is quarantined with the check's reason, keyed by its
``"<file>[<index>]"``, and every other row is kept. The import fails (after writing its report) when a task
quarantines more than ``validation.max_failure_rate`` of its rows, so a malformed release fails loudly.

Checks of every task: the row is an object with its fields of the right types; its split is known; its paths
rebase onto the local dataset root; its files exist; it is the only row of its split and id (every copy is
quarantined: two rows of one id would give one record id twice); its reasoning text says what its label says;
its label fits our answer format (AVE ranges on the clip, AVVP spans on LLP's grid and classes, AVSBench object
names, ARIG boxes in the 224 x 224 frame, non-empty captions). Per task: AVE events in AVE's 28 categories,
AVQA answers and question types in MUSIC-AVQA's vocabularies, and AVS rows of the subset their file is for
(``avss_samples.json`` must hold only ``v2`` rows, since Crab reads every AVSS row from ``v2/``).
"""

from __future__ import annotations

from crab.avuie.released.files import AVS_SUBSETS
from crab.datasets.vocab import AVE_CATEGORIES, AVQA_ANSWERS
from crab.quality.suites import AVQA_TYPE_STRINGS, Check

__all__ = ["SPLITS", "released_suite"]

SPLITS = ("train", "val", "test")


def released_suite(task: str) -> list[Check]:
    """The checks over one task's sample-list rows (columns of :data:`crab.avuie.released.rows.COLUMNS`)."""
    checks = [
        Check("row_schema", "ExpectColumnValuesToBeNull", {"column": "schema_error"}, "{schema_error}"),
        Check(
            "split_known",
            "ExpectColumnValuesToBeInSet",
            {"column": "split", "value_set": list(SPLITS)},
            f"unknown split {{split!r}} (expected one of {list(SPLITS)})",
        ),
        Check("paths_rebase", "ExpectColumnValuesToBeNull", {"column": "path_error"}, "{path_error}"),
        Check("media_exist", "ExpectColumnValuesToBeNull", {"column": "media_error"}, "media {media_error}"),
        Check(
            "sample_unique",
            "ExpectColumnValuesToBeUnique",
            {"column": "key"},
            "{key!r} (split/id) occurs more than once in the release (every copy quarantined)",
        ),
        Check(
            "target_matches_label", "ExpectColumnValuesToBeNull", {"column": "target_error"}, "target: {target_error}"
        ),
        Check("label_valid", "ExpectColumnValuesToBeNull", {"column": "label_error"}, "label: {label_error}"),
    ]
    if task == "ave":
        checks.append(
            Check(
                "event_in_vocabulary",
                "ExpectColumnValuesToBeInSet",
                {"column": "event", "value_set": list(AVE_CATEGORIES)},
                "unknown event {event!r} (not one of AVE's 28)",
            )
        )
    elif task == "avqa":
        checks += [
            Check(
                "answer_in_vocabulary",
                "ExpectColumnValuesToBeInSet",
                {"column": "answer", "value_set": list(AVQA_ANSWERS)},
                "answer {answer!r} is not in MUSIC-AVQA's answer vocabulary",
            ),
            Check(
                "question_type_known",
                "ExpectColumnValuesToBeInSet",
                {"column": "question_type", "value_set": list(AVQA_TYPE_STRINGS)},
                "unknown question type {question_type}",
            ),
        ]
    elif task in AVS_SUBSETS:
        checks.append(
            Check(
                "subset_matches_file",
                "ExpectColumnValuesToBeInSet",
                {"column": "subset", "value_set": [AVS_SUBSETS[task]]},
                f"row of subset {{subset!r}} in the {task} list (Crab reads it from {AVS_SUBSETS[task]}/)",
            )
        )
    return checks
