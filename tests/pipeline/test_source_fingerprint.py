"""What `kennel pipeline run` compares to decide that its source is unchanged: a manifest whose
row was corrected (a label, an attribute) is changed, though no image file is (it skipped the
ingest, so the fixed row was never read)."""

from __future__ import annotations

from pathlib import Path

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
