"""Kind-specific behaviour of the sources (layouts, manifests, SQL options, confinement roots);
what every source promises is checked once over all of them in test_source_contract.py."""

from __future__ import annotations

import csv
import io
import os
import tarfile
import uuid
import zipfile
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text

from kennel.errors import SourceError
from kennel.ingest.sources import detect_layout, label_for, open_source
from kennel.wiring import Workspace
from tests.helpers import labelled_jpegs, write_tree

LABELS = ("cat", "dog")


def _labels(spec: str, **kw: str) -> dict[str, str | None]:
    source = open_source(spec, labels=LABELS, **kw)  # type: ignore[arg-type]
    listing = source.scan()
    assert all(isinstance(data, bytes) for _entry, data in source.read(listing.entries))
    return {Path(e.uri.split("::")[0]).name: e.label for e in listing.entries}


@pytest.fixture
def files() -> dict[str, bytes]:
    return labelled_jpegs(6)


def test_imagefolder_and_ignored_files(tmp_path: Path, files: dict[str, bytes]) -> None:
    write_tree(tmp_path, {**files, "README.txt": b"hi", ".hidden/cat/x.jpg": b"x"})
    source = open_source(str(tmp_path), labels=LABELS)
    listing = source.scan()
    assert len(listing.entries) == 6 and listing.ignored == 1
    assert {e.label for e in listing.entries} == {"cat", "dog"}


def test_flat_layout_in_zip_and_tar(tmp_path: Path, files: dict[str, bytes]) -> None:
    flat = {f"train/{Path(k).parent.name}.{i}.jpg": v for i, (k, v) in enumerate(files.items())}
    with zipfile.ZipFile(tmp_path / "lake.zip", "w") as archive:
        for name, data in flat.items():
            archive.writestr(name, data)
    with tarfile.open(tmp_path / "lake.tar.gz", "w:gz") as archive:
        for name, data in flat.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    expected = {Path(k).name: k.split("/")[1].split(".")[0] for k in flat}
    assert _labels(str(tmp_path / "lake.zip")) == expected
    assert _labels(str(tmp_path / "lake.tar.gz")) == expected
    # recorded uris open again through fsspec (lineage relies on it)
    entry = open_source(str(tmp_path / "lake.zip")).scan().entries[0]
    with fsspec.open(entry.uri, "rb") as handle:
        assert handle.read() == flat[entry.uri[len("zip://") : entry.uri.index("::")]]


def test_layout_detection() -> None:
    assert detect_layout(["train/cat.1.jpg", "train/dog.2.jpg"]) == "flat"
    assert detect_layout(["cat/day-1-0001.jpg", "dog/day-1-0002.jpg"], LABELS) == "imagefolder"
    assert detect_layout(["cat/a.jpg", "dog/b.jpg"]) == "imagefolder"
    assert label_for("train/Dog.77.jpg", "flat") == "dog"
    assert label_for("pets/cat/1.jpg", "imagefolder") == "cat"


