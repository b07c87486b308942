"""Content offered under two labels stays out of its dataset, whatever later ingests offer,
until a person settles the label: which label won had depended on which folder was ingested
again first."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.db.audit import AuditLog
from kennel.wiring import Workspace
from tests.conftest import make_project
from tests.helpers import odd_files, write_tree


def _kennel(project: Path, *args: str) -> tuple[int, str]:
    """The exit code and stdout (with --json: the document alone), or the error on stderr."""
    result = CliRunner().invoke(app, [*args, "-C", str(project)])
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def _ingest(project: Path, folder: Path, dataset: str = "pets") -> dict:
    code, out = _kennel(project, "data", "ingest", str(folder), "--dataset", dataset, "--json")
    assert code == 0, out
    return json.loads(out)


def _reasons(report: dict) -> dict[str, str]:
    return {Path(uri).name: reason for uri, reason in report["quarantine_sample"]}


def _labels_of(project: Path, dataset: str) -> dict[str, str]:
    ws = Workspace.load(project)
    try:
        return {Path(r.uri).name: r.label for r in ws.catalog.rows(ws.catalog.resolve(dataset))}
    finally:
        ws.close()


def test_a_disputed_content_stays_out_until_settled(tmp_path: Path) -> None:
    files = odd_files()
    same, cat_only, dog_only = (
        files[name][0] for name in ("cat/good.jpg", "dog/cmyk.jpg", "cat/rotated.jpg")
    )
    cats = write_tree(tmp_path / "cats", {"cat/a.jpg": same, "cat/c.jpg": cat_only})
    dogs = write_tree(tmp_path / "dogs", {"dog/a-again.jpg": same, "dog/d.jpg": dog_only})
    both = write_tree(tmp_path / "both", {"cat/a.jpg": same, "dog/a-again.jpg": same})
    project = make_project(tmp_path / "proj", sections={"auth": {"local_role": "operator"}})
    root = project.root

    # offered under both labels at once, in a folder that holds nothing else: the first
    # ingest fails (nothing left), and the dispute is kept all the same
    code, out = _kennel(root, "data", "ingest", str(both), "--dataset", "pets")
    assert code == 6 and "{'label conflict': 2}" in out, out
    code, out = _kennel(root, "data", "disputes", "pets", "--json")
    assert code == 0, out
    (dispute,) = json.loads(out)
    assert dispute["labels"] == ["cat", "dog"] and dispute["settled_label"] is None
    sha = dispute["sha256"]

    # either folder alone, in either order: the disputed copy stays out
    first = _ingest(root, cats)
    assert first["added"] == 1
    assert _reasons(first) == {
        "a.jpg": "label conflict: the same bytes were offered as 'dog' before (disputed until "
        "`kennel data settle` names the right label)"
    }
    second = _ingest(root, dogs)
    assert second["added"] == 1 and set(_reasons(second)) == {"a-again.jpg"}
    assert "offered as 'cat' before" in _reasons(second)["a-again.jpg"]
    assert _labels_of(root, "pets") == {"c.jpg": "cat", "d.jpg": "dog"}

    # bad settlements: one line each, nothing settled
    bad = {
        ("--label", "bird"): (2, "label 'bird' is not one of 'cat', 'dog'"),
        ("--label", ""): (2, "label '' is not one of"),
    }
    for extra, (want, words) in bad.items():
        code, out = _kennel(root, "data", "settle", "pets", sha, *extra)
        assert code == want and words in out, (extra, out)
    code, out = _kennel(root, "data", "settle", "pets", "0" * 64, "--label", "dog")
    assert code == 3 and "no label dispute over sha256:000000000000" in out, out
    code, out = _kennel(root, "data", "settle", "pets", str(cats / "nope.jpg"), "--label", "dog")
    assert code == 3 and "no ingest into 'pets' read a file" in out, out
    code, out = _kennel(root, "data", "settle", "pets", str(cats / "cat/c.jpg"), "--label", "cat")
    assert code == 3 and "no label dispute" in out, out  # read, accepted, not disputed
    code, out = _kennel(root, "data", "settle", "no-such", sha, "--label", "dog")
    assert code == 3, out

    # settled by the uri an ingest reported: the other label's copy stays out
    code, out = _kennel(
        root, "data", "settle", "pets", str(dogs / "dog/a-again.jpg"), "--label", "dog"
    )
    assert code == 0 and f"sha256:{sha[:12]} in pets settled as 'dog'" in out, out
    again = _ingest(root, cats)
    assert again["added"] == 0
    assert _reasons(again) == {"a.jpg": "label conflict: settled as 'dog'"}
    added = _ingest(root, dogs)
    assert added["added"] == 1 and added["quarantined"] == {}
    assert _labels_of(root, "pets") == {"c.jpg": "cat", "d.jpg": "dog", "a-again.jpg": "dog"}

    # the version holds it now: a settlement cannot relabel it
    code, out = _kennel(root, "data", "settle", "pets", sha, "--label", "cat")
    assert code == 17 and "holds sha256:" in out and "as 'dog'" in out, out

    ws = Workspace.load(root)
    try:
        entries = [e for e in AuditLog(ws.db).entries() if e.action == "dataset.settle"]
    finally:
        ws.close()
    assert [(e.subject, e.details["label"]) for e in entries] == [(f"pets:{sha}", "dog")]
    assert entries[0].actor.startswith("local:")
    code, out = _kennel(root, "audit", "verify")
    assert code == 0, out


def test_settling_takes_a_role_that_may_label(tmp_path: Path) -> None:
    same = odd_files()["cat/good.jpg"][0]
    other = odd_files()["dog/cmyk.jpg"][0]
    lake = write_tree(tmp_path / "lake", {"cat/a.jpg": same, "dog/a.jpg": same, "dog/b.jpg": other})
    project = make_project(tmp_path / "proj")  # no local role: a token is needed
    root = project.root
    report = _ingest(root, lake)
    assert report["quarantined"] == {"label conflict": 2}
    code, out = _kennel(root, "data", "disputes", "pets", "--json")
    sha = json.loads(out)[0]["sha256"]
    code, out = _kennel(root, "data", "settle", "pets", sha, "--label", "cat")
    assert code == 14 and "needs a token" in out, out
    ws = Workspace.load(root)
    try:
        viewer, _ = ws.tokens.create("viewer", "vic", actor="test")
        qa, _ = ws.tokens.create("qa", "quinn", actor="test")
    finally:
        ws.close()
    code, out = _kennel(root, "data", "settle", "pets", sha, "--label", "cat", "--token", viewer)
    assert code == 14 and "may not settle labels" in out, out
    code, out = _kennel(root, "data", "settle", "pets", sha, "--label", "cat", "--token", qa)
    assert code == 0, out
    code, out = _kennel(root, "data", "disputes", "pets")
    assert code == 0 and "quinn" in out and sha[:12] in out, out
