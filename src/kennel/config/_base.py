"""What every config section shares: strict, frozen models; the file and state names."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

CONFIG_NAME = "kennel.yaml"
STATE_DIR = ".kennel"


class _Strict(BaseModel):
    # no infinity or NaN anywhere: as a duration or a limit it only ever overflows later
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
