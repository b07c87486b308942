"""The whole ``kennel.yaml`` (KennelConfig) and a loaded project (config + root folder)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kennel.config._base import STATE_DIR, _Strict
from kennel.config.data import DataConfig, StoreConfig
from kennel.config.monitoring import MonitorConfig, TelemetryConfig
from kennel.config.serving import (
    AuthConfig,
    EnvironmentConfig,
    FeedConfig,
    ReleaseConfig,
    ServeConfig,
)
from kennel.config.training import GatesConfig, ModelConfig, PipelineConfig, TrainConfig
from kennel.errors import ConfigError, did_you_mean

# An environment's name names files and folders (.kennel/spool/ENV/, .kennel/run/serve-ENV.pid)
# and goes into URLs and metric labels: a plain name, as a model's is.
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


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
    environments: dict[EnvName, EnvironmentConfig] = Field(default_factory=_default_environments)
    release: ReleaseConfig = Field(default_factory=ReleaseConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    feed: FeedConfig = Field(default_factory=FeedConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)

    @model_validator(mode="after")
    def _rules_name_known_classes(self) -> KennelConfig:
        # a rule on a class the project does not have never fires: said on reading
        labels = self.data.labels
        for rule in self.monitor.rules:
            family, _, label = rule.metric.partition(".")[2].partition(".")
            per_class = rule.metric.startswith(("performance.recall.", "performance.precision."))
            if labels and (per_class or family == "predicted_rate_ratio") and label not in labels:
                raise ValueError(
                    f"monitor rule {rule.name!r}: {rule.metric!r} names class {label!r}, not "
                    f"one of data.labels ({', '.join(labels)}){did_you_mean(label, labels)}"
                )
        return self

    @model_validator(mode="after")
    def _release_targets(self) -> KennelConfig:
        if self.release.staging not in self.environments:
            raise ValueError(
                f"release.staging names {self.release.staging!r}, which is not in environments"
            )
        owners: dict[str, str] = {}
        folded: dict[str, str] = {}  # each alias in lower case: Production beside production
        for name, env in self.environments.items():
            if env.alias.lower() in ("champion", "latest"):
                raise ValueError(
                    f"environments.{name}.alias may not be {env.alias} (champion is moved by "
                    "the build, latest names the newest version)"
                )
            twin = folded.get(env.alias.lower())
            if twin is not None:  # one: a deploy to one would move what the other serves
                raise ValueError(
                    f"environments.{name}.alias {env.alias!r} is "
                    + ("also " if twin == env.alias else f"{twin!r} in other case, ")
                    + f"environments.{owners[twin]}'s: each environment needs its own alias"
                )
            owners[env.alias] = name
            folded[env.alias.lower()] = env.alias
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
        if self.release.to not in self.environments or self.release.to == self.release.staging:
            # said when kennel.yaml is read, not after a certification (the staging alias
            # moved), nor at `kennel release` in continuous delivery
            raise ValueError(
                f"release.to {self.release.to!r}: releases go to an environment other than "
                f"staging ({', '.join(sorted(self.environments))})"
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
            # the root as a URL's path: a "?", "#" or "%" in a folder's name would otherwise
            # start a query (the database then named by the text before it, outside the
            # project and shared with any project whose name starts alike) or an escape
            return f"{prefix}{quote(str(self.root), safe='/')}/{url[len(prefix) :]}"
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
