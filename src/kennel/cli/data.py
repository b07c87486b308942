"""``kennel data ...``: ingest, list, show, diff, settle label disputes, synthesise datasets."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from kennel.cli.app import (
    AddressOption,
    EngineName,
    JsonOption,
    ProjectOption,
    TokenOption,
    acting,
    interruptible,
    new_app,
    opened,
)
from kennel.cli.render import console, emit_json, progress_bar, reporting, table
from kennel.display import shown

if TYPE_CHECKING:  # the data stack is imported when a command runs
    from kennel.datasets.versioning import DatasetVersion, Diff
    from kennel.db.disputes import Dispute
    from kennel.ingest.run import IngestReport

Layout = Literal["auto", "imagefolder", "flat"]  # as kennel.ingest.sources.Layout
Scenario = Literal["day", "night", "fog", "rain"]  # as kennel.datasets.synth.SCENARIOS

app = new_app("Extract, validate, version and inspect datasets.")


INGEST_HINT = "run the same command again: it goes on from the last checkpoint"


@app.command()
def ingest(
    source: Annotated[
        str,
        typer.Argument(
            help="Folder, .zip/.tar/.tar.gz, .csv/.parquet manifest, "
            "fsspec URL, or SQL URL (with --sql-table/--sql-query)."
        ),
    ],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name.")],
    layout: Annotated[
        Layout,
        typer.Option(help="imagefolder: label = folder; flat: label = file-name prefix."),
    ] = "auto",
    sql_table: Annotated[str | None, typer.Option(help="Table holding uri + label.")] = None,
    sql_query: Annotated[str | None, typer.Option(help="Query returning uri + label.")] = None,
    uri_column: Annotated[
        str, typer.Option(help="Manifest/SQL column with the image uri.")
    ] = "uri",
    label_column: Annotated[
        str, typer.Option(help="Manifest/SQL column with the label.")
    ] = "label",
    workers: Annotated[
        int,
        typer.Option(
            min=0,
            max=1024,
            help="Worker processes (0 = config; ray: CPUs of a new local Ray, 0 = all).",
        ),
    ] = 0,
    engine: Annotated[
        EngineName,
        typer.Option(help="Where files are checked: local processes or Ray tasks."),
    ] = "local",
    address: AddressOption = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Ingest SOURCE into a new version of DATASET (resumes an interrupted run)."""
    from kennel.datasets.versioning import check_name

    check_name(dataset)
    if address is not None and engine != "ray":
        raise typer.BadParameter("needs --engine ray", param_hint="--address")
    with interruptible(INGEST_HINT), opened(project) as ws:
        src = ws.source(
            source,
            layout=layout,
            sql_query=sql_query,
            sql_table=sql_table,
            uri_column=uri_column,
            label_column=label_column,
        )
        with reporting(json_out, ticking=False) as progress:
            ingestor = ws.ingestor(workers or None, engine=engine, address=address)
            # what importing made lives as long as the process: the collector's full passes
            # over a folder's entries need not walk it too (a tenth of a re-ingest)
            gc.freeze()
            report = ingestor.run(src, dataset, progress=progress)
    if json_out:
        emit_json(report.as_dict())
    else:
        _print_report(report)


# summary key, heading, word for each file: the parent's files a version left out
_LEFT_OUT = (
    ("replaced", "replaced (rewritten in place since the parent)", "rewritten"),
    ("withdrawn", "withdrawn (quarantined by the ingest that made it)", "withdrawn"),
)


def _print_report(r: IngestReport) -> None:
    verb = "created" if r.created else "unchanged: identical to existing"
    console.print(f"[bold]{r.version.ref}[/bold] {verb} version v{r.version.seq} ({r.version.id})")
    if r.resumed:
        console.print(f"resumed run {r.run_id}: {r.files - r.processed} files were already done")
    console.print(
        f"files {r.files}  added {r.added}  already present {r.already_present}  "
        + (f"replaced (rewritten in place) {r.replaced}  " if r.replaced else "")
        + (f"withdrawn (quarantined this time) {r.withdrawn}  " if r.withdrawn else "")
        + f"quarantined {sum(r.quarantined.values())}  ignored (not images) {r.ignored}  "
        f"skipped {sum(r.skipped.values())}"
    )
    if r.skipped:
        reasons = ", ".join(f"{reason} {n}" for reason, n in r.skipped.items())
        console.print(f"  skipped, never opened: {reasons}", markup=False)
    console.print(
        f"exact duplicate groups {r.exact_duplicate_groups}  "
        f"near-duplicate pairs {r.near_duplicate_pairs}  "
        f"{r.processed} checked in {r.seconds:.1f}s ({r.images_per_second:.0f} images/s)"
    )
    _warn_across(r.near_duplicates_across_splits)
    for uri, reason in r.quarantine_sample[:20]:
        console.print(f"  quarantined {uri}: {reason}", markup=False)
    _print_counts(r.version)


