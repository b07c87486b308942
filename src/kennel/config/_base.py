"""What every config section shares: strict, frozen models; the file and state names."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

CONFIG_NAME = "kennel.yaml"
STATE_DIR = ".kennel"


class _Strict(BaseModel):
    # no infinity or NaN anywhere: as a duration or a limit it only ever overflows later
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_switch_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """``true`` where a number goes is a mistake, not 1 (pydantic's lax mode reads it so:
        ``inputs_min_free_mb: true`` was a floor of 1 MB)."""
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            kinds = set(get_args(annotation)) or {annotation}
            if bool not in kinds and kinds & {int, float}:
                raise ValueError(f"expected a number, not {str(value).lower()}")
        return value
