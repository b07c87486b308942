"""Temporal smoothing: labels must hold before they are believed, and let go with hysteresis."""

from __future__ import annotations

from kennel.video.events import NO_PET, EventTracker


def frames(spec: str, conf: float = 0.9, fps: float = 10.0) -> list[tuple[float, str, float]]:
    """'cccdd..' -> frames of cat (c), dog (d), empty (e) at ``fps``."""
    names = {"c": "cat", "d": "dog", "e": "empty"}
    return [(i / fps, names[ch], conf) for i, ch in enumerate(spec)]


def test_a_label_must_hold_for_n_frames() -> None:
    tracker = EventTracker(hold=3)
    events = tracker.feed(frames("ddcddd" + "eeee"))
    assert [(e.label, e.t) for e in events] == [("dog", 0.3), (NO_PET, 0.6)]
    assert events[0].describe() == "dog entered at 00:00.3, confidence 0.90"
    assert events[1].describe() == "no pet from 00:00.6"


def test_a_single_wrong_frame_does_not_flicker() -> None:
    tracker = EventTracker(hold=3)
    events = tracker.feed(frames("dddd" + "c" + "dddd" + "cc" + "ddd"))
    assert [e.label for e in events] == ["dog"]


def test_low_confidence_is_no_pet_the_butterfly_case() -> None:
    tracker = EventTracker(hold=3, enter=0.7, leave=0.5)
    # a 2-class model unsure about a butterfly never announces a pet
    assert tracker.feed(frames("cdcdcdcd", conf=0.55)) == []
    # a pet already believed survives a dip above `leave`, but not a run of low confidence
    tracker = EventTracker(hold=3, enter=0.7, leave=0.5)
    tracker.feed(frames("ddd", conf=0.9))
    assert tracker.feed([(1.0, "dog", 0.6), (1.1, "dog", 0.6), (1.2, "dog", 0.6)]) == []
    events = tracker.feed([(2.0, "dog", 0.4), (2.1, "cat", 0.45), (2.2, "dog", 0.3)])
    assert [(e.label, e.t) for e in events] == [(NO_PET, 2.0)]


def test_switch_from_cat_to_dog() -> None:
    tracker = EventTracker(hold=2)
    events = tracker.feed(frames("ccdd"))
    assert [(e.label, round(e.t, 1)) for e in events] == [("cat", 0.0), ("dog", 0.2)]
    assert tracker.state == "dog"


def test_the_hold_in_seconds_keeps_its_meaning_at_any_frame_rate() -> None:
    """Two misread frames in a row are an eighth of a second at 24 fps: with the hold also in
    seconds they are no event, while the same rule at 5 fps confirms on the third frame, as
    three frames alone do (frame times i / fps: 0.6 - 0.2 is a hair under 0.4)."""
    dog, blip = "d" * 48, "ccc"  # a 3-frame misreading, then the dog again
    every = frames(dog + blip + dog, fps=24.0)
    assert [e.label for e in EventTracker(hold=3).feed(every)] == ["dog", "cat", "dog"]
    steady = EventTracker(hold=3, hold_seconds=0.4)
    events = steady.feed(every)
    assert [(e.label, e.t) for e in events] == [("dog", 0.0)]
    # a cat that stays half a second is one, from its first frame
    events = steady.feed(frames(dog + "c" * 12, fps=24.0))
    assert [(e.label, round(e.t, 3)) for e in events] == [("cat", 2.0)]
    for start in range(6):  # at 5 fps the seconds ask no more than the frames
        five = frames("e" * start + "ddd", fps=5.0)
        by_seconds = EventTracker(hold=3, hold_seconds=0.4).feed(five)
        assert by_seconds == EventTracker(hold=3).feed(five) and len(by_seconds) == 1


def _sampled(spec: str, source_fps: float, rate: float) -> list[tuple[float, str, float]]:
    """``spec`` frames taken from a ``source_fps`` video at ``rate`` a second, as the frame
    reader samples them: the source frame whose time first reaches each sampling tick."""
    names = {"c": "cat", "d": "dog", "e": "empty"}
    times, tick, i = [], 0.0, 0
    while len(times) < len(spec):
        if i / source_fps >= tick - 1e-9:
            times.append(i / source_fps)
            tick += 1 / rate
        i += 1
    return [(t, names[ch], 0.9) for t, ch in zip(times, spec, strict=True)]


def test_with_a_known_rate_each_frame_covers_its_interval_however_unevenly_sampled() -> None:
    """5 frames a second taken from 24 are 4/24 or 5/24 s apart: three of them can span
    0.375 s, under 0.4, which made an event wait for a fourth frame. Counted at the rate,
    three frames cover 0.6 s wherever they fall."""
    delayed = 0
    for start in range(10):
        run = _sampled("e" * start + "ddd", 24.0, 5.0)
        span = run[-1][0] - run[start][0]
        delayed += span < 0.4 - 1e-9
        counted = EventTracker(hold=3, hold_seconds=0.4, rate=5.0).feed(run)
        assert [e.t for e in counted] == [run[start][0]], (start, span)
        assert EventTracker(hold=3, hold_seconds=0.4, rate=5.0).feed(run[:-1]) == []
    assert delayed  # the uneven runs are there: the frames' own span would have held them back
    # every frame of a 24 fps source: 0.4 s is ten frames (nine intervals span 0.375 s)
    every = frames("d" * 30, fps=24.0)
    assert EventTracker(hold=3, hold_seconds=0.4, rate=24.0).frames_needed == 10
    assert [e.t for e in EventTracker(hold=3, hold_seconds=0.4, rate=24.0).feed(every[:10])]
    assert not EventTracker(hold=3, hold_seconds=0.4, rate=24.0).feed(every[:9])


def test_by_default_the_seconds_follow_the_hold_at_five_frames_a_second() -> None:
    """``hold_seconds=None`` (kennel watch's default): at the default 5 fps nothing but the
    frames counts, an explicit --hold 1 included; at every frame of a 24 fps clip three frames
    are 0.6 s, 15 frames, so a misreading shorter than that is no event."""
    for hold in (1, 3, 7):
        assert EventTracker(hold=hold, hold_seconds=None, rate=5.0).frames_needed == hold
        assert EventTracker(hold=hold, hold_seconds=None).frames_needed == hold  # rate unknown
    assert EventTracker(hold=1, hold_seconds=None, rate=5.0).feed(frames("d", fps=5.0))
    assert EventTracker(hold=3, hold_seconds=None, rate=24.0).frames_needed == 15
    assert EventTracker(hold=3, hold_seconds=0.0, rate=24.0).frames_needed == 3  # frames only
    dog, blip = "d" * 48, "c" * 14  # a misreading of 14 frames, just under 0.6 s
    every = frames(dog + blip + dog, fps=24.0)
    held = EventTracker(hold=3, hold_seconds=None, rate=24.0).feed(every)
    assert [(e.label, e.t) for e in held] == [("dog", 0.0)]
    cat = EventTracker(hold=3, hold_seconds=None, rate=24.0).feed(frames(dog + "c" * 15, 0.9, 24))
    assert [(e.label, round(e.t, 3)) for e in cat] == [("dog", 0.0), ("cat", 2.0)]
