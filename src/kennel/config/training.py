"""How models are trained, searched, gated and named (``train``, ``gates``, ``model``,
``pipeline``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from kennel.config._base import _Strict


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
    trials: Annotated[int, Field(ge=1, le=10_000)] = 4
    budget_minutes: Annotated[float, Field(gt=0, le=10_080)] | None = None
    # Trials may use fewer epochs than the final retrain (median pruning cuts bad ones short).
    trial_epochs: Annotated[int, Field(ge=1, le=10_000)] | None = None
    # Optuna storage URL for the in-process search (None = memory) and for shared studies
    # (``kennel tune``; None = an ``<schema>_optuna`` schema beside the metadata tables).
    storage: str | None = None
    # Shared studies: a worker's running trial beats every ``heartbeat_s``; one silent for
    # ``grace_s`` (default twice that) is failed and queued again, up to ``retries`` times.
    heartbeat_s: Annotated[int, Field(ge=1, le=86_400)] = 30
    grace_s: Annotated[int, Field(ge=2, le=604_800)] | None = None
    retries: Annotated[int, Field(ge=0, le=100)] = 2
    space: dict[str, ParamSpace] = Field(
        default_factory=lambda: {
            "lr": ParamSpace(low=3e-4, high=1e-2, log=True),
            "weight_decay": ParamSpace(low=1e-5, high=1e-2, log=True),
            "augment": ParamSpace(values=[0.0, 0.3, 0.6]),
        }
    )

    @model_validator(mode="after")
    def _grace_outlasts_a_beat(self) -> SearchConfig:
        if self.grace_s is not None and self.grace_s <= self.heartbeat_s:
            raise ValueError("grace_s must be longer than heartbeat_s")
        return self


Arch = Literal["small_cnn", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]

# What each preset sets; a key the section gives itself wins. ``quick`` is the field defaults:
# a small CNN that trains in seconds (tests, demos, the simulator). ``best`` is the recipe
# chosen for the real 10k photos on 2 cores (README, benchmarks/train_quality.py: 98.55 % on
# the untouched test split end to end): frozen ImageNet EfficientNet-Lite2 features at 320 px
# (the photos are 200 px; 320 beat 256 on validation photos, and the probe's training images
# need no mirrored copy, which pays for the larger size), computed once by ONNX Runtime, a
# linear classifier fitted to them (kennel.train.probe: standardised logistic regression, C by
# cross-validation; the optimiser keys below do not apply to it), and each image averaged with
# its mirror image in the exported graph and in validation.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {},
    "best": {
        "arch": "efficientnet_lite2",
        "image_size": 320,
        "freeze_backbone": True,
        "tta_flip": True,
        "epochs": 30,
        "batch_size": 256,
        "lr": 3e-3,
        "weight_decay": 1e-4,
        "label_smoothing": 0.0,
        "dropout": 0.2,
        "augment": 0.0,  # the probe trains on each image as it is (kennel.train.probe)
        "patience": 6,
    },
}


class TrainConfig(_Strict):
    preset: Literal["quick", "best"] = "quick"
    arch: Arch = "small_cnn"
    pretrained: bool = True  # ImageNet weights for efficientnet_lite*
    image_size: Annotated[int, Field(ge=32, le=512, multiple_of=32)] = 96
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 6
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 64
    lr: Annotated[float, Field(gt=0)] = 3e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.1
    augment: Annotated[float, Field(ge=0, le=1)] = 0.5
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.2
    # efficientnet_lite*: stem + N blocks frozen (and cached); lite0 has 16 blocks, lite1/2 21;
    # one more than the blocks: the head convolution too, only the classifier trains
    frozen_blocks: Annotated[int, Field(ge=0, le=22)] = 0
    # everything but the classifier frozen: a linear probe on ImageNet embeddings that ONNX
    # Runtime computes once per image
    freeze_backbone: bool = False
    # the model averages each image with its mirror image (in the exported graph too)
    tta_flip: bool = False
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    # How a picture far from square (a 16:9 camera frame) becomes the square input; the
    # bundle records it and every runtime applies it (kennel.portable.frames)
    frame: Literal["centre", "letterbox", "tiles", "letterbox+tiles"] = "tiles"
    patience: Annotated[int, Field(ge=1)] = 3
    seed: Annotated[int, Field(ge=-(2**62), le=2**62)] = 0  # what torch takes, rank added
    # A manifest column (``label`` or a source column such as ``window``) whose values get an
    # equal share of every epoch, drawn with replacement; unset: every image once per epoch.
    balance_by: str | None = None
    # Share of the training split held out for validation when the dataset has none.
    validation_share: Annotated[float, Field(gt=0, lt=0.5)] = 0.1
    threads: Annotated[int, Field(ge=0, le=1024)] = 0  # 0 = all cores
    # where training runs: auto = CUDA when present (each torchrun rank its own GPU), else the
    # CPU; or cpu, cuda, cuda:N
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$")] = "auto"
    search: SearchConfig = Field(default_factory=SearchConfig)

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") in PRESETS:
            return {**PRESETS[data["preset"]], **data}
        return data

    @model_validator(mode="after")
    def _frozen_needs_pretrained_lite(self) -> TrainConfig:
        if self.freeze_backbone and (self.arch == "small_cnn" or not self.pretrained):
            raise ValueError("freeze_backbone needs a pretrained efficientnet_lite arch")
        return self


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
    # a prediction whose ImageNet pet score (mass on cat, dog and kin classes) is under this
    # is "no pet": out of distribution
    pet_threshold: Annotated[float, Field(ge=0, le=1)] = 0.35


class PipelineConfig(_Strict):
    dataset: str = "pets"
    source: str | None = None  # ingested first when set
