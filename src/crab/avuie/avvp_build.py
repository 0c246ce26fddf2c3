"""AVVP builder for AV-UIE: LLP videos -> records whose answers reason over the exact dense labels.

AVVP (audio-visual video parsing, LLP) asks for every event that is *heard*, every event that is *seen*,
and when, on the clip's grid of ten 1-s segments; the audio-visual events are the seconds where a class
is both (the metric's ``A * V``). The answer format is :mod:`crab.avuie.avvp` (unchanged here):

    ... Therefore, visual and audio events are: <visual_event>Chainsaw,(0 1)(3 6)(9 10)</visual_event> and
    <audio_event>Chainsaw,(0 10)</audio_event>

Crab's AVVP reasoning (inline in its ``train_samples.json`` ``label``) was written by Gemini from the
videos. Ours is written from the dense labels, in three steps: what is heard and when, what is seen and
when, then per class which seconds are audio-visual, audio-only (heard, not seen) or visual-only (seen,
not heard). Every sentence has several patterns picked with a seeded rng (as :mod:`crab.avuie.ave`), but
the words ``audio-visual`` / ``audio-only`` / ``visual-only`` are fixed in them: they name LLP's three
kinds of event, and the model should learn them as terms. Prose uses readable nouns ("a chainsaw" that
"buzzes"); the tags hold the LLP class verbatim.

Labels are canonical, so the same ground truth always gives the same answer: per modality and class the
covered seconds (the official ``GT[cls, onset:offset] = 1``) become their maximal runs, and classes are
ordered by first second, then name. Overlapping or touching CSV rows therefore merge (the metric's events
are these runs too), and empty CSV spans (``onset >= offset``; three audio rows of the real release) are
dropped before formatting and counted.

**Train split.** LLP annotates its 10,000 train videos only weakly (video-level classes, no modality, no
time), so there is no exact answer to write, and guessing one (e.g. "every weak class, audible and
visible for 10 s") would teach wrong times. A record whose ``audio_events`` or ``visual_events`` is
``None`` is therefore skipped and counted as ``no_dense_labels``; on the real release that is all of
train. Train records get built as soon as a reader provides dense events for them (AV-Synth's LLP writer
will, from its exact scenes; Crab's own train answers can come in as released targets, below).

**Released targets.** As for AVE / AVQA (:mod:`crab.avuie.schema`), ``converted_label/{filename}.txt``
(the LLP ``filename``, e.g. ``-x7QpLm2ZrT_120_130``; tags already renamed to ``<audio_event>`` /
``<visual_event>``) is used verbatim when it parses to the same per-second ground truth as the dense
labels; it is never a substitute for missing dense labels.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from crab.avuie.ave import EventWords, event_words
from crab.avuie.avvp import AvvpEvent, AvvpLabel, format_answer, parse_answer
from crab.avuie.schema import AvuieRecord, read_released_target
from crab.datasets.vocab_seg import LLP_NUM_SEGMENTS
from crab.tasks import TASKS, Task

if TYPE_CHECKING:  # annotations only: keeps this module free of media imports
    from crab.datasets.llp import LlpEvent, LlpRecord
    from crab.synth.scene import Scene

__all__ = [
    "LLP_EVENT_WORDS",
    "build_avvp",
    "dense_label",
    "llp_event_words",
    "reasoning_from_label",
    "same_ground_truth",
]

log = logging.getLogger(__name__)

Interval = tuple[int, int]

# --------------------------------------------------------------------------------------------------
# Readable words per LLP class
# --------------------------------------------------------------------------------------------------

#: LLP's 25 classes in prose (nouns distinct, so a sentence names one class).
LLP_EVENT_WORDS: dict[str, EventWords] = {
    "Speech": EventWords("a", "person", "speaks", "speech"),
    "Car": EventWords("a", "car", "drives by", "engine noise"),
    "Cheering": EventWords("a", "crowd", "cheers", "cheering"),
    "Dog": EventWords("a", "dog", "barks", "barking"),
    "Cat": EventWords("a", "cat", "meows", "meowing"),
    "Frying_(food)": EventWords("a", "pan of frying food", "sizzles", "sizzling"),
    "Basketball_bounce": EventWords("a", "basketball", "bounces", "bouncing"),
    "Fire_alarm": EventWords("a", "fire alarm", "rings", "ringing"),
    "Chainsaw": EventWords("a", "chainsaw", "buzzes", "buzzing"),
    "Cello": EventWords("a", "cello", "is played", "sound"),
    "Banjo": EventWords("a", "banjo", "is plucked", "sound"),
    "Singing": EventWords("a", "singer", "sings", "singing"),
    "Chicken_rooster": EventWords("a", "rooster", "crows", "crowing"),
    "Violin_fiddle": EventWords("a", "violin", "is played", "sound"),
    "Vacuum_cleaner": EventWords("a", "vacuum cleaner", "hums", "humming"),
    "Baby_laughter": EventWords("a", "laughing baby", "giggles", "laughter"),
    "Accordion": EventWords("an", "accordion", "is played", "sound"),
    "Lawn_mower": EventWords("a", "lawn mower", "roars", "engine noise"),
    "Motorcycle": EventWords("a", "motorcycle", "revs its engine", "engine noise"),
    "Helicopter": EventWords("a", "helicopter", "whirs", "rotor noise"),
    "Acoustic_guitar": EventWords("an", "acoustic guitar", "is strummed", "sound"),
    "Telephone_bell_ringing": EventWords("a", "telephone", "rings", "ringing"),
    "Baby_cry_infant_cry": EventWords("a", "crying baby", "cries", "crying"),
    "Blender": EventWords("a", "blender", "whirs", "whirring"),
    "Clapping": EventWords("a", "group of people", "clap", "clapping"),
}


def llp_event_words(name: str) -> EventWords:
    """Prose for an LLP class; another name is used as its own noun (:func:`crab.avuie.ave.event_words`)."""
    return LLP_EVENT_WORDS.get(name) or event_words(name)


# --------------------------------------------------------------------------------------------------
# Canonical label from the dense events
# --------------------------------------------------------------------------------------------------


def _runs(seconds: Iterable[int]) -> tuple[Interval, ...]:
    """Maximal ``[start, end)`` runs of a set of seconds, sorted: ``{0, 3, 4, 5, 9} -> (0 1)(3 6)(9 10)``."""
    runs: list[Interval] = []
    for second in sorted(set(seconds)):
        if runs and runs[-1][1] == second:
            runs[-1] = (runs[-1][0], second + 1)
        else:
            runs.append((second, second + 1))
    return tuple(runs)


def _seconds(events: Iterable[AvvpEvent], num_segments: int = LLP_NUM_SEGMENTS) -> dict[str, frozenset[int]]:
    """Class -> the grid seconds its intervals cover (clipped to the grid, as the metric reads them)."""
    out: dict[str, set[int]] = {}
    for event in events:
        for start, end in event.intervals:
            out.setdefault(event.name, set()).update(range(max(start, 0), min(end, num_segments)))
    return {name: frozenset(seconds) for name, seconds in out.items() if seconds}


def _ordered(seconds: Mapping[str, Iterable[int]]) -> list[str]:
    """Class names by first covered second, then name (the canonical event order)."""
    return sorted(seconds, key=lambda name: (min(seconds[name]), name))


def dense_label(
    audio: Iterable[LlpEvent], visual: Iterable[LlpEvent], num_segments: int = LLP_NUM_SEGMENTS
) -> tuple[AvvpLabel, int]:
    """The canonical label of one video's dense events, and how many empty spans were dropped.

    Args:
        audio: dense audio events (CSV rows), any order, overlaps allowed.
        visual: dense visual events.
        num_segments: the grid (LLP: 10 one-second segments).

    Returns:
        ``(label, num_empty)``: per modality one event per class, its intervals the maximal runs of the
        seconds its rows cover, classes by first second then name; ``num_empty`` rows with
        ``onset >= offset`` were dropped.

    Raises:
        ValueError: a non-empty span off the ``0..num_segments`` grid (names the CSV row).
    """
    num_empty = 0
    modalities: dict[str, tuple[AvvpEvent, ...]] = {}
    for modality, events in (("audio", audio), ("visual", visual)):
        seconds: dict[str, set[int]] = {}
        for event in events:
            if event.onset_s >= event.offset_s:
                num_empty += 1
                continue
            if event.onset_s < 0 or event.offset_s > num_segments:
                raise ValueError(
                    f"{event.source}: {modality} event {event.label!r} ({event.onset_s} {event.offset_s}) "
                    f"is off the 0..{num_segments} s grid"
                )
            seconds.setdefault(event.label, set()).update(range(event.onset_s, event.offset_s))
        modalities[modality] = tuple(AvvpEvent(name, _runs(seconds[name])) for name in _ordered(seconds))
    return AvvpLabel(audio=modalities["audio"], visual=modalities["visual"]), num_empty


def same_ground_truth(first: AvvpLabel, second: AvvpLabel) -> bool:
    """Whether two labels mark the same seconds per modality and class (what the metric compares)."""
    return _seconds(first.audio) == _seconds(second.audio) and _seconds(first.visual) == _seconds(second.visual)


# --------------------------------------------------------------------------------------------------
# Reasoning
# --------------------------------------------------------------------------------------------------

_SPAN = (
    "from second {a} to second {b}",
    "between second {a} and second {b}",
    "from {a} s to {b} s",
    "during seconds {a}-{b}",
)
_WHOLE = ("throughout the whole video", "for all {b} seconds of the video", "from the beginning to the end")

_HEARD_OPENINGS = ("Listening to the audio, ", "In the audio track, ", "On the soundtrack, ", "As for the sound, ")
_HEARD = (
    "{sound_of} is heard {span}",
    "{the} {verb} {span}",
    "the audio contains {sound_of} {span}",
    "we can hear {the} {span}",
)
_NOTHING_HEARD = (
    "Listening to the audio, none of the event sounds can be heard.",
    "The audio track contains no recognisable event.",
    "No event can be heard in the audio.",
)
_SEEN_OPENINGS = ("In the frames, ", "Visually, ", "Looking at the video, ", "On screen, ")
_SEEN = (
    "{a} is visible {span}",
    "{a} appears {span}",
    "{a} can be seen {span}",
    "there is {a} in view {span}",
)
_NOTHING_SEEN = (
    "In the frames, none of the event sources can be seen.",
    "Visually, no event is shown.",
    "Nothing in the frames shows an event.",
)
# Every pattern below holds its kind verbatim: "audio-visual", "audio-only" or "visual-only".
_AUDIO_VISUAL = (
    "{the} is both seen and heard {span}, so it is an audio-visual event",
    "the sight and the sound of {the} coincide {span}, which makes it an audio-visual event",
    "{the} is visible and audible at the same time {span}: an audio-visual event",
    "seen and heard together {span}, {the} is an audio-visual event",
)
_AUDIO_ONLY = (  # heard, never seen
    "{the} is heard but never seen, so it is an audio-only event",
    "{the} never appears on screen, so its sound is an audio-only event",
    "{sound_of} comes from off screen: an audio-only event",
)
_AUDIO_ONLY_AT = (  # heard, and seen at other times
    "{the} is heard but not seen {span}, so there it is an audio-only event",
    "{span}, {the} is heard without being seen: an audio-only event",
    "while {the} is off screen {span}, its sound is an audio-only event",
)
_VISUAL_ONLY = (  # seen, never heard
    "{the} is seen but never heard, so it is a visual-only event",
    "{the} stays silent, so it is a visual-only event",
    "no sound comes from {the}, which makes it a visual-only event",
)
_VISUAL_ONLY_AT = (  # seen, and heard at other times
    "{the} is seen but not heard {span}, so there it is a visual-only event",
    "{span}, {the} is visible but silent: a visual-only event",
    "while {the} is silent {span}, it is a visual-only event",
)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _spans(rng: random.Random, seconds: Iterable[int], num_segments: int) -> str:
    """Prose for the runs of some seconds with one randomly chosen pattern, e.g. "from second 2 to second 6"."""
    runs = _runs(seconds)
    if runs == ((0, num_segments),):
        return rng.choice(_SPAN + _WHOLE).format(a=0, b=num_segments)
    pattern = rng.choice(_SPAN)
    parts = [pattern.format(a=a, b=b) for a, b in runs]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _section(
    rng: random.Random,
    seconds: Mapping[str, frozenset[int]],
    openings: Sequence[str],
    clauses: Sequence[str],
    nothing: Sequence[str],
    num_segments: int,
) -> list[str]:
    """One sentence per class of one modality (the first with an opening), or the "nothing" sentence."""
    if not seconds:
        return [rng.choice(nothing)]
    sentences = []
    for i, name in enumerate(_ordered(seconds)):
        words = llp_event_words(name)
        clause = rng.choice(clauses).format(
            a=words.a,
            the=words.the,
            verb=words.verb,
            sound_of=words.sound_of,
            span=_spans(rng, seconds[name], num_segments),
        )
        sentences.append(rng.choice(openings) + clause + "." if i == 0 else _cap(clause) + ".")
    return sentences


def _relation(
    rng: random.Random, name: str, heard: frozenset[int], seen: frozenset[int], num_segments: int
) -> list[str]:
    """Which seconds of one class are audio-visual, audio-only and visual-only, one sentence each."""
    words = llp_event_words(name)
    both, audio_only, visual_only = heard & seen, heard - seen, seen - heard
    parts = []
    if both:
        parts.append(rng.choice(_AUDIO_VISUAL).format(the=words.the, span=_spans(rng, both, num_segments)))
    if audio_only:
        if seen:
            span = _spans(rng, audio_only, num_segments)
            parts.append(rng.choice(_AUDIO_ONLY_AT).format(the=words.the, span=span))
        else:
            parts.append(rng.choice(_AUDIO_ONLY).format(the=words.the, sound_of=words.sound_of))
    if visual_only:
        if heard:
            span = _spans(rng, visual_only, num_segments)
            parts.append(rng.choice(_VISUAL_ONLY_AT).format(the=words.the, span=span))
        else:
            parts.append(rng.choice(_VISUAL_ONLY).format(the=words.the))
    return [_cap(part) + "." for part in parts]


def reasoning_from_label(label: AvvpLabel, rng: random.Random, num_segments: int = LLP_NUM_SEGMENTS) -> str:
    """The explicit reasoning for a label: heard and when, seen and when, then each class's kind of event.

    Args:
        label: the video's audio and visual events (any interval order; read as seconds on the grid).
        rng: picks the phrasings (only ``rng.choice`` is called).
        num_segments: the grid, for "the whole video".

    Returns:
        Sentences separated by single spaces; classes in canonical order (first second, then name).
    """
    heard, seen = _seconds(label.audio, num_segments), _seconds(label.visual, num_segments)
    sentences = _section(rng, heard, _HEARD_OPENINGS, _HEARD, _NOTHING_HEARD, num_segments)
    sentences += _section(rng, seen, _SEEN_OPENINGS, _SEEN, _NOTHING_SEEN, num_segments)
    union = {name: heard.get(name, frozenset()) | seen.get(name, frozenset()) for name in {*heard, *seen}}
    for name in _ordered(union):
        sentences += _relation(rng, name, heard.get(name, frozenset()), seen.get(name, frozenset()), num_segments)
    return " ".join(sentences)


# --------------------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------------------


def build_avvp(
    records: Sequence[LlpRecord],
    scenes: Mapping[str, Scene],
    released_dir: Path | None,
    use_reasoning: bool,
    rng: random.Random,
    tally: Counter[str] | None = None,
) -> list[AvuieRecord]:
    """AV-UIE records for LLP videos that have dense labels, in input order.

    Target per video: with ``use_reasoning``, Crab's released ``released_dir/{filename}.txt`` when it
    parses to the same ground truth, else reasoning from the dense labels; without ``use_reasoning``, the
    plain sentence. The record's ``label`` is the canonical :meth:`AvvpLabel.to_dict`.

    Args:
        records: LLP videos (any splits); those without dense events (LLP train) are skipped.
        scenes: accepted for the builders' common signature; the dense labels already hold the facts.
        released_dir: Crab's ``converted_label`` folder, or None.
        use_reasoning: False for the paper's "w/o ERP" ablation.
        rng: picks the phrasings; consumed in record order.
        tally: if given, counts ``released``, ``released_mismatched``, ``dense`` (reasoning from the
            dense labels), ``plain`` (w/o ERP), ``no_dense_labels`` (skipped: weak labels only),
            ``skipped`` (off-grid span or untaggable name, logged as warnings) and ``empty_spans_dropped``
            (CSV rows, not records).

    Returns:
        One record per video with dense labels, except skipped ones.
    """
    tally = Counter() if tally is None else tally
    out = []
    num_weak_only = 0
    for rec in records:
        if rec.audio_events is None or rec.visual_events is None:
            num_weak_only += 1
            continue
        try:
            label, num_empty = dense_label(rec.audio_events, rec.visual_events)
            format_answer(label, None)  # raises for a name that cannot be tagged (a quality-gate miss)
        except ValueError as err:
            tally["skipped"] += 1
            log.warning("%s: %s; skipped", rec.source, err)
            continue
        if num_empty:
            tally["empty_spans_dropped"] += num_empty
        target, reasoning = _target(rec, label, released_dir, use_reasoning, rng, tally)
        out.append(
            AvuieRecord.from_raw(
                Task.AVVP,
                TASKS[Task.AVVP].dataset,
                rec,
                instruction=TASKS[Task.AVVP].instruction(),
                target=target,
                reasoning=reasoning,
                label=label.to_dict(),
            )
        )
    if num_weak_only:
        tally["no_dense_labels"] += num_weak_only
        log.warning(  # one line, not one per video: on real LLP data this is the whole train split
            "AVVP: %d LLP videos have only weak (video-level) labels, no dense audio / visual events; skipped",
            num_weak_only,
        )
    return out


def _target(
    rec: LlpRecord,
    label: AvvpLabel,
    released_dir: Path | None,
    use_reasoning: bool,
    rng: random.Random,
    tally: Counter[str],
) -> tuple[str, bool]:
    if not use_reasoning:
        tally["plain"] += 1
        return format_answer(label, None), False
    released = read_released_target(released_dir, rec.item_id)
    if released is not None:
        parsed = parse_answer(released)
        if parsed is not None and same_ground_truth(parsed, label):
            tally["released"] += 1
            return released, True
        tally["released_mismatched"] += 1
        log.warning("%s: released target does not match the dense labels; generating one", rec.source)
    tally["dense"] += 1
    return format_answer(label, reasoning_from_label(label, rng)), True
