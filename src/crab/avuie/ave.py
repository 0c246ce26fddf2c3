"""AVE targets for AV-UIE: label, answer format, parser and builder with explicit reasoning.

AVE (audio-visual event localisation) asks which event is both seen and heard, and when. Crab's AV-UIE
answers (paper section 3, poster Figure "AVE") reason in prose and end with

    So the audible and visible event in the video is <event> {category} </event>, and the time range is
    <range> {start},{end} </range>.

where ``[start, end)`` is the event's interval on the 1 s grid and the category is the AVE class verbatim.
Crab's reasoning text was written by Gemini from the videos; ours is written from the exact labels: from
the AV-Synth scene when there is one (what is seen where and when, what is heard when, off-screen sounds,
silent visible objects, where sight and sound coincide), else a shorter reasoning from the annotation.
Each step has several sentence patterns picked with a seeded rng, so the model cannot memorise one
sentence. Readable noun phrases ("a dog" that "barks") stand in for the categories in prose; the tag holds
the category verbatim. The parser follows evaluation.md "Answer parsing".
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crab.avuie.schema import AvuieRecord, read_released_target
from crab.tasks import TASKS, Task

if TYPE_CHECKING:  # annotations only: keeps this module (and so crab.tasks' parsers) free of media imports
    from crab.datasets.records import AveRecord
    from crab.synth.scene import Interval, Scene, SceneObject

__all__ = ["EVENT_WORDS", "AveLabel", "EventWords", "build_ave", "event_words", "format_answer", "parse_answer"]

log = logging.getLogger(__name__)

_CONCLUSION = (
    "audible and visible event in the video is <event> {event} </event>, "
    "and the time range is <range> {start},{end} </range>."
)
_FINAL = "So the " + _CONCLUSION  # Crab's last sentence after the reasoning
_PLAIN = "The " + _CONCLUSION  # w/o ERP
_EVENT = re.compile(r"<event>\s*(.*?)\s*</event>")
_RANGE = re.compile(r"<range>(.*?)</range>")
_RANGE_BODY = re.compile(r"\s*(\d+)\s*,\s*(\d+)\s*")


@dataclass(frozen=True)
class AveLabel:
    """One AVE event: category (verbatim) and interval ``[start, end)`` in whole seconds."""

    event: str
    start: int
    end: int

    def to_dict(self) -> dict[str, str | int]:
        return {"event": self.event, "start": self.start, "end": self.end}


def format_answer(label: AveLabel, reasoning_text: str | None) -> str:
    """The target text: reasoning then Crab's final sentence, or the plain sentence when ``None`` (w/o ERP).

    Raises:
        ValueError: the label cannot round-trip (a category with a tag or newline, negative seconds).
    """
    if "<" in label.event or "\n" in label.event or label.event != label.event.strip() or not label.event:
        raise ValueError(f"AVE category cannot be tagged: {label.event!r}")
    if label.start < 0 or label.end < 0:
        raise ValueError(f"AVE range must be non-negative, got {label.start},{label.end}")
    if reasoning_text is None:
        return _PLAIN.format(event=label.event, start=label.start, end=label.end)
    final = _FINAL.format(event=label.event, start=label.start, end=label.end)
    return f"{reasoning_text} {final}" if reasoning_text else final


def parse_answer(text: str) -> AveLabel | None:
    """The event and range of a generated answer, or None if either tag is missing or malformed.

    Tolerant of any surrounding text (other angle brackets included); the LAST ``<event>`` and ``<range>``
    tags count (the conclusion comes last). Strict inside the tags: an empty event or a range that is not
    ``int,int`` gives None.
    """
    events = _EVENT.findall(text)
    ranges = _RANGE.findall(text)
    if not events or not ranges or not events[-1]:
        return None
    body = _RANGE_BODY.fullmatch(ranges[-1])
    if body is None:
        return None
    return AveLabel(event=events[-1], start=int(body.group(1)), end=int(body.group(2)))


# --------------------------------------------------------------------------------------------------
# Readable words per category
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventWords:
    """Prose for one category: ``{article} {noun}`` is seen, it ``{verb}``, ``the {sound} of the {noun}`` is heard."""

    article: str
    noun: str
    verb: str
    sound: str

    @property
    def a(self) -> str:
        return f"{self.article} {self.noun}"

    @property
    def the(self) -> str:
        return f"the {self.noun}"

    @property
    def sound_of(self) -> str:
        return f"the {self.sound} of the {self.noun}"


#: The 28 AVE categories (and AV-Synth's off-screen narrator) in prose.
EVENT_WORDS: dict[str, EventWords] = {
    "Church bell": EventWords("a", "church bell", "rings", "ringing"),
    "Male speech, man speaking": EventWords("a", "man", "speaks", "voice"),
    "Bark": EventWords("a", "dog", "barks", "barking"),
    "Fixed-wing aircraft, airplane": EventWords("an", "airplane", "roars", "engine roar"),
    "Race car, auto racing": EventWords("a", "race car", "races by", "engine noise"),
    "Female speech, woman speaking": EventWords("a", "woman", "speaks", "voice"),
    "Helicopter": EventWords("a", "helicopter", "whirs", "rotor noise"),
    "Violin, fiddle": EventWords("a", "violin", "is played", "sound"),
    "Flute": EventWords("a", "flute", "is played", "sound"),
    "Ukulele": EventWords("a", "ukulele", "is strummed", "sound"),
    "Frying (food)": EventWords("a", "pan of frying food", "sizzles", "sizzling"),
    "Truck": EventWords("a", "truck", "rumbles", "engine rumble"),
    "Shofar": EventWords("a", "shofar", "is blown", "blast"),
    "Motorcycle": EventWords("a", "motorcycle", "revs its engine", "engine noise"),
    "Acoustic guitar": EventWords("an", "acoustic guitar", "is strummed", "sound"),
    "Train horn": EventWords("a", "train", "sounds its horn", "horn"),
    "Clock": EventWords("a", "clock", "ticks", "ticking"),
    "Banjo": EventWords("a", "banjo", "is plucked", "sound"),
    "Goat": EventWords("a", "goat", "bleats", "bleating"),
    "Baby cry, infant cry": EventWords("a", "baby", "cries", "crying"),
    "Bus": EventWords("a", "bus", "rumbles", "engine noise"),
    "Chainsaw": EventWords("a", "chainsaw", "buzzes", "buzzing"),
    "Cat": EventWords("a", "cat", "meows", "meowing"),
    "Horse": EventWords("a", "horse", "neighs", "neighing"),
    "Toilet flush": EventWords("a", "toilet", "flushes", "flushing"),
    "Rodents, rats, mice": EventWords("a", "mouse", "squeaks", "squeaking"),
    "Accordion": EventWords("an", "accordion", "is played", "sound"),
    "Mandolin": EventWords("a", "mandolin", "is plucked", "sound"),
    "voiceover": EventWords("a", "narrator", "speaks", "voice"),
}


def event_words(name: str) -> EventWords:
    """Prose for a category; a name outside :data:`EVENT_WORDS` is used as its own noun."""
    if name in EVENT_WORDS:
        return EVENT_WORDS[name]
    noun = name.replace("_", " ").lower()
    return EventWords("an" if noun[:1] in "aeio" else "a", noun, "makes a sound", "sound")


# --------------------------------------------------------------------------------------------------
# Reasoning
# --------------------------------------------------------------------------------------------------

_WHERE = {"left": "on the left", "middle": "in the middle", "right": "on the right"}

_SPAN = (
    "from second {a} to second {b}",
    "between second {a} and second {b}",
    "from {a} s to {b} s",
    "during seconds {a}-{b}",
)
_OPENINGS = ("In the video, ", "Looking at the frames, ", "Visually, ", "Watching the clip, ", "On screen, ")
_SEEN = (
    "{a} is visible {where} {span}",
    "{a} appears {where} of the frame {span}",
    "{a} can be seen {where} {span}",
    "there is {a} {where} {span}",
)
_HEARD = (
    "{sound_of} is heard {span}",
    "{the} {verb} {span}",
    "the audio track contains {sound_of} {span}",
    "we can hear {the} {span}",
)
_HEARD_OFFSCREEN = (
    "{sound_of_a} is heard {span}, but its source is never on screen",
    "off screen, {a} {verb} {span}",
    "we also hear {a} {span}, although it never appears in the frames",
    "{a} {verb} {span} without being visible",
)
_SILENT = (
    "{the} {where} makes no sound",
    "{the} {where} stays silent",
    "no sound comes from {the} {where}",
    "{the} {where} is never heard",
)
_BOTH = (
    "{the} is therefore both visible and audible {span}",
    "the sight and the sound of {the} coincide {span}",
    "hence {the} is seen and heard at the same time {span}",
    "both the picture and the sound show {the} {span}",
)
_FROM_LABEL = (
    "{a} {verb} in the video {span}, and it is on screen at the same time.",
    "The video shows {a}; it can be both seen and heard {span}.",
    "Both the frames and the audio track show {a} {span}.",
    "{a} is visible while {sound_of} is audible {span}.",
    "Looking and listening together, {a} is present in both modalities {span}.",
)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _spans(rng: random.Random, intervals: Sequence[Interval], duration: int | None) -> str:
    """Prose for ``[start, end)`` intervals with one randomly chosen pattern, e.g. "from second 2 to second 6"."""
    if len(intervals) == 1:
        (a, b) = intervals[0]
        extra = []
        if a == 0:
            extra.append("from the beginning of the video until second {b}")
        if duration is not None and b == duration and a > 0:
            extra.append("from second {a} until the end of the video (second {b})")
        return rng.choice(_SPAN + tuple(extra)).format(a=a, b=b)
    pattern = rng.choice(_SPAN)
    parts = [pattern.format(a=a, b=b) for a, b in intervals]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _intersect(first: Sequence[Interval], second: Sequence[Interval]) -> list[Interval]:
    """Intersection of two interval lists, merged into sorted disjoint intervals."""
    pieces = sorted((max(a, c), min(b, d)) for a, b in first for c, d in second if max(a, c) < min(b, d))
    merged: list[Interval] = []
    for a, b in pieces:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def _event_object(scene: Scene, label: AveLabel) -> SceneObject | None:
    """The scene object whose seen-and-heard interval is exactly the label's, if any."""
    for obj in scene.objects:
        if obj.name == label.event and (label.start, label.end) in _intersect(obj.visible, obj.audible):
            return obj
    return None


