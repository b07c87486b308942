"""Sources a review fed ``kennel watch``: a clip with no readable frame, a camera that is not
there or whose index is absurd, frames larger than any image kennel accepts, a header whose
frame rate is not believable, and the annotated copy's playing speed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import Project
from kennel.errors import SourceError
from kennel.video.capture import FrameReader, SourceEvent

runner = CliRunner()


def _avi(
    path: Path, *, frames: int = 40, fps: float = 10, size: tuple[int, int] = (64, 64)
) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), (i * 5) % 255, np.uint8))
    writer.release()
    return path


def _read(reader: FrameReader) -> tuple[list[float], list[SourceEvent]]:
    """The sampled frames' times and the source's events, the reader run to its end."""
    times, events = [], []
    reader.start()
    while (item := reader.get(timeout=10)) is not None:
        if isinstance(item, SourceEvent):
            events.append(item)
        else:
            times.append(item.t)
    reader.stop()
    return times, events


def _watch(park: Project, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["watch", *args, "--model", "pets@1", "--no-log",
                                 "-C", str(park.root)])  # fmt: skip
    return result.exit_code, result.stdout, result.stderr


def test_a_clip_with_no_readable_frame_fails_with_its_reason(
    park_model: Project, shared_data: Path, tmp_path: Path
) -> None:
    """The real clip cut after its header: it opens (the header announces 220 frames), gives
    none, and exited 0 with "0 frames scored of 0 read"."""
    cut = tmp_path / "cut.mp4"
    cut.write_bytes((shared_data / "videos" / "dog.mp4").read_bytes()[:20000])
    for extra in ([], ["--json"]):
        code, out, err = _watch(park_model, str(cut), *extra)
        assert code == 6 and err.count("\n") == 1, err
        assert out == "" or extra == []  # without --json the source's report is shown as it comes
        assert err.startswith(f"error: no frame could be read from {cut}: the file ended after 0")


def test_a_camera_that_is_not_there_or_out_of_range_fails_in_one_line(
    park_model: Project,
) -> None:
    # under --duration the watch ended while the reader still retried: it exited 0
    code, _out, err = _watch(park_model, "9998", "--duration", "1", "--json")
    assert code == 6 and err.count("\n") == 1, err
    assert err.startswith("error: no frame could be read from camera 9998: cannot open camera")
    assert "/dev/video9998" in err and "WARN" not in err  # OpenCV's own log is silenced
    code, _out, err = _watch(park_model, "9" * 40)  # a traceback from OpenCV's C int
    assert code == 6 and err == "error: camera index 999999999999... is out of range (0-9999)\n"
    with pytest.raises(SourceError, match="camera index 10000 is out of range"):
        FrameReader("10000")


def test_frames_over_the_pixel_limit_are_refused_when_the_source_opens(
    park_model: Project, tmp_path: Path
) -> None:
    """Decoded frames wait in the queue whole: a 12000 x 12000 clip of 10 MB took 2.9 GB.
    The header's size is checked against data.max_pixels before a frame is decoded."""
    big = _avi(tmp_path / "big.avi", frames=2, size=(6400, 6400))  # 41 MP, over the default
    code, out, err = _watch(park_model, str(big))
    assert code == 6 and out == "", err
    assert err == (
        "error: frames of 6400x6400 are over the limit of 40,000,000 pixels (data.max_pixels): "
        "refused, as predict and ingest refuse a picture that large\n"
    )
    reader = FrameReader(str(_avi(tmp_path / "small.avi")), target_fps=None)
    reader.max_pixels = 64 * 64 - 1
    times, events = _read(reader)
    assert times == [] and [e.kind for e in events] == ["failed"]


class _Lying:
    """A capture whose header claims ``fps``; everything else is the real one's."""

    def __init__(self, spec: str | int, fps: float) -> None:
        self.capture, self.fps = cv2.VideoCapture(spec), fps

    def get(self, prop: int) -> float:
        return self.fps if prop == cv2.CAP_PROP_FPS else float(self.capture.get(prop))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.capture, name)


def _lying(fps: float) -> Callable[[str | int], Any]:
    return lambda spec: _Lying(spec, fps)


@pytest.mark.parametrize("claimed", [0.0, 1e-6, 2147483647.0])
def test_a_file_whose_header_rate_is_not_believable_is_timed_by_its_timestamps(
    tmp_path: Path, claimed: float
) -> None:
    """A header saying 0 fps had the file timed by the wall clock (1-3 of 220 frames sampled,
    a different number each run); 2147483647 fps sampled 1 frame of 30; 1e-06 fps made a
    summary of 174683300x real time. Every sampled frame now has its stream time."""
    clip = _avi(tmp_path / "clip.avi")  # 40 frames at 10 fps: 4 s
    reader = FrameReader(str(clip), target_fps=5, opener=_lying(claimed))
    times, events = _read(reader)
    assert [e.kind for e in events] == ["opened", "timing", "ended"]
    assert len(times) == 20 and times[:3] == pytest.approx([0.0, 0.2, 0.4])
    assert reader.trusted_fps == 0 and reader.sampled_fps == 5


def test_the_annotated_copy_plays_at_the_rate_frames_were_sampled(
    park_model: Project, tmp_path: Path
) -> None:
    """--fps above the source's own wrote 10 fps frames as a 20 fps file (3 s played in 1.5);
    --fps 0 wrote them at 25."""
    clip = _avi(tmp_path / "clip.avi", frames=30)  # 3 s at 10 fps
    for fps, frames, rate in (("20", 30, 10.0), ("0", 30, 10.0), ("5", 15, 5.0)):
        out = tmp_path / f"annotated-{fps}.mp4"
        code, stdout, err = _watch(park_model, str(clip), "--fps", fps, "--out", str(out),
                                   "--json")  # fmt: skip
        assert code == 0, err
        assert json.loads(stdout)["frames_scored"] == frames
        capture = cv2.VideoCapture(str(out))
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(rate)
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
        capture.release()


def test_a_camera_index_is_ascii_digits_only() -> None:
    """int() reads other scripts' digits: "٣" opened camera 3; now it is a file name."""
    with pytest.raises(SourceError, match="is not a file, URL or camera index"):
        FrameReader("\u0663")
