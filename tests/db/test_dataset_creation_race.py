"""Racing first ingests into a new dataset: every one finds it created, none fails (the
review found 5 of 10 rounds failing on SQLite with UNIQUE constraint failed: datasets.name)."""

from __future__ import annotations

import threading

from kennel.db import Database
from kennel.db.datasets import DatasetStore

ROUNDS, RACERS = 10, 3


def test_racing_creators_of_one_dataset_all_succeed(metadata_url: str) -> None:
    stores = [DatasetStore(Database.open(metadata_url)) for _ in range(RACERS)]
    failures: list[BaseException] = []
    for round_ in range(ROUNDS):
        start = threading.Barrier(RACERS, timeout=30)

        def create(
            store: DatasetStore, start: threading.Barrier = start, name: str = f"race-{round_}"
        ) -> None:
            try:
                start.wait()
                store.ensure_dataset(name)
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=create, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not failures, failures[0]
    assert {f"race-{r}" for r in range(ROUNDS)} <= set(stores[0].names())
    for store in stores:
        store.db.dispose()