def reasoning_from_scene(scene: Scene, label: AveLabel, rng: random.Random) -> str | None:
    """Reasoning from the scene: seen, heard, off screen, silent, coincidence. None if it contradicts the label."""
    event_obj = _event_object(scene, label)
    if event_obj is None:
        return None
    dur = scene.duration_s
    sentences = []
    seen = [o for o in scene.on_screen if o.visible]
    for i, obj in enumerate(seen):
        words = event_words(obj.name)
        clause = rng.choice(_SEEN).format(a=words.a, where=_WHERE[obj.slot], span=_spans(rng, obj.visible, dur))
        sentences.append(rng.choice(_OPENINGS) + clause + "." if i == 0 else _cap(clause) + ".")
    for obj in scene.objects:
        words = event_words(obj.name)
        if obj.audible and (obj.slot is None or not obj.visible):
            clause = rng.choice(_HEARD_OFFSCREEN).format(
                a=words.a,
                sound_of_a=f"the {words.sound} of {words.a}",
                verb=words.verb,
                span=_spans(rng, obj.audible, dur),
            )
        elif obj.audible:
            clause = rng.choice(_HEARD).format(
                sound_of=words.sound_of, the=words.the, verb=words.verb, span=_spans(rng, obj.audible, dur)
            )
        elif obj.visible and obj.slot is not None:
            clause = rng.choice(_SILENT).format(the=words.the, where=_WHERE[obj.slot])
        else:
            continue
        sentences.append(_cap(clause) + ".")
    span = _spans(rng, [(label.start, label.end)], dur)
    both = rng.choice(_BOTH).format(the=event_words(event_obj.name).the, span=span)
    sentences.append(_cap(both) + ".")
    return " ".join(sentences)


