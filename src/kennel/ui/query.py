"""Times in a page's query: ``since=24h`` (that long before now) or an ISO date or date-time
(UTC unless it names its offset). Anything else is the request's mistake (ConfigError: a 400
page that says what was expected)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from pydantic import AfterValidator

from kennel.display import text_problem
from kennel.errors import ConfigError

_SPAN = re.compile(r"^(\d{1,6})\s*(m|h|d)\Z")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
MAX_AGO = timedelta(days=3660)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _no_control(text: str) -> str:
    problem = text_problem(text, limit=len(text))
    if problem:
        raise ValueError(problem)
    return text


def _no_control_in_text(text: str) -> str:
    problem = text_problem(text, limit=len(text), lines=True)
    if problem:
        raise ValueError(problem)
    return text


# a query or form value that names something (a search box): no control character at all
Printable = AfterValidator(_no_control)
# free text (a note): tabs and line breaks, but no other control character
PrintableText = AfterValidator(_no_control_in_text)


def span(text: str) -> timedelta | None:
    """'90m', '24h' or '7d' as a timedelta; None when ``text`` is not a span."""
    found = _SPAN.match(text.strip())
    if found is None:
        return None
    return timedelta(**{_UNITS[found[2]]: int(found[1])})


def when(text: str, *, now: datetime, name: str) -> datetime:
    """The time ``text`` names, as UTC: a span before ``now`` or an ISO date-time."""
    text = text.strip()
    ago = span(text)
    if ago is not None:
        if ago > MAX_AGO:
            raise ConfigError(f"{name}={text}: at most {MAX_AGO.days} days back")
        return now - ago
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
        at = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ConfigError(
            f"{name}={text[:40]!r}: expected a span before now (30m, 24h, 7d) or a date or "
            "date-time (2024-05-01 or 2024-05-01T12:00, UTC unless it says otherwise)"
        ) from None
    if not EARLIEST <= at < LATEST:  # a chart's buckets past the year 9999 cannot be drawn
        raise ConfigError(
            f"{name}={text[:40]!r}: a date from {EARLIEST.year} to {LATEST.year - 1}, please"
        )
    return at


def time_range(
    since: str, until: str, *, now: datetime, default_since: str, longest: timedelta
) -> tuple[datetime, datetime]:
    """[since, until) from a page's query (empty ``until``: now), at most ``longest`` long."""
    start = when(since or default_since, now=now, name="since")
    end = when(until, now=now, name="until") if until.strip() else now
    if end <= start:
        raise ConfigError(f"since ({start:%Y-%m-%d %H:%M}) must come before until "
                          f"({end:%Y-%m-%d %H:%M})")  # fmt: skip
    if end - start > longest:
        days = (end - start).total_seconds() / 86400
        raise ConfigError(
            f"the range since..until spans {days:.3g} days; this page shows at most "
            f"{longest.days} days at once: narrow it"
        )
    return start, end
