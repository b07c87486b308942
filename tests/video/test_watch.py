"""``kennel watch`` end to end on real video: synthetic clips with a known timeline, the
prediction log, annotated output, and a live HTTP camera that stalls and disconnects."""

from __future__ import annotations

import io
import itertools
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from sqlalchemy import func, select
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import Project
from kennel.datasets.synth import EMPTY
from kennel.db.schema import PredictionRow
from kennel.imaging import decode
from kennel.video.capture import FrameReader, SourceEvent
from kennel.video.events import NO_PET, EventTracker
from kennel.video.synth import load_timeline, make_clip
from kennel.video.watch import Watcher
from kennel.wiring import Workspace

runner = CliRunner()


@pytest.fixture
def park(park_model: Project) -> Project:
    return park_model


def _clip(project: Project, out: Path, order: list[str]) -> list[str]:
    """A clip showing test-split images in ``order``. The video pipeline is under test here,
    not the model, so each shot is a test image the model labels correctly and confidently
    (>= 0.9) as a still; the clip then adds pan, zoom, noise, compression and frame sampling."""
    ws = Workspace(project)
    try:
        predictor = ws.predictor("pets@1")
        version = ws.catalog.latest("park")
        assert version is not None
        rows = [r for r in ws.catalog.rows(version) if r.split == "test"]
        shots, used = [], set()
        for label in order:
            for row in rows:
                if row.label != label or row.uri in used:
                    continue
                data = ws.content.get(row.sha256)
                still = predictor.predict_one(data)
                if still.label == label and still.confidence >= 0.9:
                    used.add(row.uri)
                    shots.append((label, decode(data).image, row.uri))
                    break
        make_clip(out, shots, seconds=2.0, fps=10.0, size=160, seed=1)
        return [s[2] for s in shots]
    finally:
        ws.close()