def _warn_across(pairs: int) -> None:
    """Near-duplicates in two splits: the held-out scores may be flattered."""
    if pairs:
        console.print(
            f"[yellow]warning[/yellow]: {pairs} near-duplicate pair(s) lie in two different "
            "splits (a test or validation picture nearly the same as another split's can "
            "flatter its scores); `kennel data show` lists a sample"
        )


def _print_counts(v: DatasetVersion) -> None:
    splits = sorted({s for c in v.counts.values() for s in c})
    rows = [
        [label, *(c.get(s, 0) for s in splits), sum(c.values())] for label, c in v.counts.items()
    ]
    table(None, ["label", *splits, "total"], rows)


@app.command("list")
def list_(
    dataset: Annotated[str | None, typer.Argument(help="Only this dataset.")] = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """List dataset versions."""
    from kennel.datasets.versioning import check_name

    if dataset is not None:
        check_name(dataset)  # a name, not a version ref (`data show NAME@v1` shows one)
    with opened(project) as ws:
        versions = ws.catalog.versions(dataset)
        if dataset is not None and not versions:
            ws.catalog.resolve(dataset)  # no such dataset: the one-line error `data show` gives
    if json_out:
        emit_json([v.as_dict() for v in versions])
        return
    table(
        "dataset versions",
        ["ref", "seq", "rows", "parent", "created"],
        [
            [
                v.ref,
                f"v{v.seq}",
                v.n_rows,
                (v.parent_id or "-")[:12],
                f"{v.created_at:%Y-%m-%d %H:%M:%S}",
            ]
            for v in versions
        ],
    )


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@latest, NAME@vN or NAME@<id prefix>.")],
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show a version: counts per label and split, duplicates, quarantine summary."""
    with opened(project) as ws:
        version = ws.catalog.resolve(ref)
    if json_out:
        emit_json(version.as_dict())
        return
    s = version.summary
    console.print(f"[bold]{version.ref}[/bold] v{version.seq}  id {version.id}")
    console.print(f"parent {version.parent_id or '-'}  manifest sha256:{version.manifest_sha256}")
    console.print(f"source {s.get('source', '-')}", markup=False)
    _print_counts(version)
    console.print(
        f"exact duplicate groups {s.get('exact_duplicate_groups', 0)}  "
        f"near-duplicate pairs {s.get('near_duplicate_pairs', 0)}"
    )
    for group in s.get("exact_duplicates_sample", [])[:10]:
        console.print("  same bytes: " + ", ".join(map(shown, group)), markup=False)
    for key, heading, word in _LEFT_OUT:  # the parent's rows this version does not hold
        if s.get(key):
            console.print(f"{heading} {s[key]}")
            for uri in s.get(f"{key}_sample", [])[:10]:
                console.print(f"  {word}: {shown(uri)}", markup=False)
    _warn_across(s.get("near_duplicates_across_splits", 0))
    for a, b, bits in s.get("near_duplicates_across_splits_sample", [])[:10]:
        console.print(f"  in two splits ({bits} bits apart): {shown(a)}, {shown(b)}", markup=False)
    quarantined = s.get("quarantined", {})
    console.print(
        "quarantined by the ingest that made it: "
        + (", ".join(f"{k} {n}" for k, n in quarantined.items()) or "none"),
        markup=False,  # a kind may quote the source's data
    )


@app.command()
def diff(
    a: Annotated[str, typer.Argument(help="Older version ref.")],
    b: Annotated[str, typer.Argument(help="Newer version ref.")],
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Rows to print per section.")] = 20,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """What changed between two versions: added, removed, relabelled, moved split."""
    with opened(project) as ws:
        d = ws.catalog.diff(ws.catalog.resolve(a), ws.catalog.resolve(b))
    if json_out:
        emit_json(_diff_dict(d))
        return
    console.print(
        f"{d.a.ref} -> {d.b.ref}: +{len(d.added)} -{len(d.removed)} "
        f"relabelled {len(d.relabelled)} moved split {len(d.resplit)}"
    )
    for row in d.added[:limit]:
        console.print(f"  + {row.uri} [{row.label}/{row.split}]", markup=False)
    for row in d.removed[:limit]:
        console.print(f"  - {row.uri} [{row.label}/{row.split}]", markup=False)


def _diff_dict(d: Diff) -> dict[str, object]:
    def brief(row: object) -> dict[str, object]:
        return {k: getattr(row, k) for k in ("uri", "sha256", "label", "split")}

    return {
        "a": d.a.ref,
        "b": d.b.ref,
        "added": [brief(r) for r in d.added],
        "removed": [brief(r) for r in d.removed],
        "relabelled": [[brief(x), brief(y)] for x, y in d.relabelled],
        "resplit": [[brief(x), brief(y)] for x, y in d.resplit],
    }


@app.command()
def disputes(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """List content ingests found under two labels: kept out until settled."""
    from kennel.db.ingest import IngestStore
    from kennel.ingest.disputes import listed

    with opened(project) as ws:
        found = listed(IngestStore(ws.db), ws.catalog, dataset)
    if json_out:
        emit_json([_dispute_dict(d) for d in found])
        return
    table(
        f"label disputes in {dataset}",
        ["sha256", "offered as", "seen", "settled as", "by"],
        [
            [d.sha256, ", ".join(d.labels), f"{d.seen_at:%Y-%m-%d %H:%M}",
             d.settled_label or "-", d.settled_by or "-"]
            for d in found
        ],
    )  # fmt: skip


@app.command()
def settle(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    content: Annotated[
        str,
        typer.Argument(
            help="The disputed content: its sha256 (or sha256: and 8+ of its first digits), "
            "or a file's uri as ingested."
        ),
    ],
    label: Annotated[str, typer.Option("--label", help="The right label for that content.")],
    token: TokenOption = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Settle a label dispute: later ingests take the content under LABEL only."""
    from kennel.db.ingest import IngestStore
    from kennel.errors import AuthError
    from kennel.ingest.disputes import settle as settled

    with opened(project) as ws:
        who = acting(ws, token)
        if not who.may("feedback"):  # naming a picture's true label, as feedback does
            raise AuthError(
                f"role {who.role!r} may not settle labels (it takes {who.roles_for('feedback')})"
            )
        store, labels = IngestStore(ws.db), ws.project.config.data.labels
        d, changed = settled(store, ws.catalog, dataset, content, label, labels=labels,
                             actor=who.name)  # fmt: skip
    if json_out:
        emit_json({**_dispute_dict(d), "changed": changed})
        return
    said = "; ingest its files again to add it" if changed else " already: nothing recorded"
    console.print(f"sha256:{d.sha256[:12]} in {dataset} settled as {label!r}{said}", markup=False)


def _dispute_dict(d: Dispute) -> dict[str, object]:
    return {
        "dataset": d.dataset,
        "sha256": d.sha256,
        "labels": list(d.labels),
        "files": d.files,
        "run_id": d.run_id,
        "seen_at": d.seen_at.isoformat(),
        "settled_label": d.settled_label,
        "settled_by": d.settled_by,
        "settled_at": d.settled_at.isoformat() if d.settled_at else None,
    }


@app.command("synth")
def synth_(
    out: Annotated[Path, typer.Argument(help="Output folder (ImageFolder layout + manifest.csv).")],
    count: Annotated[int, typer.Option(min=1, max=1_000_000, help="Number of images.")] = 1000,
    seed: Annotated[
        int, typer.Option(min=0, max=2**32 - 1, help="Random seed; same seed, same images.")
    ] = 0,
    scenario: Annotated[Scenario, typer.Option(help="Lighting and weather.")] = "day",
    size: Annotated[int, typer.Option(min=32, max=1024, help="Image side in pixels.")] = 200,
    start: Annotated[int, typer.Option(min=0, max=10**12, help="First image index.")] = 0,
    workers: Annotated[int, typer.Option(min=0, max=1024, help="Processes (0 = all cores).")] = 0,
    empty: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of empty park scenes (label 'empty').")
    ] = 0.0,
    json_out: JsonOption = False,
) -> None:
    """Draw pet park CCTV images of cats and dogs (the simulator)."""
    import os
    import time

    from kennel.datasets import synth

    began = time.perf_counter()
    with progress_bar("drawing", enabled=not json_out) as update:
        items = synth.generate(
            out,
            count,
            seed=seed,
            scenario=scenario,
            size=size,
            start=start,
            workers=workers or os.cpu_count() or 1,
            empty=empty,
            progress=update,
        )
    seconds = time.perf_counter() - began
    labels = {
        label: sum(1 for i in items if i.label == label) for label in (*synth.LABELS, synth.EMPTY)
    }
    result = {
        "out": str(out),
        "count": len(items),
        "labels": labels,
        "scenario": scenario,
        "seed": seed,
        "seconds": round(seconds, 2),
        "images_per_second": round(len(items) / seconds, 1),
    }
    if json_out:
        emit_json(result)
    else:
        console.print(
            f"wrote {len(items)} {scenario} images to {out} ({labels['cat']} cats, "
            f"{labels['dog']} dogs) in {seconds:.1f}s; manifest: {out / synth.MANIFEST}",
            markup=False,
        )