def reasoning_from_label(label: AveLabel, rng: random.Random) -> str:
    """A short reasoning from the annotation alone (real data, or no usable scene)."""
    words = event_words(label.event)
    span = _spans(rng, [(label.start, label.end)], None)
    return _cap(rng.choice(_FROM_LABEL).format(a=words.a, verb=words.verb, sound_of=words.sound_of, span=span))


# --------------------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------------------


def build_ave(
    records: Sequence[AveRecord],
    scenes: Mapping[str, Scene],
    released_dir: Path | None,
    use_reasoning: bool,
    rng: random.Random,
    tally: Counter[str] | None = None,
) -> list[AvuieRecord]:
    """AV-UIE records for AVE annotation rows, in input order.

    Target per row: with ``use_reasoning``, Crab's released ``released_dir/{video_id}.txt`` when it parses
    to this row's label, else reasoning from the row's scene (when consistent with the label), else
    reasoning from the label; without ``use_reasoning``, the plain sentence.

    Args:
        records: AVE rows (any splits).
        scenes: AV-Synth scenes by video id (empty for real data).
        released_dir: Crab's ``converted_label`` folder, or None.
        use_reasoning: False for the paper's "w/o ERP" ablation.
        rng: picks the phrasings; consumed in record order.
        tally: if given, counts ``released``, ``released_mismatched``, ``scene``, ``scene_mismatched``,
            ``label_only`` and ``skipped`` (labels that cannot be tagged, logged as warnings).

    Returns:
        One record per row, except skipped rows.
    """
    tally = Counter() if tally is None else tally
    instruction = TASKS[Task.AVE].instruction()
    out = []
    for rec in records:
        label = AveLabel(event=rec.category, start=rec.start_s, end=rec.end_s)
        try:
            format_answer(label, None)  # raises for an untaggable label (a quality-gate miss)
        except ValueError as err:
            tally["skipped"] += 1
            log.warning("%s: %s; skipped", rec.source, err)
            continue
        target, reasoning = _target(rec, label, scenes, released_dir, use_reasoning, rng, tally)
        out.append(
            AvuieRecord.from_raw(
                Task.AVE,
                TASKS[Task.AVE].dataset,
                rec,
                instruction=instruction,
                target=target,
                reasoning=reasoning,
                label=label.to_dict(),
            )
        )
    return out


def _target(
    rec: AveRecord,
    label: AveLabel,
    scenes: Mapping[str, Scene],
    released_dir: Path | None,
    use_reasoning: bool,
    rng: random.Random,
    tally: Counter[str],
) -> tuple[str, bool]:
    if not use_reasoning:
        return format_answer(label, None), False
    released = read_released_target(released_dir, rec.video_id)
    if released is not None:
        if parse_answer(released) == label:
            tally["released"] += 1
            return released, True
        tally["released_mismatched"] += 1
        log.warning("%s: released target does not match %s; generating one", rec.source, label)
    scene = scenes.get(rec.video_id)
    if scene is not None:
        reasoning = reasoning_from_scene(scene, label, rng)
        if reasoning is not None:
            tally["scene"] += 1
            return format_answer(label, reasoning), True
        tally["scene_mismatched"] += 1
        log.warning("%s: scene of %s does not show %s; reasoning from the label", rec.source, rec.video_id, label)
    else:
        tally["label_only"] += 1
    return format_answer(label, reasoning_from_label(label, rng)), True
