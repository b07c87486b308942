"""Temporal smoothing: per-frame predictions become events with hysteresis.

A label is only believed once it holds for ``hold`` consecutive sampled frames with at least
``enter`` confidence, covering at least ``hold_seconds`` of video; the current pet is only let
go after as many frames and seconds that disagree or fall under ``leave`` confidence. The
seconds keep the rule's meaning at any sampling rate: 3 frames are 0.6 s of video at 5 fps
but an eighth of a second at 24 fps, where two misread frames in a row would be an event.

Where the sampling ``rate`` is known (``kennel watch`` sets it), each frame covers one
sampling interval, so the run needs ``max(hold, ceil(hold_seconds * rate))`` frames, however
unevenly the frames fall (5 taken from 24 a second are 4/24 or 5/24 s apart); without a rate,
the frames' own times must span ``hold_seconds``. ``hold_seconds=None`` means the stretch of
video ``hold`` frames cover at the default 5 fps (``kennel watch``'s default): the same rule
at 5 fps, ``hold / 5`` seconds at any other rate.

Frames the pet judgement calls out of distribution (no cat or dog there at all, see
:mod:`kennel.portable.model`), frames the model labels as background (an ``empty`` class,
when the model has one) and frames scored with low confidence count as "no pet", the
butterfly case.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

NO_PET = "none"
# ``kennel watch``'s default sampling rate, which ``hold`` frames are counted at when the
# seconds are left to follow them (``hold_seconds=None``)
DEFAULT_RATE = 5.0
_EPS = 1e-6  # frame times are fractions (i / fps): 0.6 - 0.2 is a hair under 0.4


def clock(t: float) -> str:
    minutes, seconds = divmod(t, 60.0)
    return f"{int(minutes):02d}:{seconds:04.1f}"


@dataclass(frozen=True)
class Event:
    t: float  # stream seconds of the first frame of the confirming run
    label: str  # a pet label, or NO_PET
    confidence: float  # mean confidence over the confirming run

    def describe(self) -> str:
        if self.label == NO_PET:
            return f"no pet from {clock(self.t)}"
        return f"{self.label} entered at {clock(self.t)}, confidence {self.confidence:.2f}"

    def as_dict(self) -> dict[str, object]:
        return {
            "t": round(self.t, 3),
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "text": self.describe(),
        }


@dataclass
class EventTracker:
    hold: int = 3
    # the run of frames must cover this much video too (None: ``hold / DEFAULT_RATE``)
    hold_seconds: float | None = 0.0
    rate: float = 0.0  # frames sampled per second of video, where known (0: unknown)
    enter: float = 0.7
    leave: float = 0.5
    background: frozenset[str] = frozenset({"empty", "none", "background"})
    state: str = NO_PET
    events: list[Event] = field(default_factory=list)
    _run_label: str | None = None
    _run: list[tuple[float, float]] = field(default_factory=list)

    def observe(
        self, t: float, label: str, confidence: float, pet: bool | None = None
    ) -> Event | None:
        """Feed one sampled frame (``pet`` False: the judgement saw no pet at all); returns
        the event it completes, if any."""
        if label in self.background or pet is False:
            seen = NO_PET
        elif label == self.state:
            seen = label if confidence >= self.leave else NO_PET
        else:
            seen = label if confidence >= self.enter else NO_PET
        if seen == self.state:
            self._run_label, self._run = None, []
            return None
        if seen != self._run_label:
            self._run_label, self._run = seen, []
        self._run.append((t, confidence))
        if not self._held(t):
            return None
        event = Event(self._run[0][0], seen, sum(c for _, c in self._run) / len(self._run))
        self.state = seen
        self._run_label, self._run = None, []
        self.events.append(event)
        return event

    @property
    def seconds(self) -> float:
        """The video a run must cover, in seconds."""
        return self.hold / DEFAULT_RATE if self.hold_seconds is None else self.hold_seconds

    @property
    def frames_needed(self) -> int:
        """Frames a run needs at the known ``rate`` (each covering one sampling interval)."""
        if self.rate <= 0:
            return self.hold
        return max(self.hold, math.ceil(self.seconds * self.rate - _EPS))

    def _held(self, t: float) -> bool:
        if len(self._run) < self.frames_needed:
            return False
        if self.rate > 0 or self.hold_seconds is None:  # counted, or no seconds asked
            return True
        return t - self._run[0][0] >= self.hold_seconds - _EPS  # the frames' own span

    def feed(self, frames: Iterable[tuple[float, str, float]]) -> list[Event]:
        return [e for t, label, c in frames if (e := self.observe(t, label, c))]
