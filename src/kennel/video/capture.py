"""Frames from a video file, an RTSP/HTTP URL or a camera index, read on their own thread.

The reader samples frames to a target rate and hands them over through a bounded queue. A live
source never waits for the model: when the consumer falls behind, the oldest frame is dropped
and counted. A file is not live: the reader waits instead, so every sampled frame is scored.
A live source that stalls (no frame within ``read_timeout_s``) or disconnects is reported and
reopened with backoff; the consumer sees the reports as :class:`SourceEvent` items.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import cv2
import numpy as np
from PIL import Image

from kennel.digits import ascii_number
from kennel.errors import SourceError
from kennel.imaging import DEFAULT_MAX_PIXELS
from kennel.portable import FORMATS

# FFmpeg writes its own complaints straight to stderr ("moov atom not found", a camera's
# "Connection refused"); the reader reports each failure as a source event, in kennel's words
# and once. Set OPENCV_FFMPEG_LOGLEVEL yourself to see FFmpeg's log.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

log = logging.getLogger(__name__)
# OpenCV's own warnings too ("can't open camera by index" on every reconnect attempt): each
# failure reaches the user once, as a source event or the command's one-line error.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
# Frames larger than this (width x height) are refused when the source opens, as images over
# data.max_pixels are: decoded frames wait in the queue whole, a 12000 x 12000 clip of 10 MB
# took 2.9 GB. Set from data.max_pixels by ``kennel watch``.
MAX_PIXELS = DEFAULT_MAX_PIXELS
# The highest camera index: OpenCV takes a C int, and no machine has more cameras.
MAX_CAMERA = 9999
# A file's frame rate outside this range is not believed: its frames are timed by their
# own timestamps instead (a header saying 0 or 2147483647 fps would sample 1 frame in 30).
_PLAUSIBLE_FPS = (0.5, 1000.0)
# Frames a file may fall short of its header's count before it is reported truncated (some
# containers' counts are estimates from the duration, off by a frame or two).
TRUNCATED_SLACK = 2


@dataclass(frozen=True)
class Frame:
    index: int  # position in the stream (all frames, sampled or not)
    t: float  # seconds since the start of the stream
    rgb: np.ndarray  # uint8 [H, W, 3]
    captured: float  # time.monotonic() when read
    prepared: Any = None  # model input made on the reader thread, when a preparer is set


@dataclass(frozen=True)
class SourceEvent:
    kind: str  # "opened", "disconnected", "reconnecting", "failed", "truncated", "ended"
    detail: str
    at: float  # time.monotonic()


def _index(source: str) -> int:
    number = ascii_number(source)
    assert number is not None  # only called on what _is_index accepts
    return number


def _is_index(source: str) -> bool:
    """Digits 0-9 only: ``int()`` also reads other scripts' digits (``"٣"`` is 3)."""
    return ascii_number(source) is not None


def open_spec(source: str) -> str | int:
    """A camera index for digits, otherwise the file path or URL as given."""
    return _index(source) if _is_index(source) else source


def describe(source: str) -> str:
    """The source in words, for errors: ``camera 7`` for an index."""
    return f"camera {_index(source)}" if _is_index(source) else source


def _cannot_open(source: str) -> str:
    if _is_index(source):
        return (
            f"cannot open camera {_index(source)}: no such camera on this machine "
            f"(/dev/video{_index(source)} on Linux), or another program is using it"
        )
    if is_live(source):
        return f"cannot open {source}: unreachable, refused, or not a video stream"
    return f"cannot open {source}: not a video this machine can decode (empty or damaged?)"


def file_url_path(source: str) -> str | None:
    """The local path a ``file://`` URL names, else None."""
    parts = urlsplit(source)
    if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
        return None
    return url2pathname(parts.path)


# The picture formats kennel decodes (Pillow's names); FFmpeg opens each as a one-frame
# "video". GIF too: an animated one reads a second frame and plays as a clip, a still one was
# scored as a one-frame video while every other still format was refused.
_STILLS = list(FORMATS)
# How an error names them; Pillow calls a JPEG carrying a second picture MPO
_SAID = {"WEBP": "WebP", "MPO": "JPEG"}


