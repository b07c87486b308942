"""Typed project configuration, read from ``kennel.yaml`` once by an entry point and passed down.

Relative paths in the file are resolved against the file's own folder, so a project works
from any current directory. Every validation error names the offending key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kennel.errors import ConfigError, did_you_mean

CONFIG_NAME = "kennel.yaml"
_Model = TypeVar("_Model", bound=BaseModel)
STATE_DIR = ".kennel"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(_Strict):
    # SQLAlchemy URL of the metadata database; sqlite paths are relative to the project root.
    metadata_url: str = f"sqlite:///{STATE_DIR}/kennel.db"
    # A local folder or any fsspec URL (s3://bucket/prefix, memory://x, file:///abs/path).
    artifacts_url: str = f"{STATE_DIR}/artifacts"


Share = Annotated[float, Field(ge=0.0, lt=1.0)]


class SplitConfig(_Strict):
    test: Share = 0.2
    validation: Share = 0.0
    seed: int = 0

    @model_validator(mode="after")
    def _fits(self) -> SplitConfig:
        if self.test + self.validation >= 1.0:
            raise ValueError("test + validation must leave a training share (sum < 1)")
        return self


class DataConfig(_Strict):
    # Allowed labels; an image with any other label is quarantined. Empty = accept any label.
    labels: list[str] = Field(default_factory=lambda: ["cat", "dog"])
    split: SplitConfig = Field(default_factory=SplitConfig)
    min_side: Annotated[int, Field(ge=1)] = 32
    # 40 MP: every common phone or camera photo; larger declared sizes are decompression bombs
    max_pixels: Annotated[int, Field(ge=1)] = 40_000_000
    max_file_bytes: Annotated[int, Field(ge=1)] = 64 * 1024 * 1024
    near_duplicate_distance: Annotated[int, Field(ge=0, le=16)] = 4
    # Worker processes for ingest and synthesis; 0 = one per CPU core.
    workers: Annotated[int, Field(ge=0)] = 0
    # Where manifest and SQL rows may point besides the manifest's own folder: local folders
    # (relative ones hang from kennel.yaml's folder) or URL prefixes (s3://bucket/images/).
    # Rows pointing anywhere else are quarantined unread.
    allowed_roots: list[str] = Field(default_factory=list)


class ParamSpace(_Strict):
    """One searchable hyperparameter: ``values`` (categorical, the only form grid search takes)
    or a numeric range ``low``..``high`` (``log`` scale, ``integer`` values)."""

    values: list[float | int | str] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _one_form(self) -> ParamSpace:
        has_range = self.low is not None and self.high is not None
        if (self.values is None) == (not has_range):
            raise ValueError("give either values: [...] or low and high")
        if has_range and self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError("low must not exceed high")
        if self.values is not None and not self.values:
            raise ValueError("values must not be empty")
        return self


class SearchConfig(_Strict):
    method: Literal["grid", "random", "tpe"] = "tpe"
    trials: Annotated[int, Field(ge=1)] = 4
    budget_minutes: Annotated[float, Field(gt=0)] | None = None
    # Trials may use fewer epochs than the final retrain (median pruning cuts bad ones short).
    trial_epochs: Annotated[int, Field(ge=1)] | None = None
    # Optuna storage URL shared by many workers (e.g. postgresql+psycopg://...); None = memory.
    storage: str | None = None
    space: dict[str, ParamSpace] = Field(
        default_factory=lambda: {
            "lr": ParamSpace(low=3e-4, high=1e-2, log=True),
            "weight_decay": ParamSpace(low=1e-5, high=1e-2, log=True),
            "augment": ParamSpace(values=[0.0, 0.3, 0.6]),
        }
    )


class TrainConfig(_Strict):
    arch: Literal["small_cnn", "efficientnet_lite0"] = "small_cnn"
    pretrained: bool = True  # ImageNet weights for efficientnet_lite0
    image_size: Annotated[int, Field(ge=32, le=512, multiple_of=32)] = 96
    epochs: Annotated[int, Field(ge=1)] = 6
    batch_size: Annotated[int, Field(ge=1)] = 64
    lr: Annotated[float, Field(gt=0)] = 3e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.1
    augment: Annotated[float, Field(ge=0, le=1)] = 0.5
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.2
    frozen_blocks: Annotated[int, Field(ge=0, le=16)] = 0
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    patience: Annotated[int, Field(ge=1)] = 3
    seed: int = 0
    # A manifest column (``label`` or a source column such as ``window``) whose values get an
    # equal share of every epoch, drawn with replacement; unset: every image once per epoch.
    balance_by: str | None = None
    # Share of the training split held out for validation when the dataset has none.
    validation_share: Annotated[float, Field(gt=0, lt=0.5)] = 0.1
    threads: Annotated[int, Field(ge=0)] = 0  # 0 = all cores
    search: SearchConfig = Field(default_factory=SearchConfig)


Threshold = Annotated[float, Field(ge=0, le=1)]


class GatesConfig(_Strict):
    """Quality gates a model must pass before it may be released."""

    min_accuracy: Threshold = 0.0
    # accuracy must exceed the test split's majority-class rate (always answering the
    # commonest class scores exactly that)
    beat_majority: bool = True
    min_precision: Threshold | dict[str, Threshold] = 0.0
    min_recall: Threshold | dict[str, Threshold] = 0.0
    max_recall_gap: Threshold = 1.0


class ModelConfig(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")] = "pets"
    quantize: bool = False  # keep an int8 model when it is faster and loses <= 0.5 points
    parity_images: Annotated[int, Field(ge=1)] = 256


class PipelineConfig(_Strict):
    dataset: str = "pets"
    source: str | None = None  # ingested first when set


class ServeConfig(_Strict):
    max_batch: Annotated[int, Field(ge=1, le=1024)] = 16
    max_wait_ms: Annotated[float, Field(ge=0, le=1000)] = 4.0
    queue_size: Annotated[int, Field(ge=1)] = 256
    timeout_s: Annotated[float, Field(gt=0)] = 10.0
    max_upload_bytes: Annotated[int, Field(ge=1024)] = 10 * 1024 * 1024
    # 24 MP (a 6000x4000 camera frame): the model sees a few hundred pixels a side
    max_pixels: Annotated[int, Field(ge=1)] = 24_000_000
    # decode memory (width x height x bytes per pixel, source + RGB) of all images being
    # decoded at once; more waits, and one image needing more is rejected
    decode_budget_bytes: Annotated[int, Field(ge=1024 * 1024)] = 256 * 1024 * 1024
    poll_s: Annotated[float, Field(gt=0)] = 1.0  # how often a service checks its alias
    log_flush_s: Annotated[float, Field(gt=0)] = 0.5
    prefer_int8: bool = False
    keep_inputs: bool = True  # store input images (content-addressed) for saliency and retraining


class EnvironmentConfig(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    alias: str = "production"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class CertificationConfig(_Strict):
    max_p99_ms: Annotated[float, Field(gt=0)] = 5000.0
    min_throughput: Annotated[float, Field(ge=0)] = 0.0  # images per second
    max_images: Annotated[int, Field(ge=1)] = 2000


class ReleaseConfig(_Strict):
    # delivery: a QA approval is required before release; deployment: release by itself once
    # certification and quality gates pass.
    mode: Literal["delivery", "deployment"] = "delivery"
    # the environment where `kennel deploy` runs the application test that certifies a version;
    # every other environment takes only released versions
    staging: str = "staging"
    certification: CertificationConfig = Field(default_factory=CertificationConfig)


Role = Literal["viewer", "operator", "qa", "admin"]


class AuthConfig(_Strict):
    # The role a CLI user holds WITHOUT a token (single-user projects, the demo). Unset (the
    # default): deploy, release, rollback, alias, publish and token commands need --token.
    local_role: Role | None = None


class FeedConfig(_Strict):
    """Pattern 3, the model published as data: where releases are announced."""

    url: str = ""  # e.g. redis://127.0.0.1:6379/0; empty = do not publish
    stream: str = "kennel:models"
    aliases: list[str] = Field(default_factory=lambda: ["production"])  # publish on these moves


Action = Literal["log", "webhook", "email", "rollback", "retrain"]


def _log_only() -> list[Action]:
    return ["log"]


# What a monitoring window measures (kennel.monitor.runner.analyse; a test keeps the two in
# step): a rule on any other name would never fire, so kennel.yaml may not name one.
METRICS = (
    "window.n",
    "integrity.decode_failure_rate",
    "integrity.low_confidence_rate",
    "integrity.size_anomaly_rate",
    "latency.p50_ms",
    "latency.p99_ms",
    "drift.drifted",
    "performance.accuracy",
    "performance.estimated_accuracy",
    "performance.labelled",
    "performance.macro_f1",
    "fairness.recall_gap",
    "telemetry.anomalies",
)
METRIC_FAMILIES = re.compile(
    r"^(integrity\.outside\.[\w.]+|drift\.[\w.]+\.(p_value|psi)"
    r"|performance\.(recall|precision)\.[\w-]+|fairness\.predicted_rate_ratio\.[\w-]+)$"
)


class RuleConfig(_Strict):
    """An alert rule: fire when ``metric op threshold`` holds for a monitored window."""

    name: str
    metric: str  # e.g. drift.drifted, performance.accuracy, integrity.low_confidence_rate
    op: Literal[">", ">=", "<", "<="] = ">"
    threshold: float
    severity: Literal["info", "warning", "critical"] = "warning"
    actions: list[Action] = Field(default_factory=_log_only)

    @model_validator(mode="after")
    def _known_metric(self) -> RuleConfig:
        if self.metric not in METRICS and not METRIC_FAMILIES.match(self.metric):
            raise ValueError(
                f"rule {self.name!r}: no window measures {self.metric!r}"
                f"{did_you_mean(self.metric, METRICS)}"
            )
        return self


def _default_rules() -> list[RuleConfig]:
    return [
        RuleConfig(name="data-drift", metric="drift.drifted", op=">=", threshold=1),
        RuleConfig(
            name="accuracy-drop",
            metric="performance.accuracy",
            op="<",
            threshold=0.85,
            severity="critical",
        ),
        RuleConfig(
            name="estimated-accuracy-drop",
            metric="performance.estimated_accuracy",
            op="<",
            threshold=0.85,
        ),
        RuleConfig(name="low-confidence", metric="integrity.low_confidence_rate", threshold=0.3),
        RuleConfig(name="decode-failures", metric="integrity.decode_failure_rate", threshold=0.05),
        RuleConfig(name="class-bias", metric="fairness.recall_gap", threshold=0.2),
        RuleConfig(name="device-anomaly", metric="telemetry.anomalies", op=">=", threshold=1),
    ]


class SmtpConfig(_Strict):
    host: str = ""  # empty: email actions are skipped (and say so)
    port: int = 25
    sender: str = "kennel@localhost"
    to: list[str] = Field(default_factory=list)


class MonitorConfig(_Strict):
    environment: str = "production"
    window: str = "24h"  # `kennel monitor run`'s default window
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05  # drift: family-wise level per window
    min_psi: Annotated[float, Field(ge=0)] = 0.1  # drift: smallest shift worth flagging
    min_window: Annotated[int, Field(ge=2)] = 30  # fewer predictions: no drift verdict
    min_labels: Annotated[int, Field(ge=1)] = 20  # fewer feedback labels: no measured accuracy
    low_confidence: Annotated[float, Field(gt=0, lt=1)] = 0.6
    rules: list[RuleConfig] = Field(default_factory=_default_rules)
    webhook_url: str = ""
    smtp: SmtpConfig = Field(default_factory=SmtpConfig)
    # retrain action: epochs of the warm-started run (null = the champion's own setting)
    retrain_epochs: Annotated[int, Field(ge=1)] | None = None


def _default_environments() -> dict[str, EnvironmentConfig]:
    return {
        "staging": EnvironmentConfig(port=8081, alias="staging"),
        "production": EnvironmentConfig(port=8080, alias="production"),
    }


class KennelConfig(_Strict):
    project: str = "kennel"
    store: StoreConfig = Field(default_factory=StoreConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    environments: dict[str, EnvironmentConfig] = Field(default_factory=_default_environments)
    release: ReleaseConfig = Field(default_factory=ReleaseConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    feed: FeedConfig = Field(default_factory=FeedConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)

    @model_validator(mode="after")
    def _release_targets(self) -> KennelConfig:
        if self.release.staging not in self.environments:
            raise ValueError(
                f"release.staging names {self.release.staging!r}, which is not in environments"
            )
        owners: dict[str, str] = {}
        for name, env in self.environments.items():
            if env.alias == "champion":
                raise ValueError(
                    f"environments.{name}.alias may not be champion (the build moves it)"
                )
            if env.alias in owners:  # a deploy to one would move what the other serves
                raise ValueError(
                    f"environments.{name}.alias {env.alias!r} is also "
                    f"environments.{owners[env.alias]}'s: each environment needs its own alias"
                )
            owners[env.alias] = name
        staging_alias = self.environments[self.release.staging].alias
        if staging_alias in self.feed.aliases:
            raise ValueError(
                f"feed.aliases lists {staging_alias!r}, the staging alias: subscribers would "
                "load versions that are only being certified"
            )
        for alias in self.feed.aliases if self.feed.url else ():
            if alias not in owners:  # only a release may move what subscribers load
                raise ValueError(
                    f"feed.aliases lists {alias!r}, which no environment follows: announce "
                    f"an environment's alias ({', '.join(sorted(owners))})"
                )
        if self.release.staging == "production" and "production" in self.environments:
            raise ValueError(
                "release.staging may not be production: production takes released versions"
            )
        return self

    def environment(self, env: str) -> EnvironmentConfig:
        """The environment named ``env``, or a ConfigError naming the ones defined."""
        if env not in self.environments:
            raise ConfigError(
                f"unknown environment {env!r}; kennel.yaml defines "
                f"{', '.join(self.environments)}{did_you_mean(env, self.environments)}"
            )
        return self.environments[env]


class Project(BaseModel):
    """A loaded config plus the folder it lives in (the root every relative path hangs from)."""

    model_config = ConfigDict(frozen=True)

    root: Path
    config: KennelConfig

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def metadata_url(self) -> str:
        url = self.config.store.metadata_url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.root / url[len(prefix) :])
        return url

    @property
    def artifacts_url(self) -> str:
        url = self.config.store.artifacts_url
        if "://" in url or Path(url).is_absolute():
            return url
        return str(self.root / url)

    @property
    def allowed_roots(self) -> list[str]:
        """``data.allowed_roots`` with relative folders resolved against the project root."""
        return [
            r if "://" in r or Path(r).expanduser().is_absolute() else str(self.root / r)
            for r in self.config.data.allowed_roots
        ]

    @property
    def workers(self) -> int:
        return self.config.data.workers or os.cpu_count() or 1


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The config model that holds the key at ``loc`` (to suggest its real keys)."""
    model: Any = KennelConfig
    for part in loc[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            if field is None:
                return None
            model = field.annotation
        else:  # a dict or list of models: the part is a key or an index
            model = next(
                (a for a in get_args(model) if isinstance(a, type) and issubclass(a, BaseModel)),
                None,
            )
        while get_args(model) and not (isinstance(model, type) and issubclass(model, BaseModel)):
            inner = [a for a in get_args(model) if a is not type(None)]
            models = [a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)]
            if models or len(inner) != 1 or get_origin(model) in (dict, list):
                break
            model = inner[0]
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _format_error(err: ValidationError, prefix: tuple[str, ...] = ()) -> str:
    first = err.errors()[0]
    loc = (*prefix, *first["loc"])
    key = ".".join(str(part) for part in loc) or "(top level)"
    extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    hint = ""
    if first["type"] == "extra_forbidden" and loc:
        model = _model_at(loc)
        if model is not None:
            hint = did_you_mean(str(loc[-1]), model.model_fields)
    elif first["type"] == "literal_error" and isinstance(first.get("input"), str):
        expected = re.findall(r"'([^']*)'", str((first.get("ctx") or {}).get("expected", "")))
        hint = did_you_mean(first["input"], expected)
    message = (
        "unknown key"
        if first["type"] == "extra_forbidden"
        else str(first["msg"]).removeprefix("Value error, ")
    )
    return f"{key}: {message}{hint}{extra}"


