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

from kennel.errors import SourceError

# FFmpeg writes its own complaints straight to stderr ("moov atom not found", a camera's
# "Connection refused"); the reader reports each failure as a source event, in kennel's words
# and once. Set OPENCV_FFMPEG_LOGLEVEL yourself to see FFmpeg's log.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

log = logging.getLogger(__name__)
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


def open_spec(source: str) -> str | int:
    """A camera index for digits, otherwise the file path or URL as given."""
    return int(source) if source.isdigit() else source


def file_url_path(source: str) -> str | None:
    """The local path a ``file://`` URL names, else None."""
    parts = urlsplit(source)
    if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
        return None
    return url2pathname(parts.path)


def is_live(source: str) -> bool:
    """A camera index or a stream URL; a file (a ``file://`` URL too) is read once."""
    return source.isdigit() or ("://" in source and file_url_path(source) is None)


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
        self.source = source
        self.live = is_live(source) if live is None else live
        self.target_fps = target_fps
        self.read_timeout_s = read_timeout_s
        self.max_reconnects = max_reconnects
        self.backoff_s = backoff_s
        self.fps = 0.0  # the source's own frame rate, once known
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
            log.exception("video reader failed")
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
                    self._event("failed", f"cannot open {self.source}")
                    return
                attempts += 1
                self._event("reconnecting", f"attempt {attempts} of {self.max_reconnects}")
                self._stop.wait(min(self.backoff_s * 2 ** (attempts - 1), 10.0))
                continue
            if attempts:
                self.reconnects += 1
            attempts = 0
            self.fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
            announced = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            self._event("opened", f"{self.fps:.1f} fps")
            try:
                while not self._stop.is_set():
                    ok, bgr = capture.read()
                    if not ok:
                        break
                    self.frames_read += 1
                    t = (
                        time.monotonic() - started
                        if self.live or self.fps <= 0
                        else index / self.fps
                    )
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
