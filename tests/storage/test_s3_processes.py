"""The artifacts URL is all that ingest's worker processes get: an s3+http:// URL carries the
endpoint to them, and a dataset ingested into S3 by a process pool is the same version, byte
for byte, as the same files ingested into a local folder."""

from __future__ import annotations

from pathlib import Path

from kennel.ingest.engines import INLINE_BELOW
from kennel.storage import digest_key
from kennel.wiring import Workspace
from tests.conftest import make_project, s3_keys
from tests.helpers import labelled_jpegs, write_tree


def test_pool_workers_ingest_into_s3_as_into_a_folder(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    lake = write_tree(tmp_path / "lake", labelled_jpegs(INLINE_BELOW + 20, seed=7))
    artifacts = f"s3+http://{s3_endpoint.removeprefix('http://')}/{s3_bucket}/lake"
    shared = make_project(tmp_path / "s3", sections={"store": {"artifacts_url": artifacts}})
    local = make_project(tmp_path / "local")
    versions = []
    for project in (shared, local):
        ws = Workspace(project)
        try:
            result = ws.ingestor(workers=2).run(ws.source(str(lake)), "pets")
            versions.append(result.version)
            digests = {row.sha256 for row in ws.catalog.rows(result.version)}
        finally:
            ws.close()
    on_s3, on_disk = versions
    assert on_s3.id == on_disk.id and on_s3.n_rows == INLINE_BELOW + 20
    keys = set(s3_keys(s3_bucket, "lake", endpoint=s3_endpoint))
    assert {f"lake/{digest_key(d)}" for d in digests} <= keys
    assert not (shared.root / ".kennel" / "artifacts").exists()
