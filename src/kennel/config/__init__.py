"""Typed project configuration, read from ``kennel.yaml`` once by an entry point and passed down.

Relative paths in the file are resolved against the file's own folder, so a project works
from any current directory. Every validation error names the offending key.

One module per group of sections (``data``, ``training``, ``serving``, ``monitoring``), the
whole file and a loaded project in ``project``, reading and writing it in ``loading`` and
``template``; every public name is importable from ``kennel.config`` itself.
"""

from __future__ import annotations

from kennel.config._base import CONFIG_NAME, STATE_DIR
from kennel.config.data import DataConfig, Share, SplitConfig, StoreConfig
from kennel.config.loading import init_project, load_project, parse_config, revalidate
from kennel.config.monitoring import (
    METRIC_FAMILIES,
    METRICS,
    Action,
    MonitorConfig,
    RuleConfig,
    SmtpConfig,
    TelemetryConfig,
)
from kennel.config.project import KennelConfig, Project
from kennel.config.serving import (
    AuthConfig,
    CertificationConfig,
    EnvironmentConfig,
    FeedConfig,
    ReleaseConfig,
    Role,
    ServeConfig,
)
from kennel.config.template import default_config_text
from kennel.config.training import (
    PRESETS,
    GatesConfig,
    ModelConfig,
    ParamSpace,
    PipelineConfig,
    SearchConfig,
    Threshold,
    TrainConfig,
)

__all__ = [
    "CONFIG_NAME",
    "METRICS",
    "METRIC_FAMILIES",
    "PRESETS",
    "STATE_DIR",
    "Action",
    "AuthConfig",
    "CertificationConfig",
    "DataConfig",
    "EnvironmentConfig",
    "FeedConfig",
    "GatesConfig",
    "KennelConfig",
    "ModelConfig",
    "MonitorConfig",
    "ParamSpace",
    "PipelineConfig",
    "Project",
    "ReleaseConfig",
    "Role",
    "RuleConfig",
    "SearchConfig",
    "ServeConfig",
    "Share",
    "SmtpConfig",
    "SplitConfig",
    "StoreConfig",
    "TelemetryConfig",
    "Threshold",
    "TrainConfig",
    "default_config_text",
    "init_project",
    "load_project",
    "parse_config",
    "revalidate",
]
