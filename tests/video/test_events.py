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
