"""``kennel watch`` and ``kennel data synth-video``: live CCTV classification and test clips."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import unquote

import typer
from rich.markup import escape

from kennel.cli.app import (
    JsonOption,
    ProjectOption,
    ReplaceOption,
    UngatedOption,
    label_option,
    opened,
    served_model,
)
from kennel.cli.render import console, emit_json
from kennel.errors import ConfigError, SourceError
from kennel.fsutil import outside_state, refuse_existing

if TYPE_CHECKING:  # imported where used, so that `kennel --help` starts at once
    pass


def watch(
    source: Annotated[str, typer.Argument(help="Video file, RTSP/HTTP URL or camera index.")],
    model: Annotated[
        str | None, typer.Option("--model", help="NAME@VERSION or NAME@ALIAS.")
    ] = None,
    env: Annotated[
        str | None, typer.Option("--env", help="Follow the model ENV serves (hot swaps).")
    ] = None,
    fps: Annotated[
        float, typer.Option(min=0, max=1000, help="Frames to score per second (0 = all).")
    ] = 5.0,
    batch: Annotated[
        int, typer.Option(min=1, max=1024, help="Most frames per inference call.")
    ] = 8,
    hold: Annotated[int, typer.Option(min=1, max=100_000, help="Frames a label must hold.")] = 3,
    hold_seconds: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=3600,
            help="Seconds of video those frames must cover too (default: what --hold frames "
            "cover at 5 fps, so that at --fps 0 a few misread frames are no event; "
            "0: frames only).",
            show_default=False,
        ),
    ] = None,
    enter: Annotated[
        float, typer.Option(min=0, max=1, help="Confidence to believe a new label.")
    ] = 0.7,
    leave: Annotated[
        float, typer.Option(min=0, max=1, help="Confidence under which a pet is let go.")
    ] = 0.5,
    camera: Annotated[str, label_option("Camera id (the prediction log's source).")] = "",
    out: Annotated[Path | None, typer.Option(help="Write an annotated video here (.mp4).")] = None,
    force: ReplaceOption = False,
    duration: Annotated[
        float | None, typer.Option(min=0, max=31_536_000, help="Stop after this many seconds.")
    ] = None,
    log: Annotated[bool, typer.Option(help="Log every scored frame.")] = True,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Expose Prometheus metrics on 127.0.0.1:PORT."),
    ] = None,
    ungated: UngatedOption = False,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Classify a CCTV stream in real time and print events ("dog entered at 00:03.2")."""
    from kennel.video.capture import FrameReader, SourceEvent, describe
    from kennel.video.events import Event, EventTracker
    from kennel.video.watch import AnnotatedWriter, VideoMetrics, Watcher

    if duration is not None and duration <= 0:
        raise typer.BadParameter(f"{duration:g} is not above 0 seconds", param_hint="--duration")
    if enter < leave:
        raise typer.BadParameter(
            f"{enter:g} is below --leave {leave:g}: a pet announced at that confidence would be "
            "let go at once",
            param_hint="--enter",
        )
    if out is not None and out.is_file() and any(_same(out, f) for f in _files_named(source)):
        raise ConfigError(f"--out {out} is the video being watched; name another file")
    # a bad --out is said first; the file's rate is set at its first frame (the sampled rate)
    writer = AnnotatedWriter(out, fps or 25.0) if out else None
    if out is not None:  # a folder or another suffix is said first, by the writer
        refuse_existing(out, force=force)
    reader = FrameReader(source, target_fps=fps or None)
    camera_id = camera or f"camera:{Path(reader.source).name if not reader.live else source}"
    metrics = VideoMetrics()
    if metrics_port:
        from prometheus_client import start_http_server

        try:
            start_http_server(metrics_port, addr="127.0.0.1", registry=metrics.registry)
        except OSError as exc:
            raise ConfigError(f"--metrics-port {metrics_port}: {exc.strerror or exc}") from exc

    def on_event(e: Event) -> None:
        if not json_out:
            console.print(e.describe(), markup=False)

    def on_source(e: SourceEvent) -> None:
        if not json_out and e.kind not in ("opened", "ended", "failed"):  # failed: the error
            console.print(f"[yellow]source {e.kind}[/]: {escape(e.detail)}")

    with opened(project) as ws, served_model(ws, model, env, ungated=ungated) as served:
        if out is not None:
            outside_state(out, ws.project.state_dir)
        reader.max_pixels = ws.project.config.data.max_pixels
        predlog = None
        if log:
            # named by the camera, so that a killed watch's journal is drained by the next
            # watch of that camera (Python's hash() of a string differs in every process)
            name = hashlib.sha256(camera_id.encode()).hexdigest()[:16]
            predlog = ws.prediction_log(f"video-{name}")
            predlog.start()
        watcher = Watcher(
            reader,
            served,
            tracker=EventTracker(hold=hold, hold_seconds=hold_seconds, enter=enter, leave=leave),
            camera=camera_id,
            environment=env or "video",
            batch_size=batch,
            predlog=predlog,
            writer=writer,
            metrics=metrics,
            on_event=on_event,
            on_source=on_source,
        )
        try:
            stats = watcher.run(max_seconds=duration)
        except KeyboardInterrupt:
            stats = watcher.stats
        finally:
            if predlog is not None:
                predlog.stop()
    failed = [e.detail for e in stats.source_events if e.kind == "failed"]
    if failed and not stats.frames_read:  # nothing was watched: the error is all there is
        raise SourceError(failed[-1])
    if not stats.frames_read:  # an empty or cut file, or a camera that never opened in time
        said = [e.detail for e in stats.source_events if e.kind in ("truncated", "reconnecting")]
        why = f": {said[-1]}" if said else ""
        raise SourceError(f"no frame could be read from {describe(reader.source)}{why}")
    result = stats.as_dict()
    if json_out:
        emit_json(result)
    else:
        lat = result["latency_ms"]
        console.print(
            f"{stats.frames_scored} frames scored of {stats.frames_read} read in "
            f"{stats.wall_seconds:.1f}s ({stats.fps:.1f} fps, {stats.realtime_factor:.1f}x "
            f"real time), latency p50 {lat['p50']} ms p99 {lat['p99']} ms, {stats.dropped} "
            f"dropped, {stats.reconnects} reconnects; labels {dict(stats.labels)}"
        )
    if failed:  # the source gave up before the watch was over (a camera that did not return)
        raise SourceError(f"{failed[-1]} (after {stats.frames_read} frames)")


