"""The step runner: a step whose inputs are unchanged is skipped, unless forced, its stored
output no longer stands, or that output is not what the step produces now."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel

from kennel.db import Database
from kennel.db.pipeline import PipelineStep, PipelineStepStore
from kennel.pipeline.runner import Step, StepRunner, step_key
from kennel.progress import Event


class Counted(BaseModel):
    n: int


@dataclass
class Counter:
    runs: int = 0
    events: list[Event] = field(default_factory=list)

    def run(self) -> Counted:
        self.runs += 1
        return Counted(n=self.runs)

    def step(self, inputs: dict[str, object], stands: bool = True) -> Step[Counted]:
        return Step(
            name="count",
            inputs=inputs,
            output=Counted,
            run=self.run,
            skipped=lambda out: f"count: skipped, still {out.n}",
            done=lambda out: f"count: {out.n}",
            current=lambda _out: stands,
        )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PipelineStepStore]:
    db = Database.open(f"sqlite:///{tmp_path / 'meta.db'}")
    yield PipelineStepStore(db)
    db.dispose()


def test_unchanged_inputs_skip_and_changed_ones_run(store: PipelineStepStore) -> None:
    counter = Counter()
    runner = StepRunner(store, progress=counter.events.append)
    first = runner.run(counter.step({"a": 1}))
    assert not first.skipped and first.output.n == 1
    again = runner.run(counter.step({"a": 1}))
    assert again.skipped and again.output.n == 1 and counter.runs == 1
    assert again.as_dict() == {"step": "count", "skipped": True, "n": 1}
    assert runner.run(counter.step({"a": 2})).output.n == 2
    messages = [e.message for e in counter.events]
    assert messages == ["count: 1", "count: skipped, still 1", "count: 2"]
    assert {e.phase for e in counter.events} == {"pipeline"}


def test_force_and_stale_outputs_run_again(store: PipelineStepStore) -> None:
    counter = Counter()
    StepRunner(store).run(counter.step({"a": 1}))
    assert not StepRunner(store, force=True).run(counter.step({"a": 1})).skipped
    assert not StepRunner(store).run(counter.step({"a": 1}, stands=False)).skipped
    assert counter.runs == 3
    assert StepRunner(store).run(counter.step({"a": 1})).output.n == 3  # the newest record


def test_an_output_the_step_no_longer_produces_is_not_reused(store: PipelineStepStore) -> None:
    key = step_key("count", {"a": 1})
    store.put(PipelineStep(key, "count", {"model": "from an older kennel"}, datetime.now(UTC)))
    counter = Counter()
    record = StepRunner(store).run(counter.step({"a": 1}))
    assert not record.skipped and counter.runs == 1
    stored = store.get(key)
    assert stored is not None and stored.output == {"n": 1}
