"""``kennel batch-score`` and ``kennel batch-read``: offline predictions in a shared table."""

from __future__ import annotations

import hashlib
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kennel.cli.app import (
    AddressOption,
    EngineName,
    JsonOption,
    ProjectOption,
    TokenOption,
    UngatedOption,
    acting,
    model_ref,
    new_app,
    opened,
    served_model,
)
from kennel.cli.render import console, emit_json, reporting
from kennel.display import redact
from kennel.errors import ConfigError

if TYPE_CHECKING:  # imported where used, so that `kennel --help` starts at once
    from kennel.wiring import Workspace

RPC_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"  # kennel.stream.rpc.DEFAULT_URL
RPC_QUEUE = "kennel.predict"  # kennel.stream.rpc.DEFAULT_QUEUE


def _inputs(ws: Workspace, spec: str) -> tuple[Iterator[tuple[str, bytes | str]], int]:
    """The inputs' (uri, bytes or read error), read as they are scored, and how many there
    are. The version or source is resolved and listed now: one that does not exist is an
    error before anything is written (the shared table included), and so is one that lists no
    input (as ``kennel predict`` refuses an empty folder, and ingest an empty source). Manifest
    rows need no label: these inputs are to be labelled by the model."""
    from kennel.ingest.nothing import nothing_found

    if spec.startswith("dataset:"):
        version = ws.catalog.resolve(spec.removeprefix("dataset:"))
        rows = ws.catalog.rows(version)
        return ((row.uri, ws.content.get(row.sha256)) for row in rows), len(rows)
    source = ws.source(spec, require_labels=False)
    listing = source.scan()
    if not listing.entries:
        raise nothing_found(source, listing)
    entries = listing.entries
    return ((entry.uri, data) for entry, data in source.read(entries)), len(entries)


def batch_score(
    input_spec: Annotated[
        str,
        typer.Option(
            "--input",
            help="Folder, archive, manifest, fsspec URL, dataset:NAME or dataset:NAME@VERSION.",
        ),
    ],
    table: Annotated[str, typer.Option(help="Shared table to write predictions into.")],
    model: Annotated[
        str | None, typer.Option("--model", help="NAME@VERSION or NAME@ALIAS.")
    ] = None,
    env: Annotated[str | None, typer.Option("--env", help="Use the model ENV serves.")] = None,
    db: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (default: the metadata DB).")
    ] = None,
    engine: Annotated[
        EngineName, typer.Option(help="Where chunks are scored: this process or Ray tasks.")
    ] = "local",
    address: AddressOption = None,
    ungated: UngatedOption = False,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Score inputs offline into a shared table (idempotent; schedule it with cron)."""
    from kennel.db.engine import database_url
    from kennel.db.scores import check_table_name
    from kennel.stream import batch

    if address is not None and engine != "ray":
        raise typer.BadParameter("needs --engine ray", param_hint="--address")
    check_table_name(table)  # a bad name, or one of kennel's tables, before any model loads
    if db is not None:
        database_url(db, "--db")  # a bad URL is one line before any model is loaded
    with opened(project) as ws, reporting(json_out) as progress:
        predictor = ws.predictor(model_ref(ws, model, env, ungated=ungated))
        inputs, total = _inputs(ws, input_spec)
        report = batch.score(
            predictor,
            inputs,
            db_url=db or ws.project.metadata_url,
            table=table,
            progress=progress,
            total=total,
            scorer=ws.scorer(predictor, engine=engine, address=address),
        )
    if json_out:
        emit_json(report.as_dict())
    else:
        console.print(
            f"{report.inputs} inputs scored by {report.model}@{report.version} into "
            f"{report.table}: {report.inserted} new, {report.already_scored} already "
            f"there, {report.errors} unreadable ({report.images_per_second:.0f}/s)",
            markup=False,
        )


def batch_read(
    uri: Annotated[str, typer.Argument(help="The input uri to look up.")],
    table: Annotated[str, typer.Option(help="The shared predictions table.")],
    db: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (default: the metadata DB).")
    ] = None,
    project: ProjectOption = None,
) -> None:
    """The example reader: stored predictions for one input (JSON)."""
    from kennel.db.scores import check_table_name
    from kennel.stream import batch

    check_table_name(table)
    with opened(project) as ws:
        rows = batch.read(db or ws.project.metadata_url, table, uri)
    emit_json(rows)


def rpc_worker(
    model: Annotated[
        str | None, typer.Option("--model", help="NAME@VERSION or NAME@ALIAS.")
    ] = None,
    env: Annotated[str | None, typer.Option("--env", help="Use the model ENV serves.")] = None,
    url: Annotated[str, typer.Option(help="AMQP URL.")] = RPC_URL,
    queue: Annotated[str, typer.Option(help="Request queue.")] = RPC_QUEUE,
    ungated: UngatedOption = False,
    project: ProjectOption = None,
) -> None:
    """Serve predictions over RabbitMQ RPC (request queue, reply-to, correlation id)."""
    from kennel.stream import rpc

    rpc.parameters(url, "--url")  # a mistyped URL or queue is told before the model loads
    rpc.check_queue(queue)
    with opened(project) as ws, served_model(ws, model, env, ungated=ungated) as served:
        # every answer recorded, as the REST service's
        predlog = ws.prediction_log(f"rpc-{hashlib.sha256(queue.encode()).hexdigest()[:16]}",
                                    keep_inputs=True)  # fmt: skip
        worker = rpc.RpcWorker(
            served,
            url=url,
            queue=queue,
            predlog=predlog,
            environment=env or "rpc",
            keep_inputs=predlog.inputs is not None,
            max_bytes=ws.project.config.serve.max_upload_bytes,
        )

        def ready() -> None:
            now = served()
            follows = f" (following {env})" if env else ""
            console.print(f"serving {now.name}@{now.version}{follows} on {queue} at "
                          f"{redact(url)}", markup=False)  # fmt: skip

        predlog.start()
        # a supervisor's SIGTERM stops it as Ctrl-C does: the log is drained on the way out
        signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        try:
            worker.run(on_ready=ready)
        except KeyboardInterrupt:
            worker.stop()
        finally:
            predlog.stop()


def publish(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION or NAME@ALIAS.")],
    alias: Annotated[str, typer.Option(help="The alias it is announced for.")] = "production",
    token: TokenOption = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Announce again on the feed the version ALIAS names (pattern 3).

    Releases announce by themselves; only a release moves what subscribers load.
    """
    with opened(project) as ws:
        done = ws.releases().publish(ref, alias, who=acting(ws, token))
    if json_out:
        emit_json({"model": done.model, "version": done.version, "requested": ref,
                   "alias": done.alias, "stream": done.stream, "entry": done.entry})  # fmt: skip
    else:
        # the version announced, which subscribers load, and the alias it was named by if any
        named = f" ({ref})" if ref != done.model else ""
        console.print(f"published {done.model}{named} for {alias} on {done.stream} "
                      f"(entry {done.entry})", markup=False)  # fmt: skip


