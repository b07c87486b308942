"""How models are served and released (``serve``, ``environments``, ``release``, ``auth``,
``feed``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from kennel.config._base import _Strict


class ServeConfig(_Strict):
    max_batch: Annotated[int, Field(ge=1, le=1024)] = 16
    max_wait_ms: Annotated[float, Field(ge=0, le=1000)] = 4.0
    queue_size: Annotated[int, Field(ge=1)] = 256
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    max_upload_bytes: Annotated[int, Field(ge=1024, le=2**31)] = 10 * 1024 * 1024
    # 24 MP (a 6000x4000 camera frame): the model sees a few hundred pixels a side
    max_pixels: Annotated[int, Field(ge=1)] = 24_000_000
    # decode memory (width x height x bytes per pixel, source + RGB) of all images being
    # decoded at once; more waits, and one image needing more is rejected
    decode_budget_bytes: Annotated[int, Field(ge=1024 * 1024)] = 256 * 1024 * 1024
    poll_s: Annotated[float, Field(gt=0, le=3600)] = 1.0  # how often a service checks its alias
    log_flush_s: Annotated[float, Field(gt=0, le=3600)] = 0.5
    # false: an answered prediction's record is written to the journal before the answer (a
    # crash or kill -9 of the service loses none) and fdatasynced every log_flush_s off the
    # request path (a power cut or kernel crash may lose the last log_flush_s of answers);
    # true: fdatasynced before the answer (a power cut loses none), one disk sync per answer
    log_sync: bool = False
    # serve the bundle's int8 model when it has one: packaging keeps it only when it is faster
    # and within 0.5 accuracy points of the fp32 model (model.quantize); false: always fp32
    prefer_int8: bool = True
    keep_inputs: bool = True  # store input images (content-addressed) for saliency and retraining
    # under this much free disk where the journal or a local store is, inputs are not kept
    inputs_min_free_mb: Annotated[int, Field(ge=0, le=2**31)] = 1024
    # connections (and requests) served at once; more are answered 503 by the server
    max_connections: Annotated[int, Field(ge=1)] = 512
    # an idle kept-alive connection is closed after this long
    keep_alive_s: Annotated[float, Field(gt=0, le=300)] = 5.0
    # the whole request body must arrive within this long, else 408 and the connection closes
    body_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # Host names a service on loopback answers to besides loopback ones (a local proxy's public
    # name it passes on); others get a 400 (DNS rebinding). A service on another address: any
    hosts: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]{1,253}$")]] = Field(
        default_factory=list
    )


class EnvironmentConfig(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    # what the registry accepts as an alias: a letter, then letters, digits, _ or - (a number
    # would read as a version in NAME@N)
    alias: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")] = "production"

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
    # where continuous deployment (mode: deployment) releases a version that passed
    to: str = "production"
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
