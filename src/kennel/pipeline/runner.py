"""Steps that are skipped when their inputs are unchanged.

A step's key is the digest of everything it depends on; its output is stored under that key
once the step has finished, so an interrupted pipeline re-runs only what was not done (and a
step that resumes, such as training from its checkpoint, picks up where it stopped). The runner
knows nothing of what a step does: it keys, skips, runs, records and reports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from kennel import __version__
from kennel.db.pipeline import PipelineStep, PipelineStepStore
from kennel.progress import Event, Progress, silent

Out = TypeVar("Out", bound=BaseModel)


def step_key(step: str, inputs: Mapping[str, object]) -> str:
    body = json.dumps({"step": step, "kennel": __version__, **inputs}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def _always(_output: object) -> bool:
    return True


def _quiet(_output: object) -> str | None:
    return None


@dataclass(frozen=True)
class Step(Generic[Out]):
    """One step: what it depends on, how to run it, and what it produces (stored as JSON and
    validated as ``output`` when read back)."""

    name: str
    inputs: Mapping[str, object]  # everything the output depends on (JSON-able)
    output: type[Out]
    run: Callable[[], Out]
    skipped: Callable[[Out], str]  # the line to report when a stored output stands
    done: Callable[[Out], str | None] = _quiet  # the line to report after running, if any
    current: Callable[[Out], bool] = _always  # whether a stored output still stands


@dataclass(frozen=True)
class StepRecord(Generic[Out]):
    step: str
    skipped: bool
    output: Out

    def as_dict(self) -> dict[str, object]:
        return {"step": self.step, "skipped": self.skipped, **self.output.model_dump()}


class StepRunner:
    """Runs steps, skipping those whose output is already stored under the same inputs
    (unless ``force``), and reports each as an Event in the ``pipeline`` phase."""

    def __init__(
        self, store: PipelineStepStore, *, force: bool = False, progress: Progress = silent
    ) -> None:
        self.store = store
        self.force = force
        self.progress = progress

    def _stored(self, step: Step[Out], key: str) -> Out | None:
        if self.force:
            return None
        found = self.store.get(key)
        if found is None:
            return None
        try:
            output = step.output.model_validate(found.output)
        except ValidationError:  # recorded by a kennel whose step said something else: re-run
            return None
        return output if step.current(output) else None

    def run(self, step: Step[Out]) -> StepRecord[Out]:
        key = step_key(step.name, step.inputs)
        stored = self._stored(step, key)
        if stored is not None:
            self.progress(Event("pipeline", step.skipped(stored)))
            return StepRecord(step.name, True, stored)
        output = step.run()
        self.store.put(PipelineStep(key, step.name, output.model_dump(), datetime.now(UTC)))
        message = step.done(output)
        if message is not None:
            self.progress(Event("pipeline", message))
        return StepRecord(step.name, False, output)
