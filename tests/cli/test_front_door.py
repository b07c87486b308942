"""What a new user meets first, through the real CLI: every mistake is one line naming the key
or the name, with the closest real one suggested, and a non-zero exit (issue #13)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import Project
from tests.conftest import make_project

runner = CliRunner()


def fails(*args: str, code: int) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_bad_training_options_are_one_line_naming_the_key(tmp_path: Path) -> None:
    root = str(make_project(tmp_path / "p").root)
    line = fails("train", "-d", "park", "--arch", "resnet", "-C", root, code=2)
    assert "--arch" in line and "'small_cnn', 'efficientnet_lite0'" in line
    line = fails("train", "-d", "park", "--arch", "efficientnet_lit0", "-C", root, code=2)
    assert "did you mean 'efficientnet_lite0'?" in line
    line = fails("train", "-d", "park", "--serch", "tpe", "-C", root, code=2)
    assert "did you mean '--search'?" in line
    line = fails("trian", "-d", "park", code=2)
    assert "did you mean 'train'?" in line.lower()
    line = fails("train", "-d", "park", "--image-size", "100", "-C", root, code=2)
    assert "train.image_size" in line and "multiple of 32" in line
    for budget in ("0", "-1"):  # a search with no time at all is a mistake, not "no budget"
        line = fails("train", "-d", "park", "--budget-minutes", budget, "-C", root, code=2)
        assert "--budget-minutes" in line
    # "--trials 1 = no search" (the help): a budget or method beside it ran a search anyway
    for extra in (["--budget-minutes", "1"], ["--search", "grid"]):
        line = fails("train", "-d", "park", "--trials", "1", *extra, "-C", root, code=2)
        assert "--trials" in line and f"so {extra[0]} would not be used" in line, line


def test_kennel_yaml_mistakes_name_the_key_and_the_place(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p").root
    path = root / "kennel.yaml"
    text = path.read_text()
    path.write_text(text.replace("  schedule: onecycle", "  schedul: onecycle"))
    line = fails("data", "list", "-C", str(root), code=2)
    assert "train.schedul: unknown key; did you mean 'schedule'?" in line
    path.write_text(text.replace("  seed: 0\n  balance_by", "  seed: [0\n  balance_by"))
    line = fails("data", "list", "-C", str(root), code=2)
    lineno = text.splitlines().index("  seed: 0") + 1
    assert f"kennel.yaml:{lineno + 1}:" in line or f"kennel.yaml:{lineno}:" in line, line
    assert "not valid YAML" in line


def test_unknown_names_suggest_the_closest(park_model: Project) -> None:
    root = str(park_model.root)
    line = fails("models", "show", "pest@1", "-C", root, code=3)
    assert "did you mean 'pets'?" in line
    line = fails("models", "show", "pets@champoin", "-C", root, code=3)
    assert "did you mean 'champion'?" in line
    line = fails("data", "show", "parc", "-C", root, code=3)
    assert "did you mean 'park'?" in line
    line = fails("serve", "--env", "prodution", "-C", root, code=2)
    assert "did you mean 'production'?" in line


def test_predict_defaults_to_the_champion_and_fails_on_rejected_input(
    park_model: Project, tmp_path: Path
) -> None:
    import json

    from tests.helpers import jpeg

    root = str(park_model.root)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.jpg").write_bytes(jpeg(seed=i))
    result = runner.invoke(app, ["predict", str(folder), "--batch-size", "2", "-C", root, "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # one object per image
    assert [Path(r["file"]).name for r in lines] == [f"{i}.jpg" for i in range(5)]
    assert all(r["model"]["version"] == 1 and r["label"] for r in lines)  # pets@champion
    assert not any("prediction_id" in r for r in lines)  # not logged: no id that traces nowhere
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    result = runner.invoke(app, ["predict", str(notes), str(folder / "0.jpg"), "-C", root])
    assert result.exit_code == 1
    assert "notes.txt\trejected:" in result.stderr
    assert "2 images:" in result.stdout and "1 rejected" in result.stdout
    # nothing to score is a mistake, and a path that is there but no file is not "missing"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no image files in this folder" in fails("predict", str(empty), "-C", root, code=6)
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    for odd in (fifo, Path("/dev/zero")):
        line = fails("predict", str(odd), "-C", root, code=6)
        assert "is not a regular file or a folder" in line
    assert "does not exist" in fails("predict", str(tmp_path / "nope.jpg"), "-C", root, code=6)
    big = tmp_path / "big.jpg"  # sparse: past the service's upload limit, never read whole
    with open(big, "wb") as handle:
        handle.truncate(11 * 1024 * 1024)
    result = runner.invoke(app, ["predict", str(big), "-C", root])
    assert result.exit_code == 1 and "file too large" in result.stderr


def test_help_is_grouped_by_stage_and_shows_choices() -> None:
    import os
    import subprocess
    import sys

    def help_of(*args: str) -> str:
        env = {**os.environ, "COLUMNS": "160"}
        return subprocess.run(
            [sys.executable, "-m", "kennel.cli", *args, "--help"],
            capture_output=True, text=True, env=env, check=True, timeout=60,
        ).stdout  # fmt: skip

    top = help_of()
    stages = ["Data", "Build", "Deploy", "Monitor and govern", "Video and serving patterns"]
    at = [top.find(f"─ {stage} ") for stage in stages]
    assert -1 not in at and at == sorted(at)  # every stage, in the order of the lifecycle
    train = help_of("train")
    assert "small_cnn|efficientnet_lite0" in train and "grid|random|tpe" in train
    assert "NAME or NAME@VERSION" in train  # brackets used to vanish as rich markup
    assert "--every seconds" in help_of("monitor", "watch")
    project = top[top.find("─ Project ") :]
    assert re.search(
        r"│ ui +Serve the web dashboard: pipeline, deployments, alerts and audit", project
    )  # the dashboard, by the project
    assert "--port" in help_of("ui") and "8090" in help_of("ui")


def test_help_and_version_never_import_the_heavy_stack() -> None:
    import subprocess
    import sys

    helps = (["--help"], ["--version"], ["train", "--help"], ["serve", "--help"], ["ui", "--help"])
    for args in (*helps, ["data", "ingest", "--help"]):
        probe = (
            "import sys, runpy; sys.argv = ['kennel', *sys.argv[1:]];"
            "import kennel.cli.main as m\n"
            "try:\n    m.app(prog_name='kennel')\n"
            "except SystemExit:\n    pass\n"
            "heavy = sorted({n.split('.')[0] for n in sys.modules} & "
            "{'torch', 'onnxruntime', 'sqlalchemy', 'numpy', 'PIL', 'cv2', 'scipy', 'ray'})\n"
            "print('HEAVY', heavy)"
        )
        out = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60
        )
        assert "HEAVY []" in out.stdout, (args, out.stdout[-300:], out.stderr[-300:])


def test_cli_rpc_defaults_match_the_worker() -> None:
    from kennel.cli import patterns
    from kennel.stream import rpc

    assert (patterns.RPC_URL, patterns.RPC_QUEUE) == (rpc.DEFAULT_URL, rpc.DEFAULT_QUEUE)


def test_long_phases_report_progress_as_json_events(tmp_path: Path) -> None:
    import json

    from tests.conftest import TINY_TRAIN
    from tests.helpers import labelled_jpegs, write_tree

    root = str(make_project(tmp_path / "p", sections={"train": TINY_TRAIN}, workers=1).root)
    write_tree(tmp_path / "lake", labelled_jpegs(40, seed=3))

    def events(*args: str) -> list[dict[str, object]]:
        result = runner.invoke(app, [*args, "-C", root, "--json"])
        assert result.exit_code == 0, result.output
        json.loads(result.stdout)  # stdout keeps only the result
        return [json.loads(line)["event"] for line in result.stderr.splitlines()]

    ingest = events("data", "ingest", str(tmp_path / "lake"), "-d", "park")
    counts = [e for e in ingest if e["phase"] == "ingest"]
    assert counts and counts[-1]["done"] == counts[-1]["total"] == 40
    train = events("train", "-d", "park", "--trials", "2", "--search", "random")
    phases = {str(e["phase"]) for e in train}
    assert {"tune", "train", "build", "cache images at 64px"} <= phases
    tuned = [e for e in train if e["phase"] == "tune"]
    assert [e["done"] for e in tuned] == [1, 2] and all(e["total"] == 2 for e in tuned)
    epochs = [e for e in train if e["phase"] == "train"]
    assert epochs and epochs[-1]["done"] <= epochs[-1]["total"] == TINY_TRAIN["epochs"]


def test_monitor_run_without_traffic_says_so(tmp_path: Path) -> None:
    root = str(make_project(tmp_path / "p").root)
    result = runner.invoke(app, ["monitor", "run", "-C", root])
    assert result.exit_code == 0, result.output
    assert "no predictions from" in result.stdout
    assert "nan" not in result.stdout and "None" not in result.stdout
    # a typo in --env analysed nothing and exited 0: an environment kennel.yaml does not
    # define, with no predictions logged under it, is one line (exit 2), in each command
    for args in (["monitor", "run"], ["monitor", "watch", "--count", "1"],
                 ["analyze", "errors"]):  # fmt: skip
        typo = runner.invoke(app, [*args, "--env", "prodution", "-C", root])
        assert typo.exit_code == 2 and typo.stderr.count("\n") == 1, typo.output
        assert "unknown environment 'prodution'" in typo.stderr
        assert "did you mean 'production'" in typo.stderr and "no predictions" in typo.stderr


def test_caching_frozen_features_reports_progress(tmp_path: Path) -> None:
    import json

    from tests.helpers import labelled_jpegs, write_tree

    train = {"arch": "efficientnet_lite0", "image_size": 64, "epochs": 1, "frozen_blocks": 6,
             "batch_size": 16, "search": {"trials": 1}}  # fmt: skip
    root = str(make_project(tmp_path / "p", sections={"train": train}, workers=1).root)
    write_tree(tmp_path / "lake", labelled_jpegs(30, seed=4))
    ingested = runner.invoke(app, ["data", "ingest", str(tmp_path / "lake"), "-d", "d", "-C", root])
    assert ingested.exit_code == 0, ingested.output
    result = runner.invoke(app, ["train", "-d", "d", "-C", root, "--json"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line)["event"] for line in result.stderr.splitlines()]
    cached = [e for e in events if e["phase"] == "cache frozen features"]
    assert cached and cached[-1]["done"] == cached[-1]["total"] > 0


def test_top_level_mistakes_are_one_line_too() -> None:
    import subprocess
    import sys

    for args, hint in ((["--versoin"], "did you mean '--version'?"), (["trian"], "'train'?")):
        out = subprocess.run(
            [sys.executable, "-m", "kennel.cli", *args], capture_output=True, text=True, timeout=60
        )
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and hint in lines[0], out.stderr
        assert lines[0].lower().count("did you mean") == 1


def test_tables_into_a_pipe_are_not_cut_at_80_columns() -> None:
    import subprocess
    import sys

    cell = "night-camera-" * 10  # 130 characters, as the demo's drift column can be
    script = f"from kennel.cli.render import table; table('t', ['a', 'b'], [[{cell!r}, 'y']])"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert cell in out.stdout  # whole, on one line, although stdout is a pipe


def test_numbers_out_of_any_sensible_range_are_one_line(tmp_path: Path) -> None:
    """A number too large for the machine (or for a date, or a C int) is refused before any
    work, in one line: it once meant a traceback, or memory without bound (`synth --count`)."""
    root = str(make_project(tmp_path / "p").root)
    huge = "99999999999999999999"
    cases = [
        (["data", "synth", str(tmp_path / "s"), "--count", huge], "--count"),
        (["data", "synth", str(tmp_path / "s"), "--seed", huge], "--seed"),
        (["monitor", "run", "--window", f"{huge}h", "-C", root], "at most 3650d"),
        (["monitor", "run", "--window", "1000000000h", "-C", root], "at most 3650d"),
        (["monitor", "run", "--window", "0h", "-C", root], "more than 0"),
        (["alerts", "ack", huge, "-C", root], "alert_id"),
        (["audit", "log", "--limit", huge, "-C", root], "--limit"),
        (["audit", "log", "--limit", "-1", "-C", root], "--limit"),
        (["audit", "anchor", huge, "-C", root], "seq"),
        (["train", "-d", "park", "--epochs", huge, "-C", root], "--epochs"),
        (["serve", "--drain", "1e309", "-C", root], "--drain"),
        (["watch", "clip.mp4", "--enter", "2", "-C", root], "--enter"),
        (["watch", "clip.mp4", "--hold-seconds", "-1", "-C", root], "--hold-seconds"),
    ]
    for args, named in cases:
        assert named in fails(*args, code=2), args
    assert not (tmp_path / "s").exists()


def test_the_dashboards_tls_files_are_checked_before_it_starts(tmp_path: Path) -> None:
    root = str(make_project(tmp_path / "p").root)
    line = fails("ui", "--ssl-certfile", "/nonexistent.pem", "--ssl-keyfile", "/nonexistent.pem",
                 "-C", root, code=2)  # fmt: skip
    assert "cannot use /nonexistent.pem" in line and "does not exist" in line
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    line = fails("ui", "--ssl-certfile", str(junk), "--ssl-keyfile", str(junk), "-C", root, code=2)
    assert "not a PEM certificate with its matching private key" in line
    # a FIFO would block the read; an encrypted key would stop the server to ask for it
    cert, key, locked = _tls_pair(tmp_path)
    fifo = tmp_path / "fifo.pem"
    os.mkfifo(fifo)
    line = fails("ui", "--ssl-certfile", str(fifo), "--ssl-keyfile", str(key), "-C", root, code=2)
    assert "is not a regular file" in line
    line = fails("ui", "--ssl-certfile", str(cert), "--ssl-keyfile", str(locked), "-C", root,
                 code=2)  # fmt: skip
    assert "the private key is encrypted" in line
    from kennel.cli.dashboard import _check_tls

    _check_tls(cert, key)  # a good pair passes


def _tls_pair(folder: Path) -> tuple[Path, Path, Path]:
    """A self-signed certificate, its key, and the key encrypted with a passphrase."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    paths = folder / "cert.pem", folder / "key.pem", folder / "locked.pem"
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem, pkcs8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    paths[1].write_bytes(key.private_bytes(pem, pkcs8, serialization.NoEncryption()))
    locked = serialization.BestAvailableEncryption(b"passphrase")
    paths[2].write_bytes(key.private_bytes(pem, pkcs8, locked))
    return paths
