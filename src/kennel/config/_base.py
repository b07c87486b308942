"""What every config section shares: strict, frozen models; the file and state names."""

from __future__ import annotations

import types
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

CONFIG_NAME = "kennel.yaml"
STATE_DIR = ".kennel"

T = TypeVar("T")


def checked(value: T, problem: str | None) -> T:
    """``value``, or the ValueError that makes pydantic name ``problem`` against its field (a
    validator's ending, where a ``*_problem`` function says what is wrong)."""
    if problem:
        raise ValueError(problem)
    return value


class _Strict(BaseModel):
    # no infinity or NaN anywhere: as a duration or a limit it only ever overflows later
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_switch_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """``true`` where a number goes is a mistake, not 1 (pydantic's lax mode reads it so:
        ``inputs_min_free_mb: true`` was a floor of 1 MB), in a list or mapping too."""
        if info.field_name is not None:
            found = _switch_for_number(cls.model_fields[info.field_name].annotation, value)
            if found is not None:
                where, switch = found
                raise ValueError(f"expected a number{where}, not {str(switch).lower()}")
        return value


def _switch_for_number(annotation: Any, value: Any) -> tuple[str, bool] | None:
    """Where in ``value`` a bool stands for a number ``annotation`` asks for ("" for the value
    itself, " at KEY" in a mapping, " at [N]" in a list) and that bool; None when nowhere."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _switch_for_number(get_args(annotation)[0], value)
    if origin in (Union, types.UnionType):
        kinds = get_args(annotation)
        if isinstance(value, bool):
            numeric = bool not in kinds and any(_numeric(k) for k in kinds)
            return ("", value) if numeric else None
        found = (_switch_for_number(k, value) for k in kinds if k is not type(None))
        return next((f for f in found if f is not None), None)
    if origin is dict and isinstance(value, dict):
        inner = get_args(annotation)[1]
        for key, item in value.items():
            if (f := _switch_for_number(inner, item)) is not None:
                return f" at {key}{f[0]}", f[1]
    if origin in (list, tuple, set, frozenset) and isinstance(value, list | tuple):
        inner = get_args(annotation)[0] if get_args(annotation) else Any
        for n, item in enumerate(value):
            if (f := _switch_for_number(inner, item)) is not None:
                return f" at [{n}]{f[0]}", f[1]
    return ("", value) if isinstance(value, bool) and _numeric(annotation) else None


def _numeric(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        return _numeric(get_args(annotation)[0])
    return annotation in (int, float)