def test_csv_and_parquet_manifests(tmp_path: Path, files: dict[str, bytes]) -> None:
    write_tree(tmp_path / "imgs", files)
    rows = [
        {"uri": f"imgs/{k}", "label": k.split("/")[0], "camera": f"cam{i % 2}"}
        for i, k in enumerate(files)
    ]
    with open(tmp_path / "m.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["uri", "label", "camera"])
        writer.writeheader()
        writer.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    for name in ("m.csv", "m.parquet"):
        source = open_source(str(tmp_path / name))
        entries = source.scan().entries
        assert len(entries) == 6 and {e.attrs["camera"] for e in entries} == {"cam0", "cam1"}
        assert all(isinstance(d, bytes) for _e, d in source.read(entries))


def test_manifest_rows_outside_allowed_roots_are_refused_unread(
    tmp_path: Path, files: dict[str, bytes]
) -> None:
    write_tree(tmp_path / "imgs", files)
    (tmp_path / "m").mkdir()
    rel = next(iter(files))
    outside = [
        f"../imgs/{rel}",
        str(tmp_path / "imgs" / rel),
        f"file://{tmp_path / 'imgs' / rel}",
        "s3://bucket/x.jpg",
    ]
    (tmp_path / "m" / "m.csv").write_text("uri,label\n" + "".join(f"{u},cat\n" for u in outside))
    source = open_source(str(tmp_path / "m" / "m.csv"))
    reasons = {e.uri: data for e, data in source.read(source.scan().entries)}
    assert set(reasons) == set(outside)  # recorded as written, never resolved nor read
    for row, uri in enumerate(outside, start=1):
        assert isinstance(reasons[uri], str)
        assert str(reasons[uri]).startswith(f"outside allowed roots: row {row} "), reasons[uri]
    allowed = open_source(
        str(tmp_path / "m" / "m.csv"), allowed_roots=[str(tmp_path / "imgs"), "s3://bucket/"]
    )
    placed = {e.uri for e in allowed.scan().entries}
    assert placed == {str(tmp_path / "imgs" / rel), "s3://bucket/x.jpg"}
    data = {e.uri: d for e, d in allowed.read(allowed.scan().entries)}
    assert data[str(tmp_path / "imgs" / rel)] == files[rel]
    # an allowed row whose backend fails (no such bucket, no credentials, no network) is
    # that row's reason, whatever the backend raises, and the rest of the manifest is read
    assert str(data["s3://bucket/x.jpg"]).startswith("unreadable: ")


def test_fsspec_url_source(files: dict[str, bytes]) -> None:
    root = f"memory://lake-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    for rel, data in files.items():
        fs.pipe_file(f"{root}/pets/{rel}", data)
    try:
        labels = _labels(f"{root}/pets")
        assert sorted(labels.values()) == ["cat"] * 3 + ["dog"] * 3
    finally:
        fs.rm(root.removeprefix("memory://"), recursive=True)


def test_sql_source(tmp_path: Path, files: dict[str, bytes], metadata_url: str) -> None:
    write_tree(tmp_path / "imgs", files)
    engine = create_engine(metadata_url)
    with engine.begin() as c:
        c.execute(text("CREATE TABLE lake_images (uri TEXT, label TEXT, camera TEXT)"))
        for i, k in enumerate(files):
            c.execute(
                text("INSERT INTO lake_images VALUES (:u, :l, :c)"),
                {"u": str(tmp_path / "imgs" / k), "l": k.split("/")[0], "c": f"cam{i}"},
            )
    engine.dispose()
    by_table = open_source(metadata_url, sql_table="lake_images").scan().entries
    by_query = (
        open_source(
            metadata_url, sql_query="SELECT uri, label FROM lake_images WHERE label = 'dog'"
        )
        .scan()
        .entries
    )
    assert len(by_table) == 6 and len(by_query) == 3
    with pytest.raises(SourceError, match="exactly one"):
        open_source(metadata_url)
    with pytest.raises(SourceError, match="invalid SQL table"):
        open_source(metadata_url, sql_table="x; DROP TABLE y")


def test_ingest_from_each_source_kind(
    workspace: Workspace, tmp_path: Path, files: dict[str, bytes]
) -> None:
    write_tree(tmp_path / "folder", files)
    with zipfile.ZipFile(tmp_path / "same.zip", "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    first = workspace.ingestor().run(workspace.source(str(tmp_path / "folder")), "pets")
    assert first.added == 6 and first.created
    second = workspace.ingestor().run(workspace.source(str(tmp_path / "same.zip")), "pets")
    assert second.added == 0 and second.already_present == 6
    assert second.version.id == first.version.id and not second.created


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "nope"))
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(SourceError, match="cannot read as a dataset"):
        open_source(str(tmp_path / "file.bin"))


