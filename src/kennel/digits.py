"""Whole numbers written by someone else (an HTTP header, a port, a camera index, a declared
length), read strictly: ASCII digits only. Python's ``int`` also takes '٣', '+3', ' 3 ' and
'3_0', and ``str.isdigit`` is true for '²', which ``int`` refuses."""

from __future__ import annotations

# Beyond this many significant digits a number is read as HUGE: larger than every limit it is
# checked against, and ``int`` refuses strings past 4,300 digits (a 500 before, where a header
# of 5,000 digits reached it)
_SIGNIFICANT = 19
HUGE = 10**_SIGNIFICANT


def ascii_number(text: str | bytes | None) -> int | None:
    """``text`` as a non-negative integer when it is one or more ASCII digits, else None; a
    number of more than 19 significant digits is :data:`HUGE`."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    digits = text if isinstance(text, str) else text.decode("ascii")
    significant = digits.lstrip("0")
    return HUGE if len(significant) > _SIGNIFICANT else int(significant or 0)


def declared_over(declared: str | bytes | None, limit: int) -> bool:
    """Whether a declared length (``Content-Length``) is a number above ``limit``; a missing
    or malformed one is not (the body is then bounded as it arrives)."""
    size = ascii_number(declared)
    return size is not None and size > limit
