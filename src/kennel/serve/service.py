"""The state a prediction service runs on, kept on ``app.state.service`` by ``create_app``.

Built from kennel.yaml's ``serve`` section (``kennel.config.ServeConfig``, the one settings
type) and an environment name; the running app adds its micro-batcher, decoder threads and
decode budget for the length of its lifespan.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from starlette.requests import Request

from kennel.config import ServeConfig
from kennel.db import Database
from kennel.serve.auth import TokenStore
from kennel.serve.batching import MicroBatcher
from kennel.serve.budget import DecodeBudget
from kennel.serve.holder import ModelHolder
from kennel.serve.metrics import ServiceMetrics
from kennel.serve.predlog import PredictionLog
from kennel.serve.runtime import Prediction, Predictor, Prepared


class ApiError(Exception):
    """An answer other than 2xx: ``{"error": code, "detail": detail}`` with ``status``."""

    def __init__(
        self, status: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


@dataclass
class Service:
    holder: ModelHolder
    tokens: TokenStore
    db: Database
    predlog: PredictionLog | None
    settings: ServeConfig = field(default_factory=ServeConfig)
    environment: str = "production"
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    draining: bool = False
    # started and stopped with the app's lifespan
    batcher: MicroBatcher[tuple[Predictor, Prepared], Prediction] | None = None
    decoders: ThreadPoolExecutor | None = None
    budget: DecodeBudget | None = None

    @property
    def keeps_inputs(self) -> bool:
        """Input images are kept when kennel.yaml says so (``serve.keep_inputs``, on by
        default) and the prediction log has a content store to keep them in."""
        return (
            self.settings.keep_inputs
            and self.predlog is not None
            and self.predlog.inputs is not None
        )

    def predictor(self) -> Predictor:
        current = self.holder.current
        if current is None:
            raise ApiError(503, "not_ready", self.not_ready(), {"Retry-After": "5"})
        return current

    def not_ready(self) -> str:
        """Why no model serves, for any client: the reason itself (which may name files and
        paths) is in the service's log and its load-failure metric, not in answers."""
        if self.holder.last_error is None:
            return "no model loaded yet"
        if self.holder.unset and self.holder.current is None:
            return (
                f"no model version is released to this environment yet (alias "
                f"{self.holder.alias!r} names none)"
            )
        return "the environment's model version cannot be loaded (see the service log)"


def service_of(request: Request) -> Service:
    """The Service of the app answering ``request``."""
    service: Service = request.app.state.service
    return service


def run_batch(items: Sequence[tuple[Predictor, Prepared]]) -> list[Prediction]:
    """Each item runs on the Predictor that accepted it, so a swap never mixes models."""
    out: list[Prediction | None] = [None] * len(items)
    groups: dict[int, list[int]] = {}
    for i, (predictor, _prepared) in enumerate(items):
        groups.setdefault(id(predictor), []).append(i)
    for indices in groups.values():
        predictor = items[indices[0]][0]
        for i, p in zip(
            indices, predictor.predict_prepared([items[i][1] for i in indices]), strict=True
        ):
            out[i] = p
    return [p for p in out if p is not None]