def synth_video(
    out: Annotated[Path, typer.Argument(help="The clip to write (.mp4).")],
    dataset: Annotated[
        str, typer.Option(help="Dataset NAME or NAME@VERSION whose test images to show.")
    ],
    segments: Annotated[int, typer.Option(min=1, max=1000, help="Number of segments.")] = 6,
    seconds: Annotated[float, typer.Option(min=0.2, max=3600, help="Seconds per segment.")] = 3.0,
    fps: Annotated[float, typer.Option(min=1, max=240, help="Frames per second.")] = 10.0,
    size: Annotated[int, typer.Option(min=64, max=1024, help="Frame side in pixels.")] = 224,
    scenario: Annotated[str, typer.Option(help="day or night.")] = "day",
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Random seed.")] = 0,
    force: ReplaceOption = False,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Make a CCTV-like clip (pan, zoom, noise, day/night) with a ground-truth timeline."""
    import random

    from kennel.datasets.manifest import Row
    from kennel.imaging import decode
    from kennel.video import synth as clips
    from kennel.video.events import clock

    clips.check_out(out)  # before any image is read
    refuse_existing(out, force=force)
    with opened(project) as ws:
        outside_state(out, ws.project.state_dir, "OUT")
        version = ws.catalog.resolve(dataset)
        rows = [r for r in ws.catalog.rows(version) if r.split == "test"]
        by_label: dict[str, list[Row]] = {}
        for row in rows:
            by_label.setdefault(row.label, []).append(row)
        if not by_label:
            raise ConfigError(f"dataset {version.ref} has no test images")
        rng = random.Random(seed)
        shots = []
        for k, label in enumerate(clips.plan(sorted(by_label), segments, seed)):
            if label not in by_label:  # the empty park, from the simulator
                shots.append((label, clips.empty_park(seed * 1000 + k), f"synth:park:{k}"))
                continue
            row = rng.choice(by_label[label])
            shots.append((label, decode(ws.content.get(row.sha256)).image, row.uri))
    timeline = clips.make_clip(
        out, shots, seconds=seconds, fps=fps, size=size, scenario=scenario, seed=seed
    )
    result = {
        "clip": str(out),
        "timeline": str(clips.timeline_path(out)),
        "segments": [s.__dict__ for s in timeline],
    }
    if json_out:
        emit_json(result)
        return
    for s in timeline:
        console.print(f"{clock(s.start)}-{clock(s.end)}  {s.label:6}  {s.source}", markup=False)
    console.print(f"wrote {out} and {clips.timeline_path(out)}", markup=False)


def _files_named(source: str) -> list[Path]:
    """Every file a source may name: the path itself, and what OpenCV's FFmpeg would open
    inside a URL or a protocol wrapper (``file:///a.mp4``, ``cache:file:a.mp4``,
    ``concat:a.mp4|b.mp4``, ``subfile,,start,0,end,0,,:a.mp4``), percent-decoded."""
    found = [Path(source)]
    for piece in re.split(r"[|,]", unquote(source)):
        while piece:
            found.append(Path(piece))
            _scheme, colon, piece = piece.partition(":")
            if not colon:
                break
            if piece.startswith("//"):  # an authority, maybe empty: //host/path or ///path
                _host, slash, path = piece[2:].partition("/")
                piece = "/" + path if slash else ""
    return found


def _same(out: Path, candidate: Path) -> bool:
    try:
        return candidate.is_file() and out.samefile(candidate)
    except (OSError, ValueError):  # a name too long, or with a NUL: no file of ours
        return False
