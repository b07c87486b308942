"""``kennel watch``: score a camera in real time through the same Predictor as every pattern.

The reader thread samples frames; this loop takes whatever frames are waiting (up to a batch),
runs them through the Predictor in one call, logs every scored frame to the prediction log
like an API call (source = the camera id), feeds the event tracker and, optionally, writes an
annotated video. Fps, latency and drops are kept in :class:`WatchStats` and Prometheus metrics.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter

from kennel.errors import ConfigError
from kennel.serve.predlog import PredictionLog, row_of
from kennel.serve.runtime import Prediction, Predictor, Prepared
from kennel.video.capture import Frame, FrameReader, SourceEvent
from kennel.video.events import NO_PET, Event, EventTracker


class VideoMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.frames = PromCounter(
            "kennel_video_frames", "Video frames by stage", ["stage"], registry=self.registry
        )
        self.latency = Histogram(
            "kennel_video_latency_seconds",
            "Capture-to-result latency per scored frame",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.fps = Gauge("kennel_video_fps", "Frames scored per second", registry=self.registry)
        self.source_events = PromCounter(
            "kennel_video_source_events", "Camera source events", ["kind"], registry=self.registry
        )


@dataclass
class WatchStats:
    source: str
    camera: str
    frames_read: int = 0
    frames_sampled: int = 0
    frames_scored: int = 0
    dropped: int = 0
    no_pet: int = 0  # scored frames the pet judgement saw no cat or dog in
    reconnects: int = 0
    video_seconds: float = 0.0
    wall_seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    labels: Counter[str] = field(default_factory=Counter)
    events: list[Event] = field(default_factory=list)
    source_events: list[SourceEvent] = field(default_factory=list)
    models: set[str] = field(default_factory=set)

    @property
    def fps(self) -> float:
        return self.frames_scored / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def realtime_factor(self) -> float:
        return self.video_seconds / self.wall_seconds if self.wall_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        lat = np.array(self.latencies_ms or [0.0])
        return {
            "source": self.source,
            "camera": self.camera,
            "models": sorted(self.models),
            "frames_read": self.frames_read,
            "frames_sampled": self.frames_sampled,
            "frames_scored": self.frames_scored,
            "dropped": self.dropped,
            "no_pet_frames": self.no_pet,
            "reconnects": self.reconnects,
            "video_seconds": round(self.video_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "fps": round(self.fps, 2),
            "realtime_factor": round(self.realtime_factor, 2),
            "latency_ms": {
                "p50": round(float(np.percentile(lat, 50)), 2),
                "p99": round(float(np.percentile(lat, 99)), 2),
            },
            "labels": dict(self.labels),
            "events": [e.as_dict() for e in self.events],
            "source_events": [{"kind": e.kind, "detail": e.detail} for e in self.source_events],
        }


class AnnotatedWriter:
    """Writes each scored frame with its label, confidence and the smoothed state, as an MPEG-4
    file that appears at ``path`` when ``close`` is called (a temporary file beside it until
    then: a watch killed midway leaves whatever ``path`` held before)."""

    def __init__(self, path: Path, fps: float) -> None:
        if path.is_dir():
            raise ConfigError(f"--out {path} is a folder; name a .mp4 file")
        if path.suffix.lower() != ".mp4":
            raise ConfigError(f"--out {path}: the annotated video is MPEG-4; name a .mp4 file")
        self.path = path
        self.fps = fps
        self._tmp = path.with_name(f".{path.name}.tmp.mp4")
        self._writer: cv2.VideoWriter | None = None
        self._opened(16, 16).release()  # before any frame is scored: can it be written here?
        self._tmp.unlink(missing_ok=True)

    def _opened(self, w: int, h: int) -> cv2.VideoWriter:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--out {self.path}: {exc.strerror or exc}") from exc
        writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, (w, h))
        if not writer.isOpened():
            raise ConfigError(f"--out {self.path}: cannot write a video there")
        return writer

    def write(self, frame: Frame, prediction: Prediction, state: str, fps: float) -> None:
        """Write ``frame``; ``fps``, the rate frames are sampled at, sets the file's rate (at
        the first frame, once the source has said its own), so the clip plays in real time."""
        bgr = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)
        if self._writer is None:
            h, w = bgr.shape[:2]
            self.fps = fps
            self._writer = self._opened(w, h)
        text = f"{prediction.label} {prediction.confidence:.2f}"
        if prediction.pet is False:
            text = f"no pet ({text})"
        colour = (60, 200, 60) if state != NO_PET else (200, 200, 200)
        cv2.putText(bgr, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2)
        cv2.putText(bgr, f"state: {state}", (8, 44), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1)
        self._writer.write(bgr)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            self._tmp.replace(self.path)


class Watcher:
    def __init__(
        self,
        reader: FrameReader,
        predictor: Callable[[], Predictor],
        *,
        tracker: EventTracker | None = None,
        camera: str = "camera",
        environment: str = "video",
        batch_size: int = 8,
        predlog: PredictionLog | None = None,
        writer: AnnotatedWriter | None = None,
        metrics: VideoMetrics | None = None,
        on_event: Callable[[Event], None] | None = None,
        on_source: Callable[[SourceEvent], None] | None = None,
    ) -> None:
        self.reader = reader
        self.predictor = predictor
        self.tracker = tracker or EventTracker()
        self.camera = camera
        self.environment = environment
        self.batch_size = batch_size
        self.predlog = predlog
        self.writer = writer
        self.metrics = metrics or VideoMetrics()
        self.on_event = on_event
        self.on_source = on_source
        self.stats = WatchStats(source=reader.source, camera=camera)

    def _prepare(self, rgb: np.ndarray) -> Prepared:
        return self.predictor().prepare_image(Image.fromarray(rgb))

    def run(self, max_seconds: float | None = None) -> WatchStats:
        began = time.monotonic()
        self.reader.preparer = self._prepare
        self.reader.start()
        try:
            while max_seconds is None or time.monotonic() - began < max_seconds:
                item = self.reader.get(timeout=0.5)
                if item is None:
                    if self.reader.finished:
                        break
                    continue
                if isinstance(item, SourceEvent):
                    self._source_event(item)
                    continue
                batch = [item]
                while len(batch) < self.batch_size and (more := self.reader.get_nowait()):
                    batch.append(more)
                self._score(batch)
                self.stats.wall_seconds = time.monotonic() - began
                self.metrics.fps.set(self.stats.fps)
        finally:
            self.reader.stop()
            # drain events the reader reported while stopping (e.g. "ended")
            while (item := self.reader.get(timeout=0)) is not None:
                if isinstance(item, SourceEvent):
                    self._source_event(item)
            if self.writer:
                self.writer.close()
        s = self.stats
        s.wall_seconds = time.monotonic() - began
        s.frames_read, s.dropped = self.reader.frames_read, self.reader.dropped
        s.frames_sampled, s.reconnects = self.reader.frames_sampled, self.reader.reconnects
        if not self.reader.live and self.reader.trusted_fps:
            s.video_seconds = s.frames_read / self.reader.trusted_fps
        self.metrics.frames.labels("read").inc(s.frames_read)
        self.metrics.frames.labels("dropped").inc(s.dropped)
        return s

    def _source_event(self, event: SourceEvent) -> None:
        self.stats.source_events.append(event)
        self.metrics.source_events.labels(event.kind).inc()
        if self.on_source:
            self.on_source(event)

    def _score(self, frames: list[Frame]) -> None:
        predictor = self.predictor()
        size = predictor.bundle.image_size
        prepared = [
            f.prepared
            if isinstance(f.prepared, Prepared) and f.prepared.tensor.shape[-1] == size
            else predictor.prepare_image(Image.fromarray(f.rgb))  # the model changed meanwhile
            for f in frames
        ]
        predictions = predictor.predict_prepared(prepared)
        now = time.monotonic()
        for frame, prediction in zip(frames, predictions, strict=True):
            latency = (now - frame.captured) * 1000
            self.stats.latencies_ms.append(latency)
            self.stats.labels[prediction.label] += 1
            if prediction.pet is False:
                self.stats.no_pet += 1
            self.stats.frames_scored += 1
            self.stats.video_seconds = max(self.stats.video_seconds, frame.t)
            self.stats.models.add(f"{prediction.model}@{prediction.version}")
            self.metrics.frames.labels("scored").inc()
            self.metrics.latency.observe(latency / 1000)
            if self.predlog is not None:
                self.predlog.add(
                    row_of(
                        prediction,
                        environment=self.environment,
                        source=self.camera,
                        input_sha256=None,
                    )
                )
            self.tracker.rate = self.reader.sampled_fps  # known once the source is open
            event = self.tracker.observe(
                frame.t, prediction.label, prediction.confidence, prediction.pet
            )
            if event:
                self.stats.events.append(event)
                if self.on_event:
                    self.on_event(event)
            if self.writer:
                self.writer.write(frame, prediction, self.tracker.state, self.reader.sampled_fps)