def subscribe(
    alias: Annotated[str, typer.Option(help="Follow announcements for this alias.")] = (
        "production"
    ),
    url: Annotated[str | None, typer.Option(help="Feed URL (default: feed.url).")] = None,
    stream: Annotated[str | None, typer.Option(help="Stream (default: feed.stream).")] = None,
    public_key: Annotated[
        Path | None,
        typer.Option(help="The publisher's Ed25519 public key (default: this project's)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            min=1,
            max=65535,
            help="Port of the consumer's prediction API (kennel ui's default is 8090).",
        ),
    ] = 8091,
    project: ProjectOption = None,
) -> None:
    """Run a consuming app whose model arrives on the feed, hot-loaded and verified."""
    import uvicorn
    from rich.markup import escape

    from kennel.serve.hosts import loopback_hosts
    from kennel.serve.server import server_config
    from kennel.stream import signing
    from kennel.stream.consumer import create_consumer_app
    from kennel.stream.feed import RedisFeed
    from kennel.stream.subscriber import Loaded, ModelSubscriber, Rejection

    with opened(project) as ws:
        config = ws.project.config
        key_path = public_key or ws.project.state_dir / "keys" / signing.PUBLIC
        state_root = ws.project.state_dir / "feed"
    feed_url = url or config.feed.url
    if not feed_url:
        raise ConfigError("no feed: pass --url or set feed.url in kennel.yaml")
    feed = RedisFeed(feed_url, stream or config.feed.stream)  # no connection yet
    key = signing.load_public(key_path)  # refused before anything is read from the feed
    # the highest accepted sequence per stream and alias survives restarts (no replayed downgrade)
    state_dir = state_root / re.sub(r"[^A-Za-z0-9_-]", "_", f"{feed.stream}--{alias}")

    def loaded(x: Loaded) -> None:
        console.print(f"loaded {x.name}@{x.version} (entry {x.entry})", markup=False)

    def refused(x: Rejection) -> None:
        console.print(f"[red]refused[/] entry {escape(x.entry)}: {escape(x.reason)}")

    subscriber = ModelSubscriber(
        feed,
        key,
        name=config.model.name,
        alias=alias,
        max_pixels=config.serve.max_pixels,
        prefer_int8=config.serve.prefer_int8,
        state_dir=state_dir,
        on_load=loaded,
        on_reject=refused,
    )
    subscriber.start()
    console.print(
        f"following {feed.stream} at {redact(feed_url)}; predictions on http://{host}:{port}",
        markup=False,
    )
    try:
        app = create_consumer_app(
            subscriber,
            body_timeout_s=config.serve.body_timeout_s,
            hosts=loopback_hosts(host, config.serve.hosts),
        )
        uvicorn.Server(server_config(app, config.serve, host=host, port=port)).run()
    finally:
        subscriber.stop()
        feed.close()


bench_app = new_app("Measure kennel on this machine.")


@bench_app.command("patterns")
def bench_patterns(
    env: Annotated[str, typer.Option(help="Benchmark the model this environment serves.")] = (
        "production"
    ),
    images: Annotated[int, typer.Option(min=10, max=1_000_000, help="Test images to send.")] = 200,
    concurrency: Annotated[int, typer.Option(min=1, max=1024, help="Parallel callers.")] = 8,
    db: Annotated[
        str | None, typer.Option(help="Shared DB for pattern 4 (default: a temp SQLite file).")
    ] = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """The four deployment patterns on one bundle: latency p50/p99 and throughput."""
    from kennel.bench import run_patterns, test_images
    from kennel.cli.render import table

    with opened(project) as ws:
        data = test_images(ws, env, images)
        with reporting(json_out) as progress:
            results = run_patterns(
                ws, data, env=env, concurrency=concurrency, db_url=db, progress=progress
            )
    if json_out:
        emit_json({"images": len(data), "results": [r.as_dict() for r in results]})
        return
    table(
        f"deployment patterns, {len(data)} images",
        ["pattern", "transport", "p50 ms", "p99 ms", "img/s", "note"],
        [
            [
                r.pattern,
                r.transport,
                f"{r.p50_ms:.1f}",
                f"{r.p99_ms:.1f}",
                f"{r.throughput:.0f}",
                r.note,
            ]
            for r in results
        ],
    )
