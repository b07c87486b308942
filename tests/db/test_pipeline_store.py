"""Finished pipeline steps, on SQLite and on PostgreSQL: entities in, entities out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from kennel.db import Database
from kennel.db.pipeline import PipelineStep, PipelineStepStore


@pytest.fixture
def store(metadata_url: str) -> Iterator[PipelineStepStore]:
    db = Database.open(metadata_url)
    yield PipelineStepStore(db)
    db.dispose()


def test_a_step_is_read_back_as_it_was_recorded(store: PipelineStepStore) -> None:
    assert store.get("k" * 64) is None
    at = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    step = PipelineStep("k" * 64, "ingest", {"version": "park@abc", "added": 3}, at)
    store.put(step)
    assert store.get("k" * 64) == step


def test_running_a_step_again_replaces_its_record(store: PipelineStepStore) -> None:
    first = PipelineStep("a" * 64, "build", {"model": "pets@1"}, datetime.now(UTC))
    store.put(first)
    again = PipelineStep("a" * 64, "build", {"model": "pets@2"}, datetime.now(UTC))
    store.put(again)
    found = store.get("a" * 64)
    assert found is not None and found.output == {"model": "pets@2"}