_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: Any, key: str) -> Any:
    """Replace ``${NAME}`` in string values with environment variables (for secrets)."""
    if isinstance(value, dict):
        return {k: _expand(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{key}: environment variable {name} is not set")
            return os.environ[name]

        return _ENV_VAR.sub(lookup, value)
    return value


def revalidate(section: str, value: _Model, updates: dict[str, Any]) -> _Model:
    """One kennel.yaml section with a command's ``updates`` (e.g. ``train`` with --arch),
    validated like the file: a bad or unknown key is a ConfigError naming it."""
    try:
        return type(value).model_validate({**value.model_dump(), **updates})
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, (section,))) from exc


def parse_config(data: Any, *, source: str = CONFIG_NAME) -> KennelConfig:
    if data is None:
        data = {}
    data = _expand(data, "")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return KennelConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_format_error(exc)}") from exc


def load_project(root: Path | str | None = None) -> Project:
    """Load ``kennel.yaml`` from ``root`` (default: the current directory)."""
    base = Path(root if root is not None else Path.cwd()).resolve()
    path = base / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"no {CONFIG_NAME} in {base}; run `kennel init` there first")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"{path}{where}: not valid YAML: {what}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    return Project(root=base, config=parse_config(data, source=str(path)))


def default_config_text() -> str:
    """The commented kennel.yaml that ``kennel init`` writes."""
    return """\
# kennel project configuration. Relative paths are resolved against this file's folder.
project: kennel

store:
  # Metadata database: SQLite by default, or e.g. postgresql+psycopg://127.0.0.1:5432/test
  metadata_url: sqlite:///.kennel/kennel.db
  # Artifact store: a local folder or any fsspec URL (s3://bucket/prefix, memory://x, ...)
  artifacts_url: .kennel/artifacts

data:
  labels: [cat, dog]        # images with any other label are quarantined
  split:
    test: 0.2               # stratified, hash-based, stable across appends
    validation: 0.0
    seed: 0
  min_side: 32              # smaller images are quarantined as too small
  max_pixels: 40000000      # larger declared sizes are quarantined as decompression bombs
  max_file_bytes: 67108864
  near_duplicate_distance: 4  # perceptual-hash bits; pairs within it are reported
  workers: 0                # 0 = one process per CPU core
  allowed_roots: []         # manifest/SQL rows may point here too (folders, URL prefixes)

train:
  arch: small_cnn           # or efficientnet_lite0 (ImageNet weights, fine-tuned)
  pretrained: true
  image_size: 96            # a multiple of 32
  epochs: 6
  batch_size: 64
  lr: 0.003
  weight_decay: 0.0001
  label_smoothing: 0.1
  augment: 0.5              # 0 = none, 1 = strongest
  frozen_blocks: 0          # efficientnet_lite0: freeze the stem + N blocks and cache them
  schedule: onecycle        # or cosine
  patience: 3               # early stopping on the validation split
  seed: 0
  balance_by: null          # a manifest column (label, camera...): equal shares per epoch
  validation_share: 0.1     # carved from train when the dataset has no validation split
  search:
    method: tpe             # grid | random | tpe
    trials: 4               # 1 = no search
    budget_minutes: null
    trial_epochs: null      # epochs per trial (default: train.epochs)
    storage: null           # Optuna RDB URL to share a study between workers
    space:
      lr: {low: 0.0003, high: 0.01, log: true}
      weight_decay: {low: 0.00001, high: 0.01, log: true}
      augment: {values: [0.0, 0.3, 0.6]}

gates:                      # a model failing any of these can never be released
  min_accuracy: 0.0
  beat_majority: true       # accuracy must exceed the commonest class's share of the test set
  min_precision: 0.0        # or per class, e.g. {cat: 0.9, dog: 0.9}
  min_recall: 0.0
  max_recall_gap: 1.0

model:
  name: pets
  quantize: false           # keep an int8 model when faster and within 0.5 points
  parity_images: 256

pipeline:
  dataset: pets
  source: null              # ingested first when set

serve:
  max_batch: 16             # dynamic micro-batching: up to this many images per inference
  max_wait_ms: 4.0          # ... waiting at most this long to fill a batch
  queue_size: 256           # a full queue answers 503 with Retry-After at once
  timeout_s: 10.0
  max_upload_bytes: 10485760  # whole request body, any encoding; more is a 413
  max_pixels: 24000000      # declared size; larger images are a 422
  decode_budget_bytes: 268435456  # decode memory of all images decoded at once
  poll_s: 1.0               # how often a running service checks the alias it serves
  log_flush_s: 0.5
  prefer_int8: false
  keep_inputs: true         # keep input images (content-addressed): saliency, retraining

environments:               # servers bind to their host; 127.0.0.1 unless you change it
  staging: {host: 127.0.0.1, port: 8081, alias: staging}
  production: {host: 127.0.0.1, port: 8080, alias: production}

release:
  mode: delivery            # delivery: QA approval required; deployment: automatic
  staging: staging          # where `kennel deploy` certifies; other environments take releases
  certification:
    max_p99_ms: 5000.0
    min_throughput: 0.0
    max_images: 2000

auth:
  local_role: null          # a CLI user's role without a token (e.g. admin for a one-person
                            # project); null: deploy/release/rollback/alias/publish need --token

feed:                       # pattern 3: signed model bundles published on a stream
  url: ""                   # e.g. redis://127.0.0.1:6379/0 (empty: do not publish)
  stream: kennel:models
  aliases: [production]     # moving one of these aliases publishes the new version

monitor:                    # `kennel monitor run` (cron it daily) and `kennel monitor watch`
  environment: production
  window: 24h
  alpha: 0.05               # drift tests share this false-alarm level per window (Bonferroni)
  min_psi: 0.1              # ... and flag only shifts at least this large (PSI)
  min_window: 30            # fewer predictions in a window: no drift verdict
  min_labels: 20            # fewer feedback labels: accuracy is estimated (CBPE), not measured
  low_confidence: 0.6
  webhook_url: ""           # POST target of webhook actions
  smtp: {host: "", port: 25, sender: kennel@localhost, to: []}
  retrain_epochs: null      # the retrain action's epochs (null: the champion's own)
  rules:                    # actions: log, webhook, email, rollback, retrain
    - {name: data-drift, metric: drift.drifted, op: ">=", threshold: 1}
    - name: accuracy-drop
      metric: performance.accuracy
      op: "<"
      threshold: 0.85
      severity: critical
    - {name: estimated-accuracy-drop, metric: performance.estimated_accuracy, op: "<",
       threshold: 0.85}
    - {name: low-confidence, metric: integrity.low_confidence_rate, threshold: 0.3}
    - {name: decode-failures, metric: integrity.decode_failure_rate, threshold: 0.05}
    - {name: class-bias, metric: fairness.recall_gap, threshold: 0.2}
    - {name: device-anomaly, metric: telemetry.anomalies, op: ">=", threshold: 1}
"""


def init_project(root: Path | str, *, force: bool = False) -> tuple[Project, bool]:
    """Write kennel.yaml and .kennel/ under ``root``; returns (project, created)."""
    base = Path(root).resolve()
    base.mkdir(parents=True, exist_ok=True)
    path = base / CONFIG_NAME
    created = force or not path.exists()
    if created:
        tmp = path.with_suffix(".yaml.tmp")
        tmp.write_text(default_config_text(), encoding="utf-8")
        tmp.replace(path)
    (base / STATE_DIR).mkdir(exist_ok=True)
    return load_project(base), created