def test_clip_events_follow_the_known_timeline(park: Project, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    _clip(park, clip, ["cat", "dog", EMPTY, "cat", EMPTY, "dog"])
    timeline = load_timeline(clip)
    ws = Workspace(park)
    try:
        predictor = ws.predictor("pets@1")
        watcher = Watcher(
            FrameReader(str(clip), target_fps=5.0), lambda: predictor, tracker=EventTracker(hold=3)
        )
        stats = watcher.run()
    finally:
        ws.close()
    expected = [NO_PET if s.label == EMPTY else s.label for s in timeline]
    got = [e.label for e in stats.events]
    assert got == expected, (got, expected)
    for event, segment in zip(stats.events, timeline, strict=True):
        assert segment.start - 0.01 <= event.t <= segment.start + 0.5, (event, segment)
    assert stats.frames_read == 120 and stats.frames_scored == 60 and stats.dropped == 0
    assert stats.video_seconds == pytest.approx(12.0)


def test_watch_cli_logs_every_frame_and_writes_annotated_video(
    park: Project, tmp_path: Path
) -> None:
    made = runner.invoke(
        app,
        ["data", "synth-video", str(tmp_path / "synth.mp4"), "--dataset", "park",
         "--segments", "4", "--seconds", "1", "--size", "128", "--json", "-C", str(park.root)],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    segments = json.loads(made.output)["segments"]
    assert [s["end"] for s in segments] == [1.0, 2.0, 3.0, 4.0]
    assert all(a["label"] != b["label"] for a, b in itertools.pairwise(segments))

    out = tmp_path / "annotated.mp4"
    result = runner.invoke(
        app,
        ["watch", str(tmp_path / "synth.mp4"), "--model", "pets@1", "--fps", "5",
         "--camera", "cam-7", "--out", str(out), "--json", "-C", str(park.root)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["frames_read"] == 40 and stats["frames_scored"] == 20
    assert stats["models"] == ["pets@1"] and stats["realtime_factor"] > 1
    assert sum(stats["labels"].values()) == 20
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    capture.release()
    ws = Workspace(park)
    try:
        with ws.db.session() as s:
            logged = s.scalar(
                select(func.count())
                .select_from(PredictionRow)
                .where(PredictionRow.source == "cam-7")
            )
    finally:
        ws.close()
    assert logged == 20


def test_watch_rejects_a_missing_source(park: Project) -> None:
    result = runner.invoke(app, ["watch", "nope.mp4", "--model", "pets@1", "-C", str(park.root)])
    assert result.exit_code != 0
    assert "nope.mp4" in result.output and "Traceback" not in result.output


def test_a_file_that_is_no_video_is_a_source_error(park: Project, tmp_path: Path) -> None:
    """A file that exists but no decoder opens: one line and exit 6, as for any source that
    cannot be read (it exited 0 with a summary of no frames)."""
    (tmp_path / "notes.txt").write_text("not a video\n")
    for extra in ([], ["--json"]):
        result = runner.invoke(
            app, ["watch", str(tmp_path / "notes.txt"), "--model", "pets@1", "-C",
                  str(park.root), *extra],
        )  # fmt: skip
        assert result.exit_code == 6, result.output
        assert result.stderr == (
            f"error: cannot open {tmp_path / 'notes.txt'}: not a video this machine can "
            "decode (empty or damaged?)\n"
        )
        assert result.stdout == ""


def test_a_picture_renamed_as_a_video_is_refused(park: Project, tmp_path: Path) -> None:
    """FFmpeg opens a JPEG named clip.mp4 as a one-frame video, and the watch summed it up as
    one frame scored (exit 0): a still picture under any name is now refused in one line,
    pointing to `kennel predict`; a video and a picture format that moves still play."""
    picture = Image.new("RGB", (64, 48), "brown")
    for form, kind in (("JPEG", "JPEG"), ("PNG", "PNG"), ("BMP", "BMP"), ("TIFF", "TIFF"),
                       ("WEBP", "WebP"), ("GIF", "GIF")):  # fmt: skip
        named = tmp_path / f"{form.lower()}.mp4"
        picture.save(named, format=form)
        result = runner.invoke(app, ["watch", str(named), "--model", "pets@1", "-C",
                                     str(park.root)])  # fmt: skip
        assert result.exit_code == 6, result.output
        assert result.stderr == (
            f"error: video source {str(named)!r} is a {kind} picture, not a video; "
            "`kennel predict` classifies pictures\n"
        )
    # a photo with a second JPEG after it (an MPO, a phone's gain map) and a PNG whose text
    # names an animation chunk are still one picture each: the decoder reads one frame
    first, second = io.BytesIO(), io.BytesIO()
    picture.save(first, format="JPEG")
    picture.resize((16, 12)).save(second, format="JPEG")
    (tmp_path / "mpo.jpg").write_bytes(first.getvalue() + second.getvalue())
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "acTL ANIM")
    picture.save(tmp_path / "text.png", pnginfo=info)
    picture.save(tmp_path / "two.mpo", format="MPO", save_all=True, append_images=[picture])
    for name, kind in (("mpo.jpg", "JPEG"), ("two.mpo", "JPEG"), ("text.png", "PNG")):
        result = runner.invoke(app, ["watch", str(tmp_path / name), "--model", "pets@1", "-C",
                                     str(park.root)])  # fmt: skip
        assert result.exit_code == 6, (name, result.output)
        assert f"is a {kind} picture, not a video" in result.stderr
    clip = tmp_path / "in.mp4"
    make_clip(clip, [("dog", picture, "x")], seconds=0.5, fps=10, size=64)
    result = runner.invoke(app, ["watch", str(clip), "--model", "pets@1", "-C", str(park.root)])
    assert result.exit_code == 0, result.output
    # picture formats that move are clips: an animated GIF, PNG or WebP, and a Motion-JPEG
    # stream (a camera's JPEGs one after another, as FFmpeg reads them)
    frames = [Image.new("RGB", (64, 48), c) for c in ("brown", "white", "black", "red")]
    for name, form in (("a.gif", "GIF"), ("a.png", "PNG"), ("a.webp", "WEBP")):
        frames[0].save(tmp_path / name, format=form, save_all=True,
                       append_images=frames[1:], duration=100)  # fmt: skip
    stream = io.BytesIO()
    for frame in frames:
        frame.save(stream, format="JPEG")
        stream.write(b"\r\n")  # as some cameras separate them
    (tmp_path / "cam.mjpeg").write_bytes(stream.getvalue())
    for name in ("a.gif", "a.png", "a.webp", "cam.mjpeg"):
        result = runner.invoke(app, ["watch", str(tmp_path / name), "--fps", "0", "--json",
                                     "--model", "pets@1", "-C", str(park.root)])  # fmt: skip
        assert result.exit_code == 0, (name, result.output)
        assert json.loads(result.stdout)["frames_scored"] >= 2, name


def test_a_bad_out_is_refused_before_anything_is_watched(park: Project, tmp_path: Path) -> None:
    """`--out` naming the watched clip replaced it with a short annotated copy (exit 0); a
    `.txt` or a folder wrote nothing (OpenCV's message, or none) and exited 0."""
    clip = tmp_path / "in.mp4"
    make_clip(clip, [("dog", Image.new("RGB", (64, 64), "brown"), "x")], seconds=0.5,
              fps=10, size=64)  # fmt: skip
    before = clip.read_bytes()
    (tmp_path / "outdir").mkdir()
    for out, said in (
        (clip, "is the video being watched"),
        (tmp_path / "out.txt", "name a .mp4 file"),
        (tmp_path / "outdir", "is a folder"),
        (Path("/proc/nowhere/x.mp4"), "--out /proc/nowhere/x.mp4"),
    ):
        result = runner.invoke(app, ["watch", str(clip), "--model", "pets@1", "--out", str(out),
                                     "-C", str(park.root)])  # fmt: skip
        assert result.exit_code == 2, (out, result.output)
        assert said in result.stderr and result.stderr.count("\n") == 1, result.stderr
    # the source as a file:// URL, or inside one of FFmpeg's protocol wrappers, names it too
    for source in (clip.as_uri(), f"cache:{clip.as_uri()}", f"concat:{clip}|{clip}",
                   f"subfile,,start,0,end,0,,:{clip.as_uri()}"):  # fmt: skip
        result = runner.invoke(app, ["watch", source, "--model", "pets@1", "--out", str(clip),
                                     "-C", str(park.root)])  # fmt: skip
        assert result.exit_code == 2 and "is the video being watched" in result.stderr, source
    assert clip.read_bytes() == before
    assert list((tmp_path / "outdir").iterdir()) == [] and not (tmp_path / "out.txt").exists()
    # another video already there is the user's: replaced only with --force (it was, silently)
    precious = tmp_path / "precious.mp4"
    precious.write_bytes(b"a user's own video")
    args = ["watch", str(clip), "--model", "pets@1", "--no-log", "--out", str(precious),
            "-C", str(park.root)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "exists; give --force" in result.stderr, result.output
    assert precious.read_bytes() == b"a user's own video"
    result = runner.invoke(app, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert precious.read_bytes()[4:8] == b"ftyp"  # an MPEG-4 file now
    synth = ["data", "synth-video", str(precious), "--dataset", "park", "-C", str(park.root)]
    result = runner.invoke(app, synth)
    assert result.exit_code == 2 and "exists; give --force" in result.stderr, result.output


def test_a_duration_of_nothing_is_refused(park: Project, tmp_path: Path) -> None:
    """`--duration 0` scored nothing and exited 0, as if the clip held no pet."""
    clip = tmp_path / "in.mp4"
    make_clip(clip, [("dog", Image.new("RGB", (64, 64), "brown"), "x")], seconds=0.5,
              fps=10, size=64)  # fmt: skip
    result = runner.invoke(app, ["watch", str(clip), "--model", "pets@1", "--duration", "0",
                                 "-C", str(park.root)])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--duration" in result.stderr and "not above 0" in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    # a pet announced above --enter must not be let go at once under a higher --leave
    result = runner.invoke(app, ["watch", str(clip), "--model", "pets@1", "--enter", "0.2",
                                 "--leave", "0.9", "-C", str(park.root)])  # fmt: skip
    assert (
        result.exit_code == 2
        and "--enter" in result.stderr
        and "below --leave 0.9" in (result.stderr)
    )
    # a metrics port already taken is named
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["watch", str(clip), "--model", "pets@1", "--metrics-port",
                                     str(port), "-C", str(park.root)])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: --metrics-port {port}: ")


def test_a_file_url_is_read_once(park: Project, tmp_path: Path) -> None:
    """`watch file:///...clip.mp4` was taken for a live stream: at the end of the file it
    reconnected and replayed the clip until killed (logging its frames again each time)."""
    import subprocess
    import sys

    clip = tmp_path / "in.mp4"
    make_clip(clip, [("dog", Image.new("RGB", (64, 64), "brown"), "x")], seconds=1.0,
              fps=10, size=64)  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "kennel.cli", "watch", clip.as_uri(), "--model", "pets@1",
         "--fps", "0", "--no-log", "--json", "-C", str(park.root)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["frames_read"] == 10 and stats["reconnects"] == 0
    assert [e["kind"] for e in stats["source_events"]] == ["opened", "ended"]


def test_a_clip_cut_short_is_reported(tmp_path: Path) -> None:
    """A file that ends before the frames its header announces (a copy cut short) was read to
    the cut and its summary looked like a whole clip's; it is now a source event."""
    whole, cut = tmp_path / "whole.avi", tmp_path / "cut.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for i in range(40):
        writer.write(np.full((64, 64, 3), i * 5, np.uint8))
    writer.release()
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])

    def events(path: Path) -> tuple[int, list[tuple[str, str]]]:
        reader = FrameReader(str(path), target_fps=None).start()
        seen = []
        while (item := reader.get(timeout=10)) is not None:
            if isinstance(item, SourceEvent):
                seen.append((item.kind, item.detail))
        reader.stop()
        return reader.frames_read, seen

    read, seen = events(whole)
    assert read == 40 and [k for k, _ in seen] == ["opened", "ended"]
    read, seen = events(cut)
    assert 0 < read < 40
    assert [k for k, _ in seen] == ["opened", "truncated", "ended"]
    assert f"after {read} of the 40 frames" in seen[1][1]


def _jpeg(i: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((96, 128, 3), (i * 9) % 255, np.uint8)).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def flaky_camera() -> Iterator[tuple[str, list[float]]]:
    """An MJPEG camera over HTTP: the first connection stalls after 10 frames, the next ones
    send 20 frames and hang up."""
    connections: list[float] = []

    class Camera(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            connections.append(time.monotonic())
            first = len(connections) == 1
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            try:
                for i in range(10 if first else 20):
                    data = _jpeg(i)
                    self.wfile.write(
                        b"--frame\r\nContent-Type: image/jpeg\r\n"
                        + f"Content-Length: {len(data)}\r\n\r\n".encode()
                        + data
                        + b"\r\n"
                    )
                    self.wfile.flush()
                    time.sleep(0.04)
                if first:
                    time.sleep(4.0)  # stall with the connection open
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg", connections
    finally:
        server.shutdown()
        server.server_close()


def test_a_stalling_camera_is_reported_and_reconnected(
    park: Project, flaky_camera: tuple[str, list[float]]
) -> None:
    url, connections = flaky_camera
    ws = Workspace(park)
    try:
        predictor = ws.predictor("pets@1")
    finally:
        ws.close()
    reader = FrameReader(url, target_fps=None, read_timeout_s=1.5, backoff_s=0.1)
    stats = Watcher(reader, lambda: predictor, batch_size=4).run(max_seconds=7.0)
    kinds = [e.kind for e in stats.source_events]
    assert kinds.count("disconnected") >= 2  # the stall, then the hang-up
    assert kinds.count("opened") >= 3 and "failed" not in kinds
    assert stats.reconnects >= 2 and len(connections) >= 3
    assert stats.frames_scored >= 30  # frames kept flowing after each reconnect
