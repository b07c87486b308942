"""Wire formats of the HTTP API (they generate the OpenAPI document)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ModelRef(BaseModel):
    name: str
    version: int


class PredictionOut(BaseModel):
    prediction_id: str = Field(description="Use it to send feedback later.")
    label: str
    confidence: float
    probabilities: dict[str, float]
    pet: bool | None = Field(
        description=(
            "Whether the picture shows a cat or a dog at all. false: out of distribution "
            "(a lawn, a butterfly, a covered lens): `label` is only the nearest of the "
            "model's classes and should not be believed. null: this model cannot judge "
            "(no ImageNet head and no embedding reference in its bundle)."
        )
    )
    pet_score: float | None = Field(
        description=(
            "What `pet` was judged from, in [0, 1]: the frozen ImageNet classifier's "
            "probability mass on cat and dog classes, or for models without it the share "
            "of the training reference's held-out photos lying further from the rest than "
            "this picture's embedding. `pet` is `pet_score >= threshold` (GET /v1/model)."
        )
    )
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
    # whether the prediction is in the log yet: false for a record still on its way from a
    # service's journal (drained every half second), and for an id no service ever gave
    logged: bool


class ModelOut(BaseModel):
    name: str
    version: int
    alias: str
    environment: str
    labels: list[str]
    image_size: int
    frame: dict[str, object] = Field(
        description="How a picture becomes the model's input: policy (centre, letterbox, "
        "tiles, letterbox+tiles), max_aspect (pictures closer to square get the centre "
        "square) and the letterbox fill colour."
    )
    ood: dict[str, object] = Field(
        description="How `pet` is judged: method (imagenet, embedding or none) and threshold."
    )
    graph: Literal["fp32", "int8"] = Field(
        description="Which of the bundle's ONNX graphs answers: int8 where packaging kept one "
        "and serve.prefer_int8 is true."
    )
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
