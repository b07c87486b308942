"""Content offered under two labels stays out of its dataset, whatever later ingests offer,
until a person settles the label: which label won had depended on which folder was ingested
again first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.db.audit import AuditLog
from kennel.db.ingest import IngestStore
from kennel.wiring import Workspace
from tests.conftest import make_project
from tests.helpers import odd_files, write_tree


def _kennel(project: Path, *args: str) -> tuple[int, str]:
    """The exit code and stdout (with --json: the document alone), or the error on stderr."""
    result = CliRunner().invoke(app, [*args, "-C", str(project)])
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def _ingest(project: Path, folder: Path, dataset: str = "pets") -> dict:  # a folder or manifest
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
    assert dispute["files"] == {
        str(both / "cat/a.jpg"): "cat",
        str(both / "dog/a-again.jpg"): "dog",
    }
    sha = dispute["sha256"]

    # either folder alone, in either order: the disputed copy stays out
    first = _ingest(root, cats)
    assert first["added"] == 1
    assert _reasons(first) == {
        "a.jpg": "label conflict: the same bytes were offered as 'dog' too (disputed until "
        "`kennel data settle` names the right label)"
    }
    second = _ingest(root, dogs)
    assert second["added"] == 1 and set(_reasons(second)) == {"a-again.jpg"}
    assert "offered as 'cat' too" in _reasons(second)["a-again.jpg"]
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
    code, out = _kennel(root, "data", "settle", "pets", " ", "--label", "dog")
    assert code == 2 and "give the disputed content's sha256" in out, out
    code, out = _kennel(root, "data", "disputes", "no-such")
    assert code == 3 and "no-such" in out, out

    # settled by the short form kennel prints; the other label's copy stays out
    code, out = _kennel(root, "data", "settle", "pets", f"sha256:{sha[:12]}", "--label", "dog")
    assert code == 0 and f"sha256:{sha[:12]} in pets settled as 'dog'; ingest" in out, out
    # the same again, by a file of the failed first ingest (its records are gone): no-op
    code, out = _kennel(
        root, "data", "settle", "pets", str(both / "dog/a-again.jpg"), "--label", "dog"
    )
    assert code == 0 and "settled as 'dog' already: nothing recorded" in out, out
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

    # a settlement or a dispute changed in the database directly is named by audit verify
    for statement, said in (
        ("UPDATE label_disputes SET settled_label = 'cat'", "is settled as 'cat' by local:"),
        ("DELETE FROM label_disputes", f"label dispute pets:{sha}, recorded in the audit log, "
                                       "was deleted"),
    ):  # fmt: skip
        ws = Workspace.load(root)
        try:
            with ws.db.session() as session:
                saved = session.execute(text("SELECT * FROM label_disputes")).mappings().all()
                session.execute(text(statement))
        finally:
            ws.close()
        code, out = _kennel(root, "audit", "verify")
        assert code == 1 and said in out, out
        ws = Workspace.load(root)
        try:
            with ws.db.session() as session:  # put back as it was
                session.execute(text("DELETE FROM label_disputes"))
                names = list(saved[0])
                session.execute(
                    text(f"INSERT INTO label_disputes ({', '.join(names)}) "
                         f"VALUES ({', '.join(':' + n for n in names)})"),
                    [dict(r) for r in saved],
                )  # fmt: skip
        finally:
            ws.close()
    code, out = _kennel(root, "audit", "verify")
    assert code == 0, out


def test_a_manifest_naming_a_file_with_two_labels_disputes_its_content(tmp_path: Path) -> None:
    """The manifest's source refuses such a file unread, so no content was known to dispute:
    a later manifest naming it once added it under that label."""
    files = odd_files()
    same = files["cat/good.jpg"][0]
    lake = write_tree(
        tmp_path / "lake",
        {"c.jpg": same, "c-copy.jpg": same, "d.jpg": files["dog/cmyk.jpg"][0]},
    )
    secret = write_tree(tmp_path / "secret", {"s.jpg": files["cat/rotated.jpg"][0]})
    (lake / "first.csv").write_text(
        "uri,label\nc.jpg,dog\n./c.jpg,cat\nc-copy.jpg,cat\nd.jpg,dog\n"
        "../secret/s.jpg,cat\n../secret/s.jpg,dog\n"  # outside the allowed roots: never read
    )
    (lake / "second.csv").write_text("uri,label\nc.jpg,cat\n")
    root = make_project(tmp_path / "proj", sections={"auth": {"local_role": "operator"}}).root
    first = _ingest(root, lake / "first.csv", "m")
    # the copy the manifest names once is disputed as well (it was added as a cat)
    assert first["added"] == 1 and first["quarantined"] == {
        "label conflict": 2,
        "outside allowed roots": 1,
    }
    assert "offered as 'dog' too" in _reasons(first)["c-copy.jpg"]
    assert _reasons(first)["s.jpg"].startswith("outside allowed roots")
    _code, out = _kennel(root, "data", "disputes", "m", "--json")
    (dispute,) = json.loads(out)  # none over the file outside the roots: it was never read
    assert dispute["labels"] == ["cat", "dog"]
    assert dispute["files"] == {str(lake / "c.jpg"): "cat / dog", str(lake / "c-copy.jpg"): "cat"}
    assert str(secret / "s.jpg") not in out
    second = _ingest(root, lake / "second.csv", "m")
    assert second["added"] == 0
    assert "offered as 'dog' too" in _reasons(second)["c.jpg"]
    assert _labels_of(root, "m") == {"d.jpg": "dog"}
    # content a version holds is no dispute: a later manifest naming its bytes with two labels
    # leaves it as it is (held wins) and records none
    held = write_tree(tmp_path / "held", {"h.jpg": files["dog/cmyk.jpg"][0]})
    (held / "m.csv").write_text("uri,label\nh.jpg,cat\nh.jpg,dog\n")
    third = _ingest(root, held / "m.csv", "m")
    assert third["added"] == 0 and third["quarantined"] == {"label conflict": 1}
    _code, out = _kennel(root, "data", "disputes", "m", "--json")
    assert len(json.loads(out)) == 1
    # the content forms kennel prints, in any case, with spaces around; too short is said so
    sha = dispute["sha256"]
    for form in (f"SHA256:{sha[:8].upper()}", f" {sha[:10]} "):
        code, out = _kennel(root, "data", "settle", "m", form, "--label", "cat")
        assert code == 0 and f"sha256:{sha[:12]} in m settled as 'cat'" in out, (form, out)
    code, out = _kennel(root, "data", "settle", "m", f"sha256:{sha[:7]}", "--label", "cat")
    assert code == 2 and "give 8 or more digits of the sha256" in out, out


def test_a_dispute_is_recorded_with_the_version_its_ingest_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ingest that found a dispute on one head and was built again on a newer one (another
    ingest committed meanwhile, holding the content as a cat) recorded a dispute over content
    the dataset then held: a ghost no settlement could clear."""
    files = odd_files()
    same, other = files["cat/good.jpg"][0], files["dog/cmyk.jpg"][0]
    base = write_tree(tmp_path / "base", {"dog/d.jpg": other})
    both = write_tree(tmp_path / "both", {"cat/x.jpg": same, "dog/x.jpg": same})
    cats = write_tree(tmp_path / "cats", {"cat/x.jpg": same})
    root = make_project(tmp_path / "proj").root
    _ingest(root, base, "r")
    ws = Workspace.load(root)
    try:
        mine, theirs = ws.ingestor(1), ws.ingestor(1)
        commit = mine.catalog.commit

        def first_theirs(*args: object, **kwargs: object) -> object:
            monkeypatch.setattr(mine.catalog, "commit", commit)
            theirs.run(ws.source(str(cats)), "r")  # commits first: the head moves
            return commit(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(mine.catalog, "commit", first_theirs)
        report = mine.run(ws.source(str(both)), "r")
        assert IngestStore(ws.db).disputes("r") == {}  # the head holds it: held wins
        # built again on theirs (it said "these files make v1 again"): their cat is held, the
        # dog copy refused as a conflict with it, nothing new
        assert (report.version.seq, report.created) == (2, False)
        assert report.quarantined == {"label conflict": 1}
        assert {Path(r.uri).parent.name for r in ws.catalog.rows(report.version)} == {"dog", "cat"}
    finally:
        ws.close()


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