def test_reads_stop_at_the_size_limit(tmp_path: Path) -> None:
    data = os.urandom(5 * (1 << 20) // 2)  # 2.5 MiB: more than one read piece
    write_tree(tmp_path / "lake", {"cat/big.jpg": data})
    root = f"memory://limit-{uuid.uuid4().hex}"
    fsspec.filesystem("memory").pipe_file(f"{root}/cat/big.jpg", data)
    try:
        for spec in (str(tmp_path / "lake"), root):
            small = open_source(spec, max_bytes=2 << 20)
            [(_e, refused)] = list(small.read(small.scan().entries))
            assert isinstance(refused, str) and refused.startswith("file too large: ")
            large = open_source(spec, max_bytes=3 << 20)
            [(_e, read)] = list(large.read(large.scan().entries))
            assert read == data
    finally:
        fsspec.filesystem("memory").rm(root.removeprefix("memory://"), recursive=True)


def test_remote_manifest_rows_stay_under_its_folder(files: dict[str, bytes]) -> None:
    root = f"memory://manifest-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    rel = next(iter(files))
    fs.pipe_file(f"{root}/lake/{rel}", files[rel])
    fs.pipe_file(f"{root}/other/x.jpg", files[rel])
    fs.pipe_file(f"{root}/lake/m.csv", f"uri,label\n{rel},cat\n../other/x.jpg,cat\n".encode())
    try:
        source = open_source(f"{root}/lake/m.csv")
        read = {e.uri: d for e, d in source.read(source.scan().entries)}
        assert read[f"{root}/lake/{rel}"] == files[rel]
        assert str(read["../other/x.jpg"]).startswith("outside allowed roots: row 2 ")
        allowed = open_source(f"{root}/lake/m.csv", allowed_roots=[f"{root}/other"])
        assert f"{root}/other/x.jpg" in {e.uri for e in allowed.scan().entries}
    finally:
        fs.rm(root.removeprefix("memory://"), recursive=True)


def test_sql_options_on_another_source_are_refused(tmp_path: Path, files: dict[str, bytes]) -> None:
    """``kennel data ingest FOLDER --sql-table X`` ingested the folder and ignored X."""
    write_tree(tmp_path / "folder", files)
    folder = str(tmp_path / "folder")
    with pytest.raises(SourceError, match=r"^--sql-table is for a SQL URL source, and '.*"):
        open_source(folder, sql_table="lake_images")
    with pytest.raises(SourceError, match=r"^--sql-query is for a SQL URL source"):
        open_source(f"{folder}.zip", sql_query="SELECT 1")
    with pytest.raises(SourceError, match=r"^--uri-column/--label-column are for a manifest"):
        open_source(folder, uri_column="path")


def test_a_file_named_by_two_rows_is_offered_once_or_quarantined_on_two_labels(
    workspace: Workspace, tmp_path: Path, files: dict[str, bytes]
) -> None:
    """Rows that name one file ("d1.jpg", "./d1.jpg") are one file: a repeat with the same
    label is counted and offered once; under another label the file is quarantined as a label
    conflict naming both rows (the last row's label had won silently)."""
    write_tree(tmp_path / "m", files)
    dog, cat = sorted(n for n in files if n.startswith("dog/"))[:1], sorted(files)[:1]
    rows = [f"{dog[0]},dog", f"{dog[0]},dog", f"./{dog[0]},cat", f"{cat[0]},cat", f"./{cat[0]},cat"]
    (tmp_path / "m" / "m.csv").write_text("uri,label\n" + "\n".join(rows) + "\n")
    listing = open_source(str(tmp_path / "m" / "m.csv")).scan()
    assert len(listing.entries) == 2 and listing.skipped == {
        "row naming a file an earlier row names": 2
    }
    report = workspace.ingestor().run(workspace.source(str(tmp_path / "m" / "m.csv")), "rows")
    assert (report.files, report.added, report.quarantined) == (2, 1, {"label conflict": 1})
    assert report.skipped == {"row naming a file an earlier row names": 2}
    (uri, reason), *_ = report.quarantine_sample
    assert uri.endswith(dog[0]) and reason == (
        "label conflict: rows 1 and 3 name this file, labelled 'dog' and 'cat'"
    )
    table = workspace.catalog.table(report.version)
    assert table["label"].to_pylist() == ["cat"] and table.num_rows == 1
    # a spelling refused first (an absolute path), then one the manifest may use: the file
    # is taken, as when the refused row is alone
    absolute = str((tmp_path / "m" / cat[0]).resolve())
    (tmp_path / "m" / "n.csv").write_text(f"uri,label\n{absolute},cat\n{cat[0]},cat\n")
    source = open_source(str(tmp_path / "m" / "n.csv"))
    [(entry, data)] = list(source.read(source.scan().entries))
    assert entry.uri == absolute and data == files[cat[0]]
    # every row counted: the refused spelling is a repeat of the file the other row names
    assert source.scan().skipped == {"row naming a file an earlier row names": 1}


def test_rows_without_a_uri_or_a_label(
    workspace: Workspace, tmp_path: Path, files: dict[str, bytes]
) -> None:
    """A null or empty uri names no file: counted as skipped, never read as the path "None" or
    as the manifest's own folder. A row with a blank label claims none: the file's labelled
    row stands; a file only blank rows name is quarantined for having no label."""
    write_tree(tmp_path / "m", {**files, "None": files[sorted(files)[0]]})
    cat, dog = (
        sorted(n for n in files if n.startswith("cat/")),
        sorted(n for n in files if n.startswith("dog/")),
    )
    table = pa.table(
        {
            "uri": [None, "", "  ", dog[0], dog[0], cat[0], cat[1]],
            "label": ["dog", "cat", "dog", None, "dog", "cat", ""],
        }
    )
    pq.write_table(table, tmp_path / "m" / "m.parquet")
    listing = open_source(str(tmp_path / "m" / "m.parquet")).scan()
    assert sorted(Path(e.uri).name for e in listing.entries) == sorted(
        Path(n).name for n in (dog[0], cat[0], cat[1])
    )
    assert listing.skipped == {"row without a uri": 3, "row naming a file an earlier row names": 1}
    report = workspace.ingestor().run(workspace.source(str(tmp_path / "m" / "m.parquet")), "blank")
    assert (report.added, report.quarantined) == (2, {"no label": 1})
    [(uri, reason)] = report.quarantine_sample
    assert uri.endswith(cat[1]) and reason == "no label: none in its path or manifest row"
    labels = dict(
        zip(
            *[workspace.catalog.table(report.version)[c].to_pylist() for c in ("uri", "label")],
            strict=True,
        )
    )
    assert {Path(u).name: v for u, v in labels.items()} == {
        Path(dog[0]).name: "dog",
        Path(cat[0]).name: "cat",
    }


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_an_archive_holding_a_name_twice_reads_the_first(
    tmp_path: Path, files: dict[str, bytes], kind: str
) -> None:
    """Archives may hold one name twice; a uri names one file: the first member is read (as
    both formats' readers do in order) and the repeat is counted as skipped, not lost."""
    import warnings

    cat = sorted(n for n in files if n.startswith("cat/"))
    first, second = files[cat[0]], files[cat[1]]
    path = tmp_path / f"lake.{kind}"
    members = [("cat/same.jpg", first), ("cat/same.jpg", second), ("dog/b.jpg", files[cat[2]])]
    if kind == "zip":
        with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as archive:
            warnings.simplefilter("ignore")  # "Duplicate name": the point of the test
            for name, data in members:
                archive.writestr(name, data)
    else:
        with tarfile.open(path, "w") as archive:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    source = open_source(str(path), labels=LABELS)
    listing = source.scan()
    assert [e.uri.split("::")[0].split("://")[1] for e in listing.entries] == [
        "cat/same.jpg",
        "dog/b.jpg",
    ]
    assert listing.skipped == {"archive member name repeated (the first is read)": 1}
    read = {e.uri.split("::")[0].split("://")[1]: data for e, data in source.read(listing.entries)}
    assert read["cat/same.jpg"] == first


def test_a_manifest_is_recorded_by_its_absolute_path(
    tmp_path: Path, files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a folder or an archive is: the same manifest named from two folders is one source
    (it was recorded as "manifest:../m/m.csv" from one and "manifest:m/m.csv" from another)."""
    write_tree(tmp_path / "m", files)
    (tmp_path / "m" / "m.csv").write_text(f"uri,label\n{sorted(files)[0]},cat\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    here = open_source("../m/m.csv").describe()
    monkeypatch.chdir(tmp_path)
    assert here == open_source("m/m.csv").describe() == f"manifest:{tmp_path / 'm' / 'm.csv'}"


def test_a_blank_or_refused_row_never_decides_a_file(
    tmp_path: Path, files: dict[str, bytes]
) -> None:
    """Whatever the order of the rows: a refused spelling (an absolute path, outside the
    allowed roots) gives the file no label, and the labelled row's columns stand, not the
    blank row's."""
    write_tree(tmp_path / "m", files)
    name = sorted(n for n in files if n.startswith("cat/"))[0]
    absolute = str((tmp_path / "m" / name).resolve())
    refused, blank = f"{absolute},cat,r", f"{name},,b"
    labelled, blank_first = f"{name},cat,l", f"{name},,b"
    seen = []
    for rows in ([refused, blank], [blank, refused], [blank_first, labelled], [labelled, blank]):
        (tmp_path / "m" / "m.csv").write_text("uri,label,camera\n" + "\n".join(rows) + "\n")
        listing = open_source(str(tmp_path / "m" / "m.csv")).scan()
        [entry] = listing.entries
        assert listing.skipped == {"row naming a file an earlier row names": 1}, rows
        seen.append((entry.label, entry.attrs))
    assert seen[0] == seen[1] == (None, {"camera": "b"})  # no label: quarantined
    assert seen[2] == seen[3] == ("cat", {"camera": "l"})