def _still_picture(path: str) -> str | None:
    """The format of a still picture at ``path``, else None: a picture format by its header
    that the video decoder reads no second frame from. One that moves is a clip (an animated
    GIF, PNG or WebP, a Motion-JPEG stream), whatever marks it; an unreadable file is left to
    the decoder's own error."""
    try:  # Pillow's identification, from the header alone (no pixel is decoded)
        with Image.open(path, formats=_STILLS) as picture:
            kind = _SAID.get(str(picture.format), str(picture.format))
    except (OSError, Image.DecompressionBombError):
        return None
    capture = cv2.VideoCapture(path)
    try:
        frames = 0
        while frames < 2 and capture.read()[0]:
            frames += 1
    finally:
        capture.release()
    return kind if frames < 2 else None


def is_live(source: str) -> bool:
    """A camera index or a stream URL; a file (a ``file://`` URL too) is read once."""
    return _is_index(source) or ("://" in source and file_url_path(source) is None)


class FrameReader:
    """Reads, samples and queues frames; ``get()`` returns frames and source events."""

    def __init__(
        self,
        source: str,
        *,
        target_fps: float | None = 5.0,
        queue_size: int = 8,
        live: bool | None = None,
        read_timeout_s: float = 5.0,
        max_reconnects: int = 10,
        backoff_s: float = 0.5,
        opener: Callable[[str | int], cv2.VideoCapture] | None = None,
    ) -> None:
        source = file_url_path(source) or source  # a file named as a URL is that file
        if not is_live(source) and not Path(source).is_file():
            raise SourceError(f"video source {source!r} is not a file, URL or camera index")
        if not is_live(source) and (kind := _still_picture(source)) is not None:
            raise SourceError(
                f"video source {source!r} is a {kind} picture, not a video; "
                "`kennel predict` classifies pictures"
            )
        if _is_index(source) and _index(source) > MAX_CAMERA:
            shown = source if len(source) <= 12 else f"{source[:12]}..."
            raise SourceError(f"camera index {shown} is out of range (0-{MAX_CAMERA})")
        self.source = source
        self.live = is_live(source) if live is None else live
        self.target_fps = target_fps
        self.read_timeout_s = read_timeout_s
        self.max_reconnects = max_reconnects
        self.backoff_s = backoff_s
        self.fps = 0.0  # the source's own frame rate, once known
        self.max_pixels = MAX_PIXELS
        self.frames_read = 0
        self.frames_sampled = 0
        self.dropped = 0
        self.reconnects = 0
        self._opener = opener or self._open
        # Called on the reader thread for each sampled frame, so decoding and preprocessing
        # overlap with inference on the consumer's thread (both release the GIL).
        self.preparer: Callable[[np.ndarray], Any] | None = None
        self._items: collections.deque[Frame | SourceEvent] = collections.deque()
        self._size = queue_size
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name="kennel-video", daemon=True)

    # -- consumer side -------------------------------------------------------------------------
    def start(self) -> FrameReader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(self.read_timeout_s + 5)

    @property
    def finished(self) -> bool:
        """The reader has stopped and everything it queued has been taken."""
        with self._cond:
            return self._done and not self._items

    @property
    def trusted_fps(self) -> float:
        """The source's own frame rate where it is believable, else 0."""
        return self.fps if _PLAUSIBLE_FPS[0] <= self.fps <= _PLAUSIBLE_FPS[1] else 0.0

    @property
    def sampled_fps(self) -> float:
        """The rate frames are handed on at: the lower of the target and the source's own,
        where known; 25 where neither is."""
        rates = [r for r in (self.trusted_fps, self.target_fps or 0.0) if r > 0]
        return min(rates) if rates else 25.0

    def get(self, timeout: float | None = None) -> Frame | SourceEvent | None:
        """The next frame or event; None when the stream is over (or on timeout)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._done, timeout):
                return None
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def get_nowait(self) -> Frame | None:
        """A frame already waiting, or None (events are left for ``get``)."""
        with self._cond:
            if self._items and isinstance(self._items[0], Frame):
                item = self._items.popleft()
                self._cond.notify_all()
                assert isinstance(item, Frame)
                return item
            return None

    # -- reader side ---------------------------------------------------------------------------
    def _open(self, spec: str | int) -> cv2.VideoCapture:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.read_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.read_timeout_s * 1000),
        ]
        return cv2.VideoCapture(spec, cv2.CAP_ANY, params)

    def _event(self, kind: str, detail: str) -> None:
        log.info("video source %s: %s %s", self.source, kind, detail)
        with self._cond:
            self._items.append(SourceEvent(kind, detail, time.monotonic()))
            self._cond.notify_all()

    def _put(self, frame: Frame) -> None:
        with self._cond:
            frames = sum(isinstance(i, Frame) for i in self._items)
            if frames >= self._size:
                if self.live:  # never make a camera wait: drop the oldest frame
                    for i, item in enumerate(self._items):
                        if isinstance(item, Frame):
                            del self._items[i]
                            self.dropped += 1
                            break
                else:
                    self._cond.wait_for(
                        lambda: (
                            self._stop.is_set()
                            or sum(isinstance(i, Frame) for i in self._items) < self._size
                        )
                    )
            self._items.append(frame)
            self.frames_sampled += 1
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            self._read_all()
        except Exception as exc:  # a reader crash is reported, never raised into the app
            log.debug("video reader failed", exc_info=True)
            self._event("failed", f"{type(exc).__name__}: {exc}")
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _read_all(self) -> None:
        attempts = 0
        started = time.monotonic()
        next_sample = 0.0
        index = 0
        while not self._stop.is_set():
            capture = self._opener(open_spec(self.source))
            if not capture.isOpened():
                capture.release()
                if not self.live or attempts >= self.max_reconnects:
                    self._event("failed", _cannot_open(self.source))
                    return
                attempts += 1
                self._event(
                    "reconnecting",
                    f"{_cannot_open(self.source)}; attempt {attempts} of {self.max_reconnects}",
                )
                self._stop.wait(min(self.backoff_s * 2 ** (attempts - 1), 10.0))
                continue
            if attempts:
                self.reconnects += 1
            attempts = 0
            if (oversized := self._oversized(capture)) is not None:
                capture.release()
                self._event("failed", oversized)
                return
            self.fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
            announced = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            self._event("opened", f"{self.fps:.1f} fps")
            stamped = not self.live and not self.trusted_fps
            if stamped:
                self._event(
                    "timing",
                    f"the file says {self.fps:g} fps; its frames are timed by their timestamps",
                )
            last_t = -1.0
            try:
                while not self._stop.is_set():
                    ok, bgr = capture.read()
                    if not ok:
                        break
                    if bgr.shape[0] * bgr.shape[1] > self.max_pixels:  # a stream that grew
                        self._event("failed", self._too_large(bgr.shape[1], bgr.shape[0]))
                        return
                    self.frames_read += 1
                    if self.live:
                        t = time.monotonic() - started
                    elif stamped:  # the stream's own clock, else a nominal 25 fps
                        stamp = float(capture.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000
                        t = stamp if stamp > last_t else last_t + 1 / 25
                    else:
                        t = index / self.fps
                    last_t = t
                    index += 1
                    if self.target_fps and t + 1e-9 < next_sample:
                        continue
                    if self.target_fps:
                        next_sample = max(next_sample + 1.0 / self.target_fps, t)
                    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    captured = time.monotonic()
                    prepared = self.preparer(rgb) if self.preparer else None
                    self._put(Frame(index - 1, t, rgb, captured, prepared))
            finally:
                capture.release()
            if not self.live:
                if not self._stop.is_set() and self.frames_read < announced - TRUNCATED_SLACK:
                    self._event(
                        "truncated",
                        f"the file ended after {self.frames_read} of the {announced} frames "
                        "its header announces (cut short or damaged)",
                    )
                self._event("ended", f"{self.frames_read} frames read")
                return
            if self._stop.is_set():
                return
            self._event("disconnected", "no frame within the read timeout or stream closed")
            attempts += 1
            if attempts > self.max_reconnects:
                self._event("failed", f"gave up after {self.max_reconnects} reconnects")
                return
            self._event("reconnecting", f"attempt {attempts} of {self.max_reconnects}")
            self._stop.wait(min(self.backoff_s * 2 ** (attempts - 1), 10.0))

    def _oversized(self, capture: cv2.VideoCapture) -> str | None:
        w = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        h = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        return self._too_large(w, h) if w * h > self.max_pixels else None

    def _too_large(self, w: int, h: int) -> str:
        return (
            f"frames of {w}x{h} are over the limit of {self.max_pixels:,} pixels "
            "(data.max_pixels): refused, as predict and ingest refuse a picture that large"
        )
