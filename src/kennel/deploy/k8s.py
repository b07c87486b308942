"""Ship an environment's service to Kubernetes: a Dockerfile and the manifests it runs under.

``kennel serve`` is stateless when the project's stores are shared (PostgreSQL + an S3-protocol
object store): every replica follows the environment's alias and writes to the one prediction
log. The export therefore refuses a project whose metadata is SQLite or whose artifacts are a
local folder (each pod would see its own copy).

What is written (no cluster is contacted):

- ``Dockerfile``: a slim Python image with kennel installed, running as an unprivileged user;
- ``kennel.yaml`` inside a ConfigMap, the project's own file with the store URLs (and the feed
  and webhook URLs) replaced by ``${KENNEL_...}`` variables that the Secret fills, so no
  password or hook token is written into a manifest;
- a Secret (``stringData`` placeholders unless ``include_secrets``), a Deployment whose
  readiness and liveness probes are ``/health/ready`` and ``/health/live``, a Service, a
  HorizontalPodAutoscaler on CPU and a PodDisruptionBudget.

Names are checked before anything is written: the namespace and the resource name (a Service
name is an RFC 1035 label: lowercase letters, digits and '-', a letter first, at most 63
characters), the label values (environment, alias) and the image reference (the OCI
distribution grammar: ``[registry[:port]/]path[:tag][@digest]``).

The prediction journal (write-ahead log) lives on an ``emptyDir``: it survives a container
restart and a store outage, not the deletion of the pod (docs/operations.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from kennel import __version__
from kennel.config import STATE_DIR, Project
from kennel.errors import ConfigError

PORT = 8080
UID = 10001
HOME = "/srv/kennel"
# kennel.yaml key -> environment variable that carries it in the pod (from the Secret)
SECRET_VARS = {
    "store.metadata_url": "KENNEL_METADATA_URL",
    "store.artifacts_url": "KENNEL_ARTIFACTS_URL",
    "feed.url": "KENNEL_FEED_URL",
    "monitor.webhook_url": "KENNEL_WEBHOOK_URL",  # a Slack-style hook carries its token
}
S3_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
PLACEHOLDER = "change-me"
MAX_NAME = 63
MAX_REPLICAS = 1000  # the autoscaler's fields are int32; more pods than this is a typo

_RFC1123_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
_RFC1035_LABEL = re.compile(r"[a-z](?:[-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
# github.com/distribution/reference, regexp.go: name[:tag][@digest]
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST_PART = r"[A-Za-z0-9](?:[-A-Za-z0-9]*[A-Za-z0-9])?"
_DOMAIN = rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?"
_IMAGE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH}(?:/{_PATH})*)(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,})?",
    re.ASCII,
)


@dataclass(frozen=True)
class K8sOptions:
    env: str = "production"
    image: str = f"kennel-mlops:{__version__}"
    replicas: int = 2
    max_replicas: int = 8
    cpu_target: int = 70  # percent of the request, for the autoscaler
    namespace: str | None = None
    name: str | None = None  # the Deployment's, Service's...: kennel-ENV unless given
    drain_s: float = 2.0
    include_secrets: bool = False  # write the project's store URLs into the Secret


def shared_stores(project: Project) -> None:
    """Raise a ConfigError unless every replica would see the same metadata and artifacts."""
    store = project.config.store
    if store.metadata_url.startswith("sqlite"):
        raise ConfigError(
            "store.metadata_url is SQLite: replicas need a shared database "
            "(e.g. postgresql+psycopg://...) before they can run on Kubernetes"
        )
    if "://" not in store.artifacts_url or store.artifacts_url.startswith(("file://", "local")):
        raise ConfigError(
            f"store.artifacts_url {store.artifacts_url!r} is a local folder: replicas need a "
            "shared object store (e.g. s3://bucket/prefix) before they can run on Kubernetes"
        )


def manifests(project: Project, options: K8sOptions) -> dict[str, str]:
    """File name -> text: ``Dockerfile`` and ``k8s/*.yaml`` for ``options.env``."""
    shared_stores(project)
    environment = project.config.environment(options.env)  # ConfigError names the known ones
    for flag, value in (("--replicas", options.replicas), ("--max-replicas", options.max_replicas)):
        if not 1 <= value <= MAX_REPLICAS:
            raise ConfigError(f"{flag} {value}: give 1 to {MAX_REPLICAS:,} replicas")
    if options.max_replicas < options.replicas:
        raise ConfigError("replicas must be at least 1 and no more than max_replicas")
    name = check_names(options, environment.alias)
    labels = {
        "app.kubernetes.io/name": "kennel",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/version": __version__,
        "kennel/environment": options.env,
        "kennel/alias": environment.alias,
    }
    selector = {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
    meta = {"name": name, "labels": labels} | (
        {"namespace": options.namespace} if options.namespace else {}
    )
    config_text, used = _pod_config(project)
    docs = {
        "configmap.yaml": _configmap(meta, config_text),
        "secret.yaml": _secret(meta, project, used, options.include_secrets),
        "deployment.yaml": _deployment(meta, selector, options, used),
        "service.yaml": _service(meta, selector),
        "hpa.yaml": _autoscaler(meta, options),
        "pdb.yaml": _disruption_budget(meta, selector, options),
    }
    out = {f"k8s/{file}": yaml.safe_dump(doc, sort_keys=False) for file, doc in docs.items()}
    out["Dockerfile"] = dockerfile(project, options)
    return out


def _rule(what: str, value: str, pattern: re.Pattern[str], rule: str) -> None:
    if len(value) > MAX_NAME or not pattern.fullmatch(value):
        raise ConfigError(f"{what} {value!r} is not valid on Kubernetes: {rule}")


def check_names(options: K8sOptions, alias: str) -> str:
    """The resource name the manifests use, once it, the namespace, the label values and the
    image reference are all valid; else a one-line ConfigError naming the first wrong one."""
    label = "lowercase letters, digits and '-', at most 63 characters"
    if options.namespace is not None:
        _rule("--namespace", options.namespace, _RFC1123_LABEL, f"an RFC 1123 label ({label})")
    rule = f"a Service name is an RFC 1035 label ({label}, a letter first)"
    if options.name is not None:
        what, name = "--name", options.name
    else:
        what, name = f"the name from --env {options.env}", f"kennel-{options.env}".lower()
        name, rule = name.replace("_", "-"), f"{rule}; pass --name"
    # a Service's name is an RFC 1035 label: a dot (fine in a Deployment's name) is not
    _rule(what, name, _RFC1035_LABEL, rule)
    value_rule = "a label value: letters, digits, '-', '_' and '.', at most 63 characters"
    _rule("--env", options.env, _LABEL_VALUE, value_rule)
    _rule(f"environments.{options.env}.alias", alias, _LABEL_VALUE, value_rule)
    image = _IMAGE.fullmatch(options.image)
    if image is None or len(image["name"]) > 255:
        raise ConfigError(
            f"--image {options.image!r} is not a valid image reference: "
            "[registry[:port]/]lowercase/path[:tag][@sha256:digest]"
        )
    return name


_S3_URLS = ("s3://", "s3+http://", "s3+https://")  # kennel.storage's S3 forms


def dockerfile(project: Project, options: K8sOptions) -> str:
    extras = " s3fs" if project.config.store.artifacts_url.startswith(_S3_URLS) else ""
    return f"""\
# kennel {__version__}: serves one environment of a project on shared stores.
# Build: docker build --build-arg KENNEL_SPEC="kennel-mlops=={__version__}{extras}" -t IMAGE .
# (KENNEL_SPEC may name a wheel copied into the build context instead.)
FROM python:3.11-slim
ARG KENNEL_SPEC="kennel-mlops=={__version__}{extras}"
RUN pip install --no-cache-dir $KENNEL_SPEC \\
    && useradd --uid {UID} --home-dir {HOME} --create-home kennel
USER {UID}
WORKDIR {HOME}
EXPOSE {PORT}
ENTRYPOINT ["kennel"]
CMD {_json_list(_serve_args(options))}
"""


def _serve_args(options: K8sOptions) -> list[str]:
    # 0.0.0.0 inside the pod only: the Service is what exposes it, and kennel's own default
    # stays 127.0.0.1 everywhere else
    return [
        "serve",
        "--env",
        options.env,
        "--host",
        "0.0.0.0",  # noqa: S104 - a container must listen on its pod address
        "--port",
        str(PORT),
        "--drain",
        str(options.drain_s),
        "--project",
        HOME,
    ]


def _json_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def _pod_config(project: Project) -> tuple[str, dict[str, str]]:
    """The project's kennel.yaml with each secret-bearing URL replaced by ``${VAR}``; returns
    the text and {VAR: the project's value} for the URLs that are set."""
    raw = yaml.safe_load((project.root / "kennel.yaml").read_text()) or {}
    text = (project.root / "kennel.yaml").read_text()
    values = {
        "store.metadata_url": project.config.store.metadata_url,
        "store.artifacts_url": project.config.store.artifacts_url,
        "feed.url": project.config.feed.url,
        "monitor.webhook_url": project.config.monitor.webhook_url,
    }
    # variables the file already reads (webhook secrets, say) must reach the pod too
    used: dict[str, str] = {var: "" for var in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)}
    for key, var in SECRET_VARS.items():
        if not values[key]:
            continue
        section, field = key.split(".")
        raw.setdefault(section, {})[field] = f"${{{var}}}"
        used[var] = values[key]
    return yaml.safe_dump(raw, sort_keys=False), used


def _configmap(meta: dict[str, Any], config_text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta | {"name": f"{meta['name']}-config"},
        "data": {"kennel.yaml": config_text},
    }


def _secret(
    meta: dict[str, Any], project: Project, used: dict[str, str], include: bool
) -> dict[str, Any]:
    data = {var: value if include and value else PLACEHOLDER for var, value in used.items()}
    if project.config.store.artifacts_url.startswith(_S3_URLS):
        data |= {var: PLACEHOLDER for var in S3_VARS}
    data["KENNEL_TOKEN"] = PLACEHOLDER  # for `kubectl exec ... kennel` commands that act
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta | {"name": f"{meta['name']}-secrets"},
        "type": "Opaque",
        "stringData": data,
    }


def _deployment(
    meta: dict[str, Any], selector: dict[str, str], options: K8sOptions, used: dict[str, str]
) -> dict[str, Any]:
    secret = f"{meta['name']}-secrets"
    probe = {"port": "http", "scheme": "HTTP"}
    container = {
        "name": "kennel",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": _serve_args(options),
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "envFrom": [{"secretRef": {"name": secret}}],
        "readinessProbe": {"httpGet": {"path": "/health/ready"} | probe, "periodSeconds": 5},
        "livenessProbe": {
            "httpGet": {"path": "/health/live"} | probe,
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        # loading a model (download, hash check, ONNX session) may take a while at start
        "startupProbe": {
            "httpGet": {"path": "/health/live"} | probe,
            "periodSeconds": 2,
            "failureThreshold": 60,
        },
        "resources": {
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "limits": {"memory": "2Gi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": f"{HOME}/kennel.yaml", "subPath": "kennel.yaml"},
            {"name": "state", "mountPath": f"{HOME}/{STATE_DIR}"},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the pod's own emptyDir
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": options.replicas,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": meta["labels"]},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": UID,
                        "fsGroup": UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "terminationGracePeriodSeconds": int(options.drain_s) + 30,
                    "automountServiceAccountToken": False,
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": f"{meta['name']}-config"}},
                        {"name": "state", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def _service(meta: dict[str, Any], selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _autoscaler(meta: dict[str, Any], options: K8sOptions) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"]},
            "minReplicas": options.replicas,
            "maxReplicas": options.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": options.cpu_target},
                    },
                }
            ],
        },
    }


def _disruption_budget(
    meta: dict[str, Any], selector: dict[str, str], options: K8sOptions
) -> dict[str, Any]:
    # a voluntary disruption (node drain) never takes the last serving replica away
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta,
        "spec": {
            "minAvailable": max(1, options.replicas - 1),
            "selector": {"matchLabels": selector},
        },
    }
