"""What `kennel pipeline run` compares to decide that its source is unchanged: a manifest whose
row was corrected (a label, an attribute) is changed, though no image file is (it skipped the
ingest, so the fixed row was never read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kennel.ingest.sources import open_source
from kennel.pipeline.flow import source_fingerprint
from tests.helpers import jpeg


def test_a_corrected_manifest_row_changes_the_source(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    for name in ("a", "b"):
        (tmp_path / "img" / f"{name}.jpg").write_bytes(jpeg(40, 40, seed=ord(name)))
    manifest = tmp_path / "m.csv"

    def fingerprint(text: str) -> str:
        manifest.write_text(text)
        return source_fingerprint(open_source(str(manifest)))

    first = fingerprint("uri,label,camera\nimg/a.jpg,DOG,gate\nimg/b.jpg,cat,gate\n")
    assert fingerprint("uri,label,camera\nimg/a.jpg,DOG,gate\nimg/b.jpg,cat,gate\n") == first
    fixed = fingerprint("uri,label,camera\nimg/a.jpg,dog,gate\nimg/b.jpg,cat,gate\n")
    moved = fingerprint("uri,label,camera\nimg/a.jpg,dog,lawn\nimg/b.jpg,cat,gate\n")
    assert len({first, fixed, moved}) == 3


def test_an_in_place_rewrite_and_a_remote_source_are_not_taken_as_unchanged(
    tmp_path: Path,
) -> None:
    """A byte flipped in place with the modification time put back (size and mtime the same)
    kept the fingerprint, and `pipeline run` skipped an ingest that would have made a new
    version; an http source's files cannot be stat'ed, and their changes were never seen."""
    import os

    from kennel.ingest.sources.base import Entry, Listing

    folder = tmp_path / "lake" / "cat"
    folder.mkdir(parents=True)
    picture = folder / "a.jpg"
    picture.write_bytes(jpeg(40, 40, seed=1))
    source = open_source(str(tmp_path / "lake"))
    first = source_fingerprint(source)
    assert source_fingerprint(source) == first
    before = picture.stat()
    data = bytearray(picture.read_bytes())
    data[-3] ^= 0xFF
    picture.write_bytes(bytes(data))
    os.utime(picture, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert picture.stat().st_size == before.st_size
    assert source_fingerprint(source) != first

    class Remote:  # what an http or s3 source lists: uris no stat can reach
        def describe(self) -> str:
            return "http://127.0.0.1:9/pets/"

        def scan(self) -> Listing:
            return Listing([Entry("http://127.0.0.1:9/pets/cat/a.jpg", "cat", {})], ignored=0)

    remote: Any = Remote()
    assert source_fingerprint(remote) != source_fingerprint(remote)
