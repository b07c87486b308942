"""Concurrent moves of one alias keep a consistent history: each move's ``from`` is where the
move before it left the alias (issue #12: the alias was read without a lock, so two racing
releases could both record the same ``from``)."""

from __future__ import annotations

import itertools
import threading

from kennel.db import Database
from kennel.db.audit import AuditLog
from kennel.db.registry import RegistryStore

MOVES = 25


def test_concurrent_alias_moves_chain_their_history(metadata_url: str) -> None:
    setup = Database.open(metadata_url)
    registry = RegistryStore(setup)
    for _ in range(4):
        registry.add_version(
            "pets", lambda _v: {}, run_id=None, dataset=None, dataset_version=None,
            metrics={}, gates_passed=True, gate_reasons=[], actor="test",
        )  # fmt: skip
    # each mover has its own engine and connections, as a process would
    stores = [RegistryStore(Database.open(metadata_url)) for _ in range(3)]
    start = threading.Barrier(3, timeout=30)
    failures: list[BaseException] = []

    def mover(store: RegistryStore, versions: tuple[int, int]) -> None:
        try:
            start.wait()
            for i in range(MOVES):
                store.move_alias(
                    "pets", "production", versions[i % 2], actor="t", reason="race",
                    kind="release", token=None,
                )  # fmt: skip
        except BaseException as exc:
            failures.append(exc)
        finally:
            store.db.dispose()

    pairs = ((1, 2), (3, 4), (2, 3))
    threads = [threading.Thread(target=mover, args=a) for a in zip(stores, pairs, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        history = registry.alias_history("pets", "production")
        final = registry.alias_target("pets", "production")
        audited = [e for e in AuditLog(setup).about("pets") if e.action == "alias.move"]
    finally:
        setup.dispose()
    assert failures == []
    assert len(history) == 3 * MOVES
    assert history[0].from_version is None
    for before, after in itertools.pairwise(history):
        assert after.from_version == before.to_version, (before, after)
    assert final == history[-1].to_version
    assert [(e.details["from"], e.details["to"]) for e in audited] == [
        (e.from_version, e.to_version) for e in history
    ]


def test_a_qa_decision_waits_for_a_policy_checked_move_to_commit(metadata_url: str) -> None:
    """A release checks the policy under the alias's lock, then moves. A rejection committed
    between that check and the move's commit went unseen on PostgreSQL (the decision took
    another lock), and the rejected version went live: now it waits for the move."""
    import time

    from kennel.db.deployments import DeploymentStore

    setup = Database.open(metadata_url)
    RegistryStore(setup).add_version(
        "pets", lambda _v: {}, run_id=None, dataset=None, dataset_version=None,
        metrics={}, gates_passed=True, gate_reasons=[], actor="test",
    )  # fmt: skip
    mover, qa = RegistryStore(Database.open(metadata_url)), Database.open(metadata_url)
    checked, done = threading.Event(), {}

    def policy() -> None:  # the check passes, and the move takes a while to commit after it
        checked.set()
        time.sleep(0.6)

    def reject() -> None:
        checked.wait(30)
        DeploymentStore(qa).add_approval("pets", 1, "rejected", actor="q", role="qa", note="x")
        done["rejected"] = time.monotonic()

    thread = threading.Thread(target=reject)
    thread.start()
    try:
        mover.move_alias("pets", "production", 1, actor="t", reason="release", kind="release",
                         token=None, guard=policy)  # fmt: skip
        done["moved"] = time.monotonic()
        thread.join(30)
    finally:
        mover.db.dispose()
        qa.dispose()
        setup.dispose()
    assert done["rejected"] >= done["moved"]  # after the release, as the audit trail says
