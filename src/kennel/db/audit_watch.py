"""The rows the monitor's actions, a retrain and an ingest trust, checked against the audit
chain as ``kennel.db.audit_state`` checks the deploy path's: feedback labels (the measured
accuracy, a retrain's data), alerts (a resolved incident runs no actions; a compliance report
shows them) and label disputes (what keeps a picture out of a dataset, or lets it in)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, select, type_coerce
from sqlalchemy.orm import Session

from kennel.db.audit_rows import DIRECTLY, Entries, as_json, canon
from kennel.db.schema import AlertRow, FeedbackRow, LabelDisputeRow

ALERT = "alert."  # alert.open, .acknowledged, .resolved, .resolve, .action.<name>


def feedback(s: Session, by: Entries) -> Iterator[str]:
    """Each prediction's true label and who gave it, as the newest entry that changed it said
    (a label sent again, ``unchanged``, keeps the first sender): the monitor's measured
    accuracy, and so its rollback and retrain actions, and a retrain's data read them."""
    logged: dict[str, tuple[Any, Any]] = {}
    when: dict[str, Any] = {}  # the row's time, as the entry that set it says (None: an older)
    for e in by["feedback"]:
        if not e.details.get("unchanged"):
            logged[e.subject] = (e.details.get("label"), e.actor)
            when[e.subject] = e.details.get("at")
    columns = (FeedbackRow.prediction_id, FeedbackRow.label, FeedbackRow.actor, FeedbackRow.at)
    held, at = {}, {}
    for pid, label, actor, stored_at in s.execute(select(*columns)):
        held[pid], at[pid] = (label, actor), stored_at
    for pid in sorted(set(held) | set(logged)):
        row, entry = held.get(pid), logged.get(pid)
        if row == entry and not _apart(at[pid], when[pid]):
            continue
        if row == entry:  # a label "since the champion" decides whether a retrain may run
            yield (
                f"feedback for prediction {pid} is dated {at[pid]}, its entry {when[pid]}: "
                f"{DIRECTLY}"
            )
            continue
        if entry is None:
            yield f"feedback for prediction {pid} has no feedback entry: it was {DIRECTLY}"
        elif row is None:
            yield f"feedback for prediction {pid}, in the audit log, was deleted: {DIRECTLY}"
        else:
            yield (
                f"feedback for prediction {pid} is {row[0]!r} by {row[1]}, the audit log's "
                f"{entry[0]!r} by {entry[1]}: {DIRECTLY}"
            )


def alerts(s: Session, by: Entries) -> Iterator[str]:
    """Each alert as its entries left it: its rule and subject, severity and message as
    opened, its state after the newest change and each action's newest outcome (what stops a
    rule's actions from running again, and what a compliance report shows)."""
    logged: dict[int, dict[str, Any]] = {}
    entries = sorted((e for a, es in by.items() if a.startswith(ALERT) for e in es),
                     key=lambda e: e.seq)  # fmt: skip
    for e in entries:
        ident = e.details.get("id")
        if not isinstance(ident, int):
            continue
        if e.action == "alert.open":
            logged[ident] = {"subject": e.subject, "severity": e.details.get("severity"),
                             "message": e.details.get("message"), "state": "open",
                             "actions": {}}  # fmt: skip
            # what the entry says of them since it has (a retrain's window, compliance's runs)
            logged[ident].update({k: e.details[k] for k in _OPENED if k in e.details})
        elif ident not in logged:
            continue  # opened before the log said which alert: nothing to hold it to
        elif e.action.startswith(ALERT + "action."):
            logged[ident]["actions"][e.action.removeprefix(ALERT + "action.")] = e.details.get(
                "outcome"
            )
        elif e.action in ("alert.acknowledged", "alert.resolved", "alert.resolve"):
            logged[ident]["state"] = (
                "acknowledged" if e.action == "alert.acknowledged" else ("resolved")
            )
    columns = (AlertRow.id, AlertRow.rule, AlertRow.subject, AlertRow.severity,
               AlertRow.message, AlertRow.state, type_coerce(AlertRow.actions, String),
               AlertRow.first_at, AlertRow.metric, AlertRow.threshold,
               AlertRow.run_id)  # fmt: skip
    held = set()
    for (ident, rule, subject, severity, message, state, actions, first_at, metric, threshold,
         run_id) in s.execute(select(*columns).order_by(AlertRow.id)):  # fmt: skip
        held.add(ident)
        said = logged.get(ident)
        if said is None:
            yield f"alert {ident} ({rule}) has no alert.open entry: it was {DIRECTLY}"
            continue
        if _apart(first_at, said.get("first_at")):
            yield (
                f"alert {ident} was first seen {first_at}, its alert.open entry "
                f"{said['first_at']}: {DIRECTLY}"
            )
        stored = {"subject": f"{rule}:{subject}", "severity": severity, "message": message,
                  "state": state, "actions": as_json(actions), "metric": metric,
                  "threshold": threshold, "run_id": run_id}  # fmt: skip
        for key, value in stored.items():
            if key in said and canon(value) != canon(said[key]):
                yield (
                    f"alert {ident}'s {key} is {_shown(value)}, the audit log's "
                    f"{_shown(said[key])}: {DIRECTLY}"
                )
    for ident in sorted(set(logged) - held):
        yield f"alert {ident}, opened in the audit log, was deleted: {DIRECTLY}"


