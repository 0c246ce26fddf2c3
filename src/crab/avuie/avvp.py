"""AVVP answer format for AV-UIE: the label type, the formatter and the parser (no builder yet).

AVVP (audio-visual video parsing, LLP) asks which events are heard, which are seen, and when. Crab's
targets (crab-reference 4.3, README example) end with

    Therefore, visual and audio events are: <visual_event>Chainsaw,(0 10)</visual_event> and
    <audio_event>Chainsaw,(0 10)</audio_event>

(Crab's data wrote ``<visual>`` / ``<audio>`` and renamed them in its loader because ``<audio>`` is the audio
placeholder token; we write the ``_event`` tags directly and parse only them). Inside a tag, one event is
its class name verbatim, a comma, then one or more ``(start end)`` intervals, ``[start, end)`` in whole
seconds on the 1 s grid (as the LLP ``onset`` / ``offset`` columns).

Crab never showed how several events share a tag; we fix it here:

* Events are separated by ``"; "`` (:data:`EVENT_SEPARATOR`). None of the 25 LLP class names contains a
  ``;`` or a ``,`` (they use underscores, and ``Frying_(food)`` has parentheses, which is fine: only the
  part after the first comma is read as intervals), so a name may not contain either.
* A modality with no event is an empty tag: ``<audio_event></audio_event>``.

So ``<visual_event>Dog,(2 10)</visual_event> and <audio_event>Speech,(0 4)(6 10); Dog,(2 10)</audio_event>``.
The parser is tolerant of any text around the tags (the LAST tag of each modality counts, the conclusion
comes last) and strict inside them: both tags must be present, and a body that is not empty must be
well-formed events and separators only; anything else is a parse failure (``None``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["EVENT_SEPARATOR", "AvvpEvent", "AvvpLabel", "format_answer", "parse_answer"]

#: Between two events inside one tag.
EVENT_SEPARATOR = "; "

_CONCLUSION = (
    "visual and audio events are: <visual_event>{visual}</visual_event> and <audio_event>{audio}</audio_event>"
)
_FINAL = "Therefore, " + _CONCLUSION  # Crab's last sentence after the reasoning
_PLAIN = "The " + _CONCLUSION  # w/o ERP

_TAG = re.compile(r"<(audio|visual)_event>(.*?)</\1_event>")
_EVENT = re.compile(r"\s*([^,;<>\n]*?)\s*,((?:\s*\(\s*\d+\s+\d+\s*\))+)\s*")
_INTERVAL = re.compile(r"\(\s*(\d+)\s+(\d+)\s*\)")
_FORBIDDEN_IN_NAME = (",", ";", "<", ">", "\n")

Interval = tuple[int, int]


def _normalise(name: str) -> str:
    """Trimmed, inner whitespace runs collapsed (the metric's rule; kept local so parsing imports no eval code)."""
    return " ".join(name.split())


@dataclass(frozen=True)
class AvvpEvent:
    """One event of one modality: class name (verbatim) and its ``[start, end)`` intervals in seconds."""

    name: str
    intervals: tuple[Interval, ...]

    def __post_init__(self) -> None:
        # Tuples throughout, so labels built from JSON lists compare equal to parsed ones.
        object.__setattr__(self, "intervals", tuple((int(s), int(e)) for s, e in self.intervals))


@dataclass(frozen=True)
class AvvpLabel:
    """The audio events and the visual events of one video (each may be empty)."""

    audio: tuple[AvvpEvent, ...] = ()
    visual: tuple[AvvpEvent, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "audio", tuple(self.audio))
        object.__setattr__(self, "visual", tuple(self.visual))

    @classmethod
    def from_spans(cls, audio: Iterable[Sequence[Any]], visual: Iterable[Sequence[Any]]) -> AvvpLabel:
        """A label from flat ``(name, start, end)`` spans (one LLP dense-CSV row each).

        Spans of one name become one event, in order of the name's first span; intervals keep their order.
        """
        return cls(audio=_group(audio), visual=_group(visual))

    @classmethod
    def from_dict(cls, label: Mapping[str, Any]) -> AvvpLabel:
        """Inverse of :meth:`to_dict` (spans as ``{"event", "start", "end"}`` dicts)."""

        def spans(modality: str) -> list[tuple[str, int, int]]:
            return [(s["event"], s["start"], s["end"]) for s in label.get(modality) or ()]

        return cls.from_spans(spans("audio"), spans("visual"))

    def to_dict(self) -> dict[str, list[dict[str, str | int]]]:
        """The AV-UIE ``label``: per modality a flat list of ``{"event", "start", "end"}`` spans (AVE's keys)."""
        return {
            modality: [
                {"event": event.name, "start": start, "end": end}
                for event in getattr(self, modality)
                for start, end in event.intervals
            ]
            for modality in ("audio", "visual")
        }


def _group(spans: Iterable[Sequence[Any]]) -> tuple[AvvpEvent, ...]:
    by_name: dict[str, list[Interval]] = {}
    for name, start, end in spans:
        by_name.setdefault(name, []).append((int(start), int(end)))
    return tuple(AvvpEvent(name, tuple(intervals)) for name, intervals in by_name.items())


def _format_events(events: Sequence[AvvpEvent], modality: str) -> str:
    parts = []
    for event in events:
        name = event.name
        if not name or name != _normalise(name) or any(c in name for c in _FORBIDDEN_IN_NAME):
            raise ValueError(f"AVVP {modality} event name cannot be tagged: {name!r}")
        if not event.intervals:
            raise ValueError(f"AVVP {modality} event {name!r} has no interval")
        for start, end in event.intervals:
            if not 0 <= start < end:
                raise ValueError(f"AVVP {modality} event {name!r}: interval ({start} {end}) is not 0 <= start < end")
        parts.append(name + "," + "".join(f"({start} {end})" for start, end in event.intervals))
    return EVENT_SEPARATOR.join(parts)


def format_answer(label: AvvpLabel, reasoning_text: str | None) -> str:
    """The target text: reasoning then Crab's final sentence, or the plain sentence when ``None`` (w/o ERP).

    Raises:
        ValueError: the label cannot round-trip: a name that is empty, not whitespace-normalised or holds
            ``, ; < >``; an event without intervals; an interval not ``0 <= start < end``.
    """
    fields = {"visual": _format_events(label.visual, "visual"), "audio": _format_events(label.audio, "audio")}
    if reasoning_text is None:
        return _PLAIN.format(**fields)
    final = _FINAL.format(**fields)
    return f"{reasoning_text} {final}" if reasoning_text else final


def _parse_body(body: str) -> tuple[AvvpEvent, ...] | None:
    """The events of one tag body; ``()`` for an empty body, ``None`` if any part is malformed."""
    if not body.strip():
        return ()
    events = []
    for part in body.split(";"):
        match = _EVENT.fullmatch(part)
        if match is None or not match.group(1):
            return None
        intervals = tuple((int(s), int(e)) for s, e in _INTERVAL.findall(match.group(2)))
        events.append(AvvpEvent(_normalise(match.group(1)), intervals))
    return tuple(events)


def parse_answer(text: str) -> AvvpLabel | None:
    """The audio and visual events of a generated answer, or None if a tag is missing or malformed.

    Tolerant of any surrounding text; the LAST ``<audio_event>`` and ``<visual_event>`` tags count. Strict
    inside: each event must be ``Name,(s e)`` with one or more intervals, events separated by ``;``; an empty
    (or all-whitespace) tag is a modality without events. Names are whitespace-normalised; interval values
    are returned as written (the metric clips them to the grid).
    """
    bodies: dict[str, str] = {}
    for modality, body in _TAG.findall(text):
        bodies[modality] = body  # later tags overwrite earlier ones
    if set(bodies) != {"audio", "visual"}:
        return None
    audio, visual = _parse_body(bodies["audio"]), _parse_body(bodies["visual"])
    if audio is None or visual is None:
        return None
    return AvvpLabel(audio=audio, visual=visual)
