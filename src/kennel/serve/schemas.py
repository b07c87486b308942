"""Wire formats of the HTTP API (they generate the OpenAPI document)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ModelRef(BaseModel):
    name: str
    version: int


class PredictionOut(BaseModel):
    prediction_id: str = Field(description="Use it to send feedback later.")
    label: str
    confidence: float
    probabilities: dict[str, float]
    model: ModelRef
    latency_ms: float = Field(description="Inference time per image inside its batch.")


class BatchItemOut(BaseModel):
    index: int
    prediction: PredictionOut | None = None
    error: str | None = None
    detail: str | None = None


class BatchOut(BaseModel):
    results: list[BatchItemOut]


class FeedbackIn(BaseModel):
    prediction_id: str = Field(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")
    label: str = Field(min_length=1, max_length=128)


class FeedbackOut(BaseModel):
    prediction_id: str
    label: str
    recorded: bool


class ModelOut(BaseModel):
    name: str
    version: int
    alias: str
    environment: str
    labels: list[str]
    image_size: int
    metrics: dict[str, object]
    dataset: dict[str, str]


class ReloadOut(BaseModel):
    version: int | None
    swapped: bool
    error: str | None = None


class HealthOut(BaseModel):
    status: str
    version: int | None = None
    detail: str | None = None


class ErrorOut(BaseModel):
    error: str = Field(description="A stable, machine-readable code.")
    detail: str = Field(description="A one-line explanation for people.")