# what an alert.open entry says of its row besides the id, since this check (none before)
_OPENED = ("metric", "threshold", "run_id", "first_at")


def _apart(stored: Any, logged: Any) -> bool:
    """Whether a row's time is not the one its entry recorded (an ISO text; an entry written
    before entries recorded it says nothing of it)."""
    if logged is None:
        return False
    if not isinstance(stored, datetime):
        return True
    try:
        said = datetime.fromisoformat(str(logged))
    except ValueError:
        return True
    utc = [t if t.tzinfo else t.replace(tzinfo=UTC) for t in (stored, said)]  # SQLite's: naive
    return utc[0] != utc[1]


def _shown(value: Any) -> str:
    text = canon(value)
    return text if len(text) <= 60 else text[:57] + "..."


def disputes(s: Session, by: Entries) -> Iterator[str]:
    """Each label dispute as recorded (the labels its content was offered under) and settled
    (the label and who chose it): what keeps a picture out of a dataset, or lets it in."""
    offered: dict[str, Any] = {}  # the newest entry's labels and files
    found: dict[str, Any] = {}  # the first entry's run and time
    for e in by["dataset.dispute"]:
        offered[e.subject] = (e.details.get("labels"), e.details.get("files"))
        found.setdefault(e.subject, (e.details.get("run"), e.details.get("seen_at")))
    settled = {e.subject: (e.details.get("label"), e.actor) for e in by["dataset.settle"]}
    columns = (LabelDisputeRow.dataset, LabelDisputeRow.sha256,
               type_coerce(LabelDisputeRow.labels, String),
               type_coerce(LabelDisputeRow.files, String), LabelDisputeRow.run_id,
               LabelDisputeRow.seen_at, LabelDisputeRow.settled_label,
               LabelDisputeRow.settled_by)  # fmt: skip
    held = set()
    for dataset, sha, labels, files, run, seen, label, by_whom in s.execute(select(*columns)):
        subject = f"{dataset}:{sha}"
        held.add(subject)
        if subject not in offered:
            yield f"label dispute {subject} has no dataset.dispute entry: it was {DIRECTLY}"
        elif _differ(labels, files, *offered[subject]):
            yield (
                f"label dispute {subject}'s labels or files differ from the audit log's: {DIRECTLY}"
            )
        elif run != found[subject][0] or _apart(seen, found[subject][1]):
            yield (
                f"label dispute {subject}'s first run or time differ from the audit log's: "
                f"{DIRECTLY}"
            )
        elif (label, by_whom) != settled.get(subject, (None, None)):
            said = settled.get(subject)
            logged = f"{said[0]!r} by {said[1]}" if said else "none"
            yield (
                f"label dispute {subject} is settled as {label!r} by {by_whom}, the audit "
                f"log's {logged}: {DIRECTLY}"
            )
    for subject in sorted(set(offered) - held):
        yield f"label dispute {subject}, recorded in the audit log, was deleted: {DIRECTLY}"


def _differ(labels: Any, files: Any, said_labels: Any, said_files: Any) -> bool:
    """Whether a dispute's labels or files are not its newest entry's (one written before
    entries recorded the files says nothing of them)."""
    if canon(as_json(labels)) != canon(said_labels):
        return True
    return said_files is not None and canon(as_json(files)) != canon(said_files)
