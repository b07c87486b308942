"""Audit rows read as they are stored, trusting nothing in them: a row edited by hand into what
its columns' types cannot read (on SQLite a time that is no time, details that are no JSON
object) is still read, with what could not be read said in ``unreadable``. ``verify`` then
names that entry as altered, and every list of entries still shows it, instead of the read
failing on the one row whose tampering it exists to show."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, String, select, type_coerce

from kennel.db.schema import AuditRow

# seq, at, actor, action, subject, details, prev_hash, hash: the time and details as text
StoredSelect = Select[int, str, str, str, str, str, str, str]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # the time shown for a row whose time is unreadable
_SHOWN = 120  # characters of an unreadable value quoted back


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the trail as every list of entries shows it."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]


@dataclass(frozen=True)
class StoredEntry(AuditEntry):
    """An entry with its links, as ``read`` found it in its row."""

    prev_hash: str
    hash: str
    unreadable: str | None = None  # what of the row cannot be read, when something cannot


def select_stored() -> StoredSelect:
    """The audit rows' columns, the time and details as the database hands them back (text on
    SQLite, where a hand edit can put anything there), for ``read``."""
    return select(
        AuditRow.seq,
        type_coerce(AuditRow.at, String).label("at"),
        AuditRow.actor,
        AuditRow.action,
        AuditRow.subject,
        type_coerce(AuditRow.details, String).label("details"),
        AuditRow.prev_hash,
        AuditRow.hash,
    )


def read(row: Any) -> StoredEntry:
    """One row of ``select_stored`` as an entry, whatever was written into it."""
    problems: list[str] = []
    at = _time(row.at, problems)
    details = _details(row.details, problems)
    return StoredEntry(
        int(row.seq),
        at,
        str(row.actor),
        str(row.action),
        str(row.subject),
        details,
        str(row.prev_hash),
        str(row.hash),
        "; ".join(problems) or None,
    )


def _time(value: Any, problems: list[str]) -> datetime:
    if isinstance(value, datetime):  # a database with a time type hands back a time
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        problems.append(f"its time {_quoted(value)} is no time")
        return EPOCH
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _details(value: Any, problems: list[str]) -> dict[str, Any]:
    if isinstance(value, dict):  # a database with a JSON type hands back the object
        return value
    try:
        parsed = json.loads(value) if isinstance(value, str | bytes) else value
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    problems.append(f"its details {_quoted(value)} are no JSON object")
    return {}


def _quoted(value: Any) -> str:
    text = str(value)
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


DIRECTLY = "changed in the database directly"  # how a row's check names an edit
Entries = dict[str, list[StoredEntry]]  # the entries a check reads, by action


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def as_json(text: Any) -> Any:
    """A JSON column's stored text as its value (a database with a JSON type: the value)."""
    if isinstance(text, str | bytes):
        return json.loads(text)
    return text
