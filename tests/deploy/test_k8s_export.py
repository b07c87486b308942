"""`kennel export k8s`: a Dockerfile and manifests that the Kubernetes schemas accept, wired so
that the probes, Service, autoscaler and disruption budget all point at the serving pods, and
no store password is written unless asked."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from kennel.cli.main import app
from tests.conftest import make_project

K8S_VERSION = "1.30.0"
SHARED = {
    "store": {
        "metadata_url": "postgresql+psycopg://kennel:s3cret@db.internal:5432/kennel",
        "artifacts_url": "s3://park-artifacts/kennel",
    }
}


def _export(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["export", "k8s", "-C", str(root), *args])
    return result.exit_code, result.output


def _docs(out: Path) -> dict[str, dict[str, object]]:
    docs = {}
    for path in sorted((out / "k8s").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        docs[doc["kind"]] = doc
    return docs


def test_manifests_validate_against_the_kubernetes_schemas_and_fit_together(
    tmp_path: Path,
) -> None:
    make_project(tmp_path / "p", sections=SHARED)
    out = tmp_path / "deploy"
    code, output = _export(tmp_path / "p", "--out", str(out), "--replicas", "3")
    assert code == 0, output
    docs = _docs(out)
    assert set(docs) == {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for doc in docs.values():  # raises on any schema violation, unknown fields included
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)

    deployment = docs["Deployment"]
    spec = deployment["spec"]  # type: ignore[index]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["replicas"] == 3
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["args"][:3] == ["serve", "--env", "production"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # every selector picks exactly the pods the Deployment makes
    for kind in ("Service", "PodDisruptionBudget"):
        doc_spec = docs[kind]["spec"]  # type: ignore[index]
        chosen = doc_spec["selector"]
        chosen = chosen.get("matchLabels", chosen)
        assert chosen.items() <= labels.items(), kind
    service_port = docs["Service"]["spec"]["ports"][0]  # type: ignore[index]
    assert service_port["targetPort"] == container["ports"][0]["name"]
    hpa = docs["HorizontalPodAutoscaler"]["spec"]  # type: ignore[index]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]  # type: ignore[index]
    assert hpa["minReplicas"] == 3 and docs["PodDisruptionBudget"]["spec"]["minAvailable"] == 2  # type: ignore[index]

    # the pod's kennel.yaml reads its store URLs from the Secret, which holds placeholders
    pod_config = yaml.safe_load(docs["ConfigMap"]["data"]["kennel.yaml"])  # type: ignore[index]
    assert pod_config["store"] == {
        "metadata_url": "${KENNEL_METADATA_URL}",
        "artifacts_url": "${KENNEL_ARTIFACTS_URL}",
    }
    secret = docs["Secret"]["stringData"]  # type: ignore[index]
    assert {"KENNEL_METADATA_URL", "KENNEL_ARTIFACTS_URL", "AWS_SECRET_ACCESS_KEY"} <= set(secret)
    everything = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert "s3cret" not in everything
    assert container["envFrom"][0]["secretRef"]["name"] == docs["Secret"]["metadata"]["name"]  # type: ignore[index]

    dockerfile = (out / "Dockerfile").read_text()
    assert "USER 10001" in dockerfile and 'ENTRYPOINT ["kennel"]' in dockerfile
    assert "s3fs" in dockerfile  # the S3 artifact store needs its fsspec driver


def test_secrets_are_written_only_when_asked(tmp_path: Path) -> None:
    hook = "https://hooks.slack.example/services/T000/B000/sekrettoken"
    make_project(tmp_path / "p", sections={**SHARED, "monitor": {"webhook_url": hook}})
    code, output = _export(tmp_path / "p", "--out", str(tmp_path / "plain"))
    assert code == 0, output
    assert "sekrettoken" not in "".join(
        p.read_text() for p in (tmp_path / "plain").rglob("*") if p.is_file()
    )
    code, output = _export(tmp_path / "p", "--out", str(tmp_path / "d"), "--include-secrets")
    assert code == 0, output
    docs = _docs(tmp_path / "d")
    secret = docs["Secret"]["stringData"]  # type: ignore[index]
    assert secret["KENNEL_METADATA_URL"] == SHARED["store"]["metadata_url"]  # type: ignore[index]
    # a webhook URL carries its token: in the Secret, never in the ConfigMap
    assert secret["KENNEL_WEBHOOK_URL"] == hook  # type: ignore[index]
    config = docs["ConfigMap"]["data"]["kennel.yaml"]  # type: ignore[index]
    assert "sekrettoken" not in config and "${KENNEL_WEBHOOK_URL}" in config
    # the file holding the store URLs (and their passwords) is its owner's alone
    (written,) = (tmp_path / "d").rglob("secret.yaml")
    assert written.stat().st_mode & 0o077 == 0
    assert all(p.stat().st_mode & 0o044 for p in (tmp_path / "d").rglob("*.yaml") if p != written)


@pytest.mark.parametrize(
    ("sections", "args", "named"),
    [
        ({}, [], "store.metadata_url is SQLite"),
        (
            {"store": {"metadata_url": SHARED["store"]["metadata_url"]}},
            [],
            "is a local folder",
        ),
        (SHARED, ["--env", "prodution"], "unknown environment 'prodution'"),
        (SHARED, ["--replicas", "5", "--max-replicas", "2"], "max_replicas"),
        (SHARED, ["--max-replicas", "4294967296"], "--max-replicas 4294967296: give 1 to 1,000"),
        (SHARED, ["--replicas", "2000", "--max-replicas", "3000"], "--replicas 2000"),
    ],
)
def test_what_cannot_run_on_kubernetes_is_refused_in_one_line(
    tmp_path: Path, sections: dict[str, dict[str, object]], args: list[str], named: str
) -> None:
    make_project(tmp_path / "p", sections=sections)
    out = tmp_path / "d"
    code, output = _export(tmp_path / "p", "--out", str(out), *args)
    assert code != 0 and named in output and len(output.strip().splitlines()) == 1, output
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--namespace", "Team_A"], "--namespace 'Team_A' is not valid on Kubernetes"),
        (["--namespace", "a" * 64], "is not valid on Kubernetes: an RFC 1123 label"),
        (["--name", "kennel.prod"], "--name 'kennel.prod' is not valid on Kubernetes"),
        (["--name", "1kennel"], "a letter first"),
        (["--name", "k" * 64], "at most 63 characters"),
        (["--env", "prod.eu"], "the name from --env prod.eu 'kennel-prod.eu' is not valid"),
        (["--image", "Kennel:1"], "--image 'Kennel:1' is not a valid image reference"),
        (["--image", "kennel:1;rm -rf /"], "is not a valid image reference"),
        (["--image", "kennel:"], "is not a valid image reference"),
    ],
)
def test_names_kubernetes_would_reject_are_refused_before_writing(
    tmp_path: Path, args: list[str], named: str
) -> None:
    sections = {**SHARED, "environments": {"prod.eu": {"alias": "eu", "port": 8082}}}
    make_project(tmp_path / "p", sections=sections)
    out = tmp_path / "d"
    code, output = _export(tmp_path / "p", "--out", str(out), *args)
    assert code == 2 and named in output and len(output.strip().splitlines()) == 1, output
    assert not out.exists()  # nothing half-written


def test_a_valid_name_namespace_and_image_pass_the_schemas(tmp_path: Path) -> None:
    make_project(tmp_path / "p", sections=SHARED)
    out = tmp_path / "d"
    image = "registry.example.com:5000/team/kennel:1.2.3@sha256:" + "ab" * 32
    code, output = _export(
        tmp_path / "p", "--out", str(out), "--name", "pets-api", "--namespace", "ml-team",
        "--image", image,
    )  # fmt: skip
    assert code == 0, output
    docs = _docs(out)
    for doc in docs.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert docs["Service"]["metadata"] == docs["Deployment"]["metadata"]
    assert docs["Service"]["metadata"]["name"] == "pets-api"  # type: ignore[index]
    assert docs["Service"]["metadata"]["namespace"] == "ml-team"  # type: ignore[index]
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    assert container["image"] == image


def test_an_out_that_is_a_file_or_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    make_project(tmp_path / "p", sections=SHARED)
    afile = tmp_path / "passwd"
    afile.write_text("root:x:0:0\n")
    for out, named in (
        (afile, f"--out {afile} is a file, not a folder"),
        (afile / "deploy", f"--out {afile / 'deploy'}: cannot make {afile / 'deploy'}"),
    ):
        code, output = _export(tmp_path / "p", "--out", str(out))
        assert code == 2 and len(output.strip().splitlines()) == 1, output
        assert output.startswith(f"error: {named}") and "Traceback" not in output
    inside = tmp_path / "p" / ".kennel" / "k8s"  # the project's own state: kennel's alone
    code, output = _export(tmp_path / "p", "--out", str(inside))
    assert code == 2 and "inside the project's state folder" in output and not inside.exists()
    assert afile.read_text() == "root:x:0:0\n"
