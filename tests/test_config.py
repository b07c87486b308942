from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import init_project, load_project, parse_config
from kennel.errors import ConfigError


def test_defaults_resolve_against_project_root(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["init", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    project = load_project(tmp_path)
    assert project.metadata_url == f"sqlite:///{tmp_path.resolve()}/.kennel/kennel.db"
    assert project.artifacts_url == str(tmp_path.resolve() / ".kennel" / "artifacts")
    assert (tmp_path / ".kennel" / "kennel.db").is_file()
    assert project.config.data.split.test == 0.2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"data": {"split": {"test": 1.5}}}, "data.split.test"),
        ({"data": {"labelz": ["cat"]}}, "data.labelz"),
        ({"store": {"metadata_url": 3}}, "store.metadata_url"),
        ({"data": {"split": {"test": 0.6, "validation": 0.5}}}, "data.split"),
        ([1, 2], "mapping"),
        ({"data": {"labels": ["cat", "dog", "cat"]}}, "data.labels: 'cat' listed twice"),
        ({"data": {"labels": ["cat", " "]}}, "data.labels: .*cannot be empty"),
        ({"data": {"min_side": 10**30}}, "data.min_side"),
        ({"data": {"workers": 10**6}}, "data.workers"),
        ({"train": {"seed": 2**70}}, "train.seed"),
        ({"serve": {"poll_s": float("inf")}}, "serve.poll_s"),
        ({"serve": {"log_flush_s": 1e30}}, "serve.log_flush_s"),
        ({"train": {"lr": float("nan")}}, "train.lr"),
        ({"monitor": {"window": "garbage"}}, "monitor.window"),
        ({"monitor": {"window": "\u0663h"}}, "monitor.window"),  # an Arabic-Indic 3
        ({"monitor": {"window": "0h"}}, "monitor.window: .*more than 0"),
        ({"monitor": {"smtp": {"port": -5}}}, "monitor.smtp.port"),
        # a webhook URL that cannot be posted to: said on reading, not when an alert fires
        # (an unparsable one made every monitor cycle end in a traceback)
        ({"monitor": {"webhook_url": "http://[::1/hooks/S"}}, "monitor.webhook_url: .*not a URL"),
        ({"monitor": {"webhook_url": "file:///etc/passwd"}}, "must be an http:// or https://"),
        ({"monitor": {"webhook_url": "not a url"}}, "must be an http:// or https://"),
        (  # two rules of one name opened and resolved each other's alert every cycle
            {
                "monitor": {
                    "rules": [
                        {"name": "q", "metric": "window.n", "threshold": 1},
                        {"name": "q", "metric": "window.n", "threshold": 5},
                    ]
                }
            },
            "monitor.rules: .*two rules are named 'q'",
        ),
        (
            {"monitor": {"rules": [{"name": "r" * 129, "metric": "window.n", "threshold": 1}]}},
            r"monitor\.rules\.0\.name",
        ),
        ({"monitor": {"rules": [{"name": "", "metric": "window.n", "threshold": 1}]}}, "name"),
        (  # a rule on a class the project does not have never fired
            {
                "monitor": {
                    "rules": [{"name": "h", "metric": "performance.recall.horse", "threshold": 0.5}]
                }
            },
            r"'performance\.recall\.horse' names class 'horse', not one of data\.labels",
        ),
        (  # continuous deployment to an environment there is not: said on reading, not
            # after a certification had moved the staging alias
            {"release": {"mode": "deployment", "to": "prod"}},
            r"release\.to 'prod': releases go to an environment other than staging",
        ),
        ({"release": {"mode": "deployment", "to": "staging"}}, r"release\.to 'staging'"),
        ({"release": {"mode": "delivery", "to": "nope"}}, r"release\.to 'nope'"),
        (  # a number reads as a version in NAME@N: every deploy failed "invalid alias '1'"
            {"environments": {"production": {"alias": "1"}}},
            r"environments\.production\.alias",
        ),
        (  # lax pydantic read true as 1: a floor of 1 MB of free disk
            {"serve": {"inputs_min_free_mb": True}},
            r"serve\.inputs_min_free_mb: .*expected a number, not true",
        ),
        ({"train": {"epochs": False}}, r"train\.epochs: .*expected a number, not false"),
        ({"monitor": {"retrain_epochs": True}}, r"retrain_epochs: .*expected a number, not true"),
        ({"gates": {"min_recall": {"cat": True}}}, r"expected a number at cat, not true"),
        ({"train": {"search": {"grace_s": True}}}, r"grace_s: .*expected a number, not true"),
        # the prefix every device topic of the project hangs from: no wildcard, no empty level
        ({"telemetry": {"topic": "park/+"}}, r"telemetry\.topic: .*'park/\+': use 1 to 8 levels"),
        ({"telemetry": {"topic": "park//devices"}}, r"telemetry\.topic: .*no wildcard"),
        ({"telemetry": {"topic": "park/devices/"}}, r"telemetry\.topic"),
        ({"telemetry": {"topic": "$SYS"}}, r"telemetry\.topic"),
        ({"telemetry": {"topic": "my park"}}, r"telemetry\.topic"),
        (  # an environment's name names its spool folder and pidfile: no path in it
            {"environments": {"../../evil": {"alias": "e"}}, "release": {"staging": "../../evil"}},
            r"environments\.\.\./\.\./evil\.\[key\]: String should match pattern",
        ),
    ],
)
def test_bad_config_names_the_key(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_cli_reports_config_errors_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "kennel.yaml").write_text("data:\n  min_side: -4\n")
    result = CliRunner().invoke(app, ["data", "list", "-C", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "data.min_side" in result.stderr
    missing = CliRunner().invoke(app, ["data", "list", "-C", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "kennel init" in missing.stderr
    # a file given as the project said it held no kennel.yaml
    a_file = CliRunner().invoke(app, ["data", "list", "-C", str(tmp_path / "kennel.yaml")])
    assert a_file.exit_code == 2 and "is a file; -C takes the project's folder" in a_file.stderr


def test_init_writes_the_documented_defaults() -> None:
    import yaml

    from kennel.config import KennelConfig, default_config_text

    assert parse_config(yaml.safe_load(default_config_text())) == KennelConfig()


def test_environment_variables_expand_and_missing_ones_name_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KENNEL_TEST_DB", "postgresql+psycopg://db/x")
    config = parse_config({"store": {"metadata_url": "${KENNEL_TEST_DB}"}})
    assert config.store.metadata_url == "postgresql+psycopg://db/x"
    monkeypatch.delenv("KENNEL_TEST_DB")
    with pytest.raises(ConfigError, match=r"store\.metadata_url: environment variable"):
        parse_config({"store": {"metadata_url": "${KENNEL_TEST_DB}"}})


def test_cicd_template_uses_real_commands() -> None:
    import re

    import yaml

    from tests.conftest import REPO

    text = (REPO / "templates" / "github-actions" / "kennel.yml").read_text()
    workflow = yaml.safe_load(text)
    assert set(workflow["jobs"]) == {"build", "certify", "release"}
    commands = {m.split()[0] for m in re.findall(r"\bkennel ([a-z]+)", text)}
    assert {"pipeline", "deploy", "approve", "release", "stop"} <= commands
    installs = re.findall(r"pip install[^\n]*", text)
    assert installs and all("kennel-mlops" in line for line in installs), installs
    for command in commands:
        assert CliRunner().invoke(app, [command, "--help"]).exit_code == 0, command
    assert CliRunner().invoke(app, ["pipeline", "run", "--help"]).exit_code == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3+http://127.0.0.1:notaport/b/p", "the port after 127.0.0.1: is not a number"),
        ("s3+https://127.0.0.1:99999/b/p", "the port after 127.0.0.1: is not a number"),
        ("s3://", "'s3://' names no bucket"),
        ("s3+http://127.0.0.1:9000/", "'s3+http://' names no bucket"),
        ("s3+http://127.0.0.1:9000/bucket/../../etc", "'..' are not allowed"),
        ("s3://bucket/./x", "'..' are not allowed"),
    ],
)
def test_a_malformed_s3_store_url_is_one_line_naming_the_key(
    tmp_path: Path, url: str, message: str
) -> None:
    (tmp_path / "kennel.yaml").write_text(f"store:\n  artifacts_url: {url!r}\n")
    result = CliRunner().invoke(app, ["data", "list", "-C", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert "store.artifacts_url" in result.stderr
    assert message in result.stderr, result.stderr


def test_an_s3_source_url_with_a_bad_port_is_one_line() -> None:
    from kennel.errors import StorageError
    from kennel.storage.fsspec_store import split_endpoint

    with pytest.raises(StorageError, match="not a number"):
        split_endpoint("s3+http://127.0.0.1:notaport/b/p")
    assert split_endpoint("s3+http://127.0.0.1:9000/b/p") == ("s3://b/p", "http://127.0.0.1:9000")


def test_a_key_given_twice_or_an_empty_file_is_one_line(tmp_path: Path) -> None:
    """YAML lets a later key win silently; an emptied kennel.yaml would run on defaults."""
    path = tmp_path / "kennel.yaml"
    path.write_text("data:\n  min_side: 40\n  labels: [cat, dog]\n  min_side: 50\n")
    with pytest.raises(ConfigError, match=r"kennel.yaml:4:3: .*key 'min_side' appears twice"):
        load_project(tmp_path)
    path.write_text("data:\n  min_side: 40\ndata:\n  workers: 1\n")
    with pytest.raises(ConfigError, match="key 'data' appears twice"):
        load_project(tmp_path)
    path.write_text("\n# nothing here\n")
    result = CliRunner().invoke(app, ["data", "list", "-C", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "kennel.yaml: empty" in result.stderr and "kennel init --force" in result.stderr


def test_merge_keys_still_load_and_odd_keys_are_one_line(tmp_path: Path) -> None:
    """The duplicate-key check leaves YAML's merge keys alone (a merged key may be set again
    in the mapping that merges it), and an unhashable key is the YAML error it always was."""
    path = tmp_path / "kennel.yaml"
    path.write_text(
        "environments:\n"
        "  staging: &e {host: 127.0.0.1, port: 8081, alias: staging}\n"
        "  production:\n    <<: *e\n    port: 8080\n    alias: production\n"
    )
    production = load_project(tmp_path).config.environments["production"]
    assert (production.host, production.port, production.alias) == ("127.0.0.1", 8080, "production")
    # a merge source defined inside a merge, and one deeper than the mapping merging it: YAML
    # flattens those before building them, and a merged key is not one written twice
    path.write_text(
        "environments:\n  staging:\n    <<: &public\n"
        "      <<: &defaults {host: 127.0.0.1, port: 8080, alias: production}\n"
        "      host: 0.0.0.0\n    port: 8081\n    alias: staging\n  production: *public\n"
    )
    envs = load_project(tmp_path).config.environments
    assert (envs["staging"].host, envs["staging"].port) == ("0.0.0.0", 8081)
    assert (envs["production"].host, envs["production"].port) == ("0.0.0.0", 8080)
    path.write_text("x: &c {j: 0}\ndefs:\n  inner: &b\n    <<: *c\n    j: 1\nuse:\n  <<: *b\n")
    with pytest.raises(ConfigError, match="unknown key"):  # loads as YAML; kennel knows no x
        load_project(tmp_path)
    path.write_text("environments:\n  a: &a {port: 1}\n  b: &b {port: 2}\n  c: {<<: *a, <<: *b}\n")
    with pytest.raises(ConfigError, match="key '<<' appears twice"):
        load_project(tmp_path)
    # a quoted "<<" is a plain key, and "=" a plain key once YAML is done with it
    from kennel.config.loading import _UniqueKeys

    merged = "a: &a {x: 1}\nb:\n  <<: *a\n  '<<': lit\nc: {=: 1, b: 2}\n"
    assert yaml.load(merged, Loader=_UniqueKeys) == yaml.safe_load(merged)
    path.write_text("project: kennel\n? [a, b]\n: 1\n")
    with pytest.raises(ConfigError, match="found unhashable key"):
        load_project(tmp_path)


def test_a_file_that_expands_hugely_or_nests_deeply_is_refused_with_its_reason(
    tmp_path: Path,
) -> None:
    """YAML aliases of aliases ("billion laughs") and deep nesting: a one-line refusal (exit 2),
    not a process filling memory or a RecursionError traceback."""
    path = tmp_path / "kennel.yaml"
    laughs = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    laughs += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path.write_text("\n".join(laughs) + "\n")
    with pytest.raises(ConfigError, match=r"kennel.yaml: expands to more than 100,000 values"):
        load_project(tmp_path)
    path.write_text("project: kennel\nx: " + "[" * 70 + "]" * 70 + "\n")
    with pytest.raises(ConfigError, match=r"x\[0\]\[0\].*: nested more than 64 levels deep"):
        load_project(tmp_path)
    path.write_text("x: " + "[" * 5000 + "]" * 5000 + "\n")  # deeper than PyYAML recurses
    with pytest.raises(ConfigError, match=r"kennel.yaml: nested too deeply"):
        load_project(tmp_path)
    result = CliRunner().invoke(app, ["data", "list", "-C", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "nested too deeply" in result.stderr
    path.write_text("project: kennel\nx: &x {y: 1}\nz: [*x, *x]\n")  # aliases as such are fine
    with pytest.raises(ConfigError, match="unknown key"):
        load_project(tmp_path)


def test_an_unset_environment_variable_is_named_with_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KENNEL_TEST_UNSET", raising=False)
    (tmp_path / "kennel.yaml").write_text("store:\n  metadata_url: ${KENNEL_TEST_UNSET}\n")
    with pytest.raises(ConfigError, match=r"kennel.yaml: store.metadata_url: environment "):
        load_project(tmp_path)
    monkeypatch.setenv("KENNEL_TEST_UNSET", "sqlite:///x.db")
    assert load_project(tmp_path).config.store.metadata_url == "sqlite:///x.db"


@pytest.mark.parametrize("folder", ["q?a", "p%41x", "h#1", "a b"])
def test_the_metadata_database_stays_in_a_project_whatever_its_folder_is_named(
    tmp_path: Path, folder: str
) -> None:
    """A "?" in the folder's name started the URL's query: the database was made beside the
    project (shared with any project named alike); "%41" was read as "A"."""
    from sqlalchemy.engine import make_url

    from kennel.wiring import Workspace

    project, _ = init_project(tmp_path / folder)
    assert make_url(project.metadata_url).database == str(project.root / ".kennel/kennel.db")
    ws = Workspace(project)
    try:
        ws.catalog.ensure_dataset("here")
    finally:
        ws.close()
    assert (project.root / ".kennel" / "kennel.db").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder]  # nothing made beside it
