"""The Monitoring page's time buckets: round widths aligned across requests, and the buckets
that ended kept for ``ttl_s`` while the running one is counted on every request (over a real
prediction store)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kennel.db import Database
from kennel.db.predictions import LoggedPrediction, PredictionStore
from kennel.ui.buckets import BucketCache, grid


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PredictionStore]:
    db = Database.open(f"sqlite:///{tmp_path / 'meta.db'}")
    yield PredictionStore(db)
    db.dispose()


def log(store: PredictionStore, at: datetime, n: int = 1) -> None:
    store.add_many([
        LoggedPrediction(f"{at.timestamp():.0f}-{i}-{time.monotonic_ns()}", at, "production",
                         "pets", 1, "cat", 0.9, {}, {}, "cam", 3.0, None, None)
        for i in range(n)
    ])  # fmt: skip


def test_grids_are_round_aligned_and_cover_the_range() -> None:
    since = datetime(2024, 5, 1, 12, 7, 30, tzinfo=UTC)
    g = grid(since, since + timedelta(days=7), 48)
    assert g.width == timedelta(hours=6) and g.start == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert g.at(g.count) >= since + timedelta(days=7) and g.count <= 49
    assert grid(since, since + timedelta(minutes=30), 48).width == timedelta(minutes=1)
    later = grid(since + timedelta(minutes=3), since + timedelta(days=7, minutes=3), 48)
    assert later.start == g.start  # the same buckets a few minutes later: the cache holds


def count_with(store: PredictionStore) -> Any:
    def count(since: datetime, until: datetime, n: int) -> list[tuple[datetime, Any]]:
        return [(b.start, b) for b in store.traffic("production", since=since, until=until,
                                                    buckets=n)]  # fmt: skip

    return count


def test_ended_buckets_come_from_the_cache_the_running_one_is_counted(
    store: PredictionStore,
) -> None:
    now = datetime.now(UTC)
    g = grid(now - timedelta(minutes=30), now, 48)  # one-minute buckets
    assert g.width == timedelta(minutes=1)
    old = g.at(2) + timedelta(seconds=5)
    log(store, old, 3)
    log(store, g.at(g.count - 1), 2)  # the bucket still running
    cache: BucketCache[Any] = BucketCache(ttl_s=3600)
    first = {i: b.requests for i, b in cache.series("t", g, now, count_with(store))}
    assert first[2] == 3 and first[g.count - 1] == 2 and sum(first.values()) == 5
    # a late row in the ended bucket waits for the cache entry to expire; the running
    # bucket's new rows show at once
    log(store, old, 1)
    log(store, g.at(g.count - 1), 4)
    again = {i: b.requests for i, b in cache.series("t", g, now, count_with(store))}
    assert again[2] == 3 and again[g.count - 1] == 6
    fresh = {i: b.requests for i, b in BucketCache(ttl_s=0).series("t", g, now,
                                                                   count_with(store))}  # fmt: skip
    assert fresh[2] == 4 and fresh[g.count - 1] == 6
